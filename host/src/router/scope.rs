//! One account's view of the stores, given to a router for one call.
//!
//! Invariant: a router sees only its request's account. Every store call goes
//! through an [`AccountScope`], which supplies the account id itself and
//! refuses a note carrying another one.

use notes_routing::{Error, IdList, Note, Result, Store, Stores};

use std::sync::{Arc, Mutex};

use crate::stores::{DataStore, DataStores, StoreBatch, StoreError};

/// One account's view of the host's data stores.
#[derive(Clone)]
pub struct AccountScope {
    account_id: String,
    /// The flag epoch the request was admitted under: every write carries it.
    epoch: i64,
    stores: DataStores,
    /// In a batched scope, every read and write goes through these.
    batch: Option<Arc<ScopeBatch>>,
}

/// The open batches of one batched scope, one per store, committed together
/// by the caller once the router's call succeeded ([`ScopeBatch::commit`]);
/// dropped uncommitted (a trap, an error), they roll back and change nothing.
pub struct ScopeBatch {
    legacy: Mutex<Option<Box<dyn StoreBatch>>>,
    new: Mutex<Option<Box<dyn StoreBatch>>>,
}

impl ScopeBatch {
    fn slot(&self, store: Store) -> &Mutex<Option<Box<dyn StoreBatch>>> {
        match store {
            Store::Legacy => &self.legacy,
            Store::New => &self.new,
        }
    }

    /// Commits `first` (the store notes moved to), then the other: a crash
    /// in between leaves a note in both stores, which newest-wins reads
    /// resolve, never in neither.
    pub fn commit(&self, first: Store) -> std::result::Result<(), StoreError> {
        let other = if first == Store::New { Store::Legacy } else { Store::New };
        for store in [first, other] {
            if let Some(batch) = self.slot(store).lock().unwrap_or_else(|e| e.into_inner()).take() {
                batch.commit()?;
            }
        }
        Ok(())
    }
}

impl AccountScope {
    pub fn new(account_id: String, epoch: i64, stores: DataStores) -> Self {
        AccountScope { account_id, epoch, stores, batch: None }
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The same account's view, with one batch per store (one transaction,
    /// one fsync at commit): what a move of many notes uses. Legacy's batch
    /// begins first, then new's, in every process, so on SQLite (a batch
    /// holds its file's write lock from the start) two never wait on each
    /// other. On PostgreSQL rows are locked as they are written; a wait
    /// across the two databases, which no deadlock detector sees, ends at
    /// the lock timeout (`pg.rs`) and fails the batch, moving nothing.
    pub fn batched(&self) -> std::result::Result<(AccountScope, Arc<ScopeBatch>), StoreError> {
        let legacy = self.stores.legacy.begin_batch(&self.account_id, self.epoch)?;
        let new = self.stores.new.as_ref().map(|new| new.begin_batch(&self.account_id, self.epoch)).transpose()?;
        let batch = Arc::new(ScopeBatch { legacy: Mutex::new(Some(legacy)), new: Mutex::new(new) });
        Ok((AccountScope { batch: Some(batch.clone()), ..self.clone() }, batch))
    }

    fn store(&self, store: Store) -> Result<&dyn DataStore> {
        self.stores.get(store).ok_or_else(|| Error::Invalid("the new store is not configured on this host".into()))
    }

    /// Runs `op` on the store's batch in a batched scope, else `plain` on
    /// the store; counted and timed in the metrics as `name`.
    fn on<T>(
        &self,
        store: Store,
        name: &'static str,
        op: impl FnOnce(&dyn StoreBatch) -> std::result::Result<T, StoreError>,
        plain: impl FnOnce(&dyn DataStore) -> std::result::Result<T, StoreError>,
    ) -> Result<T> {
        let target = self.store(store)?;
        let started = std::time::Instant::now();
        let result = match &self.batch {
            None => Ok(plain(target)?),
            Some(batch) => {
                let slot = batch.slot(store).lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_deref() {
                    Some(open) => Ok(op(open)?),
                    None => Err(Error::Internal("the batch of this call was already committed".into())),
                }
            }
        };
        let store = if store == Store::Legacy { "legacy" } else { "new" };
        metrics::counter!(crate::metrics::STORE_OPERATIONS, "store" => store, "op" => name).increment(1);
        metrics::histogram!(crate::metrics::STORE_DURATION, "store" => store, "op" => name).record(started.elapsed().as_secs_f64());
        result
    }
}

impl Stores for AccountScope {
    fn get(&self, store: Store, note_id: &str) -> Result<Option<Note>> {
        let account = self.account_id.as_str();
        self.on(store, "get", |b| b.get(account, note_id), |s| s.get(account, note_id))
    }

    fn put(&self, store: Store, note: &Note) -> Result<bool> {
        if note.account_id != self.account_id {
            return Err(Error::Invalid(format!(
                "a plugin serving account {} cannot write a note of account {}",
                self.account_id, note.account_id
            )));
        }
        if note.id.is_empty() {
            return Err(Error::Invalid("a note needs an id".into()));
        }
        self.on(store, "put", |b| b.put(note), |s| s.put(note, self.epoch))
    }

    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> Result<bool> {
        let account = self.account_id.as_str();
        self.on(store, "delete_if_not_newer", |b| b.delete_if_not_newer(account, note_id, version), |s| {
            s.delete_if_not_newer(account, note_id, version, self.epoch)
        })
    }

    fn list_ids(&self, store: Store) -> Result<IdList> {
        let account = self.account_id.as_str();
        self.on(store, "list_ids", |b| b.list_ids(account), |s| s.list_ids(account))
    }

    fn is_configured(&self, store: Store) -> bool {
        self.stores.get(store).is_some()
    }

    fn recorded_version(&self, store: Store, note_id: &str) -> Result<Option<u64>> {
        let account = self.account_id.as_str();
        self.on(store, "recorded_version", |b| b.recorded_version(account, note_id), |s| s.recorded_version(account, note_id))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            fenced @ StoreError::Fenced { .. } => Error::Unavailable(fenced.to_string()),
            StoreError::Invalid(m) => Error::Invalid(m),
            StoreError::Internal(m) => Error::Internal(m),
        }
    }
}

