//! A whole `App` in one process, without wasmtime or files: memory
//! coordination, catalog and stores, native routers for plugins, a clock
//! that moves only when told. What the in-process tests drive, through the
//! axum router (`tower::ServiceExt::oneshot`) or `App` itself.
//!
//! A "plugin" here is uploaded as the bytes `native:<kind>`, optionally
//! followed by `#<anything>` to make another digest of the same kind:
//! - `migrate`: the migrate router (supports migration);
//! - `legacy`: the router from before migrations (does not);
//! - `failing`: every call fails as a trapping plugin does.
//!
//! Several `App`s started from one [`InProcess`] form a fleet in one
//! process: they share the coordination state and the catalog.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use notes_host::app::{App, AppError, AppParts, AppSettings, FleetJoin};
use notes_host::catalog::{Catalog, Checked, Instances, LoadReport, PluginLoader, PluginRecord, RegistryError, sha256_hex};
use notes_host::clock::{Clock, ManualClock};
use notes_host::coordination::Coordination;
use notes_host::fleet::liveness::Liveness;
use notes_host::fleet::{FleetSettings, Identity};
use notes_host::router::{FailingRouter, NativeRouter, Router};
use notes_host::stores::DataStores;

mod catalog;
mod coordination;

pub use catalog::MemoryCatalog;
pub use coordination::MemoryCoordination;

/// The shared parts of an in-process fleet.
pub struct InProcess {
    pub coordination: Arc<MemoryCoordination>,
    pub catalog: MemoryCatalog,
    pub stores: DataStores,
    pub clock: Arc<ManualClock>,
    loaded: Arc<Mutex<HashMap<String, Arc<dyn Router>>>>,
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new(true)
    }
}

impl InProcess {
    /// `new_store`: with a new store, or in plain mode.
    pub fn new(new_store: bool) -> Self {
        InProcess {
            coordination: Arc::new(MemoryCoordination::new()),
            catalog: MemoryCatalog::new(""),
            stores: DataStores::in_memory(new_store),
            clock: Arc::new(ManualClock::starting_at(1_700_000_000_000)),
            loaded: Arc::default(),
        }
    }

    /// Starts a host named `host` serving `plugin` (bytes as in the module
    /// doc; uploaded if new). `settings`: e.g. `AppSettings::default()`.
    pub fn start(&self, host: &str, plugin: &[u8], settings: AppSettings) -> Result<App, AppError> {
        self.start_with(host, plugin, settings, self.coordination.clone())
    }

    /// `start`, with the coordination state seen through `coordination`
    /// (a test's wrapper around [`InProcess::coordination`], say).
    pub fn start_with(
        &self,
        host: &str,
        plugin: &[u8],
        settings: AppSettings,
        coordination: Arc<dyn Coordination>,
    ) -> Result<App, AppError> {
        let catalog = self.catalog.for_host(host);
        let loader = Arc::new(NativeLoader { catalog: Arc::new(catalog.clone()), loaded: self.loaded.clone() });
        let (record, _) = loader.push(plugin, self.clock.now_ms())?;
        let identity = Identity { id: uuid::Uuid::new_v4(), name: host.to_owned(), address: format!("in-process:{host}") };
        let join = FleetJoin { liveness: Liveness::InProcess, identity, settings: FleetSettings::default() };
        let parts = AppParts {
            coordination,
            stores: self.stores.clone(),
            catalog: Arc::new(catalog),
            loader,
            clock: self.clock.clone(),
            native: None,
        };
        App::start(parts, &record.digest, settings, join)
    }
}

/// Makes routers of `native:<kind>` uploads, and records them in the catalog.
struct NativeLoader {
    catalog: Arc<dyn Catalog>,
    /// By digest: shared by every host of the fleet, as plugin files are.
    loaded: Arc<Mutex<HashMap<String, Arc<dyn Router>>>>,
}

impl NativeLoader {
    fn router(bytes: &[u8], digest: &str) -> Result<Arc<dyn Router>, RegistryError> {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let kind = text.strip_prefix("native:").map(|k| k.split('#').next().unwrap_or(k));
        let digest = digest.to_owned();
        Ok(match kind {
            Some("migrate") => Arc::new(NativeRouter::with_digest(notes_routing::migrate::Migrate, digest)),
            Some("legacy-only") => Arc::new(NativeRouter::with_digest(notes_routing::legacy_only::LegacyOnly, digest)),
            Some("failing") => Arc::new(FailingRouter::new("failing@1.0.0", digest, true)),
            _ => return Err(RegistryError::Rejected(format!("not an in-process plugin (expected native:migrate|legacy-only|failing): {text:.40}"))),
        })
    }
}

impl PluginLoader for NativeLoader {
    fn push(&self, wasm: &[u8], now_ms: i64) -> Result<(PluginRecord, bool), RegistryError> {
        let digest = sha256_hex(wasm);
        if let Some(record) = self.catalog.record(&digest)? {
            return Ok((record, false));
        }
        let router = Self::router(wasm, &digest)?;
        let (name, version) = router.label().split_once('@').unwrap_or((router.label(), ""));
        let record = PluginRecord {
            digest: digest.clone(),
            name: name.to_owned(),
            version: version.to_owned(),
            supports_migration: router.supports_migration(),
            wit_version: "native".into(),
            size_bytes: wasm.len() as u64,
            uploaded_at_ms: now_ms,
            instances: Instances::Fresh,
        };
        self.catalog.insert(&record, "", &[])?;
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, router);
        Ok((record, true))
    }

    fn load(&self, digest: &str) -> Result<(Arc<dyn Router>, LoadReport), RegistryError> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let router = loaded.get(digest).cloned().ok_or_else(|| RegistryError::Unknown(digest.to_owned()))?;
        Ok((router, LoadReport { from_artifact: false, millis: 0.0 }))
    }

    /// The kit's cases on the named native router, as on a plugin of the
    /// newest WIT.
    fn check(&self, wasm: &[u8]) -> Result<Checked, RegistryError> {
        let router = Self::router(wasm, &sha256_hex(wasm))?;
        let newest = notes_host::plugins::SERVED_WIT_VERSIONS[notes_host::plugins::SERVED_WIT_VERSIONS.len() - 1];
        Ok(notes_host::plugins::conformance::check_router(router.as_ref(), newest, &[], |_| {})?.checked())
    }
}
