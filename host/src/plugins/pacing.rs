//! How long a plugin call may run, and how much CPU it may take while it runs.
//!
//! A call runs on its request's tokio task, on a fiber. wasmtime calls
//! [`CallClock::on_tick`] at each epoch tick (2 ms) the call is running
//! through:
//! - past its **deadline** (wall clock, from the moment its instance was
//!   made), it is stopped: `Trap::Interrupt`, HTTP 503;
//! - otherwise it **yields** to the other tasks of its worker and goes on
//!   when the runtime polls it again, so no call holds a worker for more
//!   than a tick;
//! - once it has run longer than its CPU slice (`--plugin-pacing-after-ms`,
//!   default [`DEFAULT_PACING_AFTER`]), it is **paced**: each tick it runs
//!   is followed by a pause of [`PACED_PAUSE`] off the worker (a timer, not
//!   a sleeping thread), so for the rest of its deadline it takes about 5%
//!   of one core. An honest call (a list of 100k ids costs about 35 ms)
//!   never gets there; a looping one gets there quickly, and then leaves the
//!   cores to other requests.
//!
//! Pacing is what keeps other accounts served while one account's calls loop:
//! the per-account request cap bounds how many such calls run, pacing bounds
//! what each of them costs (BENCHMARKS.md, "Fairness").

use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// CPU a call may use at full speed before it is paced, by default.
pub(super) const DEFAULT_PACING_AFTER: Duration = Duration::from_millis(50);
/// A paced call pauses this long per tick it runs: ~5% of a core.
pub(super) const PACED_PAUSE: Duration = Duration::from_millis(38);

/// The clock of the call in progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallClock {
    started: Instant,
    deadline: Duration,
    /// `None`: never paced.
    pacing_after: Option<Duration>,
    /// Ticks the call was seen running at. The first may be partial (the
    /// call began mid-tick), so the slice is counted from the second: a call
    /// runs at most one tick more at full speed.
    ticks: u32,
    /// The next tick comes right after a pause (the epoch moved on while the
    /// call waited): it is not a tick of running.
    after_pause: bool,
}

impl CallClock {
    pub(super) fn start(deadline: Duration, pacing_after: Option<Duration>) -> Self {
        CallClock { started: Instant::now(), deadline, pacing_after, ticks: 0, after_pause: false }
    }

    /// Takes `waited` (spent in a host call, a store's) off the call's
    /// time: the deadline bounds the plugin's own time.
    pub(super) fn excuse(&mut self, waited: Duration) {
        self.started += waited;
    }

    /// What the call does at an epoch tick.
    pub(super) fn on_tick(&mut self) -> UpdateDeadline {
        let elapsed = self.started.elapsed();
        if elapsed >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        if std::mem::take(&mut self.after_pause) {
            return UpdateDeadline::Continue(1);
        }
        self.ticks += 1;
        let ran = super::EPOCH_TICK * self.ticks.saturating_sub(1);
        match self.pacing_after {
            Some(slice) if ran > slice => {
                self.after_pause = true;
                pause(PACED_PAUSE.min(self.deadline - elapsed))
            }
            _ => UpdateDeadline::Yield(1),
        }
    }
}

/// A pause of a paced call: a timer on the runtime, so the worker serves
/// other requests meanwhile. A call driven outside the runtime (a job's
/// batch on its own thread) sleeps its thread, which serves nothing else.
fn pause(length: Duration) -> UpdateDeadline {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(length))),
        Err(_) => {
            std::thread::sleep(length);
            UpdateDeadline::Continue(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_past_its_deadline_is_interrupted() {
        let mut clock = CallClock::start(Duration::from_millis(5), Some(DEFAULT_PACING_AFTER));
        std::thread::sleep(Duration::from_millis(10));
        assert!(matches!(clock.on_tick(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn a_call_yields_at_each_tick_and_is_paced_once_it_ran_past_its_slice() {
        let mut clock = CallClock::start(Duration::from_secs(10), Some(DEFAULT_PACING_AFTER));
        let slice_ticks = (DEFAULT_PACING_AFTER.as_millis() / super::super::EPOCH_TICK.as_millis()) as usize;
        for tick in 0..=slice_ticks {
            assert!(matches!(clock.on_tick(), UpdateDeadline::Yield(1)), "tick {tick}: within its slice, a call only yields");
        }
        let started = Instant::now();
        assert!(matches!(clock.on_tick(), UpdateDeadline::Continue(1)), "outside a runtime, a paced call sleeps its thread");
        assert!(started.elapsed() >= PACED_PAUSE, "a call past its CPU slice pauses");
        assert!(matches!(clock.on_tick(), UpdateDeadline::Continue(1)), "the tick right after a pause is not counted as running");
    }

    #[test]
    fn a_call_never_paced_only_yields() {
        let mut clock = CallClock::start(Duration::from_secs(10), None);
        for _ in 0..100 {
            assert!(matches!(clock.on_tick(), UpdateDeadline::Yield(1)));
        }
    }
}
