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
//! when there is nothing to roll back to. Neither trips on one account's
//! failures alone while other accounts use the plugin.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

/// One watch: more than `max_failure_share` of `requests` requests failed.
/// Probation counts a new plugin's first `requests`; the breaker counts
/// consecutive blocks of `requests` for the plugin's whole life.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    pub requests: u32,
    pub max_failure_share: f64,
}

impl WatchConfig {
    pub const PROBATION: WatchConfig = WatchConfig { requests: 20, max_failure_share: 0.25 };
    pub const BREAKER: WatchConfig = WatchConfig { requests: 100, max_failure_share: 0.5 };
}

/// Why a watch tripped, in words for the log and the activation history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped(pub String);

pub struct PluginHealth {
    probation: Option<Window>,
    breaker: Window,
    tripped: AtomicBool,
}

/// A watch trips only on failures of several accounts (when several used the
/// plugin): one account whose own data or requests make every call fail
/// (a looping list, say) must not roll back or suspend the plugin for all.
const FAILING_ACCOUNTS_TO_TRIP: usize = 3;

struct Window {
    size: u32,
    max_failures: u32,
    /// Set once probation's window is over: the hot path then skips the lock.
    over: AtomicBool,
    block: Mutex<Block>,
}

#[derive(Default)]
struct Block {
    seen: u32,
    failed: u32,
    accounts: Few,
    failing: Few,
}

/// Up to [`FAILING_ACCOUNTS_TO_TRIP`] distinct accounts: enough to tell one
/// account from several.
#[derive(Default)]
struct Few([Option<Uuid>; FAILING_ACCOUNTS_TO_TRIP]);

impl Few {
    fn insert(&mut self, account: Uuid) {
        if self.0.contains(&Some(account)) {
            return;
        }
        if let Some(free) = self.0.iter_mut().find(|slot| slot.is_none()) {
            *free = Some(account);
        }
    }

    fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

impl Block {
    fn count(&mut self, account: Uuid, failed: bool) {
        self.seen += 1;
        self.accounts.insert(account);
        if failed {
            self.failed += 1;
            self.failing.insert(account);
        }
    }

    /// Over the allowance, from enough of the accounts that used the plugin.
    fn trips(&self, max_failures: u32) -> bool {
        self.failed > max_failures && self.failing.len() >= self.accounts.len().min(FAILING_ACCOUNTS_TO_TRIP)
    }
}

impl Window {
    fn new(size: u32, share: f64) -> Self {
        Window {
            size: size.max(1),
            max_failures: (f64::from(size) * share).floor() as u32,
            over: false.into(),
            block: Mutex::new(Block::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Block> {
        self.block.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PluginHealth {
    /// A newly activated plugin: on probation, and watched by the breaker.
    pub fn on_probation(probation: WatchConfig, breaker: WatchConfig) -> Self {
        PluginHealth {
            probation: (probation.requests > 0).then(|| Window::new(probation.requests, probation.max_failure_share)),
            ..Self::proven(breaker)
        }
    }

    /// A plugin that was already active (at startup): only the breaker.
    pub fn proven(breaker: WatchConfig) -> Self {
        PluginHealth { probation: None, breaker: Window::new(breaker.requests, breaker.max_failure_share), tripped: false.into() }
    }

    /// Counts one call of `account`; `Some` exactly once, when a watch trips.
    pub fn record(&self, account: Uuid, failed: bool) -> Option<Tripped> {
        let verdict = self.probation(account, failed).or_else(|| self.breaker(account, failed))?;
        (!self.tripped.swap(true, Ordering::AcqRel)).then_some(verdict)
    }

    fn probation(&self, account: Uuid, failed: bool) -> Option<Tripped> {
        let p = self.probation.as_ref()?;
        // On the hot path of every request: after the window, only a load.
        if p.over.load(Ordering::Relaxed) {
            return None;
        }
        let mut block = p.lock();
        if block.seen >= p.size {
            p.over.store(true, Ordering::Relaxed);
            return None;
        }
        block.count(account, failed);
        (failed && block.trips(p.max_failures)).then(|| {
            Tripped(format!(
                "failed {} of its first {} requests (probation allows {}), for {} account(s)",
                block.failed,
                p.size,
                p.max_failures,
                block.failing.len()
            ))
        })
    }

    fn breaker(&self, account: Uuid, failed: bool) -> Option<Tripped> {
        let b = &self.breaker;
        let mut block = b.lock();
        block.count(account, failed);
        if block.seen < b.size {
            return None;
        }
        // The request that completes a block judges it and starts the next.
        let judged = std::mem::take(&mut *block);
        judged.trips(b.max_failures).then(|| {
            Tripped(format!(
                "circuit breaker: failed {} of {} requests in a row (at most {} allowed), for {} account(s)",
                judged.failed,
                b.size,
                b.max_failures,
                judged.failing.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBATION: WatchConfig = WatchConfig::PROBATION;
    const BREAKER: WatchConfig = WatchConfig { requests: 10, max_failure_share: 0.5 };

    fn accounts(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn probation_trips_once_when_failures_pass_the_share_of_the_first_requests() {
        let health = PluginHealth::on_probation(PROBATION, WatchConfig { requests: 1000, ..BREAKER });
        let ids = accounts(4);
        // Three of the four accounts fail every time.
        let verdicts: Vec<_> = (0..20).filter_map(|i| health.record(ids[i % 4], i % 4 != 3)).collect();
        assert_eq!(verdicts.len(), 1, "trips exactly once");
        assert!(verdicts[0].0.contains("failed 6 of its first 20"), "{:?}", verdicts[0]);
    }

    #[test]
    fn after_probation_the_breaker_still_trips_a_plugin_that_starts_failing() {
        let health = PluginHealth::on_probation(PROBATION, BREAKER);
        let ids = accounts(5);
        assert!((0..200).all(|i| health.record(ids[i % 5], false).is_none()), "a healthy plugin never trips");
        let tripped = (0..10).find_map(|i| health.record(ids[i % 5], true)).expect("ten failures in a block of ten trip the breaker");
        assert!(tripped.0.contains("circuit breaker"), "{tripped:?}");
    }

    #[test]
    fn failures_at_or_under_the_share_never_trip_the_breaker() {
        let health = PluginHealth::proven(BREAKER);
        let ids = accounts(5);
        assert!((0..1000).all(|i| health.record(ids[i % 5], i % 2 == 0).is_none()), "5 of 10 is not more than half");
    }

    #[test]
    fn one_account_failing_among_others_never_trips_a_watch() {
        let health = PluginHealth::on_probation(PROBATION, BREAKER);
        let (bad, good) = (Uuid::new_v4(), accounts(3));
        // Nine of every ten requests are the bad account's, and all of them fail.
        let tripped = (0..1000).find_map(|i| if i % 10 == 0 { health.record(good[i % 3], false) } else { health.record(bad, true) });
        assert_eq!(tripped, None, "one account's failures must not roll the plugin back for everyone");
    }

    #[test]
    fn a_plugin_used_by_one_account_only_trips_on_that_accounts_failures() {
        let health = PluginHealth::proven(BREAKER);
        let only = Uuid::new_v4();
        assert!((0..10).find_map(|_| health.record(only, true)).is_some());
    }
}
