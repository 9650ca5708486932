//! Opening SQLite databases: the one place that knows file-level settings
//! (WAL, durability, lock waits) and the connection pool.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use r2d2_sqlite::SqliteConnectionManager;

pub(crate) type Pool = r2d2::Pool<SqliteConnectionManager>;
pub(crate) type Pooled = r2d2::PooledConnection<SqliteConnectionManager>;

/// A `BEGIN IMMEDIATE` transaction on an owned pooled connection: held
/// across calls and awaits where a `rusqlite::Transaction`, which borrows
/// its connection, cannot be (a store's batch, a write that waits on a
/// store plugin). Rolled back if dropped uncommitted, so the connection goes
/// back to the pool without a transaction left open.
pub(crate) struct Immediate {
    conn: Pooled,
    open: bool,
}

impl Immediate {
    pub(crate) fn begin(conn: Pooled) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Immediate { conn, open: true })
    }

    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Immediate {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// How long a statement waits for another connection's write lock before
/// failing with SQLITE_BUSY (which the host reports as 503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the database at `path` and applies `schema`.
///
/// WAL lets readers run beside a writer, including writers in other host
/// processes on the same files. `synchronous = FULL` makes every
/// acknowledged write survive power loss, not only a process crash.
pub(crate) fn open(path: &Path, max_connections: u32, schema: &str) -> anyhow::Result<Pool> {
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        c.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        debug_assert_eq!(mode, "wal");
        c.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
    });
    let pool = r2d2::Pool::builder()
        .max_size(max_connections)
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        // A file connection does not go stale: no probe statement per
        // checkout (it was 5% of a GET's CPU).
        .test_on_check_out(false)
        .build(manager)
        .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    pool.get()?.execute_batch(schema).with_context(|| format!("cannot create the schema in {}", path.display()))?;
    Ok(pool)
}

/// SQLite's memory, all connections of the process together, when nothing
/// is given (`--sqlite-cache-mib`).
pub const DEFAULT_CACHE_BYTES: i64 = 8 << 20;

/// Caps the memory SQLite keeps, over every connection of this process.
///
/// Each pooled connection has its own page cache (2 MB by default), and
/// pools hold 4–8 connections per file: a burst of big lists left 44 MB of
/// page caches that stayed for good. Past this cap SQLite reuses its
/// least-recently-used cached pages instead of allocating more, so a burst
/// costs at most the cap. A page it dropped comes back from the kernel's
/// page cache on the next read (a `pread`, not a disk read, while the
/// machine has memory to spare). A soft limit: a statement that needs more
/// still runs.
pub(crate) fn cap_memory(bytes: i64) {
    // SAFETY: sqlite3_soft_heap_limit64 is thread-safe and only sets a
    // process-wide threshold.
    unsafe {
        rusqlite::ffi::sqlite3_soft_heap_limit64(bytes);
    }
}

/// True if the error means "the database could not be reached right now"
/// (locked, I/O, cannot open), as opposed to a bug or bad data.
pub(crate) fn is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull | FileLockingProtocolFailed)
    )
}
