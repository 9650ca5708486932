//! [`VersionTable`]: the versions and tombstones the host keeps for a store
//! that keeps content only (a store plugin whose `keeps-versions` is false,
//! such as a legacy system behind its own API). One SQLite file per such
//! store, in the data dir.
//!
//! The safety argument (ARCHITECTURE.md, "A store that keeps no versions"):
//! every write to the store goes through [`VersionTable::write`], which holds
//! the file's write lock (one writer on the machine) from reading the
//! recorded version, through the store's own write, to recording the new
//! version. So a write lands in the store only if its version is above the
//! recorded one, exactly as the SQLite store's conditional statement does,
//! and a tombstone is recorded before any later write can look.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{StoreError, version_to_sql};
use crate::db::{self, Pool};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    account_id TEXT    NOT NULL,
    note_id    TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 0),
    deleted    INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    PRIMARY KEY (account_id, note_id)
) WITHOUT ROWID;
";

/// What the host recorded of a note: its version, and whether that version
/// is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub version: u64,
    pub deleted: bool,
}

pub struct VersionTable {
    pool: Pool,
    /// Beside the table: readers hold it shared and writers exclusive (an
    /// `flock`, so in every process of the data dir), so a read never sees
    /// the store's content mid-write, when the store already holds a
    /// write's content and the table not yet its version.
    lock_file: std::path::PathBuf,
    /// This process's writers queue here rather than in SQLite's busy
    /// handler; writers of other processes on the same file still meet it.
    writer: tokio::sync::Mutex<()>,
}

impl VersionTable {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut lock_file = path.as_os_str().to_owned();
        lock_file.push(".lock");
        Ok(VersionTable { pool: db::open(path, 4, SCHEMA)?, lock_file: lock_file.into(), writer: tokio::sync::Mutex::new(()) })
    }

    /// What is recorded for the note, if anything.
    pub fn recorded(&self, account_id: &str, note_id: &str) -> Result<Option<Recorded>, StoreError> {
        let conn = self.pool.get()?;
        Ok(read(&conn, account_id, note_id)?)
    }

    /// The account's ids recorded as deleted: a content-only store may
    /// still hold such a note (written there behind the host's back), and
    /// the host's tombstone wins.
    pub fn deleted_ids(&self, account_id: &str) -> Result<std::collections::HashSet<String>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT note_id FROM versions WHERE account_id = ?1 AND deleted = 1")?;
        let ids = stmt.query_map(params![account_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// One conditional write of the note. `step` is given what is recorded
    /// (`None`: never written through the host), writes the store if the
    /// write is to happen, and answers the row to record then (`None`: the
    /// write changes nothing). The row is recorded only if `step` succeeded.
    /// Holds the file's write lock throughout, so no other write of this
    /// store interleaves.
    pub async fn write<R>(
        &self,
        account_id: &str,
        note_id: &str,
        step: impl AsyncFnOnce(Option<Recorded>) -> Result<Option<(Recorded, R)>, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        let _turn = self.writer.lock().await;
        let _writing = self.lock(true).await?;
        let tx = self.begin().await?;
        let recorded = read(tx.conn(), account_id, note_id)?;
        let Some((row, answer)) = step(recorded).await? else { return Ok(None) };
        tx.conn().execute(
            "INSERT INTO versions (account_id, note_id, version, deleted) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, note_id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted",
            params![account_id, note_id, version_to_sql(row.version)?, row.deleted],
        )?;
        tx.commit()?;
        Ok(Some(answer))
    }
}

/// Held while a reader reads a note's row and the store's content: no write
/// of the store runs meanwhile (`VersionTable::reading`).
pub struct Reading(#[allow(dead_code)] std::fs::File);

impl VersionTable {
    /// A read of the store and the table that no write interleaves with.
    pub async fn reading(&self) -> Result<Reading, StoreError> {
        // Behind this process's waiting writers (a writer waits for the file
        // lock holding `writer`): readers arriving all the time cannot keep
        // a shared lock on the file forever and starve them.
        drop(self.writer.lock().await);
        Ok(Reading(self.lock(false).await?))
    }

    /// The lock file, shared or exclusive; taken on a blocking thread when
    /// on the runtime (a writer may hold it for its store's round trips).
    async fn lock(&self, exclusive: bool) -> Result<std::fs::File, StoreError> {
        let path = self.lock_file.clone();
        let take = move || -> Result<std::fs::File, StoreError> {
            let failed = |e: std::io::Error| StoreError::Unavailable(format!("cannot lock {}: {e}", path.display()));
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(failed)?;
            if exclusive { file.lock() } else { file.lock_shared() }.map_err(failed)?;
            Ok(file)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(take).await.map_err(|e| StoreError::Internal(format!("waiting for the version table: {e}")))?,
            Err(_) => take(),
        }
    }

    /// The file's write lock. A writer of another process on the same data
    /// dir may hold it across its store's write (milliseconds, an upstream's
    /// round trip): the wait, in SQLite's busy handler, is made on a blocking
    /// thread rather than on the async worker of the request.
    async fn begin(&self) -> Result<db::Immediate, StoreError> {
        let pool = self.pool.clone();
        let begin = move || -> Result<db::Immediate, StoreError> { Ok(db::Immediate::begin(pool.get()?)?) };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(begin).await.map_err(|e| StoreError::Internal(format!("waiting for the version table: {e}")))?,
            Err(_) => begin(),
        }
    }
}

fn read(conn: &rusqlite::Connection, account_id: &str, note_id: &str) -> rusqlite::Result<Option<Recorded>> {
    conn.prepare_cached("SELECT version, deleted FROM versions WHERE account_id = ?1 AND note_id = ?2")?
        .query_row(params![account_id, note_id], |r| Ok(Recorded { version: r.get::<_, i64>(0)? as u64, deleted: r.get(1)? }))
        .optional()
}
