//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! any plugin store exists, and sleeps while none does.
//!
//! A call's deadline and its pacing are checked at epoch ticks
//! ([`super::pacing::CallClock::on_tick`]), so the ticker must run whenever
//! guest code can: every wasmtime `Store` of a plugin holds a [`Ticking`]
//! from before its instance is made until it is dropped (an instance kept
//! for reuse keeps it, and the ticker running). With none, the ticker waits
//! for the first, instead of waking 500 times a second on an idle host
//! (≈1% of a core). The count is the process's, over every engine: a ticker
//! that ticks for another engine's store only ticks for nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use wasmtime::EngineWeak;

/// How often the epoch advances; the deadline is counted in these ticks. A
/// running call yields its worker at each one, so a tick is the longest an
/// honest request can wait behind a looping call on its worker: 2 ms, not
/// 10 (the other accounts' p99 beside 128 loops, BENCHMARKS.md "Fairness").
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(2);
/// An idle ticker still looks this often whether its engine was dropped.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// Plugin stores alive in this process.
static STORES: AtomicUsize = AtomicUsize::new(0);
/// Where idle tickers wait for the first store; its lock orders a store's
/// arrival against a ticker going to sleep, so no wake-up is lost.
static IDLE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// Held by a plugin store for its whole life: the ticker runs while any is.
#[must_use]
pub(super) struct Ticking(());

impl Ticking {
    pub(super) fn start() -> Self {
        if STORES.fetch_add(1, Ordering::AcqRel) == 0 {
            let _lock = IDLE.0.lock().unwrap_or_else(|e| e.into_inner());
            IDLE.1.notify_all();
        }
        Ticking(())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        STORES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The ticker of `engine`, on an OS thread of its own (as a task on a busy
/// runtime it could starve, and a runaway plugin would never be stopped);
/// it ends once the engine is dropped.
pub(super) fn start(engine: EngineWeak) -> std::io::Result<()> {
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
            wait_for_a_store();
        }
    })?;
    Ok(())
}

/// Returns at once while a plugin store exists; otherwise when one is made,
/// or after [`IDLE_LOOK`].
fn wait_for_a_store() {
    if STORES.load(Ordering::Acquire) > 0 {
        return;
    }
    let lock = IDLE.0.lock().unwrap_or_else(|e| e.into_inner());
    let _ = IDLE.1.wait_timeout_while(lock, IDLE_LOOK, |_| STORES.load(Ordering::Acquire) == 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_ticker_wakes_for_the_first_store_at_once() {
        let waiter = std::thread::spawn(|| {
            let started = std::time::Instant::now();
            // Other tests of this process may hold stores: then it returns at once too.
            wait_for_a_store();
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        let ticking = Ticking::start();
        let waited = waiter.join().unwrap();
        assert!(waited < Duration::from_millis(900), "woken by the store, not after its idle look: {waited:?}");
        drop(ticking);
    }
}
