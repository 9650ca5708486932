//! How long a plugin call may run, and how much CPU it may take while it runs.
//!
//! Every running call is looked at on each epoch tick (10 ms):
//! - past its **deadline** (wall clock, from the moment its instance was
//!   made), it is stopped: `Trap::Interrupt`, HTTP 503;
//! - once it has used more than its CPU slice (`--plugin-pacing-after-ms`,
//!   default [`DEFAULT_PACING_AFTER`]) on its thread, it is **paced**: it
//!   sleeps [`PACED_PAUSE`] per tick it runs, so for the rest of its deadline
//!   it takes about 5% of one core. An honest call (a list of 100k ids costs
//!   about 35 ms of CPU) never gets there; a looping one gets there quickly,
//!   and then leaves the cores to other requests.
//!
//! Pacing is what keeps other accounts served while one account's calls loop:
//! the per-account request cap bounds how many such calls run, pacing bounds
//! what each of them costs (BENCHMARKS.md, "Fairness").

use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// CPU a call may use at full speed before it is paced, by default.
pub const DEFAULT_PACING_AFTER: Duration = Duration::from_millis(50);
/// A paced call sleeps this long per tick it runs (a tick is 10 ms): ~5% of a core.
pub const PACED_PAUSE: Duration = Duration::from_millis(190);

/// The clock of the call in progress.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    started: Instant,
    deadline: Duration,
    /// `None`: never paced.
    pacing_after: Option<Duration>,
    /// The thread's CPU clock at the call's first tick. Read then, not at the
    /// start: the thread CPU clock is a real system call (~1 µs here), and
    /// most calls end before their first tick. The slice is counted from the
    /// first tick, so a call may run at most one tick (10 ms) more at full
    /// speed.
    cpu_at_first_tick: Option<Duration>,
}

impl CallClock {
    pub fn start(deadline: Duration, pacing_after: Option<Duration>) -> Self {
        CallClock { started: Instant::now(), deadline, pacing_after, cpu_at_first_tick: None }
    }

    /// What the call does at an epoch tick.
    pub fn on_tick(&mut self) -> UpdateDeadline {
        let elapsed = self.started.elapsed();
        if elapsed >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        if let Some(slice) = self.pacing_after {
            let now = thread_cpu_time();
            let first = *self.cpu_at_first_tick.get_or_insert(now);
            if now.saturating_sub(first) > slice {
                std::thread::sleep(PACED_PAUSE.min(self.deadline - elapsed));
            }
        }
        UpdateDeadline::Continue(1)
    }
}

/// CPU time this thread has used (a call runs on one thread from start to end).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write to; CLOCK_THREAD_CPUTIME_ID
    // exists on every Linux and macOS.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO; // no clock: never paced, still stopped at the deadline
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
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
    fn a_call_that_burned_its_cpu_slice_is_paced_and_a_short_one_is_not() {
        let mut clock = CallClock::start(Duration::from_secs(10), Some(DEFAULT_PACING_AFTER));
        let started = Instant::now();
        assert!(matches!(clock.on_tick(), UpdateDeadline::Continue(1)));
        assert!(started.elapsed() < PACED_PAUSE, "a call that used little CPU runs on at once");
        let first = clock.cpu_at_first_tick.expect("read at the first tick");
        let spin = Instant::now();
        while thread_cpu_time().saturating_sub(first) <= DEFAULT_PACING_AFTER && spin.elapsed() < Duration::from_secs(5) {
            std::hint::black_box(0u64);
        }
        let paused = Instant::now();
        assert!(matches!(clock.on_tick(), UpdateDeadline::Continue(1)));
        assert!(paused.elapsed() >= PACED_PAUSE, "a call past its CPU slice sleeps at each tick");
    }
}
