//! The application core: every operation the API offers, with its rules.
//! Knows no HTTP (that is `api`), no SQL (that is `accounts` and `stores`)
//! and no wasmtime (that is `plugins`).
//!
//! Rules kept here:
//! - the flag is read for every note request (through `fleet::Fleet::admit`)
//!   and passed to the plugin; if it cannot be read the request fails
//!   (`Unavailable`), it never guesses;
//! - deployment gate: `is_migrating = true` is refused while this host's
//!   plugin does not support migration, or there is no new store; the
//!   fleet-wide half (every other host) is `fleet`'s;
//! - a flag change goes through `fleet::Fleet::flip`, never a plain write.
//!
//! One file per concern: `accounts` (accounts, flags and the gate), `notes`
//! (the note path through the plugin, and the operator views of notes),
//! `active_plugin` (the plugin serving requests, its health, activation and
//! rollback) and `errors` (what can go wrong, and how other layers' errors
//! become `AppError`).

mod accounts;
mod active_plugin;
mod errors;
mod notes;

use std::sync::{Arc, Mutex, RwLock};

use crate::accounts::Accounts;
use crate::clock::now_ms;
use crate::fleet::{Fleet, PluginSummary};
use crate::plugin_health::PluginHealth;
use crate::plugins::NoteRouter;
use crate::plugins::registry::Registry;
use crate::stores::DataStores;

pub use crate::plugin_health::WatchConfig;
pub use active_plugin::{ActivePlugin, Actor, PluginsView};
pub use errors::AppError;
pub use notes::{MigrationStatus, Placement};
use active_plugin::summary;
use errors::internal;

/// Notely's limits, in bytes of UTF-8 (Notely counts bytes): the defaults of
/// `--max-name-bytes` and `--max-content-bytes`.
pub const DEFAULT_MAX_NAME_BYTES: usize = 100;
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 10_000;

/// A result served by a plugin, with the plugin's `name@version`.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub plugin: String,
}

/// Settings of the application core.
#[derive(Debug, Clone, Copy)]
pub struct AppSettings {
    pub probation: WatchConfig,
    pub breaker: WatchConfig,
    /// A note a plugin returns may not be larger than a request could have
    /// written: a bigger one is a plugin bug (500), not something to serve.
    pub max_note_bytes: usize,
    /// Longest note content a client may write, in bytes (400 above).
    pub max_content_bytes: usize,
    /// Longest account name, in bytes (400 above).
    pub max_name_bytes: usize,
}

pub struct App {
    accounts: Accounts,
    stores: DataStores,
    registry: Registry,
    active: RwLock<Arc<ActivePlugin>>,
    /// Held while a gate decision and the change it allows happen together
    /// (turning a flag on; activating a plugin), so neither can slip past the other.
    admin: Mutex<()>,
    /// Digests a health watch took out since this host started: automatic
    /// rollback never goes back to one of them.
    tripped: Mutex<std::collections::HashSet<String>>,
    settings: AppSettings,
    /// `--strategy native-*`: route natively instead of through the plugin.
    native: Option<Arc<dyn NoteRouter>>,
    fleet: Fleet,
}

/// How this host joins the fleet on its data dir.
pub struct FleetJoin {
    pub data_dir: std::path::PathBuf,
    pub identity: crate::fleet::Identity,
    pub settings: crate::fleet::FleetSettings,
}

impl App {
    /// Starts serving with the plugin `digest` (already in the registry), or
    /// with `native` routing, and joins the fleet. Refuses a plugin that
    /// cannot migrate while any account migrates.
    pub fn start(
        accounts: Accounts,
        stores: DataStores,
        registry: Registry,
        digest: &str,
        settings: AppSettings,
        join: FleetJoin,
        native: Option<Arc<dyn NoteRouter>>,
    ) -> Result<Self, AppError> {
        let (plugin, load) = registry.load(digest)?;
        let already_active = registry.active_digest().map_err(internal)?.as_deref() == Some(digest);
        let summary = match &native {
            Some(native) => PluginSummary {
                digest: "native".into(),
                label: native.label().to_owned(),
                supports_migration: native.supports_migration(),
            },
            None => summary(&plugin),
        };
        let fleet = Fleet::join(&accounts, &join.data_dir, join.identity, &summary, join.settings, now_ms())
            .map_err(AppError::from)?;
        let health = if already_active {
            PluginHealth::proven(settings.breaker)
        } else {
            PluginHealth::on_probation(settings.probation, settings.breaker)
        };
        let active = ActivePlugin::new(plugin, load, health);
        let app = App {
            accounts,
            stores,
            registry,
            active: RwLock::new(Arc::new(active)),
            admin: Mutex::new(()),
            tripped: Mutex::default(),
            settings,
            native,
            fleet,
        };
        if !already_active && app.native.is_none() {
            app.registry.record_activation(digest, Actor::Startup.as_str(), "--plugin at startup", now_ms()).map_err(internal)?;
        }
        Ok(app)
    }

    pub fn active(&self) -> Arc<ActivePlugin> {
        self.active.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }
}
