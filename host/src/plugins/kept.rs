//! Instances kept per account (`Instances::PerAccount`): an instance that
//! served an account waits here for that account's next request, and only
//! that account's. It is dropped once it served its `max_requests` or is
//! `max_seconds` old, and never comes back after a trap or a limit (the
//! caller does not return it). Memory stays bounded: at most `cap`
//! instances wait in all, and the oldest gives way to a newer one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One waiting instance, with what it has served so far.
pub(super) struct Kept<T> {
    pub instance: T,
    pub born: Instant,
    pub served: u32,
}

/// The bounds of one instance's life.
#[derive(Debug, Clone, Copy)]
pub(super) struct Life {
    pub max_requests: u32,
    pub max_age: Duration,
}

impl Life {
    fn over<T>(&self, kept: &Kept<T>) -> bool {
        kept.served >= self.max_requests || kept.born.elapsed() >= self.max_age
    }
}

pub(super) struct PerAccount<T> {
    waiting: Mutex<Waiting<T>>,
    cap: usize,
}

struct Waiting<T> {
    by_account: HashMap<String, Vec<Kept<T>>>,
    count: usize,
}

impl<T> PerAccount<T> {
    pub(super) fn new(cap: usize) -> Self {
        PerAccount { waiting: Mutex::new(Waiting { by_account: HashMap::new(), count: 0 }), cap: cap.max(1) }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting<T>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An instance that served `account` before and may serve it again.
    pub(super) fn take(&self, account: &str, life: Life) -> Option<Kept<T>> {
        let mut dropped = Vec::new();
        let found = {
            let mut waiting = self.waiting();
            let mut found = None;
            if let Some(kept) = waiting.by_account.get_mut(account) {
                while let Some(candidate) = kept.pop() {
                    if life.over(&candidate) {
                        dropped.push(candidate);
                    } else {
                        found = Some(candidate);
                        break;
                    }
                }
                if kept.is_empty() {
                    waiting.by_account.remove(account);
                }
            }
            waiting.count -= dropped.len() + usize::from(found.is_some());
            found
        };
        // Instances are dropped (their memory returned to the pool) outside the lock.
        drop(dropped);
        found
    }

    /// Keeps an instance that just served `account` for its next request,
    /// unless its life is over. Makes room by dropping instances whose life
    /// is over, else the oldest.
    pub(super) fn put(&self, account: &str, kept: Kept<T>, life: Life) {
        if life.over(&kept) {
            return;
        }
        let mut dropped = Vec::new();
        {
            let mut waiting = self.waiting();
            if waiting.count >= self.cap {
                for list in waiting.by_account.values_mut() {
                    let (over, live): (Vec<_>, Vec<_>) = list.drain(..).partition(|k| life.over(k));
                    *list = live;
                    dropped.extend(over);
                }
                if dropped.is_empty()
                    && let Some((oldest_account, index)) = waiting
                        .by_account
                        .iter()
                        .flat_map(|(account, list)| list.iter().enumerate().map(move |(i, k)| (k.born, account, i)))
                        .min_by_key(|(born, _, _)| *born)
                        .map(|(_, account, i)| (account.clone(), i))
                {
                    let list = waiting.by_account.get_mut(&oldest_account).expect("just found");
                    dropped.push(list.remove(index));
                }
                waiting.by_account.retain(|_, list| !list.is_empty());
                waiting.count -= dropped.len();
            }
            waiting.by_account.entry(account.to_owned()).or_default().push(kept);
            waiting.count += 1;
        }
        drop(dropped);
    }

    /// Drops every waiting instance (the mode changed).
    pub(super) fn clear(&self) {
        let all = {
            let mut waiting = self.waiting();
            waiting.count = 0;
            std::mem::take(&mut waiting.by_account)
        };
        drop(all);
    }

    /// Instances waiting, over all accounts.
    pub(super) fn len(&self) -> usize {
        self.waiting().count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Life = Life { max_requests: 100, max_age: Duration::from_secs(60) };

    fn kept(instance: u32) -> Kept<u32> {
        Kept { instance, born: Instant::now(), served: 1 }
    }

    #[test]
    fn an_instance_serves_only_the_account_it_served() {
        let pool = PerAccount::new(8);
        pool.put("a", kept(1), LONG);
        assert!(pool.take("b", LONG).is_none(), "account b never gets a's instance");
        assert_eq!(pool.take("a", LONG).map(|k| k.instance), Some(1));
        assert!(pool.take("a", LONG).is_none(), "taken once");
    }

    #[test]
    fn an_instance_past_its_requests_or_age_is_dropped() {
        let pool = PerAccount::new(8);
        let life = Life { max_requests: 2, max_age: Duration::from_secs(60) };
        pool.put("a", Kept { instance: 1, born: Instant::now(), served: 2 }, life);
        assert_eq!(pool.len(), 0, "served its 2 requests");
        let young = Life { max_requests: 100, max_age: Duration::from_millis(20) };
        pool.put("a", kept(2), young);
        std::thread::sleep(Duration::from_millis(30));
        assert!(pool.take("a", young).is_none(), "too old to serve again");
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn at_the_cap_the_oldest_gives_way() {
        let pool = PerAccount::new(2);
        pool.put("a", kept(1), LONG);
        pool.put("b", kept(2), LONG);
        pool.put("c", kept(3), LONG);
        assert_eq!(pool.len(), 2);
        assert!(pool.take("a", LONG).is_none(), "the oldest was dropped");
        assert_eq!(pool.take("c", LONG).map(|k| k.instance), Some(3));
    }
}
