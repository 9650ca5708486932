//! Blocking calls made from wherever the caller runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block (a round trip to PostgreSQL, a database
/// write), where the caller is. On an async worker of the multi-thread
/// runtime, the worker's other tasks move to another thread meanwhile
/// (`block_in_place`), so no request waits behind `f`; and the blocking
/// `postgres` client, which runs a runtime of its own, may run there. On a
/// blocking thread, or outside tokio, `f` simply runs.
///
/// For calls that are rare on the request path (a flag not known yet, an
/// automatic rollback). A request's every-time calls await instead.
pub(crate) fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
