//! The plugin runtime: the only module that knows wasmtime.
//!
//! One [`Engine`] per host ([`Runtime`]), with the pooling instance
//! allocator. Each plugin is compiled once into a `Component` and an
//! `InstancePre`. Every call gets a **fresh instance** by default: from a
//! pool slot with a copy-on-write memory image, that costs a few
//! microseconds, and no plugin state (globals, heap) survives from one
//! request, or account, to the next. Reusing instances is opt-in
//! (`reuse_instances`), for plugins you wrote yourself.
//!
//! Each call runs under an epoch deadline and the limits of
//! [`limits`]. The `stores` import is bound to the request's account for the
//! length of one call.
//!
//! The conformance kit ([`conformance`]) lives here: the registry runs it on
//! an upload with this host's engine and limits (`PluginLoader::check`).

mod bindings;
pub mod conformance;
mod exports;
mod kept;
mod limits;
mod pacing;
pub mod store;
pub mod registry;
mod ticker;
mod wasi;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, PoolConcurrencyLimitError, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use exports::{EXPORT_NAMES, ExportsPre};
use limits::{Allowance, LimitExceeded};
use pacing::CallClock;
use ticker::EPOCH_TICK;
pub use exports::SERVED_WIT_VERSIONS;
pub use limits::PluginLimits;
use crate::catalog::short;
use crate::router::{AccountScope, InstanceUsage, Instances, PluginFailure};

/// How much of a plugin's stderr (where a Rust panic message goes) is kept.
const STDERR_CAPACITY: usize = 4096;
/// With `reuse_instances`, an instance whose linear memory grew more than
/// this past its start is dropped after its call instead of being kept.
/// Linear memory never shrinks, so one list of 100k ids would otherwise leave
/// every kept instance holding ~10 MiB more for the life of the process
/// (BENCHMARKS.md, "Scaling"). Measured from the start, not from zero: a
/// Python or JavaScript plugin starts at 9–13 MiB, and a fixed cap of 8 MiB
/// kept none of them.
const REUSE_MAX_GROWTH: usize = 8 << 20;

/// Set (to anything) in a host's environment, the plugins' compiled code is
/// named in `/tmp/perf-PID.map` for `perf report`: a diagnostic, not a setting.
pub const PERFMAP_ENV: &str = "NOTES_HOST_PERFMAP";

/// The wasmtime engine and linker shared by every plugin of this host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    limits: PluginLimits,
}

impl Runtime {
    pub fn new(limits: PluginLimits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(limits.fuel.is_some())
            .allocation_strategy(limits::allocation_strategy(&limits))
            // The default, stated: a fresh instance maps the plugin's memory
            // image copy-on-write instead of copying its data segments.
            .memory_init_cow(true);
        // For `perf`: with this set, wasmtime writes /tmp/perf-PID.map, so a
        // profile names the plugin's own functions (docs/profiling.md).
        if std::env::var_os(PERFMAP_ENV).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        ticker::start(engine.weak())?;
        let mut linker = Linker::new(&engine);
        // A std wasm32-wasip2 guest imports wasi:cli and wasi:io even if it
        // does no I/O; link them to a context that grants nothing (`wasi`).
        wasi::add_to_linker(&mut linker)?;
        // Every served version's imports: a plugin built against an older
        // version links against its own.
        bindings::v0_1::NotePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        bindings::v0_2::NotePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        bindings::v0_3::NotePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        bindings::v0_4::NotePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Runtime { engine, linker, limits })
    }

    /// The engine every plugin runs on, for benchmarks that measure wasmtime
    /// itself under the host's configuration (`benches/micro.rs`, `wasmtime/*`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component to a precompiled artifact (`.cwasm`) and loads
    /// it, so the compile happens once: the artifact is what gets stored and
    /// what restarts load.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<(Component, Vec<u8>)> {
        // A core module's header is the magic and version 1; a component's
        // says version 13, layer 1. wasmtime's parser would only say it
        // "attempted to parse a wasm module with a component parser".
        if wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0] {
            anyhow::bail!(
                "not a valid component: this is a core WebAssembly module. Build the plugin as a component: \
                 for Rust, `cargo build --release --target wasm32-wasip2` (the `wasm32-wasip2` target makes components); \
                 from a core module, `wasm-tools component new`"
            );
        }
        let artifact = self.engine.precompile_component(wasm).map_err(|e| anyhow::Error::from(e).context("not a valid component"))?;
        // SAFETY: the bytes were produced by this engine just now.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }?;
        Ok((component, artifact))
    }

    /// Loads a precompiled artifact written by [`Runtime::compile`]. Fails if
    /// it was made by another wasmtime version or engine configuration.
    pub fn load_artifact(&self, artifact: &[u8]) -> anyhow::Result<Component> {
        // SAFETY: the registry checked these bytes against the sha256 it
        // recorded when `compile` made them; wasmtime checks version and
        // configuration.
        Ok(unsafe { Component::deserialize(&self.engine, artifact) }?)
    }

    /// An upload made ready to serve, or the reason (for its author) why it
    /// cannot be: compiled, built against a served WIT version, instantiable
    /// here. The one check of an upload: the registry's and the conformance kit's.
    /// Answers the plugin, its precompiled artifact and its WIT version.
    pub fn load_upload(&self, wasm: &[u8], digest: &str) -> Result<(Plugin, Vec<u8>, String), String> {
        let (component, artifact) = self.compile(wasm).map_err(|e| format!("{e:#}"))?;
        let wit_version = self.wit_version(&component).ok_or_else(|| {
            format!("the component exports neither {WIT_PACKAGE}/router nor {WIT_PACKAGE}/note-store: it is not a notes plugin")
        })?;
        if !wit_served(&wit_version) {
            let served = SERVED_WIT_VERSIONS.map(|v| format!("{WIT_PACKAGE}@{v}")).join(", ");
            return Err(format!(
                "the plugin was built against {WIT_PACKAGE}@{wit_version}, but this host serves {served}; rebuild it against {WIT_VERSION}"
            ));
        }
        let plugin = self.instantiate(&component, digest).map_err(|e| format!("{e:#}"))?;
        Ok((plugin, artifact, wit_version))
    }

    /// The `notes:plugin` version a component was built against, read from
    /// its export name (`notes:plugin/router@0.2.Z`, `notes:plugin/note-store@0.1.Z`;
    /// a version the host does not serve is still read, to name it).
    pub fn wit_version(&self, component: &Component) -> Option<String> {
        let ty = component.component_type();
        ty.exports(&self.engine).find_map(|(name, _)| {
            let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
            let (interface, version) = rest.split_once('@')?;
            EXPORT_NAMES.iter().any(|(_, i)| *i == interface).then(|| version.to_owned())
        })
    }

    /// The component's imports from packages the host links none of (say
    /// `wasi:http/outgoing-handler@0.2.0`): what an author must build without.
    fn unprovided_imports(&self, component: &Component) -> Vec<String> {
        let provided = |name: &str| {
            let package = name.split_once('/').map_or(name, |(package, _)| package);
            package == WIT_PACKAGE || wasi::LINKED_PACKAGES.contains(&package) || wasi::DENIED_PACKAGES.contains(&package)
        };
        component.component_type().imports(&self.engine).map(|(name, _)| name.to_owned()).filter(|name| !provided(name)).collect()
    }

    /// Links `component` against the host's world and asks it who it is.
    pub fn instantiate(&self, component: &Component, digest: &str) -> anyhow::Result<Plugin> {
        let denied = wasi::deny_sockets(&self.linker, &self.engine, component)?;
        let linker = denied.as_ref().unwrap_or(&self.linker);
        let pre = linker.instantiate_pre(component).map_err(|e| match self.unprovided_imports(component) {
            missing if missing.is_empty() => anyhow::Error::from(e).context("its imports do not match what the host provides"),
            missing => anyhow::anyhow!(
                "it imports {}, which this host does not provide. A plugin gets {} (no files, network or clock: ARCHITECTURE.md, \"Plugin runtime\") and {WIT_PACKAGE}/stores. Build it without them: componentize-js `--disable http` (`-d http`), a componentize-py world without wasi:http, or in Rust drop the crate that pulls them in",
                missing.join(", "),
                wasi::LINKED_PACKAGES.join(", ")
            ),
        })?;
        let wit_version = self.wit_version(component).ok_or_else(|| anyhow::anyhow!("it exports no {WIT_PACKAGE} router"))?;
        let pre = ExportsPre::new(pre, &wit_version).map_err(|e| {
            anyhow::Error::from(e).context(format!("its exports do not match the router interface of {WIT_PACKAGE}@{wit_version}"))
        })?;
        let mut plugin = Plugin {
            label: format!("plugin {}", short(digest)),
            digest: digest.to_owned(),
            info: PluginInfo::default(),
            wit_version,
            pre,
            limits: self.limits.clone(),
            idle: Mutex::new(Vec::new()),
            instances: Mutex::new(Instances::Fresh),
            // Half the pool at most waits: the other half is always free for fresh instances.
            kept: kept::PerAccount::new((self.limits.max_instances as usize / 2).max(1)),
            usage: Usage::default(),
        };
        // Loading runs on a blocking thread (an upload, a start): the call
        // is driven to its end right here.
        plugin.info = pollster::block_on(plugin.ask_info()).map_err(|e| anyhow::anyhow!("info() did not answer: {e}"))?;
        short_printable("name", &plugin.info.name)?;
        short_printable("version", &plugin.info.version)?;
        plugin.label = format!("{}@{}", plugin.info.name, plugin.info.version);
        Ok(plugin)
    }
}

/// The WIT package the host serves (`wit/notes.wit`), and its newest version.
pub const WIT_PACKAGE: &str = "notes:plugin";
pub const WIT_VERSION: &str = "0.4.0";

/// Whether the host serves a plugin built against `plugin`: compatible with
/// one of [`SERVED_WIT_VERSIONS`].
pub fn wit_served(plugin: &str) -> bool {
    SERVED_WIT_VERSIONS.iter().any(|served| wit_compatible(plugin, served))
}

/// Semver compatibility of a plugin's WIT version with a served one: same
/// major (for 0.x: same minor), and not newer.
pub fn wit_compatible(plugin: &str, host: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut parts = v.split('.').map(|p| p.split(['-', '+']).next().unwrap_or(p).parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    };
    match (parse(plugin), parse(host)) {
        (Some(p), Some(h)) if h.0 == 0 => p.0 == 0 && p.1 == h.1 && p.2 <= h.2,
        (Some(p), Some(h)) => p.0 == h.0 && (p.1, p.2) <= (h.1, h.2),
        _ => false,
    }
}

/// Longest `info()` name or version: the label `name@version` goes into
/// every answer's `X-Plugin` header, every log line and metric of the plugin.
const MAX_INFO_BYTES: usize = 64;

/// An `info()` field that fits a header and a log line: 1–64 bytes of
/// visible ASCII (a newline would drop `X-Plugin`; 40 KB would go into every
/// answer and every metric series).
fn short_printable(field: &str, value: &str) -> anyhow::Result<()> {
    if value.is_empty() || value.len() > MAX_INFO_BYTES {
        anyhow::bail!("info() gave a {field} of {} bytes; it must be 1 to {MAX_INFO_BYTES} bytes", value.len());
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        anyhow::bail!("info() gave a {field} with {c:?}; it may hold only visible ASCII characters (no spaces)");
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub supports_migration: bool,
}

/// A loaded plugin and its pool of warm instances.
pub struct Plugin {
    /// `name@version`, as in the `X-Plugin` response header.
    label: String,
    /// sha256 of the `.wasm`, hex.
    digest: String,
    info: PluginInfo,
    /// The `notes:plugin` version it was built against.
    wit_version: String,
    pre: ExportsPre,
    limits: PluginLimits,
    /// Instances kept for any account (`--unsafe-reuse-instances`).
    idle: Mutex<Vec<Warm>>,
    /// How its instances are made (`Instances`, set per plugin).
    instances: Mutex<Instances>,
    /// Instances kept per account, under `Instances::PerAccount`.
    kept: kept::PerAccount<Warm>,
    usage: Usage,
}

/// Counters behind [`InstanceUsage`]: a few relaxed atomics per call.
#[derive(Default)]
struct Usage {
    calls: AtomicU64,
    nanos: AtomicU64,
    start_memory: AtomicUsize,
    peak_memory: AtomicUsize,
}

/// The per-instance state the host functions see.
pub struct CallState {
    /// Built on the plugin's first WASI call, not per instance: most calls
    /// make none, and building one seeds random generators (~3% of a call).
    wasi: Option<wasmtime_wasi::WasiCtx>,
    /// Where the plugin's stderr goes once `wasi` exists.
    stderr: MemoryOutputPipe,
    table: wasmtime::component::ResourceTable,
    allowance: Allowance,
    /// Deadline and CPU pacing of the call in progress, checked every epoch tick.
    clock: CallClock,
    /// The account this call may touch; `None` between calls.
    scope: Option<AccountScope>,
    /// Keeps the epoch ticking while this store lives.
    _ticking: ticker::Ticking,
}

struct Warm {
    store: Store<CallState>,
    instance: wasmtime::component::Instance,
    stderr: MemoryOutputPipe,
}

impl Warm {
    /// Whether a kept instance's stderr can still take a call's output: it
    /// keeps what every call wrote (4 KiB at most), and once full a write
    /// fails, and a Rust guest panics on a failed `eprintln!`. An instance
    /// past half of it is dropped rather than kept.
    fn stderr_has_room(&self) -> bool {
        self.stderr.contents().len() <= STDERR_CAPACITY / 2
    }
}

/// One call in progress: its instance, and what `leave` reports from.
struct Call {
    warm: Warm,
    /// Bytes of the instance's stderr written before this call.
    stderr_before: usize,
    started: std::time::Instant,
    /// Under `Instances::PerAccount`: whose instance it is, and its life so far.
    keep: Option<Keep>,
}

/// Where an instance kept per account goes back after a call.
struct Keep {
    account: String,
    life: kept::Life,
    born: std::time::Instant,
    served: u32,
}

impl Plugin {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Checks the note operations' types (what every later call relies on,
    /// `exports::unchecked`) and asks the plugin who it is.
    async fn ask_info(&self) -> Result<PluginInfo, PluginFailure> {
        let mut call = self.enter(None).await?;
        let answer = match self.pre.check(&mut call.warm.store, &call.warm.instance) {
            Ok(()) => self.pre.info(&mut call.warm.store, &call.warm.instance).await,
            Err(e) => Err(e),
        };
        self.leave(call, answer)
    }

    /// What its calls have cost since it was loaded (see [`InstanceUsage`]).
    pub fn instance_usage(&self) -> InstanceUsage {
        let calls = self.usage.calls.load(Ordering::Relaxed);
        InstanceUsage {
            calls,
            mean_call_micros: if calls == 0 { 0.0 } else { self.usage.nanos.load(Ordering::Relaxed) as f64 / calls as f64 / 1e3 },
            start_memory_bytes: self.usage.start_memory.load(Ordering::Relaxed),
            peak_memory_bytes: self.usage.peak_memory.load(Ordering::Relaxed),
            kept_instances: self.kept.len(),
        }
    }

    /// An instance ready for one call with the `stores` import bound to
    /// `scope`: a fresh one, unless instances are reused and one is kept.
    /// Made on the caller's task (`instantiate_async`): the call that
    /// follows runs there too, on a fiber, and yields at each epoch tick.
    async fn enter(&self, scope: Option<AccountScope>) -> Result<Call, PluginFailure> {
        let started = std::time::Instant::now();
        let per_account = match (self.instances(), &scope) {
            (Instances::PerAccount { max_requests, max_seconds }, Some(scope)) => {
                Some((scope.account_id().to_owned(), kept::Life { max_requests, max_age: Duration::from_secs(max_seconds.into()) }))
            }
            _ => None,
        };
        let (kept, keep) = match per_account {
            Some((account, life)) => match self.kept.take(&account, life).filter(|k| k.instance.stderr_has_room()) {
                Some(k) => (Some(k.instance), Some(Keep { account, life, born: k.born, served: k.served })),
                None => (None, Some(Keep { account, life, born: started, served: 0 })),
            },
            None if self.limits.reuse_instances > 0 => {
                (self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().filter(Warm::stderr_has_room), None)
            }
            None => (None, None),
        };
        crate::metrics::plugin_instance(kept.is_some());
        let (mut warm, stderr_before) = match kept {
            Some(mut warm) => {
                warm.store.data_mut().clock = CallClock::start(self.limits.deadline, self.limits.pacing_after);
                // Its stderr holds earlier calls' output: report only this call's.
                let before = warm.stderr.contents().len();
                (warm, before)
            }
            // Its clock started before instantiation: the deadline counts it.
            None => {
                let fresh = self.instantiate().await.map_err(|e| self.failure(e, None))?;
                // Every fresh instance starts alike: recorded once (the load's `info()` call).
                if self.usage.start_memory.load(Ordering::Relaxed) == 0 {
                    self.usage.start_memory.store(fresh.store.data().allowance.memory_bytes, Ordering::Relaxed);
                }
                (fresh, 0)
            }
        };
        warm.store.data_mut().scope = scope;
        warm.store.set_epoch_deadline(1);
        if let Some(fuel) = self.limits.fuel {
            warm.store.set_fuel(fuel).expect("fuel is enabled when a budget is set");
        }
        Ok(Call { warm, stderr_before, started, keep })
    }

    /// Ends a call made on `call`'s instance: keeps the instance if the
    /// plugin's mode says so and the call ended well, and turns a trap (or a
    /// limit) into the failure callers see; such an instance is never kept.
    fn leave<R>(&self, mut call: Call, result: wasmtime::Result<R>) -> Result<R, PluginFailure> {
        call.warm.store.data_mut().scope = None;
        self.usage.calls.fetch_add(1, Ordering::Relaxed);
        self.usage.nanos.fetch_add(call.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let memory = call.warm.store.data().allowance.memory_bytes;
        if memory > self.usage.peak_memory.load(Ordering::Relaxed) {
            self.usage.peak_memory.fetch_max(memory, Ordering::Relaxed);
        }
        let value = match result {
            Ok(value) => value,
            Err(e) => return Err(self.failure(e, Some(&call.warm.stderr.contents()[call.stderr_before..]))),
        };
        let grown = memory.saturating_sub(self.usage.start_memory.load(Ordering::Relaxed));
        if grown > REUSE_MAX_GROWTH {
            return Ok(value);
        }
        match call.keep {
            Some(Keep { account, life, born, served }) => {
                self.kept.put(&account, kept::Kept { instance: call.warm, born, served: served + 1 }, life);
            }
            None if self.limits.reuse_instances > 0 => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < self.limits.reuse_instances {
                    idle.push(call.warm);
                }
            }
            None => {}
        }
        Ok(value)
    }

    /// How its instances are made now.
    pub(super) fn instances(&self) -> Instances {
        *self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows a new mode from the next call on; instances kept under the
    /// old one are dropped.
    pub fn set_instances(&self, instances: Instances) {
        let mut current = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        if *current != instances {
            *current = instances;
            self.kept.clear();
        }
    }

    async fn instantiate(&self) -> wasmtime::Result<Warm> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let state = CallState {
            wasi: None,
            stderr: stderr.clone(),
            table: {
                let mut table = wasmtime::component::ResourceTable::new();
                table.set_max_capacity(wasi::MAX_RESOURCES);
                table
            },
            allowance: Allowance::new(&self.limits),
            clock: CallClock::start(self.limits.deadline, self.limits.pacing_after),
            scope: None,
            _ticking: ticker::Ticking::start(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.allowance);
        // Every tick: stop the call at its deadline, else yield to the
        // other tasks, and pause it once it used a lot of CPU (`pacing`).
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().clock.on_tick()));
        store.set_epoch_deadline(1);
        if let Some(fuel) = self.limits.fuel {
            store.set_fuel(fuel)?;
        }
        let instance = self.pre.instantiate(&mut store).await?;
        Ok(Warm { store, instance, stderr })
    }

    fn failure(&self, e: wasmtime::Error, stderr: Option<&[u8]>) -> PluginFailure {
        let plugin = self.label.clone();
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return PluginFailure::Timeout { plugin, deadline: self.limits.deadline },
            Some(Trap::OutOfFuel) => return PluginFailure::OutOfFuel { plugin, fuel: self.limits.fuel.unwrap_or(0) },
            _ => {}
        }
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return PluginFailure::OverLimit { plugin, message: limit.to_string() };
        }
        if let Some(full) = e.downcast_ref::<PoolConcurrencyLimitError>() {
            return PluginFailure::Busy { plugin, message: full.to_string() };
        }
        let mut message = match e.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{e:#}"),
        };
        let printed = stderr.map(printed_for_its_author).unwrap_or_default();
        if !printed.is_empty() {
            message = format!("{message}\n--- the plugin's stderr and stdout ---\n{printed}");
        }
        PluginFailure::Trapped { plugin, message }
    }
}

/// What a failed call printed, for its author: without the Rust runtime's
/// hint to set `RUST_BACKTRACE` (a plugin gets no environment, so the hint
/// cannot be followed; a Python plugin's runtime is Rust and prints it too).
fn printed_for_its_author(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let kept: Vec<&str> = text.lines().filter(|line| !(line.starts_with("note: run with `RUST_BACKTRACE=") && line.ends_with("to display a backtrace"))).collect();
    kept.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_wit_version_is_the_one_in_wit_notes_wit() {
        let wit = include_str!("../../../wit/notes.wit");
        let versions = include_str!("../../../wit/VERSIONS.md");
        for served in SERVED_WIT_VERSIONS {
            assert!(versions.contains(&format!("| {served} |")), "wit/VERSIONS.md lists {served}");
        }
        assert!(wit.contains(&format!("package {WIT_PACKAGE}@{WIT_VERSION};")), "update WIT_VERSION with wit/notes.wit");
    }

    #[test]
    fn a_failures_output_loses_only_the_backtrace_hint_a_plugin_cannot_follow() {
        let stderr = b"thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(printed_for_its_author(stderr), "thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom");
        assert_eq!(printed_for_its_author(b"  note: mine, kept\n"), "note: mine, kept");
    }

    #[test]
    fn wit_versions_are_compatible_by_semver() {
        assert!(wit_compatible("0.1.0", "0.1.0"));
        assert!(wit_compatible("0.1.0", "0.1.3"), "an older patch of the same 0.x minor");
        assert!(!wit_compatible("0.1.4", "0.1.3"), "newer than the host serves");
        assert!(!wit_compatible("0.2.0", "0.1.0"));
        assert!(!wit_compatible("1.0.0", "0.1.0"));
        assert!(wit_compatible("1.2.0", "1.4.1"));
        assert!(!wit_compatible("2.0.0", "1.4.1"));
        assert!(!wit_compatible("banana", "0.1.0"));
        assert!(wit_served("0.1.0") && wit_served("0.2.0") && wit_served("0.3.0") && wit_served("0.4.0"), "every version in wit/VERSIONS.md is served");
        assert!(!wit_served("0.5.0"));
    }
}
