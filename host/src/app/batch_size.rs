//! How many notes one move batch hands the plugin.
//!
//! A batch is admitted like a note request and runs under the flag it read,
//! so a flip of the account waits for at most one batch; it is one plugin
//! call, under the plugin deadline and its CPU pacing. So a batch must be
//! short in time, not in notes: a note costs ~0.1 ms on the SQLite files and
//! ~1 ms on PostgreSQL (a round trip per statement), and the machine's speed
//! varies. Each batch's time sets the next one's size, aiming at
//! [`TARGET`]: multiplicative steps, at most doubling, within [`MIN`, `MAX`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What a batch should take.
pub(super) const TARGET: Duration = Duration::from_millis(50);
pub(super) const MIN: usize = 8;
/// The most notes one batch takes: its ids are read in one statement and
/// handed to the plugin in one call.
pub(super) const MAX: usize = 512;
/// Where a host starts: small enough for a first batch on PostgreSQL to stay
/// well inside the plugin deadline and CPU slice.
pub const FIRST: usize = 64;

pub(super) struct BatchSize(AtomicUsize);

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize(AtomicUsize::new(FIRST))
    }
}

impl BatchSize {
    /// The size of the next batch.
    pub(super) fn next(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// A batch of `notes` took `took`.
    pub(super) fn record(&self, notes: usize, took: Duration) {
        if notes == 0 {
            return;
        }
        let per_note = took.as_secs_f64() / notes as f64;
        let fits = if per_note > 0.0 { (TARGET.as_secs_f64() / per_note) as usize } else { MAX };
        let current = self.next();
        // A short batch (the account's last notes) says little about a full one.
        let measured = if notes < current / 2 { fits.min(current) } else { fits };
        self.0.store(measured.clamp(MIN, current.saturating_mul(2).clamp(MIN, MAX)), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_while_fast_shrink_when_slow_and_stay_in_bounds() {
        let size = BatchSize::default();
        assert_eq!(size.next(), FIRST);
        // 0.05 ms a note: grows, doubling at most, up to MAX.
        for _ in 0..10 {
            size.record(size.next(), Duration::from_micros(50) * size.next() as u32);
        }
        assert_eq!(size.next(), MAX);
        // 1 ms a note: about TARGET / 1 ms at once.
        size.record(MAX, Duration::from_millis(MAX as u64));
        assert_eq!(size.next(), 50);
        // Very slow: never below MIN.
        size.record(50, Duration::from_secs(5));
        assert_eq!(size.next(), MIN);
        // A short, fast tail batch does not grow it.
        size.record(2, Duration::from_micros(10));
        assert_eq!(size.next(), MIN);
    }
}
