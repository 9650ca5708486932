//! Is the active plugin healthy? Two watches over the outcomes of its calls
//! (a failure is a trap, a deadline, fuel or a limit: the plugin's fault, not
//! a busy host):
//!
//! - **probation**: a newly activated plugin that fails more than a share of
//!   its first requests;
//! - **circuit breaker**: any plugin, for its whole life, whose failures in a
//!   block of requests go over a share.
//!
//! Either one trips once; `app` then rolls the plugin back, or suspends it
//! when there is nothing to roll back to.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Automatic rollback of a new plugin: more than `max_failure_share` of its
/// first `requests` requests failed.
#[derive(Debug, Clone, Copy)]
pub struct ProbationConfig {
    pub requests: u32,
    pub max_failure_share: f64,
}

impl Default for ProbationConfig {
    fn default() -> Self {
        ProbationConfig { requests: 20, max_failure_share: 0.25 }
    }
}

/// The continuous watch: counted in consecutive blocks of `requests`; a block
/// with more than `max_failure_share` failures trips it.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub requests: u32,
    pub max_failure_share: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { requests: 100, max_failure_share: 0.5 }
    }
}

/// Why a watch tripped, in words for the log and the activation history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped(pub String);

pub struct PluginHealth {
    probation: Option<Window>,
    breaker: Window,
    tripped: AtomicBool,
}

struct Window {
    size: u32,
    max_failures: u32,
    seen: AtomicU32,
    failed: AtomicU32,
}

impl Window {
    fn new(size: u32, share: f64) -> Self {
        Window { size: size.max(1), max_failures: (f64::from(size) * share).floor() as u32, seen: 0.into(), failed: 0.into() }
    }
}

impl PluginHealth {
    /// A newly activated plugin: on probation, and watched by the breaker.
    pub fn on_probation(probation: ProbationConfig, breaker: BreakerConfig) -> Self {
        PluginHealth {
            probation: (probation.requests > 0).then(|| Window::new(probation.requests, probation.max_failure_share)),
            ..Self::proven(breaker)
        }
    }

    /// A plugin that was already active (at startup): only the breaker.
    pub fn proven(breaker: BreakerConfig) -> Self {
        PluginHealth { probation: None, breaker: Window::new(breaker.requests, breaker.max_failure_share), tripped: false.into() }
    }

    /// Counts one call; `Some` exactly once, when a watch trips.
    pub fn record(&self, failed: bool) -> Option<Tripped> {
        let verdict = self.probation(failed).or_else(|| self.breaker(failed))?;
        (!self.tripped.swap(true, Ordering::AcqRel)).then_some(verdict)
    }

    fn probation(&self, failed: bool) -> Option<Tripped> {
        let p = self.probation.as_ref()?;
        // On the hot path of every request: after the window, only a load.
        if p.seen.load(Ordering::Relaxed) >= p.size || p.seen.fetch_add(1, Ordering::Relaxed) >= p.size || !failed {
            return None;
        }
        let failures = p.failed.fetch_add(1, Ordering::Relaxed) + 1;
        (failures > p.max_failures).then(|| {
            Tripped(format!("failed {failures} of its first {} requests (probation allows {})", p.size, p.max_failures))
        })
    }

    fn breaker(&self, failed: bool) -> Option<Tripped> {
        let b = &self.breaker;
        if failed {
            b.failed.fetch_add(1, Ordering::Relaxed);
        }
        if b.seen.fetch_add(1, Ordering::Relaxed) + 1 != b.size {
            return None;
        }
        // The request that completes a block judges it and starts the next.
        let failures = b.failed.swap(0, Ordering::Relaxed);
        b.seen.store(0, Ordering::Relaxed);
        (failures > b.max_failures).then(|| {
            Tripped(format!("circuit breaker: failed {failures} of {} requests in a row (at most {} allowed)", b.size, b.max_failures))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBATION: ProbationConfig = ProbationConfig { requests: 20, max_failure_share: 0.25 };
    const BREAKER: BreakerConfig = BreakerConfig { requests: 10, max_failure_share: 0.5 };

    #[test]
    fn probation_trips_once_when_failures_pass_the_share_of_the_first_requests() {
        let health = PluginHealth::on_probation(PROBATION, BreakerConfig { requests: 1000, ..BREAKER });
        let verdicts: Vec<_> = (0..20).filter_map(|i| health.record(i % 2 == 0)).collect();
        assert_eq!(verdicts.len(), 1, "trips exactly once");
        assert!(verdicts[0].0.contains("failed 6 of its first 20"), "{:?}", verdicts[0]);
    }

    #[test]
    fn after_probation_the_breaker_still_trips_a_plugin_that_starts_failing() {
        let health = PluginHealth::on_probation(PROBATION, BREAKER);
        assert!((0..200).all(|_| health.record(false).is_none()), "a healthy plugin never trips");
        let tripped = (0..10).find_map(|_| health.record(true)).expect("ten failures in a block of ten trip the breaker");
        assert!(tripped.0.contains("circuit breaker"), "{tripped:?}");
    }

    #[test]
    fn failures_at_or_under_the_share_never_trip_the_breaker() {
        let health = PluginHealth::proven(BREAKER);
        assert!((0..1000).all(|i| health.record(i % 2 == 0).is_none()), "5 of 10 is not more than half");
    }
}
