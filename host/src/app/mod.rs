//! The application core: every operation the API offers, with its rules.
//! Knows no HTTP (that is `api`), no SQL (that is `coordination`, `catalog`
//! and `stores`) and no wasmtime (that is `plugins`): it is built from
//! traits, so an `App` runs in one process without files too (crate `notes-in-process`).
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
//! Services, each given only what it needs: [`NoteService`] (`notes`: the
//! note path through the plugin, and the operator views of notes) and
//! [`PluginService`] (`plugins`: the plugin serving requests, its health,
//! activation and rollback; `plugin_faults`). [`App`] holds them, and is the
//! operator's side, one file per concern: `accounts` (accounts, flags and the
//! gate), `keys`, `moves` (move batches), `migration` (account and service
//! states, verify, rollout and the kill switch, the audit log), `jobs`
//! (durable backfill, bulk rollback and verify jobs, and the runner that
//! steps them), `away_memo` (the plugin's last judgement of where an
//! account's notes belong) and `errors` (what can go wrong, and how other
//! layers' errors become `AppError`).

mod accounts;
mod away_memo;
mod batch_size;
mod errors;
mod jobs;
mod keys;
mod migration;
mod note_turns;
mod moves;
mod notes;
mod plugin_faults;
mod plugins;

use std::sync::Arc;

use crate::catalog::{Catalog, PluginLoader};
use crate::clock::Clock;
use crate::coordination::Coordination;
use crate::fleet::Fleet;
use crate::fleet::liveness::Liveness;
use crate::plugin_health::PluginHealth;
use crate::router::Router;
use crate::stores::DataStores;

pub use crate::plugin_health::WatchConfig;
pub use accounts::AccountChange;
pub use plugins::{ActivePlugin, Actor, PluginService, PluginsView};
pub use errors::AppError;
pub use jobs::{JobControl, spawn_job_runner};
pub use migration::{MigrationState, MigrationStatus, Rollout, RolloutReport, ServiceMigration, VERIFY_PROBLEMS_SHOWN, VerifyReport, cohort};
pub use batch_size::FIRST as FIRST_MOVE_BATCH;
pub use moves::MoveOutcome;
pub use notes::{NoteService, Placement};
pub use plugin_faults::PluginFault;
use plugins::summary;
use errors::internal;

/// Notely's limits, in bytes of UTF-8 (Notely counts bytes): the defaults of
/// `--max-name-bytes` and `--max-content-bytes`.
pub const DEFAULT_MAX_NAME_BYTES: usize = 100;
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 10_000;

/// A result served by a plugin, with the plugin that served it.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub by: ServedBy,
}

/// The plugin that gave an answer: every plugin-served answer, a note or an
/// error, names its plugin (`X-Plugin`).
#[derive(Debug, Clone)]
pub struct ServedBy {
    /// `name@version`.
    pub plugin: String,
    /// The plugin's digest (`native` for a router compiled into the host):
    /// two builds with one `name@version` are told apart by it.
    pub digest: String,
}

/// A note operation's error, with the plugin whose answer it is (`None`
/// when no plugin answered: the account unknown or busy, a store failed).
#[derive(Debug)]
pub struct NoteError {
    pub error: AppError,
    pub served_by: Option<ServedBy>,
}

impl From<AppError> for NoteError {
    fn from(error: AppError) -> Self {
        NoteError { error, served_by: None }
    }
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
    /// How long a write waits for its note's turn (`note_turns`) before
    /// answering 503: past the plugin deadline, so only a stuck holder
    /// makes a writer give up.
    pub note_turn_wait: std::time::Duration,
}

impl Default for AppSettings {
    /// The defaults of `notes-host serve`.
    fn default() -> Self {
        AppSettings {
            probation: WatchConfig::PROBATION,
            breaker: WatchConfig::BREAKER,
            max_note_bytes: 1024 * 1024,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            note_turn_wait: std::time::Duration::from_secs(2),
        }
    }
}

/// The application core: the services the API holds, and the operator's
/// side (accounts and keys, migration states, moves, jobs, the rollout).
/// Whatever two services share has one owner: the fleet, the stores and the
/// coordination state are built once and handed to each service that needs
/// them.
pub struct App {
    coordination: Arc<dyn Coordination>,
    stores: DataStores,
    clock: Arc<dyn Clock>,
    settings: AppSettings,
    fleet: Arc<Fleet>,
    /// The plugin lifecycle (registry, activation, health, faults).
    plugins: Arc<PluginService>,
    /// The note path (flag, routing, plugin call).
    notes: Arc<NoteService>,
    /// When each throttled job may step again on this host.
    job_pacing: jobs::JobPacing,
    /// How many notes the next move batch takes.
    batch_size: batch_size::BatchSize,
    /// The serving plugin's last judgement of each account's notes, so the
    /// states a scrape works out make no plugin call while nothing changed.
    away_memo: away_memo::AwayMemo,
}

/// What an `App` is built from: SQLite files and wasmtime in a host
/// (`serve::open`), memory and native routers in process (crate `notes-in-process`).
pub struct AppParts {
    pub coordination: Arc<dyn Coordination>,
    pub stores: DataStores,
    pub catalog: Arc<dyn Catalog>,
    pub loader: Arc<dyn PluginLoader>,
    pub clock: Arc<dyn Clock>,
    /// `--router native-*`: route natively instead of through the plugin.
    pub native: Option<Arc<dyn Router>>,
}

/// How this host joins the fleet.
pub struct FleetJoin {
    pub liveness: Liveness,
    pub identity: crate::fleet::Identity,
    pub settings: crate::fleet::FleetSettings,
}

impl App {
    /// Starts serving with the plugin `digest` (already in the catalog), or
    /// with the native router, and joins the fleet. Refuses a plugin that
    /// cannot migrate while any account migrates.
    pub fn start(parts: AppParts, digest: &str, settings: AppSettings, join: FleetJoin) -> Result<Self, AppError> {
        let AppParts { coordination, stores, catalog, loader, clock, native } = parts;
        let (plugin, load) = loader.load(digest)?;
        let already_active = catalog.active_digest().map_err(internal)?.as_deref() == Some(digest);
        let summary = summary(native.as_deref().unwrap_or(plugin.as_ref()));
        let fleet = Fleet::join(coordination.clone(), join.liveness, join.identity, &summary, join.settings, clock.clone())
            .map_err(AppError::from)?;
        let health = if already_active {
            PluginHealth::proven(settings.breaker)
        } else {
            PluginHealth::on_probation(settings.probation, settings.breaker)
        };
        let fleet = Arc::new(fleet);
        let plugins = Arc::new(PluginService::new(plugins::PluginParts {
            catalog: catalog.clone(),
            loader,
            active: ActivePlugin::new(plugin, load, health),
            native,
            probation: settings.probation,
            breaker: settings.breaker,
            fleet: fleet.clone(),
            clock: clock.clone(),
        }));
        let notes = Arc::new(NoteService::new(fleet.clone(), stores.clone(), coordination.clone(), plugins.clone(), settings, clock.clone()));
        if !already_active && plugins.native().is_none() {
            catalog.record_activation(digest, Actor::Startup.as_str(), "--plugin at startup", clock.now_ms()).map_err(internal)?;
        }
        Ok(App {
            coordination,
            stores,
            clock,
            settings,
            fleet,
            plugins,
            notes,
            batch_size: batch_size::BatchSize::default(),
            job_pacing: jobs::JobPacing::default(),
            away_memo: away_memo::AwayMemo::default(),
        })
    }

    /// The note path.
    pub fn notes(&self) -> &Arc<NoteService> {
        &self.notes
    }

    /// The plugin lifecycle.
    pub fn plugins(&self) -> &Arc<PluginService> {
        &self.plugins
    }

    /// Now, by the clock this app was built with.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The short-id rule, for every id the console shows shortened (a job's
/// first 8 characters, a plugin's first 12 hex digits): the one item whose
/// id starts with `prefix`. None: 404 (`none`); several: 400 naming how many
/// (`what` in the plural: "3 jobs have an id" starting with …).
pub(crate) fn one_by_prefix<T>(
    matching: impl IntoIterator<Item = T>,
    prefix: &str,
    what: &str,
    none: impl FnOnce() -> String,
) -> Result<T, AppError> {
    let mut matching = matching.into_iter();
    match (matching.next(), matching.count()) {
        (None, _) => Err(AppError::NotFound(none())),
        (Some(one), 0) => Ok(one),
        (Some(_), more) => Err(AppError::Invalid(format!("{} {what} starting with {prefix}; give more of it", more + 1))),
    }
}
