//! The plugin service: the registry (check, push, how instances are made),
//! the plugin serving new requests with its health watches, how plugins are
//! activated, rolled back and suspended, and their failures kept for their
//! authors (`plugin_faults`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use crate::catalog::{Activation, Catalog, LoadReport, PluginLoader, PluginRecord, RegistryError, short};
use crate::clock::Clock;
use crate::coordination::PluginSummary;
use crate::fleet::Fleet;
use crate::plugin_health::{PluginHealth, Tripped, WatchConfig};
use crate::router::{Instances, PluginFailure, Router};
use super::AppError;
use super::errors::internal;
use super::plugin_faults::PluginFaults;

/// Everything about plugins a host does: given only what that needs.
pub struct PluginService {
    catalog: Arc<dyn Catalog>,
    loader: Arc<dyn PluginLoader>,
    active: RwLock<Arc<ActivePlugin>>,
    /// `--router native-*`: route natively instead of through the plugin.
    native: Option<Arc<dyn Router>>,
    /// Held while a gate decision and the change it allows happen together
    /// (turning a flag on, in `accounts`; activating a plugin, here), so
    /// neither can slip past the other.
    admin: Mutex<()>,
    /// Digests a health watch took out since this host started: automatic
    /// rollback never goes back to one of them.
    tripped: Mutex<HashSet<String>>,
    probation: WatchConfig,
    breaker: WatchConfig,
    /// Recent failures of each plugin, with the messages clients do not see.
    pub(super) faults: PluginFaults,
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
}

/// What a [`PluginService`] is built from.
pub(super) struct PluginParts {
    pub catalog: Arc<dyn Catalog>,
    pub loader: Arc<dyn PluginLoader>,
    pub active: ActivePlugin,
    pub native: Option<Arc<dyn Router>>,
    pub probation: WatchConfig,
    pub breaker: WatchConfig,
    pub fleet: Arc<Fleet>,
    pub clock: Arc<dyn Clock>,
}

/// The plugin serving new requests. A request clones the `Arc` once, at its
/// start, and uses that plugin to its end: a swap never mixes two plugins in
/// one request, and requests in flight finish on the plugin they started with.
pub struct ActivePlugin {
    pub plugin: Arc<dyn Router>,
    pub load: LoadReport,
    pub(super) health: PluginHealth,
    /// Set when a health watch tripped and there was nothing to roll back to:
    /// note requests then fail (503) with this reason until an operator
    /// activates a plugin (the same one lifts the suspension).
    suspended: OnceLock<String>,
}

impl ActivePlugin {
    pub(super) fn new(plugin: Arc<dyn Router>, load: LoadReport, health: PluginHealth) -> Self {
        ActivePlugin { plugin, load, health, suspended: OnceLock::new() }
    }

    /// Why this plugin serves no note request, if it is suspended.
    pub fn suspended(&self) -> Option<&str> {
        self.suspended.get().map(String::as_str)
    }
}

/// Who activated a plugin, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Operator,
    Startup,
    Automatic,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
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

impl PluginService {
    pub(super) fn new(parts: PluginParts) -> Self {
        let PluginParts { catalog, loader, active, native, probation, breaker, fleet, clock } = parts;
        PluginService {
            catalog,
            loader,
            active: RwLock::new(Arc::new(active)),
            native,
            admin: Mutex::new(()),
            tripped: Mutex::default(),
            probation,
            breaker,
            faults: PluginFaults::default(),
            fleet,
            clock,
        }
    }

    /// The plugin serving new requests (a request takes it once, at its start).
    pub fn active(&self) -> Arc<ActivePlugin> {
        self.active.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The router compiled into the host, if it routes natively (`--router`).
    pub fn native(&self) -> Option<&Arc<dyn Router>> {
        self.native.as_ref()
    }

    /// The router serving new requests: the native one, else the active plugin.
    pub fn serving(&self) -> Arc<dyn Router> {
        match &self.native {
            Some(native) => native.clone(),
            None => self.active().plugin.clone(),
        }
    }

    pub(super) fn admin_lock(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    // ---- the plugin registry ---------------------------------------------

    /// Runs the conformance kit's contract cases on an upload (`POST
    /// /plugins?check=true`), through the loader, on this host's engine and
    /// limits: refused (422) naming every failing case.
    pub fn check_plugin(&self, wasm: &[u8]) -> Result<(), AppError> {
        let checked = self.loader.check(wasm)?;
        if checked.failed.is_empty() {
            return Ok(());
        }
        Err(AppError::Rejected(format!(
            "{} fails {} case(s) of the conformance kit (`notes-host plugin check`): {}",
            checked.plugin,
            checked.failed.len(),
            checked.failed.join("; ")
        )))
    }

    /// The stored plugin whose digest is `digest` or starts with it (12 or
    /// more hex digits, as `X-Plugin` and the console show it).
    pub fn stored_plugin(&self, digest: &str) -> Result<PluginRecord, AppError> {
        if digest.len() < 12 || digest.len() > 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(AppError::Invalid(format!("digest {digest:?} is not a sha256 or its first 12 or more lowercase hex digits")));
        }
        let stored = self.catalog.records().map_err(internal)?;
        super::one_by_prefix(stored.into_iter().filter(|p| p.digest.starts_with(digest)), digest, "stored plugins have a digest", || {
            format!("no stored plugin has a digest starting with {digest}")
        })
    }

    /// Sets how a stored plugin's instances are made (`Instances`). Recorded
    /// in the catalog, so every host that loads the plugin follows it; this
    /// host's active plugin follows from its next call on. Other hosts of a
    /// fleet follow when they next load it (an activation, a restart).
    pub fn set_plugin_instances(&self, digest: &str, instances: Instances) -> Result<PluginRecord, AppError> {
        let instances = instances.checked().map_err(AppError::Invalid)?;
        let _admin = self.admin_lock();
        let mut record = self.stored_plugin(digest)?;
        if !self.catalog.set_instances(&record.digest, instances).map_err(internal)? {
            return Err(RegistryError::Unknown(record.digest).into());
        }
        let active = self.active();
        if active.plugin.digest() == record.digest {
            active.plugin.set_instances(instances);
        }
        let (from, to) = (record.instances.to_text(), instances.to_text());
        self.fleet.audit(Actor::Operator.as_str(), "plugin", &record.digest, &from, &to, "instances");
        tracing::info!(digest = short(&record.digest), instances = %to, "plugin instances set");
        record.instances = instances;
        Ok(record)
    }

    /// Validates and stores an upload; does not activate it.
    pub fn push_plugin(&self, wasm: &[u8]) -> Result<(PluginRecord, bool), AppError> {
        let (record, new) = self.loader.push(wasm, self.now_ms())?;
        if new {
            let label = format!("{}@{}", record.name, record.version);
            self.fleet.audit(Actor::Operator.as_str(), "plugin", &record.digest, "", &label, "uploaded");
        }
        Ok((record, new))
    }

    /// Makes `digest` the plugin for every new request. Requests already
    /// running finish on the plugin they started with.
    /// `digest` may be the sha256's first 12 or more hex digits
    /// (`stored_plugin`).
    pub fn activate_plugin(&self, digest: &str, actor: Actor, reason: &str) -> Result<PluginRecord, AppError> {
        let _admin = self.admin_lock();
        // A host routing natively says so (409) whatever the digest.
        let digest = if self.native.is_some() { digest.to_owned() } else { self.stored_plugin(digest)?.digest };
        self.activate_locked(&digest, actor, reason)
    }

    fn activate_locked(&self, digest: &str, actor: Actor, reason: &str) -> Result<PluginRecord, AppError> {
        if let Some(native) = &self.native {
            return Err(AppError::Conflict(format!(
                "this host routes natively ({}, started with --router); plugins are not used",
                native.label()
            )));
        }
        let record = self.catalog.record(digest).map_err(internal)?.ok_or_else(|| RegistryError::Unknown(digest.into()))?;
        let (plugin, load) = self.loader.load(digest)?;
        let current = self.active();
        if current.plugin.digest() == digest && current.suspended().is_none() {
            return Ok(record);
        }
        let summary = summary(plugin.as_ref());
        let next = Arc::new(ActivePlugin::new(plugin, load, PluginHealth::on_probation(self.probation, self.breaker)));
        let swapped = self
            .fleet
            .change_plugin(&summary, || -> Result<(), AppError> {
                self.catalog.record_activation(digest, actor.as_str(), reason, self.now_ms()).map_err(internal)?;
                *self.active.write().unwrap_or_else(|e| e.into_inner()) = next;
                Ok(())
            })
            .map_err(AppError::from)?;
        swapped?;
        self.fleet.audit(actor.as_str(), "plugin", digest, current.plugin.digest(), digest, &format!("activated: {reason}"));
        tracing::info!(digest = short(digest), plugin = %format!("{}@{}", record.name, record.version), actor = actor.as_str(), reason, "plugin activated");
        Ok(record)
    }

    /// Back to the plugin active before the current one.
    pub fn rollback_plugin(&self) -> Result<PluginRecord, AppError> {
        let _admin = self.admin_lock();
        let previous = self
            .catalog
            .previous_digest()
            .map_err(internal)?
            .ok_or_else(|| AppError::Conflict("no previous plugin to roll back to".into()))?;
        self.activate_locked(&previous, Actor::Operator, "rollback")
    }

    /// A health watch of `failed_on` tripped: put the previous plugin back,
    /// if `failed_on` is still active and the gate allows the previous one;
    /// else suspend `failed_on`. Both are recorded in the history.
    pub(super) fn automatic_rollback(&self, failed_on: &Arc<ActivePlugin>, tripped: Tripped, last: Option<&PluginFailure>) {
        let _admin = self.admin_lock();
        if !Arc::ptr_eq(&self.active(), failed_on) {
            return;
        }
        // The request that failed last, so an operator can find its log lines.
        let request = crate::request_id::current().map(|id| format!(" (request {id})")).unwrap_or_default();
        let last_failure = format!("last failure{request}: {}", last.map(ToString::to_string).unwrap_or_default());
        let reason = format!("automatic rollback: {} {}; {last_failure}", failed_on.plugin.label(), tripped.0);
        let already_failed = {
            let mut tripped = self.tripped.lock().unwrap_or_else(|e| e.into_inner());
            tripped.insert(failed_on.plugin.digest().to_owned());
            tripped.clone()
        };
        let outcome = match self.catalog.previous_digest() {
            // Never back to a plugin a watch already took out: suspend instead.
            Ok(Some(previous)) if already_failed.contains(&previous) => Err(AppError::Conflict(format!(
                "the previous plugin {} was itself taken out by a health watch",
                short(&previous)
            ))),
            Ok(Some(previous)) => self.activate_locked(&previous, Actor::Automatic, &reason).map(|_| ()),
            Ok(None) => Err(AppError::Conflict("there is no previous plugin".into())),
            Err(e) => Err(internal(e)),
        };
        match outcome {
            Ok(()) => tracing::warn!(%reason, "plugin rolled back"),
            Err(e) => {
                let why = format!("{}; it could not be rolled back: {e}; {last_failure}", tripped.0);
                tracing::error!(plugin = failed_on.plugin.label(), reason = %why, "plugin suspended: its note requests fail until an operator activates a plugin");
                let recorded = self.catalog.record_activation(failed_on.plugin.digest(), Actor::Automatic.as_str(), &format!("suspended: {why}"), self.now_ms());
                if let Err(e) = recorded {
                    tracing::error!(error = %format!("{e:#}"), "cannot record the suspension in the plugin history");
                }
                self.fleet.audit(Actor::Automatic.as_str(), "plugin", failed_on.plugin.digest(), "active", "suspended", &why);
                let _ = failed_on.suspended.set(why);
            }
        }
    }

    /// `GET /plugins`: the active plugin, every stored one, the history.
    pub fn view(&self) -> Result<PluginsView, AppError> {
        Ok(PluginsView {
            active: self.active(),
            plugins: self.catalog.records().map_err(internal)?,
            history: self.catalog.history().map_err(internal)?,
        })
    }
}

/// What the deployment gate needs to know of a router.
pub(super) fn summary(router: &dyn Router) -> PluginSummary {
    PluginSummary {
        digest: router.digest().to_owned(),
        label: router.label().to_owned(),
        supports_migration: router.supports_migration(),
    }
}
