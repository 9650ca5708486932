//! Opening SQLite databases: the one place that knows file-level settings
//! (WAL, durability, lock waits) and the connection pool.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use r2d2_sqlite::SqliteConnectionManager;

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

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
pub fn open(path: &Path, max_connections: u32, schema: &str) -> anyhow::Result<Pool> {
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
        .build(manager)
        .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    pool.get()?.execute_batch(schema).with_context(|| format!("cannot create the schema in {}", path.display()))?;
    Ok(pool)
}

/// True if the error means "the database could not be reached right now"
/// (locked, I/O, cannot open), as opposed to a bug or bad data.
pub fn is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull | FileLockingProtocolFailed)
    )
}
