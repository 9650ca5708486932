//! Data stores: where notes live. One trait, [`DataStore`], with the legacy
//! store (one SQLite file or PostgreSQL database) and the new sharded store
//! (N of them) behind it, and [`MemoryStore`] for in-process tests. No other
//! module writes SQL for notes.
//!
//! Store writes are conditional on the note's version (see `wit/notes.wit`):
//! `put` only moves a note forward; `delete_if_not_newer` leaves a tombstone.

mod memory;
mod postgres;
mod sharded;
mod sqlite;
pub mod versions;

use notes_routing::IdList;
use std::path::PathBuf;
use std::sync::Arc;

pub use notes_routing::{Note, Store};
pub use memory::MemoryStore;
pub use crate::pg::ReadConnections;
pub use postgres::PostgresStore;
pub use sharded::ShardedStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached now (locked, I/O, pool exhausted).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request cannot be stored as given.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("store error: {0}")]
    Internal(String),
    /// The write was admitted under a flag epoch the store was fenced past:
    /// the flag changed while its request ran on a host whose lease lapsed.
    #[error("write refused: the account's isMigrating changed while this request ran (epoch {epoch} is fenced); retry")]
    Fenced { epoch: i64 },
}

/// A store of notes, for every account. Implementations are blocking; the
/// host calls them from blocking threads.
///
/// Every write carries the flag epoch its request was admitted under. A
/// store shared by hosts on several machines refuses (`Fenced`) a write
/// whose epoch is below the account's fence, in the same statement as the
/// write; `raise_fence` raises it. On one machine no live host is ever
/// skipped by a flip (lock files tell dead from paused), so the SQLite and
/// memory stores keep no fence.
///
/// Two traits: [`BlockingStore`], the rules every backend keeps, as blocking
/// calls; and [`AsyncStore`], the request path's calls for a caller on an
/// async worker (a plugin's imports), which default to the blocking ones.
/// `DataStore` is both: what the host holds.
pub trait DataStore: BlockingStore + AsyncStore {}

impl<T: BlockingStore + AsyncStore + ?Sized> DataStore for T {}

/// A store's rules, as blocking calls (see [`DataStore`]).
pub trait BlockingStore: Send + Sync {
    /// The live note, if any (tombstones are invisible).
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError>;

    /// Writes `note` (under `note.account_id`) unless this version or a newer
    /// one is recorded; true if written.
    fn put(&self, note: &Note, epoch: i64) -> Result<bool, StoreError>;

    /// Deletes the note if its recorded version is `version` or older and
    /// records a tombstone at `version`; true if a live note was removed.
    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError>;

    /// Ids of the account's live notes, sorted, in one string (no
    /// allocation per id: a list goes to a plugin as it is).
    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError>;

    /// The first `limit` of them after `after` ("": from the first): what
    /// one move batch takes, without reading every id of a large account
    /// for every batch. A job's next batch starts after the one still
    /// landing, whose notes are still where they were.
    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError>;

    /// How many live notes the account has.
    fn count(&self, account_id: &str) -> Result<u64, StoreError>;

    /// The version recorded for the note, live or deleted; `None` if never written.
    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError>;

    /// The rows of those of `note_ids` ever written, live or tombstones, in
    /// any order: what a batched call reads ahead, in one query, instead of
    /// a `get` and a `recorded_version` per note (`router::batch`).
    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError>;

    /// Starts a batch of writes on the store holding `account_id`'s notes:
    /// they land in one transaction (one fsync at commit instead of one per
    /// write), or not at all if it is dropped uncommitted. On SQLite it holds
    /// the file's write lock until then, so it is begun only once its writes
    /// are known, and never while plugin code runs (`router::batch`). Its
    /// writes carry `epoch`.
    fn begin_batch(&self, account_id: &str, epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError>;

    /// Refuses, from now on, every write of the account's notes carrying an
    /// epoch below `epoch`, and returns only once no such write is still
    /// running. A flip calls it once every live host drained, before the
    /// flag changes.
    fn raise_fence(&self, account_id: &str, epoch: i64) -> Result<(), StoreError>;
}

/// The request path's calls for a caller on an async worker, and whether
/// they may be made there (see [`DataStore`]).
#[async_trait::async_trait]
pub trait AsyncStore: BlockingStore {
    /// Whether its calls answer in microseconds on this machine (a file or
    /// memory in this process), so a request may make them on its async
    /// worker. A store reached over the network (PostgreSQL) is called from
    /// a blocking thread: a round trip would hold the worker's other requests.
    fn is_in_process(&self) -> bool {
        false
    }

    /// Whether its calls wait on another system the operator runs (a store
    /// plugin's upstream), not on this host's databases: a router's call is
    /// not held to its deadline while it waits on them.
    fn waits_on_an_upstream(&self) -> bool {
        false
    }

    /// Whether the request path's calls (the `*_async` ones) never hold an
    /// async worker: answered in microseconds in this process, or awaited
    /// (PostgreSQL's async client). A plugin's imports make only those.
    fn serves_requests_async(&self) -> bool {
        self.is_in_process()
    }

    /// [`DataStore::put`] for a caller on an async worker (a plugin's
    /// import): a store whose write waits (a commit's fsync) waits here
    /// without holding the thread. By default, the blocking write, for a
    /// store whose calls never wait long or that is called from blocking
    /// threads only (see [`DataStore::is_in_process`]).
    async fn put_async(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        self.put(note, epoch)
    }

    /// [`DataStore::delete_if_not_newer`] for a caller on an async worker.
    async fn delete_if_not_newer_async(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        self.delete_if_not_newer(account_id, note_id, version, epoch)
    }

    /// [`DataStore::get`] for a caller on an async worker: a store reached
    /// over the network awaits its round trip (see
    /// [`DataStore::serves_requests_async`]). By default, the blocking read.
    async fn get_async(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        self.get(account_id, note_id)
    }

    /// [`DataStore::list_ids`] for a caller on an async worker.
    async fn list_ids_async(&self, account_id: &str) -> Result<IdList, StoreError> {
        self.list_ids(account_id)
    }

    /// [`DataStore::recorded_version`] for a caller on an async worker.
    async fn recorded_version_async(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.recorded_version(account_id, note_id)
    }
}

/// The writes of one batch (`begin_batch`), under the same version rules
/// as [`DataStore::put`] and [`DataStore::delete_if_not_newer`]. Whether
/// each one changed the store is not reported: the caller predicted it
/// (`router::batch`), and a write a racing one made moot changes nothing.
pub trait StoreBatch: Send {
    fn put(&self, note: &Note) -> Result<(), StoreError>;
    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<(), StoreError>;
    /// Makes every write of the batch durable at once.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A row of a store as it is kept: a live note, or a tombstone (`deleted`,
/// with the version it was deleted at). What `db copy` moves between
/// backends, so a tombstone keeps refusing late writes there too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub note: Note,
    pub deleted: bool,
}

/// The version rules, on one note's row (`None`: never written); what the
/// stores' SQL does, for the stores that keep rows in memory.
impl StoredRow {
    /// The live note; `None` for a tombstone.
    pub fn live(&self) -> Option<&Note> {
        (!self.deleted).then_some(&self.note)
    }

    /// A put lands only over an older version, live or deleted. Whether it landed.
    pub fn put(row: &mut Option<StoredRow>, note: &Note) -> bool {
        if row.as_ref().is_some_and(|r| note.version <= r.note.version) {
            return false;
        }
        *row = Some(StoredRow { note: note.clone(), deleted: false });
        true
    }

    /// A delete removes a live note of `version` or older and leaves (or
    /// raises) a tombstone at `version`; a newer row is left alone. Whether a
    /// live note was removed.
    pub fn delete_if_not_newer(row: &mut Option<StoredRow>, account_id: &str, note_id: &str, version: u64) -> bool {
        match row {
            Some(r) if r.note.version > version => false,
            Some(r) => {
                let removed = !r.deleted;
                r.note.version = version;
                r.note.content.clear();
                r.deleted = true;
                removed
            }
            None => {
                let note = Note {
                    id: note_id.to_owned(),
                    account_id: account_id.to_owned(),
                    content: String::new(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    version,
                };
                *row = Some(StoredRow { note, deleted: true });
                false
            }
        }
    }
}

/// The role a store database of new-store shard `i` is claimed for
/// (`PostgresStore::claim`; "legacy" for the legacy store).
pub fn new_shard_role(i: usize) -> String {
    format!("new-shard-{i}")
}

/// The two stores of a host. `new` is `None` in plain mode.
#[derive(Clone)]
pub struct DataStores {
    pub legacy: Arc<dyn DataStore>,
    pub new: Option<Arc<dyn DataStore>>,
}

impl DataStores {
    /// Whether every store answers in microseconds (see [`DataStore::is_in_process`]).
    pub fn are_in_process(&self) -> bool {
        self.legacy.is_in_process() && self.new.as_ref().is_none_or(|n| n.is_in_process())
    }

    /// Whether every store's request-path calls never hold an async worker
    /// (see [`DataStore::serves_requests_async`]).
    pub fn serve_requests_async(&self) -> bool {
        self.legacy.serves_requests_async() && self.new.as_ref().is_none_or(|n| n.serves_requests_async())
    }

    /// The new store over one SQLite file per shard, in shard order (none:
    /// plain mode, no new store).
    pub fn open_new_shards(files: &[PathBuf]) -> anyhow::Result<Option<Arc<dyn DataStore>>> {
        Ok(match files {
            [] => None,
            files => Some(Arc::new(ShardedStore::open(files)?)),
        })
    }

    /// The legacy store in the PostgreSQL database at `legacy`, and one new
    /// store shard per URL in `new` (none: plain mode), each claimed for
    /// `service` (see `PostgresStore::claim`). Shard URLs may name databases
    /// on one server, or schemas of one database (`?schema=`); their order
    /// decides which shard an account's notes live in, so it must not change.
    pub fn open_postgres(legacy: &str, new: &[String], service: uuid::Uuid) -> anyhow::Result<Self> {
        // Stores in schemas of one database share its read connections.
        let reads = crate::pg::ReadConnections::default();
        let open = |url: &str, role: &str| -> anyhow::Result<PostgresStore> {
            let store = PostgresStore::open_sharing(url, &reads)?;
            store.claim(url, service, role)?;
            Ok(store)
        };
        let legacy: Arc<dyn DataStore> = Arc::new(open(legacy, "legacy")?);
        let new: Option<Arc<dyn DataStore>> = match new {
            [] => None,
            urls => {
                let shards = urls
                    .iter()
                    .enumerate()
                    .map(|(i, url)| Ok(Box::new(open(url, &new_shard_role(i))?) as Box<dyn DataStore>))
                    .collect::<anyhow::Result<_>>()?;
                Some(Arc::new(ShardedStore::new(shards)))
            }
        };
        Ok(DataStores { legacy, new })
    }

    /// Both stores in memory (`new_store`: with a new store, or plain mode).
    pub fn in_memory(new_store: bool) -> Self {
        let new: Option<Arc<dyn DataStore>> = new_store.then(|| Arc::new(MemoryStore::default()) as Arc<dyn DataStore>);
        DataStores { legacy: Arc::new(MemoryStore::default()), new }
    }

    /// Raises the account's fence in both stores (`DataStore::raise_fence`),
    /// at once: a flip waits for both.
    pub fn raise_fence(&self, account_id: &str, epoch: i64) -> Result<(), StoreError> {
        let Some(new) = &self.new else { return self.legacy.raise_fence(account_id, epoch) };
        std::thread::scope(|s| {
            let legacy = s.spawn(|| self.legacy.raise_fence(account_id, epoch));
            let new = new.raise_fence(account_id, epoch);
            legacy.join().unwrap_or_else(|_| Err(StoreError::Internal("raising the legacy store's fence panicked".into()))).and(new)
        })
    }

    pub fn get(&self, store: Store) -> Option<&dyn DataStore> {
        match store {
            Store::Legacy => Some(&*self.legacy),
            Store::New => self.new.as_deref(),
        }
    }
}

/// Versions are `u64` in the contract and `INTEGER` (i64) in SQL.
pub(crate) fn version_to_sql(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Invalid(format!("version {version} is out of range")))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if crate::db::is_transient(&e) { StoreError::Unavailable(e.to_string()) } else { StoreError::Internal(e.to_string()) }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            // Timed out waiting for a connection, or could not make one.
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
