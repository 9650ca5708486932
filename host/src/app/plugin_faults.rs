//! A plugin's own failures (a trap, a panic with its stderr, a Python
//! traceback, an `internal` error it returned) are for its authors and the
//! operators, not for API clients: a client gets a short error with an id,
//! and the full message goes to the log and to this host's recent failures
//! of that plugin (`GET /plugins/{digest}/errors`). Failures the host itself
//! names (a deadline, fuel, a full instance pool) are not internals; clients
//! keep seeing them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use super::{App, AppError};

/// Failures kept per plugin on this host; the oldest goes first.
const KEPT_PER_PLUGIN: usize = 100;
/// The most of one message kept (stderr is already capped where it is read).
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// One failure of a plugin, as its authors need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFault {
    /// What the client was told (`errorId`).
    pub id: String,
    pub at_ms: i64,
    /// `name@version`.
    pub plugin: String,
    pub account: Uuid,
    /// The operation called (`get_note`, `move_notes`, …).
    pub operation: &'static str,
    pub request_id: Option<String>,
    pub message: String,
}

#[derive(Default)]
pub(super) struct PluginFaults(Mutex<HashMap<String, VecDeque<PluginFault>>>);

impl PluginFaults {
    fn record(&self, digest: &str, fault: PluginFault) {
        let mut kept = crate::lock::lock(&self.0);
        let recent = kept.entry(digest.to_owned()).or_default();
        if recent.len() == KEPT_PER_PLUGIN {
            recent.pop_back();
        }
        recent.push_front(fault);
    }

    fn recent(&self, digest: &str) -> Vec<PluginFault> {
        crate::lock::lock(&self.0).get(digest).map(|recent| recent.iter().cloned().collect()).unwrap_or_default()
    }
}

impl App {
    /// Keeps `message` for the plugin's authors and returns what the client
    /// gets instead: a 500 naming the plugin and the failure's id.
    pub(super) fn plugin_fault(&self, account: Uuid, operation: &'static str, plugin: &str, digest: &str, message: String) -> AppError {
        let error_id = self.record_plugin_fault(account, operation, plugin, digest, message);
        AppError::PluginFault { plugin: plugin.to_owned(), digest: crate::catalog::short(digest).to_owned(), error_id }
    }

    /// Keeps a plugin's failure for its author (`plugin errors`) and logs
    /// it; answers the record's id.
    pub(super) fn record_plugin_fault(&self, account: Uuid, operation: &'static str, plugin: &str, digest: &str, mut message: String) -> String {
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" …(cut)");
        }
        let id = Uuid::new_v4().to_string();
        let request_id = crate::request_id::current();
        tracing::warn!(error_id = %id, plugin, digest, %account, operation, request_id = request_id.as_deref().unwrap_or(""), error = %message, "plugin failed");
        let fault = PluginFault { id: id.clone(), at_ms: self.now_ms(), plugin: plugin.to_owned(), account, operation, request_id, message };
        self.plugin_faults.record(digest, fault);
        id
    }

    /// This host's recent failures of the stored plugin whose digest is, or
    /// starts with, `digest` (12 hex digits at least, as `X-Plugin` shows
    /// it), newest first.
    pub fn plugin_faults(&self, digest: &str) -> Result<(String, Vec<PluginFault>), AppError> {
        // The router compiled into the host (`--router native-*`) has no stored digest.
        if digest == "native" {
            return Ok((digest.to_owned(), self.plugin_faults.recent(digest)));
        }
        let one = self.stored_plugin(digest)?;
        let faults = self.plugin_faults.recent(&one.digest);
        Ok((one.digest, faults))
    }
}
