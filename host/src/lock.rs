//! Locking a `Mutex` whose holder panicked: the data behind these locks is
//! valid between statements (queues, maps of turns, in-memory rows), so a
//! panic elsewhere must not take every later request down with it.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
