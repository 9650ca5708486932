//! The WASI a plugin gets: nothing it could use to reach out or to outlast
//! its deadline. No files, no network, no environment, no arguments, no
//! stdin; a clock frozen at zero (times come from the host through the WIT
//! contract). Only stderr is captured, so a panic message can be reported
//! with the failed request.
//!
//! The async bindings (a call runs on its request's task): the sync ones
//! drive their futures with `Handle::block_on`, which panics on a runtime
//! worker. Every wait they can meet here is over at once (the pipes below,
//! the frozen clock's subscriptions), so no plugin can park in the host.
//!
//! Linked by hand rather than with `wasmtime_wasi::p2::add_to_linker_async`,
//! for two reasons a hostile plugin would exploit:
//! - **no sockets**: `wasi:sockets` would let a plugin open real OS sockets
//!   (file descriptors) even with every address denied; a plugin that
//!   imports it is refused at upload;
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
    WasiCtx::builder().stderr(stderr).wall_clock(FrozenClock).build()
}

/// The WASI packages [`add_to_linker`] links (each of their 0.2 interfaces a
/// guest imports): what an upload refused for its imports is told.
pub(super) const LINKED_PACKAGES: &[&str] = &["wasi:cli", "wasi:io", "wasi:clocks", "wasi:random", "wasi:filesystem"];

/// Every WASI interface a std `wasm32-wasip2` guest imports, but sockets,
/// with the monotonic clock replaced by [`FrozenTime`].
pub(super) fn add_to_linker(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(l, |s| s.clocks())?;
    clocks::monotonic_clock::add_to_linker::<CallState, FrozenTime>(l, |s| FrozenTimeView(&mut s.table))?;
    filesystem::preopens::add_to_linker::<CallState, WasiFilesystem>(l, |s| s.filesystem())?;
    filesystem::types::add_to_linker::<CallState, WasiFilesystem>(l, |s| s.filesystem())?;
    random::random::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    cli::exit::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, |s| s.cli())?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<CallState, HasIo>(l, |s| s.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<CallState, HasIo>(l, |s| s.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<CallState, HasIo>(l, |s| s.ctx().table)?;
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
