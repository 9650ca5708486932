//! A plugin's own failures (a trap, a panic with its stderr, a Python
//! traceback, an `internal` error it returned) are for its authors and the
//! operators, not for API clients: a client gets a short error with an id,
//! and the full message goes to the log and to this host's recent failures
//! of that plugin (`GET /plugins/{digest}/errors`). Failures the host itself
//! names (a deadline, fuel, a full instance pool) are not internals; clients
//! keep seeing them. A call stopped at its deadline or out of fuel is kept
//! too (a loop is the plugin's bug), at most [`KEPT_STOPS_PER_PLUGIN`] of
//! them, so a looping plugin cannot push its traps out of the record.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use super::{AppError, PluginService};
use crate::router::Op;

/// Failures kept per plugin on this host; the oldest goes first.
const KEPT_PER_PLUGIN: usize = 100;
/// Of those, how many may be calls stopped at their deadline or out of fuel.
const KEPT_STOPS_PER_PLUGIN: usize = 10;
/// The most of one message kept (stderr is already capped where it is read).
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// One failure of a plugin, as its authors need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFault {
    /// What the client was told (`errorId`); a deadline's or fuel's 503
    /// carries only the request's id.
    pub id: String,
    pub at_ms: i64,
    /// `name@version`.
    pub plugin: String,
    pub account: Uuid,
    /// The operation called (`get_note`, `move_notes`, …).
    pub operation: Op,
    pub request_id: Option<String>,
    pub message: String,
    /// Stopped at its deadline or out of fuel, rather than failed.
    pub stopped: bool,
}

#[derive(Default)]
pub(super) struct PluginFaults(Mutex<HashMap<String, VecDeque<PluginFault>>>);

impl PluginFaults {
    fn record(&self, digest: &str, fault: PluginFault) {
        let mut kept = crate::lock::lock(&self.0);
        let recent = kept.entry(digest.to_owned()).or_default();
        if fault.stopped
            && recent.iter().filter(|f| f.stopped).count() >= KEPT_STOPS_PER_PLUGIN
            && let Some(oldest) = recent.iter().rposition(|f| f.stopped)
        {
            recent.remove(oldest);
        }
        if recent.len() >= KEPT_PER_PLUGIN {
            recent.pop_back();
        }
        recent.push_front(fault);
    }

    fn recent(&self, digest: &str) -> Vec<PluginFault> {
        crate::lock::lock(&self.0).get(digest).map(|recent| recent.iter().cloned().collect()).unwrap_or_default()
    }
}

impl PluginService {
    /// Keeps `message` for the plugin's authors and returns what the client
    /// gets instead: a 500 naming the plugin and the failure's id.
    pub(super) fn plugin_fault(&self, account: Uuid, operation: Op, plugin: &str, digest: &str, message: String) -> AppError {
        let error_id = self.record_plugin_fault(account, operation, plugin, digest, message, false);
        AppError::PluginFault { plugin: plugin.to_owned(), digest: crate::catalog::short(digest).to_owned(), error_id }
    }

    /// Keeps a plugin's failure for its author (`plugin errors`) and logs
    /// it; answers the record's id. `stopped`: a call stopped at its
    /// deadline or out of fuel.
    pub(super) fn record_plugin_fault(
        &self,
        account: Uuid,
        operation: Op,
        plugin: &str,
        digest: &str,
        mut message: String,
        stopped: bool,
    ) -> String {
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
        tracing::warn!(error_id = %id, plugin, digest, %account, operation = operation.as_str(), request_id = request_id.as_deref().unwrap_or(""), error = %message, "plugin failed");
        let fault = PluginFault { id: id.clone(), at_ms: self.now_ms(), plugin: plugin.to_owned(), account, operation, request_id, message, stopped };
        self.faults.record(digest, fault);
        id
    }

    /// This host's recent failures of the stored plugin whose digest is, or
    /// starts with, `digest` (12 hex digits at least, as `X-Plugin` shows
    /// it), newest first.
    pub fn plugin_faults(&self, digest: &str) -> Result<(String, Vec<PluginFault>), AppError> {
        // The router compiled into the host (`--router native-*`) has no stored digest.
        if digest == "native" {
            return Ok((digest.to_owned(), self.faults.recent(digest)));
        }
        let one = self.stored_plugin(digest)?;
        let faults = self.faults.recent(&one.digest);
        Ok((one.digest, faults))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(message: &str, stopped: bool) -> PluginFault {
        PluginFault {
            id: Uuid::new_v4().to_string(),
            at_ms: 0,
            plugin: "loops@1".into(),
            account: Uuid::nil(),
            operation: Op::GetNote,
            request_id: None,
            message: message.into(),
            stopped,
        }
    }

    #[test]
    fn a_looping_plugin_cannot_push_its_traps_out_of_the_record() {
        let faults = PluginFaults::default();
        faults.record("d", fault("panicked at src/lib.rs", false));
        for _ in 0..500 {
            faults.record("d", fault("deadline after 1000 ms in get_note", true));
        }
        let recent = faults.recent("d");
        assert_eq!(recent.iter().filter(|f| f.stopped).count(), KEPT_STOPS_PER_PLUGIN, "the newest stops are kept, no more");
        assert!(recent.iter().any(|f| f.message == "panicked at src/lib.rs"), "the trap is still there");
        for i in 0..KEPT_PER_PLUGIN + 5 {
            faults.record("d", fault(&format!("trap {i}"), false));
        }
        assert_eq!(faults.recent("d").len(), KEPT_PER_PLUGIN, "at most {KEPT_PER_PLUGIN} in all");
    }
}
