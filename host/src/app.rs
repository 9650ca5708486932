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

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use notes_routing::{Error as PluginError, Note, NoteChange, Store};
use uuid::Uuid;

use crate::accounts::{Account, AccountChange, AccountError, Accounts};
use crate::clock::now_ms;
use crate::fleet::{Fleet, FleetError, FlipOutcome, HostView, PluginSummary};
use crate::plugins::registry::{Activation, LoadReport, PluginRecord, Registry, RegistryError};
use crate::plugin_health::{PluginHealth, Tripped};
pub use crate::plugin_health::{BreakerConfig, ProbationConfig};
use crate::plugins::{AccountScope, NoteRouter, Plugin, PluginFailure, Routed, short};
use crate::stores::{DataStores, StoreError};

/// Notely's limits, in bytes of UTF-8 (Notely counts bytes): the defaults of
/// `--max-name-bytes` and `--max-content-bytes`.
pub const DEFAULT_MAX_NAME_BYTES: usize = 100;
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The deployment gate refused to turn migration on.
    #[error("{0}")]
    Gate(String),
    #[error("version mismatch: the note is at version {current}")]
    VersionMismatch { current: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// One account asks for more at once than it may have (HTTP 429).
    #[error("{0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    /// An uploaded plugin this host cannot run (HTTP 422).
    #[error("plugin rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Internal(String),
}

/// A result served by a plugin, with the plugin's `name@version`.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub plugin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    pub is_migrating: bool,
    pub legacy_notes: u64,
    pub new_notes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub legacy: bool,
    pub new: bool,
}

/// The plugin serving new requests. A request clones the `Arc` once, at its
/// start, and uses that plugin to its end: a swap never mixes two plugins in
/// one request, and requests in flight finish on the plugin they started with.
pub struct ActivePlugin {
    pub plugin: Arc<Plugin>,
    pub load: LoadReport,
    health: PluginHealth,
    /// Set when a health watch tripped and there was nothing to roll back to:
    /// note requests then fail (503) with this reason until an operator
    /// activates a plugin (the same one lifts the suspension).
    suspended: OnceLock<String>,
}

impl ActivePlugin {
    fn new(plugin: Arc<Plugin>, load: LoadReport, health: PluginHealth) -> Self {
        ActivePlugin { plugin, load, health, suspended: OnceLock::new() }
    }

    /// Why this plugin serves no note request, if it is suspended.
    pub fn suspended(&self) -> Option<&str> {
        self.suspended.get().map(String::as_str)
    }
}

/// Settings of the application core.
#[derive(Debug, Clone, Copy)]
pub struct AppSettings {
    pub probation: ProbationConfig,
    pub breaker: BreakerConfig,
    /// A note a plugin returns may not be larger than a request could have
    /// written: a bigger one is a plugin bug (500), not something to serve.
    pub max_note_bytes: usize,
    /// Longest note content a client may write, in bytes (400 above).
    pub max_content_bytes: usize,
    /// Longest account name, in bytes (400 above).
    pub max_name_bytes: usize,
}

/// Who activated a plugin, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Operator,
    Startup,
    Automatic,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Actor::Operator => "operator",
            Actor::Startup => "startup",
            Actor::Automatic => "automatic",
        }
    }
}

/// `GET /plugins`.
pub struct PluginsView {
    pub active: Arc<ActivePlugin>,
    pub plugins: Vec<PluginRecord>,
    pub history: Vec<Activation>,
}

pub struct App {
    accounts: Accounts,
    stores: DataStores,
    registry: Registry,
    active: RwLock<Arc<ActivePlugin>>,
    /// Held while a gate decision and the change it allows happen together
    /// (turning a flag on; activating a plugin), so neither can slip past the other.
    admin: Mutex<()>,
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

    // ---- accounts -------------------------------------------------------

    pub fn create_account(&self, id: Option<Uuid>, name: &str, is_migrating: bool) -> Result<Account, AppError> {
        let name = valid_name(name, self.settings.max_name_bytes)?;
        let _admin = is_migrating.then(|| self.admin_lock());
        if is_migrating {
            self.migration_gate()?;
        }
        self.accounts.create(id.unwrap_or_else(Uuid::new_v4), name, is_migrating, now_ms(), |tx| {
            if is_migrating { Ok(self.fleet.migration_gate(tx)?) } else { Ok(()) }
        })
    }

    pub fn account(&self, id: Uuid) -> Result<Account, AppError> {
        self.accounts.get(id)?.ok_or_else(|| no_account(id))
    }

    pub fn accounts(&self) -> Result<Vec<Account>, AppError> {
        Ok(self.accounts.list()?)
    }

    /// Renames and/or flips. A flip changes the flag on the whole fleet and
    /// returns once no host runs a request of the account under the old
    /// value; if it fails, nothing changed (the name neither).
    pub fn update_account(&self, id: Uuid, change: AccountChange) -> Result<Account, AppError> {
        let name = change.name.as_deref().map(|n| valid_name(n, self.settings.max_name_bytes)).transpose()?;
        if let Some(to) = change.is_migrating {
            let _admin = to.then(|| self.admin_lock());
            if to {
                self.migration_gate()?;
            }
            match self.fleet.flip(id, to, now_ms())? {
                FlipOutcome::Unchanged => {}
                FlipOutcome::Flipped { hosts, took } => {
                    tracing::info!(account = %id, is_migrating = to, hosts, took_us = took.as_micros() as u64, "isMigrating changed on the fleet");
                }
            }
        }
        match name {
            Some(name) => self.accounts.rename(id, name, now_ms())?.ok_or_else(|| no_account(id)),
            None => self.account(id),
        }
    }

    /// Deregisters this host from the fleet (at shutdown, once requests ended).
    pub fn leave_fleet(&self) {
        self.fleet.leave();
    }

    /// Every host serving this data dir (`GET /hosts`).
    pub fn hosts(&self) -> Result<Vec<HostView>, AppError> {
        Ok(self.fleet.hosts()?)
    }

    /// Seed goal 1: a migration starts only once the code that understands it
    /// runs. Mixed code loses notes (see `plugins/routing/src/legacy.rs`).
    fn migration_gate(&self) -> Result<(), AppError> {
        let active = self.active();
        let router: &dyn NoteRouter = match &self.native {
            Some(native) => native.as_ref(),
            None => active.plugin.as_ref(),
        };
        if !router.supports_migration() {
            return Err(AppError::Gate(format!(
                "cannot turn isMigrating on: the active plugin {} does not support migration; \
                 old code running beside a migration loses notes. Activate a plugin that supports migration first",
                router.label()
            )));
        }
        if self.stores.new.is_none() {
            return Err(AppError::Gate(
                "cannot turn isMigrating on: this host has no new store (started with --shards 0)".into(),
            ));
        }
        Ok(())
    }

    // ---- notes, through the plugin ---------------------------------------

    pub fn create_note(&self, account: Uuid, id: Option<Uuid>, content: String) -> Result<Served<Note>, AppError> {
        valid_content(&content, self.settings.max_content_bytes)?;
        let change = NoteChange { id: id.unwrap_or_else(Uuid::new_v4).to_string(), content, at_ms: now_ms() };
        self.route(account, |r, scope, migrating| r.create_note(scope, change, migrating)).and_then(|n| self.checked(n))
    }

    pub fn note(&self, account: Uuid, id: Uuid) -> Result<Served<Note>, AppError> {
        self.route(account, |r, scope, migrating| r.get_note(scope, &id.to_string(), migrating)).and_then(|n| self.checked(n))
    }

    pub fn note_ids(&self, account: Uuid) -> Result<Served<Vec<String>>, AppError> {
        self.route(account, |r, scope, migrating| r.list_notes(scope, migrating))
    }

    pub fn update_note(
        &self,
        account: Uuid,
        id: Uuid,
        content: String,
        expected_version: Option<u64>,
    ) -> Result<Served<Note>, AppError> {
        valid_content(&content, self.settings.max_content_bytes)?;
        let change = NoteChange { id: id.to_string(), content, at_ms: now_ms() };
        self.route(account, |r, scope, migrating| r.update_note(scope, change, expected_version, migrating))
            .and_then(|n| self.checked(n))
    }

    /// Idempotent, as for Notely's clients: deleting a note that does not
    /// exist succeeds (the plugin's `not-found` is a success here).
    pub fn delete_note(&self, account: Uuid, id: Uuid) -> Result<Served<()>, AppError> {
        self.route(account, |r, scope, migrating| match r.delete_note(scope, &id.to_string(), migrating) {
            Ok(Err(PluginError::NotFound)) => Ok(Ok(())),
            answer => answer,
        })
    }

    /// Refuses to pass on a note larger than any request could have written.
    fn checked(&self, served: Served<Note>) -> Result<Served<Note>, AppError> {
        let size = served.value.content.len();
        if size > self.settings.max_note_bytes {
            return Err(AppError::Plugin(PluginFailure::Trapped {
                message: format!("returned a note of {size} bytes, over the {} byte limit", self.settings.max_note_bytes),
                plugin: served.plugin,
            }));
        }
        Ok(served)
    }

    /// Reads the account's flag now, then makes one routing call (the active
    /// plugin, or the native baseline) with the stores bound to that account.
    fn route<T>(
        &self,
        account: Uuid,
        call: impl FnOnce(&dyn NoteRouter, AccountScope, bool) -> Routed<T>,
    ) -> Result<Served<T>, AppError> {
        // Held to the end of the call: no flip of this account completes
        // anywhere while this request runs under the value it read.
        let admission = self.fleet.admit(account)?;
        let is_migrating = admission.is_migrating;
        let scope = AccountScope::new(account.to_string(), self.stores.clone());
        if let Some(native) = &self.native {
            let answer = call(native.as_ref(), scope, is_migrating)?;
            return answer.map(|value| Served { value, plugin: native.label().to_owned() }).map_err(|e| from_plugin_error(e, native.label()));
        }
        let active = self.active();
        let plugin = &active.plugin;
        if let Some(reason) = active.suspended() {
            return Err(AppError::Unavailable(format!(
                "plugin {} is suspended ({reason}); an operator must activate a plugin",
                plugin.label()
            )));
        }
        let answer = call(plugin.as_ref(), scope, is_migrating);
        // A full instance pool is the host's state, not the plugin's fault.
        let failed = matches!(&answer, Err(f) if !matches!(f, PluginFailure::Busy { .. }));
        if let Some(tripped) = active.health.record(failed) {
            self.automatic_rollback(&active, tripped, answer.as_ref().err());
        }
        match answer? {
            Ok(value) => Ok(Served { value, plugin: plugin.label().to_owned() }),
            Err(e) => Err(from_plugin_error(e, plugin.label())),
        }
    }

    /// Fail closed: an account that cannot be read fails the request.
    fn flag(&self, account: Uuid) -> Result<bool, AppError> {
        match self.accounts.is_migrating(account) {
            Ok(Some(flag)) => Ok(flag),
            Ok(None) => Err(no_account(account)),
            Err(e) => Err(AppError::Unavailable(format!("cannot read the isMigrating flag of account {account}: {e}"))),
        }
    }

    // ---- the plugin registry ---------------------------------------------

    /// Validates and stores an upload; does not activate it.
    pub fn push_plugin(&self, wasm: &[u8]) -> Result<(PluginRecord, bool), AppError> {
        Ok(self.registry.push(wasm, now_ms())?)
    }

    /// Makes `digest` the plugin for every new request. Requests already
    /// running finish on the plugin they started with.
    pub fn activate_plugin(&self, digest: &str, actor: Actor, reason: &str) -> Result<PluginRecord, AppError> {
        let _admin = self.admin_lock();
        self.activate_locked(digest, actor, reason)
    }

    fn activate_locked(&self, digest: &str, actor: Actor, reason: &str) -> Result<PluginRecord, AppError> {
        if let Some(native) = &self.native {
            return Err(AppError::Conflict(format!(
                "this host routes natively ({}, started with --strategy); plugins are not used",
                native.label()
            )));
        }
        let record = self.registry.record(digest).map_err(internal)?.ok_or_else(|| RegistryError::Unknown(digest.into()))?;
        let (plugin, load) = self.registry.load(digest)?;
        let current = self.active();
        if current.plugin.digest() == digest && current.suspended().is_none() {
            return Ok(record);
        }
        let summary = summary(&plugin);
        let next = Arc::new(ActivePlugin::new(plugin, load, PluginHealth::on_probation(self.settings.probation, self.settings.breaker)));
        let swapped = self
            .fleet
            .change_plugin(&summary, || -> Result<(), AppError> {
                self.registry.record_activation(digest, actor.as_str(), reason, now_ms()).map_err(internal)?;
                *self.active.write().unwrap_or_else(|e| e.into_inner()) = next;
                Ok(())
            })
            .map_err(AppError::from)?;
        swapped?;
        tracing::info!(digest = short(digest), plugin = %format!("{}@{}", record.name, record.version), actor = actor.as_str(), reason, "plugin activated");
        Ok(record)
    }

    /// Back to the plugin active before the current one.
    pub fn rollback_plugin(&self) -> Result<PluginRecord, AppError> {
        let _admin = self.admin_lock();
        let previous = self
            .registry
            .previous_digest()
            .map_err(internal)?
            .ok_or_else(|| AppError::Conflict("no previous plugin to roll back to".into()))?;
        self.activate_locked(&previous, Actor::Operator, "rollback")
    }

    /// A health watch of `failed_on` tripped: put the previous plugin back,
    /// if `failed_on` is still active and the gate allows the previous one;
    /// else suspend `failed_on`. Both are recorded in the history.
    fn automatic_rollback(&self, failed_on: &Arc<ActivePlugin>, tripped: Tripped, last: Option<&PluginFailure>) {
        let _admin = self.admin_lock();
        if !Arc::ptr_eq(&self.active(), failed_on) {
            return;
        }
        let reason = format!(
            "automatic rollback: {} {}; last failure: {}",
            failed_on.plugin.label(),
            tripped.0,
            last.map(ToString::to_string).unwrap_or_default()
        );
        let outcome = match self.registry.previous_digest() {
            Ok(Some(previous)) => self.activate_locked(&previous, Actor::Automatic, &reason).map(|_| ()),
            Ok(None) => Err(AppError::Conflict("there is no previous plugin".into())),
            Err(e) => Err(internal(e)),
        };
        match outcome {
            Ok(()) => tracing::warn!(%reason, "plugin rolled back"),
            Err(e) => {
                let why = format!("{}; it could not be rolled back: {e}", tripped.0);
                tracing::error!(plugin = failed_on.plugin.label(), reason = %why, "plugin suspended: its note requests fail until an operator activates a plugin");
                let recorded = self.registry.record_activation(failed_on.plugin.digest(), Actor::Automatic.as_str(), &format!("suspended: {why}"), now_ms());
                if let Err(e) = recorded {
                    tracing::error!(error = %format!("{e:#}"), "cannot record the suspension in the plugin history");
                }
                let _ = failed_on.suspended.set(why);
            }
        }
    }

    pub fn plugins(&self) -> Result<PluginsView, AppError> {
        Ok(PluginsView {
            active: self.active(),
            plugins: self.registry.records().map_err(internal)?,
            history: self.registry.history().map_err(internal)?,
        })
    }

    // ---- operator views, straight from the stores -------------------------

    pub fn migration_status(&self, account: Uuid) -> Result<MigrationStatus, AppError> {
        let is_migrating = self.flag(account)?;
        let key = account.to_string();
        let new_notes = match &self.stores.new {
            Some(new) => new.count(&key)?,
            None => 0,
        };
        Ok(MigrationStatus { is_migrating, legacy_notes: self.stores.legacy.count(&key)?, new_notes })
    }

    pub fn placement(&self, account: Uuid, note: Uuid) -> Result<Placement, AppError> {
        self.flag(account)?;
        let (key, id) = (account.to_string(), note.to_string());
        let is_in = |store| -> Result<bool, AppError> {
            Ok(match self.stores.get(store) {
                Some(s) => s.get(&key, &id)?.is_some(),
                None => false,
            })
        };
        let placement = Placement { legacy: is_in(Store::Legacy)?, new: is_in(Store::New)? };
        if !placement.legacy && !placement.new {
            return Err(AppError::NotFound(format!("note {note} is in no store")));
        }
        Ok(placement)
    }
}

fn from_plugin_error(e: PluginError, plugin: &str) -> AppError {
    match e {
        PluginError::NotFound => AppError::NotFound("note not found".into()),
        PluginError::VersionMismatch(current) => AppError::VersionMismatch { current },
        PluginError::Conflict(m) => AppError::Conflict(m),
        PluginError::Invalid(m) => AppError::Invalid(m),
        PluginError::Unavailable(m) => AppError::Unavailable(m),
        PluginError::Internal(m) => AppError::Internal(format!("plugin {plugin}: {m}")),
    }
}

fn summary(plugin: &Plugin) -> PluginSummary {
    PluginSummary {
        digest: plugin.digest().to_owned(),
        label: plugin.label().to_owned(),
        supports_migration: plugin.info().supports_migration,
    }
}

/// The fleet's answers, in the words an operator needs.
impl From<FleetError> for AppError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::NoAccount(id) => no_account(id),
            FleetError::HostsCannotMigrate(hosts) => AppError::Gate(format!(
                "cannot turn isMigrating on: {} host(s) run a plugin that does not support migration: {}; \
                 old code running beside a migration loses notes. Upgrade them first",
                hosts.len(),
                hosts.iter().map(HostView::describe).collect::<Vec<_>>().join(", ")
            )),
            FleetError::AccountsMigrating { plugin, accounts } => AppError::Gate(format!(
                "plugin {plugin} does not support migration, but {} account(s) are migrating: {}; turn their isMigrating off first",
                accounts.len(),
                accounts.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            )),
            FleetError::FlipInProgress(_) => AppError::Conflict(e.to_string()),
            FleetError::FlipFailed(m) | FleetError::Busy(m) | FleetError::Unavailable(m) => AppError::Unavailable(m),
            FleetError::AccountSaturated { .. } => AppError::TooManyRequests(e.to_string()),
        }
    }
}

fn no_account(id: Uuid) -> AppError {
    AppError::NotFound(format!("account {id} not found"))
}

fn valid_name(name: &str, max_bytes: usize) -> Result<&str, AppError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(AppError::Invalid("name must not be blank".into()));
    }
    if trimmed.len() > max_bytes {
        return Err(AppError::Invalid(format!("name must be at most {max_bytes} bytes, got {}", trimmed.len())));
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(AppError::Invalid(format!("name must not contain control characters, found {c:?}")));
    }
    Ok(trimmed)
}

fn valid_content(content: &str, max_bytes: usize) -> Result<(), AppError> {
    if content.is_empty() {
        return Err(AppError::Invalid("content must not be empty".into()));
    }
    if content.len() > max_bytes {
        return Err(AppError::Invalid(format!("content must be at most {max_bytes} bytes, got {}", content.len())));
    }
    Ok(())
}

fn internal(e: anyhow::Error) -> AppError {
    AppError::Internal(format!("{e:#}"))
}

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Rejected(m) => AppError::Rejected(m),
            RegistryError::Unknown(_) => AppError::NotFound(e.to_string()),
            RegistryError::Failed(e) => internal(e),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::AlreadyExists(_) => AppError::Conflict(e.to_string()),
            AccountError::Unavailable(_) => AppError::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => AppError::Unavailable(e.to_string()),
            StoreError::Invalid(m) => AppError::Invalid(m),
            StoreError::Internal(_) => AppError::Internal(e.to_string()),
        }
    }
}
