//! The WASI context a plugin gets: nothing. No files, no network, no
//! environment, no arguments, no stdin; a clock frozen at zero (times come
//! from the host through the WIT contract). Only stderr is captured, so a
//! panic message can be reported with the failed request.

use std::time::Duration;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::CallState;

pub(super) fn deny_all(stderr: MemoryOutputPipe) -> WasiCtx {
    WasiCtx::builder().stderr(stderr).wall_clock(FrozenClock).monotonic_clock(FrozenClock).build()
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

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &self.stderr;
        let ctx = self.wasi.get_or_insert_with(|| deny_all(stderr.clone()));
        WasiCtxView { ctx, table: &mut self.table }
    }
}
