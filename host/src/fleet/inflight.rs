//! Which accounts have note requests running in this process, and which are
//! frozen by a flip in progress.
//!
//! A request enters (counts itself) *before* it reads the flag and leaves when
//! its answer is computed. So when the watcher has seen a flip pending and
//! then sees an account's count at zero, no request of this process still
//! runs under the old value: those that read it have left, and any that
//! enter later read the flag after the flip was written and see it pending.
//! Freezing only keeps new arrivals from entering at all, so the count drains.
//!
//! The same count caps how many requests one account may run at once in this
//! process: one account whose plugin calls loop cannot take every thread.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use uuid::Uuid;

/// Independent locks, so requests for different accounts rarely contend.
const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct InFlight {
    shards: [Shard; SHARDS],
}

#[derive(Default)]
struct Shard {
    accounts: Mutex<HashMap<Uuid, Entry>>,
    /// Notified when an account thaws.
    thawed: Condvar,
}

#[derive(Default)]
struct Entry {
    running: u32,
    frozen: bool,
}

/// Why a request did not enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotEntered {
    /// The account is frozen by a flip in progress.
    Frozen,
    /// The account already runs its maximum of requests here.
    Saturated { running: u32 },
}

/// A request counted as running for its account; leaves on drop.
pub(crate) struct Entered<'a> {
    tracker: &'a InFlight,
    account: Uuid,
}

impl InFlight {
    fn shard(&self, account: &Uuid) -> &Shard {
        // v4 ids are random in their low bits.
        &self.shards[(account.as_u128() % SHARDS as u128) as usize]
    }

    fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        shard.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request for `account`, at once or not at all: refused while
    /// the account is frozen (the caller waits with [`InFlight::wait_for_thaw`]
    /// or a timer, and tries again), and if it already runs `max_running`.
    pub(crate) fn enter(&self, account: Uuid, max_running: u32) -> Result<Entered<'_>, NotEntered> {
        let mut map = Self::lock(self.shard(&account));
        let entry = map.entry(account).or_default();
        if entry.frozen {
            return Err(NotEntered::Frozen);
        }
        if entry.running >= max_running {
            return Err(NotEntered::Saturated { running: entry.running });
        }
        entry.running += 1;
        Ok(Entered { tracker: self, account })
    }

    /// Waits until `account` thaws or `timeout` passes, whichever is first.
    pub(crate) fn wait_for_thaw(&self, account: Uuid, timeout: Duration) {
        let shard = self.shard(&account);
        let map = Self::lock(shard);
        if map.get(&account).is_some_and(|e| e.frozen) {
            drop(shard.thawed.wait_timeout(map, timeout));
        } else {
            drop(map);
            // Not frozen here yet (the watcher has not seen the flip): poll.
            std::thread::sleep(timeout.min(Duration::from_micros(500)));
        }
    }

    pub(crate) fn freeze(&self, account: Uuid) {
        Self::lock(self.shard(&account)).entry(account).or_default().frozen = true;
    }

    pub(crate) fn thaw(&self, account: Uuid) {
        let shard = self.shard(&account);
        let mut map = Self::lock(shard);
        if let Some(entry) = map.get_mut(&account) {
            entry.frozen = false;
            if entry.running == 0 {
                map.remove(&account);
            }
        }
        shard.thawed.notify_all();
    }

    /// Requests for `account` running in this process now.
    pub(crate) fn running(&self, account: Uuid) -> u32 {
        Self::lock(self.shard(&account)).get(&account).map_or(0, |e| e.running)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut map = InFlight::lock(self.tracker.shard(&self.account));
        if let Some(entry) = map.get_mut(&self.account) {
            entry.running -= 1;
            if entry.running == 0 && !entry.frozen {
                map.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_account_admits_no_new_request_and_its_running_ones_drain() {
        let tracker = InFlight::default();
        let a = Uuid::new_v4();
        let first = tracker.enter(a, 8).unwrap();
        tracker.freeze(a);
        assert_eq!(tracker.running(a), 1, "the request that entered before the freeze still counts");
        assert_eq!(tracker.enter(a, 8).err(), Some(NotEntered::Frozen), "no new request while frozen");
        assert!(tracker.enter(Uuid::new_v4(), 8).is_ok(), "other accounts are not slowed");
        drop(first);
        assert_eq!(tracker.running(a), 0);
        tracker.thaw(a);
        assert!(tracker.enter(a, 8).is_ok());
    }

    #[test]
    fn an_account_at_its_maximum_is_refused_at_once_and_others_are_not() {
        let tracker = InFlight::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let running: Vec<_> = (0..3).map(|_| tracker.enter(a, 3).unwrap()).collect();
        assert_eq!(tracker.enter(a, 3).err(), Some(NotEntered::Saturated { running: 3 }));
        assert!(tracker.enter(b, 3).is_ok(), "another account still enters");
        drop(running);
        assert!(tracker.enter(a, 3).is_ok(), "a slot freed: the account enters again");
    }

    #[test]
    fn a_waiting_request_enters_as_soon_as_the_account_thaws() {
        let tracker = std::sync::Arc::new(InFlight::default());
        let a = Uuid::new_v4();
        tracker.freeze(a);
        let waiter = {
            let tracker = tracker.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                tracker.wait_for_thaw(a, Duration::from_secs(5));
                started.elapsed() < Duration::from_secs(4) && tracker.enter(a, 8).is_ok()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        tracker.thaw(a);
        assert!(waiter.join().unwrap());
    }
}
