//! [`PostgresStore`]: notes in one PostgreSQL database, with exactly the
//! version rules of `SqliteStore` (see `wit/notes.wit`): a conditional
//! `put`, a tombstoning `delete-if-not-newer`, one transaction per batch.
//!
//! Row locks order concurrent writers to one note, so there is no queue per
//! store as SQLite needs: writers to different notes run side by side.

use std::cell::RefCell;
use std::sync::Arc;

use notes_routing::IdList;
use postgres::GenericClient;
use postgres::types::ToSql;

use super::{AsyncStore, BlockingStore, Note, StoreBatch, StoreError, StoredRow, version_to_sql};
use crate::pg::{self, PgConn, PgPool};

/// Ids are compared byte by byte (`COLLATE "C"`), whatever the database's
/// locale: lists from both stores are merged as sorted byte strings
/// (`IdList::union`), and SQLite sorts that way.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS notes (
    account_id    TEXT    COLLATE "C" NOT NULL,
    id            TEXT    COLLATE "C" NOT NULL,
    content       TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    version       BIGINT  NOT NULL CHECK (version >= 0),
    deleted       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX IF NOT EXISTS notes_live ON notes (account_id, id) WHERE NOT deleted;
-- Each account's fence (`raise_fence`): writes admitted under an older
-- flag epoch are refused, by the `UNFENCED` condition of each writing
-- statement.
CREATE TABLE IF NOT EXISTS fences (
    account_id TEXT   COLLATE "C" PRIMARY KEY,
    epoch      BIGINT NOT NULL
);
-- Which store of which service this database is (`claim`): one row.
CREATE TABLE IF NOT EXISTS store_identity (
    one        BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    service_id TEXT    NOT NULL,
    role       TEXT    NOT NULL
);
"#;

/// Connections for jobs' batches, fences and operator reads (blocking).
const BLOCKING_CONNECTIONS: u32 = 8;
/// Connections for requests' writes (async), made as needed: one per
/// request in a write at once, up to this.
const REQUEST_CONNECTIONS: usize = 16;
const GET: &str = "SELECT content, created_at_ms, updated_at_ms, version FROM notes WHERE account_id = $1 AND id = $2 AND NOT deleted";
/// The fencing check, inside each writing statement: no fence of the
/// account above the write's epoch. It reads only parameters, so the planner
/// runs it once per statement (an InitPlan), before any row is touched; the
/// statement's own snapshot sees every fence raised before the statement
/// took its lock on `notes` (see `RAISE_FENCE`). A write it stops changes no
/// row, like one refused for its version: `write_refused` tells them apart.
macro_rules! unfenced {
    ($epoch:literal) => {
        concat!("NOT EXISTS (SELECT 1 FROM fences WHERE account_id = $1 AND epoch > ", $epoch, ")")
    };
}
const PUT: &str = concat!(
    "INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted)
     SELECT $1::text, $2::text, $3::text, $4::bigint, $5::bigint, $6::bigint, false WHERE ",
    unfenced!("$7"),
    "
     ON CONFLICT (account_id, id) DO UPDATE SET
         content = excluded.content, created_at_ms = excluded.created_at_ms,
         updated_at_ms = excluded.updated_at_ms, version = excluded.version, deleted = false
     WHERE excluded.version > notes.version"
);
/// A delete, in one statement (one round trip, its own transaction unless
/// in a batch's). `live` tombstones the live note if it is not newer. If it
/// changed nothing, `tombstone` records the tombstone where there is no row
/// or an older tombstone (or raises it); and also deletes a live row `live`
/// could not see: one a concurrent transaction (another host's move batch)
/// inserted and had not committed yet. The insert waits for it, then must
/// delete it under the same rule, or the acknowledged delete would leave
/// that copy live. In that race `removed` is false: the copy was not live
/// when this delete began, and a plugin then re-reads (`ops::delete`) and
/// finds the note gone. Answers (removed, tombstoned, fenced).
///
/// `tombstone` reads `live`, so it runs after it and, when `live` changed
/// the row, inserts nothing: no row is changed twice. Both parts and the
/// fence's look share the statement's snapshot, taken after its lock on
/// `notes` (see `unfenced!` and `RAISE_FENCE`).
const DELETE: &str = concat!(
    "WITH live AS (
         UPDATE notes SET deleted = true, content = '', version = $3
         WHERE account_id = $1 AND id = $2 AND NOT deleted AND version <= $3 AND ",
    unfenced!("$4"),
    "
         RETURNING 1
     ), tombstone AS (
         INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted)
         SELECT $1::text, $2::text, '', 0, 0, $3::bigint, true WHERE NOT EXISTS (SELECT 1 FROM live) AND ",
    unfenced!("$4"),
    "
         ON CONFLICT (account_id, id) DO UPDATE SET deleted = true, content = '', version = excluded.version
         WHERE notes.version < excluded.version OR (notes.version = excluded.version AND NOT notes.deleted)
         RETURNING 1
     )
     SELECT EXISTS (SELECT 1 FROM live), EXISTS (SELECT 1 FROM tombstone), NOT ",
    unfenced!("$4")
);
/// Whether the account is fenced above an epoch: asked only when a write
/// changed nothing, to tell a fenced write from one refused for its version.
const FENCED_ABOVE: &str = "SELECT EXISTS (SELECT 1 FROM fences WHERE account_id = $1 AND epoch > $2)";
const LIST: &str = "SELECT id FROM notes WHERE account_id = $1 AND NOT deleted ORDER BY id";
const FIRST: &str = "SELECT id FROM notes WHERE account_id = $1 AND NOT deleted AND id > $2 ORDER BY id LIMIT $3";
const COUNT: &str = "SELECT count(*) FROM notes WHERE account_id = $1 AND NOT deleted";
const RECORDED: &str = "SELECT version FROM notes WHERE account_id = $1 AND id = $2";
const ROWS: &str =
    "SELECT id, content, created_at_ms, updated_at_ms, version, deleted FROM notes WHERE account_id = $1 AND id = ANY($2)";
/// Raising a fence first waits for every write running on the store (SHARE
/// conflicts with the ROW EXCLUSIVE lock each write holds to its commit) and
/// holds new ones back until the fence is committed: no write that read the
/// old fence is still running when this returns. A write stuck in an open
/// transaction of a stopped host is ended by the server
/// (`idle_in_transaction_session_timeout`, `pg/mod.rs`) within the lock wait.
const RAISE_FENCE: &str = "BEGIN; SET LOCAL lock_timeout = '4s'; LOCK TABLE notes IN SHARE MODE;";
const SET_FENCE: &str = "INSERT INTO fences (account_id, epoch) VALUES ($1, $2)
     ON CONFLICT (account_id) DO UPDATE SET epoch = greatest(fences.epoch, excluded.epoch)";

pub struct PostgresStore {
    pool: PgPool,
    /// The request path's writes (`*_async`): awaited on the request's task.
    requests: pg::AsyncPool,
    /// The request path's reads, on connections requests share
    /// (`pg::Shared`), with the other stores of its database: one for
    /// notes, one for lists (a long list is then never queued before a
    /// note's read).
    point_reads: Arc<pg::Shared>,
    scans: Arc<pg::Shared>,
    /// Those reads' statements, naming this store's schema.
    shared_sql: SharedSql,
}

struct SharedSql {
    get: String,
    recorded: String,
    list: String,
}

impl PostgresStore {
    /// Connects to the database at `url`, creating the notes table if needed,
    /// in the schema `url` names (`?schema=NAME`, which must exist) or the
    /// one the server resolves names in.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_sharing(url, &pg::ReadConnections::default())
    }

    /// [`open`](Self::open), sharing `reads`' connections with the stores
    /// opened with it that live in the same database.
    pub fn open_sharing(url: &str, reads: &pg::ReadConnections) -> anyhow::Result<Self> {
        let (pool, place) = pg::open_store(url, BLOCKING_CONNECTIONS, SCHEMA)?;
        Ok(PostgresStore {
            pool,
            requests: pg::open_async(&place, REQUEST_CONNECTIONS)?,
            point_reads: reads.to(&place, "notes")?,
            scans: reads.to(&place, "lists")?,
            shared_sql: SharedSql { get: place.qualify(GET), recorded: place.qualify(RECORDED), list: place.qualify(LIST) },
        })
    }

    /// Records that this database is the `role` store of service `service`
    /// (`legacy`, `new-shard-2`), or checks that it already is: the shard
    /// URLs' order decides where accounts' notes live, so a database given
    /// in another place (or to another service) is refused.
    pub fn claim(&self, url: &str, service: uuid::Uuid, role: &str) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        let service = service.to_string();
        conn.client().execute(
            "INSERT INTO store_identity (service_id, role) VALUES ($1, $2) ON CONFLICT (one) DO NOTHING",
            &[&service, &role],
        )?;
        let row = conn.client().query_one("SELECT service_id, role FROM store_identity", &[])?;
        let (recorded_service, recorded_role): (String, String) = (row.get(0), row.get(1));
        if (recorded_service.as_str(), recorded_role.as_str()) != (service.as_str(), role) {
            anyhow::bail!(
                "the database {} is the {recorded_role} store of service {recorded_service}, not the {role} store of service {service}: \
                 give each store's URL in its own place (--legacy-store, then --new-store once per shard, in the order the service \
                 was created with)",
                pg::redact(url)
            );
        }
        Ok(())
    }

    /// Writes `rows` as they are, tombstones included, in one transaction
    /// (`db copy`, into an empty store).
    pub fn import(&self, rows: &[StoredRow]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction()?;
        let insert = tx.prepare(
            "INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )?;
        for StoredRow { note, deleted } in rows {
            let version = version_to_sql(note.version)?;
            tx.execute(&insert, &[&note.account_id, &note.id, &note.content, &note.created_at_ms, &note.updated_at_ms, &version, deleted])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Rows kept, tombstones included.
    pub fn row_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn()?.client().query_one("SELECT count(*) FROM notes", &[])?.get::<_, i64>(0) as u64)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<pg::Manager>, StoreError> {
        Ok(self.pool.get()?)
    }

    async fn request_conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.requests.get().await?)
    }
}

impl BlockingStore for PostgresStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        get_on(&mut *self.conn()?, account_id, note_id)
    }

    fn put(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        put_on(&mut *self.conn()?, note, epoch)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prepared(DELETE)?;
        delete_with(conn.client(), &statement, account_id, note_id, version, epoch)
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        list_on(&mut *self.conn()?, account_id)
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prepared(FIRST)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(conn.client().query(&statement, &[&account_id, &after, &limit])?.iter().map(|r| r.get(0)).collect())
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prepared(COUNT)?;
        Ok(conn.client().query_one(&statement, &[&account_id])?.get::<_, i64>(0) as u64)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        recorded_on(&mut *self.conn()?, account_id, note_id)
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prepared(ROWS)?;
        let rows = conn.client().query(&statement, &[&account_id, &note_ids])?;
        Ok(rows
            .into_iter()
            .map(|r| StoredRow {
                note: Note {
                    id: r.get(0),
                    account_id: account_id.to_owned(),
                    content: r.get(1),
                    created_at_ms: r.get(2),
                    updated_at_ms: r.get(3),
                    version: r.get::<_, i64>(4) as u64,
                },
                deleted: r.get(5),
            })
            .collect())
    }

    fn begin_batch(&self, _: &str, epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        let mut conn = self.conn()?;
        conn.client().batch_execute("BEGIN")?;
        Ok(Box::new(PostgresBatch { conn: RefCell::new(conn), open: true, epoch }))
    }

    fn raise_fence(&self, account_id: &str, epoch: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let set = conn.prepared(SET_FENCE)?;
        let client = conn.client();
        let raised = client.batch_execute(RAISE_FENCE).and_then(|()| client.execute(&set, &[&account_id, &epoch])).and_then(|_| client.batch_execute("COMMIT"));
        if raised.is_err() {
            let _ = client.batch_execute("ROLLBACK");
        }
        Ok(raised?)
    }
}

#[async_trait::async_trait]
impl AsyncStore for PostgresStore {
    fn serves_requests_async(&self) -> bool {
        true
    }

    async fn get_async(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        if !on_runtime() {
            return self.get(account_id, note_id);
        }
        let rows = self.point_reads.query(&self.shared_sql.get, &[&account_id, &note_id]).await?;
        Ok(rows.first().map(|r| live_note(r, account_id, note_id)))
    }

    async fn put_async(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        if !on_runtime() {
            return self.put(note, epoch);
        }
        let version = version_to_sql(note.version)?;
        let conn = self.request_conn().await?;
        let statement = conn.prepare_cached(PUT).await?;
        let params: [&(dyn ToSql + Sync); 7] =
            [&note.account_id, &note.id, &note.content, &note.created_at_ms, &note.updated_at_ms, &version, &epoch];
        let changed = conn.execute(&statement, &params).await?;
        if changed == 0 {
            let fenced = conn.prepare_cached(FENCED_ABOVE).await?;
            if conn.query_one(&fenced, &[&note.account_id, &epoch]).await?.get::<_, bool>(0) {
                return Err(StoreError::Fenced { epoch });
            }
        }
        Ok(changed == 1)
    }

    async fn delete_if_not_newer_async(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        if !on_runtime() {
            return self.delete_if_not_newer(account_id, note_id, version, epoch);
        }
        let sql_version = version_to_sql(version)?;
        let conn = self.request_conn().await?;
        let statement = conn.prepare_cached(DELETE).await?;
        let row = conn.query_one(&statement, &[&account_id, &note_id, &sql_version, &epoch]).await?;
        deleted(&row, epoch)
    }

    async fn list_ids_async(&self, account_id: &str) -> Result<IdList, StoreError> {
        if !on_runtime() {
            return self.list_ids(account_id);
        }
        let mut joined = String::new();
        for row in self.scans.query(&self.shared_sql.list, &[&account_id]).await? {
            joined.push_str(row.get::<_, &str>(0));
            joined.push('\n');
        }
        Ok(IdList::from_joined(joined))
    }

    async fn recorded_version_async(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        if !on_runtime() {
            return self.recorded_version(account_id, note_id);
        }
        let rows = self.point_reads.query(&self.shared_sql.recorded, &[&account_id, &note_id]).await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
    }
}

/// One transaction on one pooled connection, until `commit` or drop
/// (rolled back).
struct PostgresBatch {
    conn: RefCell<r2d2::PooledConnection<pg::Manager>>,
    open: bool,
    /// The flag epoch its writes carry.
    epoch: i64,
}

impl StoreBatch for PostgresBatch {
    fn put(&self, note: &Note) -> Result<(), StoreError> {
        put_on(&mut *self.conn.borrow_mut(), note, self.epoch).map(drop)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.borrow_mut();
        let statement = conn.prepared(DELETE)?;
        delete_with(conn.client(), &statement, account_id, note_id, version, self.epoch).map(drop)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn.get_mut().client().batch_execute("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for PostgresBatch {
    fn drop(&mut self) {
        // Back to the pool without a transaction left open.
        if self.open {
            let _ = self.conn.get_mut().client().batch_execute("ROLLBACK");
        }
    }
}

fn get_on(conn: &mut PgConn, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
    let statement = conn.prepared(GET)?;
    let row = conn.client().query_opt(&statement, &[&account_id, &note_id])?;
    Ok(row.map(|r| live_note(&r, account_id, note_id)))
}

/// Whether this thread can await the async client: inside tokio's runtime.
/// A job's thread (a verify reading notes through the plugin) has none, and
/// takes the blocking client instead.
fn on_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// A row of `GET`.
fn live_note(r: &postgres::Row, account_id: &str, note_id: &str) -> Note {
    Note {
        id: note_id.to_owned(),
        account_id: account_id.to_owned(),
        content: r.get(0),
        created_at_ms: r.get(1),
        updated_at_ms: r.get(2),
        version: r.get::<_, i64>(3) as u64,
    }
}

fn put_on(conn: &mut PgConn, note: &Note, epoch: i64) -> Result<bool, StoreError> {
    let version = version_to_sql(note.version)?;
    let statement = conn.prepared(PUT)?;
    let changed = conn
        .client()
        .execute(&statement, &[&note.account_id, &note.id, &note.content, &note.created_at_ms, &note.updated_at_ms, &version, &epoch])?;
    if changed == 0 {
        let fenced = conn.prepared(FENCED_ABOVE)?;
        refuse_if_fenced(conn.client(), &fenced, &note.account_id, epoch)?;
    }
    Ok(changed == 1)
}

/// Runs [`DELETE`].
fn delete_with(
    client: &mut impl GenericClient,
    statement: &postgres::Statement,
    account_id: &str,
    note_id: &str,
    version: u64,
    epoch: i64,
) -> Result<bool, StoreError> {
    let version = version_to_sql(version)?;
    deleted(&client.query_one(statement, &[&account_id, &note_id, &version, &epoch])?, epoch)
}

/// Whether [`DELETE`] removed the live note; `Fenced` if it changed nothing
/// and the account is fenced above the write's epoch (see
/// [`refuse_if_fenced`]).
fn deleted(row: &postgres::Row, epoch: i64) -> Result<bool, StoreError> {
    let (removed, tombstoned, fenced): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if !removed && !tombstoned && fenced { Err(StoreError::Fenced { epoch }) } else { Ok(removed) }
}

/// `Fenced` if the account is fenced above `epoch`. Fences only go up, so a
/// write that changed nothing and finds its account fenced now was fenced
/// (or refused for its version, and fenced since): either way it failed,
/// and the client retries under the new flag.
fn refuse_if_fenced(client: &mut impl GenericClient, fenced: &postgres::Statement, account_id: &str, epoch: i64) -> Result<(), StoreError> {
    if client.query_one(fenced, &[&account_id, &epoch])?.get::<_, bool>(0) { Err(StoreError::Fenced { epoch }) } else { Ok(()) }
}

fn list_on(conn: &mut PgConn, account_id: &str) -> Result<IdList, StoreError> {
    let statement = conn.prepared(LIST)?;
    let mut joined = String::new();
    for row in conn.client().query(&statement, &[&account_id])? {
        joined.push_str(row.get::<_, &str>(0));
        joined.push('\n');
    }
    Ok(IdList::from_joined(joined))
}

fn recorded_on(conn: &mut PgConn, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
    let statement = conn.prepared(RECORDED)?;
    Ok(conn.client().query_opt(&statement, &[&account_id, &note_id])?.map(|r| r.get::<_, i64>(0) as u64))
}

impl From<pg::Unreachable> for StoreError {
    fn from(e: pg::Unreachable) -> Self {
        match e {
            pg::Unreachable::Postgres(e) => e.into(),
            e @ pg::Unreachable::Failed(_) => StoreError::Unavailable(e.to_string()),
            e @ pg::Unreachable::Rejected(_) => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        if pg::is_transient(&e) { StoreError::Unavailable(e.to_string()) } else { StoreError::Internal(e.to_string()) }
    }
}
