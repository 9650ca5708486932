//! One writer at a time per note, in this host.
//!
//! A write of a note is a compare-and-set on its version inside the
//! plugin: of two that race, one is refused, re-reads and retries, and
//! after a few rounds the plugin gives up (409 "kept changing"). A `PUT`
//! without `If-Match` must not fail because others write the same note, so
//! the host queues each note's writers here, before the plugin call, and
//! lets one through at a time: they never race, and none retries. Writers
//! on other hosts of a fleet still race, and retry as before.
//!
//! Keyed by the exact (account, note), not by stripes: a looping plugin
//! holding a note's turn until its deadline then holds up only that note's
//! writers, never another account's. A waiter gives up after `wait` (503,
//! retry), so a turn held by a stuck call does not queue requests forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::lock::lock;

type Key = (Uuid, Uuid);

/// Each note's turn is a semaphore of one permit: a waiter waits on the
/// request's task (a timer and a wake-up), not on a thread.
#[derive(Default)]
pub(super) struct NoteTurns {
    notes: Mutex<HashMap<Key, Arc<Semaphore>>>,
}

/// A note's turn, given back when dropped.
pub(super) struct NoteTurn<'a> {
    turns: &'a NoteTurns,
    key: Key,
    /// `None` only while being dropped.
    permit: Option<OwnedSemaphorePermit>,
}

impl NoteTurns {
    /// Waits for the note's turn, at most `wait`; `None` if it did not come.
    pub(super) async fn take(&self, account: Uuid, note: Uuid, wait: Duration) -> Option<NoteTurn<'_>> {
        let key = (account, note);
        let turn = lock(&self.notes).entry(key).or_insert_with(|| Arc::new(Semaphore::new(1))).clone();
        match tokio::time::timeout(wait, turn.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                drop(turn);
                Some(NoteTurn { turns: self, key, permit: Some(permit) })
            }
            // Timed out (the semaphore is never closed).
            _ => {
                self.leave(key, turn);
                None
            }
        }
    }

    /// Notes whose turn someone holds or waits for.
    #[cfg(test)]
    fn entries(&self) -> usize {
        lock(&self.notes).len()
    }

    /// Gives up the caller's share of the note's entry, and drops the entry
    /// if no other request holds or waits for its turn. Both under the
    /// map's lock, where every share is also taken: of two leaving at once,
    /// the second sees only the map's share and removes it. (A holder's
    /// share is its permit, which holds the semaphore.)
    fn leave(&self, key: Key, turn: Arc<Semaphore>) {
        let mut notes = lock(&self.notes);
        drop(turn);
        if notes.get(&key).is_some_and(|t| Arc::strong_count(t) == 1) {
            notes.remove(&key);
        }
    }
}

impl Drop for NoteTurn<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let turn = permit.semaphore().clone();
        drop(permit);
        self.turns.leave(self.key, turn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_of_a_note_at_a_time_and_other_notes_go_on() {
        let turns = NoteTurns::default();
        let (a, n, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let held = turns.take(a, n, Duration::ZERO).await.unwrap();
        assert!(turns.take(a, n, Duration::from_millis(20)).await.is_none(), "the note's turn is taken");
        assert!(turns.take(a, m, Duration::ZERO).await.is_some(), "another note's is free");
        assert!(turns.take(Uuid::new_v4(), n, Duration::ZERO).await.is_some(), "the same note id in another account too");
        drop(held);
        assert!(turns.take(a, n, Duration::ZERO).await.is_some(), "given back when dropped");
        assert_eq!(turns.entries(), 0, "no entry outlives its last holder or waiter");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_are_let_through_one_at_a_time() {
        let turns = Arc::new(NoteTurns::default());
        let (a, n) = (Uuid::new_v4(), Uuid::new_v4());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (turns, inside) = (turns.clone(), inside.clone());
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let _turn = turns.take(a, n, Duration::from_secs(10)).await.unwrap();
                        assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0, "alone in the note's turn");
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(turns.entries(), 0);
    }
}
