//! Which accounts have note requests running in this process, which are
//! frozen by a flip in progress, and the flags this process last read.
//!
//! A request enters (counts itself) *before* it reads the flag and leaves when
//! its answer is computed. So when the watcher has seen a flip pending and
//! then sees an account's count at zero, no request of this process still
//! runs under the old value: those that read it have left, and any that
//! enter later read the flag after the flip was written and see it pending.
//! Freezing only keeps new arrivals from entering at all, so the count drains.
//!
//! **Known flags.** A flag read with no flip pending is kept here, and the
//! next request of the account enters with it instead of reading the
//! coordination state again (a flag read was 15% of a GET's CPU on SQLite,
//! and a round trip on PostgreSQL). It stays true because a flag only
//! changes through a flip that this host drains: the watcher freezes the
//! account before it acknowledges, freezing forgets the known flag, and
//! nothing is remembered while the account is frozen (both under the
//! shard's lock). A host the fleet skipped (its lease lapsed) forgets every
//! known flag before it serves again ([`InFlight::forget_all`]): each known
//! flag carries the generation it was read in. So does the watcher whenever
//! the coordination state changed at all (a heartbeat, a hand-made edit, a
//! restore, a damaged table): such a change is seen within the watcher's
//! poll, and the next request reads the flag, failing closed if it cannot.
//!
//! The same count caps how many requests one account may run at once in this
//! process: one account whose plugin calls loop cannot take every thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use uuid::Uuid;

/// Independent locks, so requests for different accounts rarely contend.
const SHARDS: usize = 16;

/// Known flags kept per shard: 64k accounts in all (a few MiB), whatever
/// clients ask for. Past it an arbitrary one is forgotten, and its next
/// request reads the flag again.
const KNOWN_PER_SHARD: usize = 4096;

#[derive(Default)]
pub(crate) struct InFlight {
    shards: [Shard; SHARDS],
    /// Raised by [`InFlight::forget_all`]: a known flag of an older
    /// generation is not used.
    generation: AtomicU64,
}

#[derive(Default)]
struct Shard {
    state: Mutex<ShardState>,
    /// Notified when an account thaws.
    thawed: Condvar,
}

#[derive(Default)]
struct ShardState {
    running: HashMap<Uuid, Entry>,
    known: HashMap<Uuid, Known>,
}

#[derive(Default)]
struct Entry {
    running: u32,
    frozen: bool,
}

/// An account's flag as this process last read it, with no flip pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownFlag {
    pub is_migrating: bool,
    pub epoch: i64,
}

struct Known {
    flag: KnownFlag,
    generation: u64,
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
    /// The account's flag, if this process knows it (see the module doc).
    pub known: Option<KnownFlag>,
}

impl InFlight {
    fn shard(&self, account: &Uuid) -> &Shard {
        // v4 ids are random in their low bits.
        &self.shards[(account.as_u128() % SHARDS as u128) as usize]
    }

    fn lock(shard: &Shard) -> MutexGuard<'_, ShardState> {
        shard.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request for `account`, at once or not at all: refused while
    /// the account is frozen (the caller waits with [`InFlight::wait_for_thaw`]
    /// or a timer, and tries again), and if it already runs `max_running`.
    pub(crate) fn enter(&self, account: Uuid, max_running: u32) -> Result<Entered<'_>, NotEntered> {
        let generation = self.generation();
        let mut state = Self::lock(self.shard(&account));
        let entry = state.running.entry(account).or_default();
        if entry.frozen {
            return Err(NotEntered::Frozen);
        }
        if entry.running >= max_running {
            return Err(NotEntered::Saturated { running: entry.running });
        }
        entry.running += 1;
        let known = state.known.get(&account).filter(|k| k.generation == generation).map(|k| k.flag);
        Ok(Entered { tracker: self, account, known })
    }

    /// The generation a flag read starts in: read it before the read, and
    /// pass it to [`InFlight::remember`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `flag`, read in `generation` with no flip pending, for the
    /// account's next requests; unless the account froze meanwhile (a flip
    /// was announced after the read, and the flag may be about to change).
    pub(crate) fn remember(&self, account: Uuid, flag: KnownFlag, generation: u64) {
        let mut state = Self::lock(self.shard(&account));
        if state.running.get(&account).is_some_and(|e| e.frozen) || generation != self.generation() {
            return;
        }
        if state.known.len() >= KNOWN_PER_SHARD && !state.known.contains_key(&account) {
            if let Some(evicted) = state.known.keys().next().copied() {
                state.known.remove(&evicted);
            }
        }
        state.known.insert(account, Known { flag, generation });
    }

    /// Forgets every known flag: this host was skipped by the fleet (its
    /// lease lapsed), and flips may have gone on without it.
    pub(crate) fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            Self::lock(shard).known.clear();
        }
    }

    /// Waits until `account` thaws or `timeout` passes, whichever is first.
    pub(crate) fn wait_for_thaw(&self, account: Uuid, timeout: Duration) {
        let shard = self.shard(&account);
        let state = Self::lock(shard);
        if state.running.get(&account).is_some_and(|e| e.frozen) {
            drop(shard.thawed.wait_timeout(state, timeout));
        } else {
            drop(state);
            // Not frozen here yet (the watcher has not seen the flip): poll.
            std::thread::sleep(timeout.min(Duration::from_micros(500)));
        }
    }

    /// Freezes `account` for a flip, and forgets its known flag: the flip
    /// may change it.
    pub(crate) fn freeze(&self, account: Uuid) {
        let mut state = Self::lock(self.shard(&account));
        state.running.entry(account).or_default().frozen = true;
        state.known.remove(&account);
    }

    pub(crate) fn thaw(&self, account: Uuid) {
        let shard = self.shard(&account);
        let mut state = Self::lock(shard);
        if let Some(entry) = state.running.get_mut(&account) {
            entry.frozen = false;
            if entry.running == 0 {
                state.running.remove(&account);
            }
        }
        shard.thawed.notify_all();
    }

    /// Requests for `account` running in this process now.
    pub(crate) fn running(&self, account: Uuid) -> u32 {
        Self::lock(self.shard(&account)).running.get(&account).map_or(0, |e| e.running)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut state = InFlight::lock(self.tracker.shard(&self.account));
        if let Some(entry) = state.running.get_mut(&self.account) {
            entry.running -= 1;
            if entry.running == 0 && !entry.frozen {
                state.running.remove(&self.account);
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
    fn a_known_flag_is_forgotten_when_a_flip_freezes_the_account_and_never_learnt_while_frozen() {
        let tracker = InFlight::default();
        let a = Uuid::new_v4();
        let on = KnownFlag { is_migrating: true, epoch: 3 };
        assert_eq!(tracker.enter(a, 8).unwrap().known, None, "nothing known before a read");
        tracker.remember(a, on, tracker.generation());
        assert_eq!(tracker.enter(a, 8).unwrap().known, Some(on), "the next request enters with the flag read before");
        let read_before_the_flip = tracker.generation();
        tracker.freeze(a);
        tracker.remember(a, on, read_before_the_flip);
        tracker.thaw(a);
        assert_eq!(tracker.enter(a, 8).unwrap().known, None, "a flip's freeze forgot it, and a read from before the flip is not kept");
    }

    #[test]
    fn a_host_skipped_by_the_fleet_forgets_every_flag_it_knew() {
        let tracker = InFlight::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let flag = KnownFlag { is_migrating: false, epoch: 1 };
        let before = tracker.generation();
        tracker.remember(a, flag, before);
        tracker.forget_all();
        tracker.remember(b, flag, before);
        assert_eq!(tracker.enter(a, 8).unwrap().known, None);
        assert_eq!(tracker.enter(b, 8).unwrap().known, None, "a read that began before the lapse is not kept after it");
    }

    #[test]
    fn known_flags_stay_bounded_whatever_accounts_are_asked_for() {
        let tracker = InFlight::default();
        let flag = KnownFlag { is_migrating: false, epoch: 0 };
        for _ in 0..SHARDS * KNOWN_PER_SHARD * 2 {
            tracker.remember(Uuid::new_v4(), flag, 0);
        }
        let kept: usize = tracker.shards.iter().map(|s| InFlight::lock(s).known.len()).sum();
        assert!(kept <= SHARDS * KNOWN_PER_SHARD, "{kept} flags kept");
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
