//! Store plugins: components of the `notes:store` world (`wit/store.wit`)
//! that keep notes somewhere the host cannot reach by itself. One is served
//! in place of a SQLite file or a PostgreSQL database ([`PluginStore`]), and
//! the router plugin cannot tell the difference.
//!
//! A store plugin runs in the same sandbox as a router (the pooling
//! allocator, the same memory and table caps, a deadline and CPU pacing at
//! each epoch tick, a fresh instance per call, WASI that grants nothing), and
//! gets only what the operator granted it at start ([`StoreGrant`]): its
//! configuration values, and outgoing HTTP to an allow-list of origins
//! ([`http`]). A call also has a wall-clock bound: a plugin waiting on its
//! upstream runs no guest code, where the epoch deadline is checked.

mod bindings;
mod data_store;
pub mod http;
pub mod kit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use notes_routing::{IdList, Note};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::{Allowance, LimitExceeded};
use super::pacing::CallClock;
use super::{PluginLimits, Runtime, STDERR_CAPACITY, printed_for_its_author, short_printable, wasi};
use crate::stores::StoreError;
use bindings::notes::store::types as wit;
pub use data_store::PluginStore;
pub use http::HttpGrant;

/// The WIT package of store plugins, and the version the host serves.
pub const STORE_WIT_PACKAGE: &str = "notes:store";
pub const STORE_WIT_VERSION: &str = "0.1.0";

/// What the operator grants a store plugin at start.
#[derive(Clone, Default)]
pub struct StoreGrant {
    /// `--store-config KEY=VALUE`: what the plugin's `config.get` answers.
    /// Never logged: a value may be a token.
    pub config: BTreeMap<String, String>,
    pub http: HttpGrant,
}

/// Names the configuration's keys, never its values (a value may be a token).
impl std::fmt::Debug for StoreGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGrant").field("config_keys", &self.config.keys().collect::<Vec<_>>()).field("http", &self.http).finish()
    }
}

/// Who a store plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub name: String,
    pub version: String,
    /// False: the host keeps its notes' versions and tombstones.
    pub keeps_versions: bool,
}

/// A loaded store plugin: compiled, linked with what it was granted, ready
/// to make an instance per call.
pub struct StorePlugin {
    label: String,
    info: StoreInfo,
    pre: bindings::StoreBackendPre<StoreState>,
    limits: PluginLimits,
    config: Arc<BTreeMap<String, String>>,
    outgoing: Arc<http::Outgoing>,
}

/// The per-instance state the host functions see.
pub(super) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    http: WasiHttpCtx,
    hooks: http::Hooks,
    config: Arc<BTreeMap<String, String>>,
    allowance: Allowance,
    clock: CallClock,
    /// Keeps the epoch ticking while this store lives.
    _ticking: super::ticker::Ticking,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl bindings::notes::store::types::Host for StoreState {}

impl bindings::notes::store::config::Host for StoreState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl StorePlugin {
    /// Compiles `wasm` on `runtime`'s engine and links it with `grant`.
    /// Blocking (it compiles, and asks the plugin who it is).
    pub fn load(runtime: &Runtime, wasm: &[u8], grant: StoreGrant, limits: PluginLimits) -> anyhow::Result<Self> {
        let (component, _) = runtime.compile(wasm)?;
        let engine = runtime.engine();
        let exported = component.component_type().exports(engine).find_map(|(name, _)| {
            let rest = name.strip_prefix(STORE_WIT_PACKAGE)?.strip_prefix("/backend@")?;
            Some(rest.to_owned())
        });
        match exported {
            Some(version) if super::wit_compatible(&version, STORE_WIT_VERSION) => {}
            Some(version) => anyhow::bail!(
                "the store plugin was built against {STORE_WIT_PACKAGE}@{version}, but this host serves {STORE_WIT_PACKAGE}@{STORE_WIT_VERSION}; rebuild it"
            ),
            None if runtime.wit_version(&component).is_some() => {
                anyhow::bail!("this is a router plugin (it exports notes:plugin/router), not a store: upload it with `notes-host plugin push`")
            }
            None => anyhow::bail!("the component exports no {STORE_WIT_PACKAGE}/backend: it is not a store plugin (wit/store.wit)"),
        }
        let mut linker = Linker::<StoreState>::new(engine);
        wasi::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::StoreBackend::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let denied = wasi::deny_sockets(&linker, engine, &component)?;
        let linker = denied.as_ref().unwrap_or(&linker);
        let pre = linker.instantiate_pre(&component).map_err(|e| anyhow::Error::from(e).context("its imports do not match what the host gives a store plugin (WASI that grants nothing, wasi:http, notes:store/config)"))?;
        let pre = bindings::StoreBackendPre::new(pre).map_err(|e| anyhow::Error::from(e).context("its exports do not match notes:store/backend"))?;
        let mut plugin = StorePlugin {
            label: "store plugin".into(),
            info: StoreInfo { name: String::new(), version: String::new(), keeps_versions: false },
            pre,
            limits,
            config: Arc::new(grant.config),
            outgoing: http::Outgoing::new(grant.http, "store plugin"),
        };
        let info = pollster::block_on(plugin.ask_info()).map_err(|e| anyhow::anyhow!("info() did not answer: {e}"))?;
        short_printable("name", &info.name)?;
        short_printable("version", &info.version)?;
        plugin.label = format!("{}@{}", info.name, info.version);
        plugin.outgoing = http::Outgoing::new(plugin.outgoing.grant().clone(), &plugin.label);
        plugin.info = info;
        Ok(plugin)
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    async fn enter(&self) -> Result<(Store<StoreState>, bindings::StoreBackend), StoreError> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut table = ResourceTable::new();
        table.set_max_capacity(wasi::MAX_RESOURCES);
        let state = StoreState {
            wasi: wasi::deny_all(stderr.clone()),
            table,
            stderr,
            http: WasiHttpCtx::new(),
            hooks: http::Hooks(self.outgoing.clone()),
            config: self.config.clone(),
            allowance: Allowance::new(&self.limits),
            clock: CallClock::start(self.limits.deadline, self.limits.pacing_after),
            _ticking: super::ticker::Ticking::start(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.allowance);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().clock.on_tick()));
        store.set_epoch_deadline(1);
        if let Some(fuel) = self.limits.fuel {
            store.set_fuel(fuel).map_err(|e| StoreError::Internal(e.to_string()))?;
        }
        let backend = self.pre.instantiate_async(&mut store).await.map_err(|e| self.failure(e, &store))?;
        Ok((store, backend))
    }

    /// One call on a fresh instance, bounded by the deadline in wall-clock
    /// time too (a plugin waiting on its upstream runs no guest code).
    async fn call<R>(
        &self,
        f: impl AsyncFnOnce(&bindings::exports::notes::store::backend::Guest, &mut Store<StoreState>) -> wasmtime::Result<Result<R, wit::Error>>,
    ) -> Result<R, StoreError> {
        let run = async {
            let (mut store, backend) = self.enter().await?;
            match f(backend.notes_store_backend(), &mut store).await {
                Ok(answer) => answer.map_err(|e| self.refused(e)),
                Err(e) => Err(self.failure(e, &store)),
            }
        };
        // A little past the deadline: a call running guest code is stopped
        // by its epoch deadline first, with the better message.
        match tokio::time::timeout(self.limits.deadline + Duration::from_millis(100), run).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::Unavailable(format!("{} did not answer within {:?}", self.label, self.limits.deadline))),
        }
    }

    async fn ask_info(&self) -> Result<StoreInfo, StoreError> {
        let info = self.call(async |b, s| b.call_info(s).await.map(Ok)).await?;
        Ok(StoreInfo { name: info.name, version: info.version, keeps_versions: info.keeps_versions })
    }

    pub async fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        let note = self.call(async |b, s| b.call_get(s, account_id, note_id).await).await?;
        note.map(|n| self.checked(n, account_id, note_id)).transpose()
    }

    pub async fn put(&self, note: &Note) -> Result<bool, StoreError> {
        let wit_note = wit::Note {
            id: note.id.clone(),
            account_id: note.account_id.clone(),
            content: note.content.clone(),
            created_at_ms: note.created_at_ms,
            updated_at_ms: note.updated_at_ms,
            version: note.version,
        };
        self.call(async |b, s| b.call_put(s, &wit_note).await).await
    }

    pub async fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<bool, StoreError> {
        self.call(async |b, s| b.call_delete_if_not_newer(s, account_id, note_id, version).await).await
    }

    pub async fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.call(async |b, s| b.call_recorded_version(s, account_id, note_id).await).await
    }

    pub async fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        let ids = self.call(async |b, s| b.call_list_ids(s, account_id).await).await?;
        // Sorted and each once, whatever the plugin sent: the union of two
        // stores' lists is a merge of sorted lists.
        let mut ids = IdList::parse(ids).to_vec();
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids.into_iter().collect())
    }

    pub async fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let ids = self.call(async |b, s| b.call_first_ids(s, account_id, after, limit).await).await?;
        if ids.len() > limit as usize || ids.windows(2).any(|w| w[0] >= w[1]) || ids.first().is_some_and(|first| first.as_str() <= after) {
            return Err(StoreError::Internal(format!("{} answered first-ids out of order or past its limit", self.label)));
        }
        Ok(ids)
    }

    pub async fn health(&self) -> Result<(), StoreError> {
        self.call(async |b, s| b.call_health(s).await).await
    }

    /// A note the plugin returned for `account_id`'s `note_id`: that note.
    fn checked(&self, n: wit::Note, account_id: &str, note_id: &str) -> Result<Note, StoreError> {
        if n.account_id != account_id || n.id != note_id {
            return Err(StoreError::Internal(format!("{} answered a get of note {note_id} with another note", self.label)));
        }
        Ok(Note { id: n.id, account_id: n.account_id, content: n.content, created_at_ms: n.created_at_ms, updated_at_ms: n.updated_at_ms, version: n.version })
    }

    fn refused(&self, e: wit::Error) -> StoreError {
        let label = &self.label;
        match e {
            wit::Error::Unavailable(m) => StoreError::Unavailable(format!("{label}: {}", self.redacted(&m))),
            wit::Error::Invalid(m) => StoreError::Invalid(format!("{label}: {}", self.redacted(&m))),
            wit::Error::Internal(m) => StoreError::Internal(format!("{label}: {}", self.redacted(&m))),
        }
    }

    /// What the plugin wrote, with every configuration value it was given
    /// blanked out: its messages go into answers and logs, and a value may
    /// be a token (a URL's query, a password in it).
    fn redacted(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let mut values: Vec<&String> = self.config.values().filter(|v| v.len() >= 4).collect();
        // Longest first: a value containing another is blanked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in values {
            text = text.replace(value.as_str(), "[config]");
        }
        text
    }

    /// A trap or a limit: the call failed, not the store's answer.
    fn failure(&self, e: wasmtime::Error, store: &Store<StoreState>) -> StoreError {
        let label = &self.label;
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return StoreError::Unavailable(format!("{label} ran past its deadline of {:?}", self.limits.deadline));
        }
        if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return StoreError::Unavailable(format!("{label}: every plugin instance slot is in use"));
        }
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return StoreError::Internal(format!("{label}: {limit}"));
        }
        let printed = self.redacted(&printed_for_its_author(&store.data().stderr.contents()));
        let message = self.redacted(&match e.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{e:#}"),
        });
        if printed.is_empty() {
            StoreError::Internal(format!("{label} failed: {message}"))
        } else {
            StoreError::Internal(format!("{label} failed: {message}\n--- its stderr ---\n{printed}"))
        }
    }
}

/// How long a store plugin's call may take by default, waits on its
/// upstream included: a data proxy serializing every call behind one lock
/// answers in milliseconds each, but queues under load.
pub const DEFAULT_STORE_DEADLINE: Duration = Duration::from_secs(10);
