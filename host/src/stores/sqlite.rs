//! [`SqliteStore`]: notes in one SQLite file.

use notes_routing::IdList;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{AsyncStore, BlockingStore, Note, StoreBatch, StoreError, StoredRow, version_to_sql};
use crate::db::{self, Pool};
use crate::lock::lock;

/// A tombstone is a row with `deleted = 1`: it keeps the deleted version so a
/// late `put` of that version cannot bring the note back.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notes (
    account_id    TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    content       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 0),
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
-- Live notes only: a backfill leaves a tombstone per moved note at the front
-- of the id order, and `first_ids` must not scan them again for every batch.
CREATE INDEX IF NOT EXISTS notes_live ON notes (account_id, id) WHERE deleted = 0;
";

const MAX_CONNECTIONS: u32 = 8;

pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// What the store's writers share, with a committer that may run on another
/// thread than the writer that started it.
struct Inner {
    pool: Pool,
    /// Single writes (`put`, `delete_if_not_newer`) grouped into shared commits.
    group: Mutex<Queue>,
    /// One writer at a time per file, queued here. SQLite allows one writer
    /// anyway; without this, a writer that finds the lock taken sleeps in
    /// SQLite's busy handler (1, 2, 5 … 100 ms steps), which made write p99
    /// hundreds of ms under load (BENCHMARKS.md). Writers in other processes
    /// still meet the busy handler.
    writer: Arc<WriteQueue>,
}

/// The queue of this process's writers to one file. A turn is an owned
/// value, so a batch can hold it across a whole plugin call.
#[derive(Default)]
struct WriteQueue {
    busy: Mutex<bool>,
    free: Condvar,
}

struct WriteTurn(Arc<WriteQueue>);

impl WriteQueue {
    fn take(self: &Arc<Self>) -> WriteTurn {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = self.free.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        WriteTurn(self.clone())
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.free.notify_one();
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let inner = Inner { pool: db::open(path, MAX_CONNECTIONS, SCHEMA)?, group: Mutex::default(), writer: Arc::default() };
        Ok(SqliteStore { inner: Arc::new(inner) })
    }
}

/// The most single writes one commit takes.
const MAX_GROUP: usize = 256;

/// Group commit of single writes. A write joins the queue; if no commit is
/// running, a **committer** starts: it takes every write queued (up to
/// [`MAX_GROUP`]), runs each in one transaction under the file's write
/// turn, commits (one fsync, `synchronous = FULL`), and hands each writer
/// its own result; then the next group, until the queue is empty. No writer
/// waits for a timer: a group is whatever queued during the previous commit,
/// one write when the store is idle.
///
/// A writer on an async worker (a plugin's `put`) never commits: it starts
/// the committer on a blocking thread if none runs, and awaits its result,
/// so no worker sleeps on an fsync. A writer on a blocking thread commits
/// the group holding its own write itself (no hand-off when the store is
/// idle), and hands the rest of the queue to a committer.
///
/// Durability is unchanged: a writer returns only after the commit that
/// holds its write. The version rules hold per write, in arrival order, and
/// a write refused for its version is an answer (`false`), not a failure:
/// its neighbours commit. A statement that fails fails only its own write
/// (SQLite undoes that statement alone); a commit that fails fails the
/// whole group, whose writes did not land.
#[derive(Default)]
struct Queue {
    waiting: Vec<Write>,
    /// A committer runs (it steps down only with the queue empty).
    committing: bool,
}

struct Write {
    op: Op,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

type Written = oneshot::Receiver<Result<bool, StoreError>>;

enum Op {
    Put(Note),
    Delete { account_id: String, note_id: String, version: u64 },
}

impl Inner {
    /// Queues a write; true if the caller must start the committer.
    fn enqueue(&self, op: Op) -> (Written, bool) {
        let (done, written) = oneshot::channel();
        let mut queue = lock(&self.group);
        queue.waiting.push(Write { op, done });
        let start = !std::mem::replace(&mut queue.committing, true);
        (written, start)
    }

    /// Commits the next group; false (and steps down) once none is left.
    fn commit_next(&self) -> bool {
        let group: Vec<Write> = {
            let mut queue = lock(&self.group);
            if queue.waiting.is_empty() {
                queue.committing = false;
                return false;
            }
            let take = queue.waiting.len().min(MAX_GROUP);
            queue.waiting.drain(..take).collect()
        };
        let results = self.commit_group(&group);
        for (write, result) in group.into_iter().zip(results) {
            // A writer that gave up waiting (its request ended) hears nothing.
            let _ = write.done.send(result);
        }
        true
    }

    /// Commits until the queue is empty.
    fn commit_all(&self) {
        while self.commit_next() {}
    }

    /// Runs the committer on a blocking thread of the runtime, or here if
    /// this thread is not the runtime's (a tool, the conformance kit).
    fn start_committer(self: &Arc<Self>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = Arc::clone(self);
                runtime.spawn_blocking(move || inner.commit_all());
            }
            Err(_) => self.commit_all(),
        }
    }

    /// Runs `group`'s writes in one transaction; one result per write.
    fn commit_group(&self, group: &[Write]) -> Vec<Result<bool, StoreError>> {
        // The turn before the connection: a queued writer must not hold one
        // of the pool's connections that readers need.
        let _turn = self.writer.take();
        let run = || -> Result<Vec<Result<bool, StoreError>>, StoreError> {
            let mut conn = self.pool.get()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let results = group
                .iter()
                .map(|write| match &write.op {
                    Op::Put(note) => put_on(&tx, note),
                    Op::Delete { account_id, note_id, version } => delete_on(&tx, account_id, note_id, *version),
                })
                .collect();
            tx.commit()?;
            Ok(results)
        };
        metrics::counter!(crate::metrics::STORE_COMMITS).increment(1);
        metrics::counter!(crate::metrics::STORE_COMMITTED_WRITES).increment(group.len() as u64);
        match run() {
            Ok(results) => results,
            Err(e) => {
                let transient = matches!(e, StoreError::Unavailable(_));
                let message = format!("the commit of {} write(s) failed: {e}", group.len());
                group.iter().map(|_| Err(if transient { StoreError::Unavailable(message.clone()) } else { StoreError::Internal(message.clone()) })).collect()
            }
        }
    }
}

impl SqliteStore {
    /// A write from a thread that may block: commits its own group here.
    fn write(&self, op: Op) -> Result<bool, StoreError> {
        let (written, start) = self.inner.enqueue(op);
        if start && self.inner.commit_next() {
            // Writes queued behind ours: a committer takes them over, and
            // this caller goes back to its request.
            self.inner.start_committer();
        }
        // Not an executor's `block_on`: this thread may already be driving
        // one (a request's operation on a blocking thread, `api::note_path`).
        written.blocking_recv().unwrap_or_else(|_| Err(lost_commit()))
    }

    /// A write from an async worker: waits for its commit without holding the thread.
    async fn write_async(&self, op: Op) -> Result<bool, StoreError> {
        let (written, start) = self.inner.enqueue(op);
        if start {
            self.inner.start_committer();
        }
        written.await.unwrap_or_else(|_| Err(lost_commit()))
    }
}

/// A committer that ended without an answer (it panicked).
fn lost_commit() -> StoreError {
    StoreError::Internal("the write's commit ended without an answer".into())
}

impl SqliteStore {
    /// Every row, tombstones included, in key order (`db copy`).
    pub fn rows(&self) -> Result<Vec<StoredRow>, StoreError> {
        let conn = self.inner.pool.get()?;
        let mut stmt = conn.prepare(
            "SELECT account_id, id, content, created_at_ms, updated_at_ms, version, deleted FROM notes ORDER BY account_id, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let (account_id, id): (String, String) = (r.get(0)?, r.get(1)?);
            Ok(StoredRow { note: note_from(r, 2, &account_id, &id)?, deleted: r.get(6)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl BlockingStore for SqliteStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        get_on(&*self.inner.pool.get()?, account_id, note_id)
    }

    fn put(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        self.write(Op::Put(note.clone()))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        self.write(Op::Delete { account_id: account_id.to_owned(), note_id: note_id.to_owned(), version })
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        list_on(&*self.inner.pool.get()?, account_id)
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let conn = self.inner.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT id FROM notes WHERE account_id = ?1 AND deleted = 0 AND id > ?2 ORDER BY id LIMIT ?3")?;
        let ids = stmt.query_map(params![account_id, after, limit as i64], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        let conn = self.inner.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT count(*) FROM notes WHERE account_id = ?1 AND deleted = 0")?;
        Ok(stmt.query_row([account_id], |r| r.get::<_, i64>(0))? as u64)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        recorded_on(&*self.inner.pool.get()?, account_id, note_id)
    }

    /// One range scan of the primary key from the least to the greatest of
    /// `note_ids` (a move batch's ids are adjacent in the store they leave),
    /// keeping the rows asked for.
    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError> {
        let (Some(least), Some(greatest)) = (note_ids.iter().min(), note_ids.iter().max()) else { return Ok(Vec::new()) };
        let wanted: std::collections::HashSet<&str> = note_ids.iter().map(String::as_str).collect();
        let conn = self.inner.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, content, created_at_ms, updated_at_ms, version, deleted FROM notes
             WHERE account_id = ?1 AND id >= ?2 AND id <= ?3",
        )?;
        let mut rows = stmt.query(params![account_id, least, greatest])?;
        let mut found = Vec::new();
        while let Some(r) = rows.next()? {
            let id = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if !wanted.contains(id) {
                continue;
            }
            found.push(StoredRow { note: note_from(r, 1, account_id, id)?, deleted: r.get(5)? });
        }
        Ok(found)
    }

    /// No fence on one machine (see `DataStore`).
    fn raise_fence(&self, _account_id: &str, _epoch: i64) -> Result<(), StoreError> {
        Ok(())
    }

    fn begin_batch(&self, _: &str, _epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        let turn = self.inner.writer.take();
        let tx = db::Immediate::begin(self.inner.pool.get()?)?;
        Ok(Box::new(SqliteBatch { tx, _turn: turn }))
    }
}

#[async_trait::async_trait]
impl AsyncStore for SqliteStore {
    fn is_in_process(&self) -> bool {
        true
    }

    async fn put_async(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        self.write_async(Op::Put(note.clone())).await
    }

    async fn delete_if_not_newer_async(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        self.write_async(Op::Delete { account_id: account_id.to_owned(), note_id: note_id.to_owned(), version }).await
    }
}

/// Writes in one transaction, holding this process's turn on the file
/// until it commits or is dropped (rolled back).
struct SqliteBatch {
    tx: db::Immediate,
    _turn: WriteTurn,
}

impl StoreBatch for SqliteBatch {
    fn put(&self, note: &Note) -> Result<(), StoreError> {
        put_on(self.tx.conn(), note).map(drop)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<(), StoreError> {
        delete_on(self.tx.conn(), account_id, note_id, version).map(drop)
    }

    /// Its write turn goes back when it is dropped, after the commit.
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let SqliteBatch { tx, _turn } = *self;
        Ok(tx.commit()?)
    }
}

/// The note in a row's columns `content, created_at_ms, updated_at_ms,
/// version`, starting at column `first`.
fn note_from(r: &rusqlite::Row<'_>, first: usize, account_id: &str, id: &str) -> rusqlite::Result<Note> {
    Ok(Note {
        id: id.to_owned(),
        account_id: account_id.to_owned(),
        content: r.get(first)?,
        created_at_ms: r.get(first + 1)?,
        updated_at_ms: r.get(first + 2)?,
        version: r.get::<_, i64>(first + 3)? as u64,
    })
}

fn get_on(conn: &Connection, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT content, created_at_ms, updated_at_ms, version FROM notes
         WHERE account_id = ?1 AND id = ?2 AND deleted = 0",
    )?;
    let note = stmt
        .query_row(params![account_id, note_id], |r| note_from(r, 0, account_id, note_id))
        .optional()?;
    Ok(note)
}

fn put_on(conn: &Connection, note: &Note) -> Result<bool, StoreError> {
    let version = version_to_sql(note.version)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (account_id, id) DO UPDATE SET
             content = excluded.content, created_at_ms = excluded.created_at_ms,
             updated_at_ms = excluded.updated_at_ms, version = excluded.version, deleted = 0
         WHERE excluded.version > notes.version",
    )?;
    let changed = stmt.execute(params![note.account_id, note.id, note.content, note.created_at_ms, note.updated_at_ms, version])?;
    Ok(changed == 1)
}

/// Both statements of a delete; the caller runs them in one transaction.
fn delete_on(conn: &Connection, account_id: &str, note_id: &str, version: u64) -> Result<bool, StoreError> {
    let version = version_to_sql(version)?;
    let removed = conn
        .prepare_cached(
            "UPDATE notes SET deleted = 1, content = '', version = ?3
             WHERE account_id = ?1 AND id = ?2 AND deleted = 0 AND version <= ?3",
        )?
        .execute(params![account_id, note_id, version])?
        == 1;
    if removed {
        return Ok(true); // the row is the tombstone now
    }
    // No row, or an older tombstone: record (or raise) the tombstone.
    conn.prepare_cached(
        "INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted)
         VALUES (?1, ?2, '', 0, 0, ?3, 1)
         ON CONFLICT (account_id, id) DO UPDATE SET version = excluded.version
         WHERE notes.deleted = 1 AND notes.version < excluded.version",
    )?
    .execute(params![account_id, note_id, version])?;
    Ok(removed)
}

fn list_on(conn: &Connection, account_id: &str) -> Result<IdList, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM notes WHERE account_id = ?1 AND deleted = 0 ORDER BY id")?;
    let mut joined = String::new();
    let mut rows = stmt.query([account_id])?;
    while let Some(row) = rows.next()? {
        joined.push_str(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?);
        joined.push('\n');
    }
    Ok(IdList::from_joined(joined))
}

fn recorded_on(conn: &Connection, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT version FROM notes WHERE account_id = ?1 AND id = ?2")?;
    Ok(stmt.query_row([account_id, note_id], |r| r.get::<_, i64>(0)).optional()?.map(|v| v as u64))
}
