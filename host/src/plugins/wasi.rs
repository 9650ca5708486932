//! The WASI a plugin gets: nothing it could use to reach out or to outlast
//! its deadline. No files, no network, no environment, no arguments, no
//! stdin; a clock frozen at zero (times come from the host through the WIT
//! contract). Only stderr (and stdout, into the same buffer) is captured, so
//! a panic message, a Python traceback and what the plugin printed can be
//! reported with the failed request.
//!
//! The async bindings (a call runs on its request's task): the sync ones
//! drive their futures with `Handle::block_on`, which panics on a runtime
//! worker. Every wait they can meet here is over at once (the pipes below,
//! the frozen clock's subscriptions), so no plugin can park in the host.
//!
//! Linked by hand rather than with `wasmtime_wasi::p2::add_to_linker_async`,
//! for two reasons a hostile plugin would exploit:
//! - **no sockets**: `wasi:sockets` would let a plugin open real OS sockets
//!   (file descriptors) even with every address denied. A plugin may import
//!   it (componentize-py's libc does, whether or not the plugin uses it), but
//!   every function of it traps ([`deny_sockets`]): only a stub that traps
//!   all of WASI (componentize-py's `--stub-wasi`) would otherwise let such a
//!   plugin load, and that stub takes its stderr (its tracebacks) too;
//! - **no sleeping in the host**: the deadline is checked only while guest
//!   code runs, so a plugin blocked in the host (`subscribe-duration` of
//!   years, then `pollable.block`) would never be stopped. Here the monotonic
//!   clock is frozen like the wall clock, and every subscription to it is
//!   ready at once: a plugin that waits for time to pass spins in its own
//!   code, where the deadline and pacing see it.

use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::CallState;

/// Resources one instance may hold at once in the host (streams, pollables):
/// a plugin cannot grow the host's memory through them.
pub(super) const MAX_RESOURCES: usize = 1024;

pub(super) fn deny_all(stderr: MemoryOutputPipe) -> WasiCtx {
    // stdout into the same pipe: Python's `print` writes there, and what a
    // plugin printed before it failed belongs beside its traceback, in order.
    WasiCtx::builder().stdout(stderr.clone()).stderr(stderr).wall_clock(FrozenClock).build()
}

/// WASI packages a plugin may import without getting anything from them:
/// every function traps, with a message naming it ([`deny_sockets`]).
pub(super) const DENIED_PACKAGES: &[&str] = &["wasi:sockets"];

/// `linker` plus, for each `wasi:sockets` interface `component` imports,
/// every function defined as a trap ("… is denied: a plugin has no
/// network") and every resource type as one no value can ever be made of.
/// `None` when it imports none (the shared linker serves it as is). Per
/// component, not once for all: the definitions follow the interfaces and
/// the WASI version the component imports, whatever they are.
pub(super) fn deny_sockets<T: 'static>(
    linker: &Linker<T>,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<Option<Linker<T>>> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    /// The type of every resource of a denied interface: no function makes one.
    struct Denied;
    let ty = component.component_type();
    let (denied, linked): (Vec<_>, Vec<_>) = ty
        .imports(engine)
        .partition(|(name, _)| DENIED_PACKAGES.iter().any(|p| name.split_once('/').is_some_and(|(package, _)| package == *p)));
    if denied.is_empty() {
        return Ok(None);
    }
    // Resources a denied interface only uses (`wasi:io`'s `pollable`,
    // `input-stream`): the linker's own definitions serve them, and a second
    // one would be a mismatched type.
    let borrowed: Vec<ResourceType> = linked
        .iter()
        .filter_map(|(_, item)| match &item.ty {
            ComponentItem::ComponentInstance(instance) => Some(instance.exports(engine).filter_map(|(_, e)| match e.ty {
                ComponentItem::Resource(r) => Some(r),
                _ => None,
            })),
            _ => None,
        })
        .flatten()
        .collect();
    let mut linker = linker.clone();
    for (interface, item) in denied {
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        let mut root = linker.root();
        let mut defined = root.instance(interface)?;
        for (name, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{interface}#{name}");
                    defined.func_new(name, move |_, _, _, _| {
                        wasmtime::bail!("{what} is denied: a plugin has no network (docs/plugins.md, \"Limits and isolation\")")
                    })?;
                }
                ComponentItem::Resource(r) if !borrowed.contains(&r) => defined.resource(name, ResourceType::host::<Denied>(), |_, _| Ok(()))?,
                _ => {}
            }
        }
    }
    Ok(Some(linker))
}

/// The WASI packages [`add_to_linker`] links (each of their 0.2 interfaces a
/// guest imports): what an upload refused for its imports is told.
pub(super) const LINKED_PACKAGES: &[&str] = &["wasi:cli", "wasi:io", "wasi:clocks", "wasi:random", "wasi:filesystem"];

/// Every WASI interface a std `wasm32-wasip2` guest imports, but sockets,
/// with the monotonic clock replaced by [`FrozenTime`].
pub(super) fn add_to_linker<T: WasiView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, |s| s.clocks())?;
    clocks::monotonic_clock::add_to_linker::<T, FrozenTime>(l, |s| FrozenTimeView(s.ctx().table))?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, |s| s.filesystem())?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, |s| s.filesystem())?;
    random::random::add_to_linker::<T, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::environment::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, |s| s.cli())?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasIo>(l, |s| s.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<T, HasIo>(l, |s| s.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<T, HasIo>(l, |s| s.ctx().table)?;
    Ok(())
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// The monotonic clock a plugin sees: always zero, and every wait on it
/// already over.
struct FrozenTime;

impl HasData for FrozenTime {
    type Data<'a> = FrozenTimeView<'a>;
}

struct FrozenTimeView<'a>(&'a mut ResourceTable);

impl clocks::monotonic_clock::Host for FrozenTimeView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(&mut self, _when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.0.push(AlreadyOver)?;
        subscribe(self.0, ready)
    }

    fn subscribe_duration(&mut self, _duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.0.push(AlreadyOver)?;
        subscribe(self.0, ready)
    }
}

/// A wait that is over before it starts.
struct AlreadyOver;

#[wasmtime_wasi::async_trait]
impl Pollable for AlreadyOver {
    async fn ready(&mut self) {}
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &self.stderr;
        let ctx = self.wasi.get_or_insert_with(|| deny_all(stderr.clone()));
        WasiCtxView { ctx, table: &mut self.table }
    }
}
