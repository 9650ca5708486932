//! One account's view of the stores, given to a router for one call.
//!
//! Invariant: a router sees only its request's account. Every store call goes
//! through an [`AccountScope`], which supplies the account id itself and
//! refuses a note carrying another one.

use notes_routing::{Error, IdList, Note, Result, Store, Stores};

use std::sync::{Arc, OnceLock};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::batch::ScopeBatch;
use crate::stores::{DataStore, DataStores, StoreError};

/// One account's view of the host's data stores.
#[derive(Clone)]
pub struct AccountScope {
    account_id: String,
    /// The flag epoch the request was admitted under: every write carries it.
    epoch: i64,
    stores: DataStores,
    /// In a batched scope, every read and write goes through it.
    batch: Option<Arc<ScopeBatch>>,
    /// Writes refused for naming another account, counted when someone
    /// watches (the conformance kit: a plugin may ignore the refusal, and
    /// its author must still hear of it). `None` when serving.
    refused_writes: Option<Arc<AtomicUsize>>,
    /// The first store failure of the call (which store, and why), so a
    /// plugin's error that only passed it on is answered as the host's
    /// failure (503), not blamed on the plugin.
    store_failure: Arc<OnceLock<String>>,
}

impl AccountScope {
    pub fn new(account_id: String, epoch: i64, stores: DataStores) -> Self {
        AccountScope { account_id, epoch, stores, batch: None, refused_writes: None, store_failure: Arc::default() }
    }

    /// Where the call's first store failure will be told, once it is made.
    pub fn store_failure(&self) -> Arc<OnceLock<String>> {
        Arc::clone(&self.store_failure)
    }

    /// This scope, counting in `refused` every write it refuses for naming another account.
    pub fn counting_refused_writes(self, refused: Arc<AtomicUsize>) -> Self {
        AccountScope { refused_writes: Some(refused), ..self }
    }

    /// Whether calls to `store` wait on another system (a store plugin's
    /// upstream): their waits are excused from the plugin's deadline.
    pub fn waits_on_an_upstream(&self, store: Store) -> bool {
        self.stores.get(store).is_some_and(|s| s.waits_on_an_upstream())
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The same account's view, with its writes kept until the returned
    /// batch commits them: one transaction per store, `first` (the store
    /// notes move to) first, none while the router runs (`batch`). What a
    /// move of many notes uses.
    pub fn batched(&self, first: Store) -> (AccountScope, Arc<ScopeBatch>) {
        let batch = Arc::new(ScopeBatch::new(self.account_id.clone(), self.epoch, self.stores.clone(), first));
        (AccountScope { batch: Some(batch.clone()), ..self.clone() }, batch)
    }

    fn store(&self, store: Store) -> Result<&dyn DataStore> {
        self.stores.get(store).ok_or_else(|| Error::Invalid("the new store is not configured on this host".into()))
    }

    /// Runs `batched` in a batched scope, else `plain`, on the store;
    /// counted and timed in the metrics as `name`.
    fn on<T>(
        &self,
        store: Store,
        name: &'static str,
        batched: impl FnOnce(&ScopeBatch, &dyn DataStore) -> std::result::Result<T, StoreError>,
        plain: impl FnOnce(&dyn DataStore) -> std::result::Result<T, StoreError>,
    ) -> Result<T> {
        let target = self.store(store)?;
        let started = std::time::Instant::now();
        let result = match &self.batch {
            None => plain(target),
            Some(batch) => batched(batch, target),
        };
        self.record(store, name, started, result)
    }

    /// A store call's result, counted and timed, its failure kept for the caller.
    fn record<T>(&self, store: Store, name: &'static str, started: std::time::Instant, result: std::result::Result<T, StoreError>) -> Result<T> {
        let store = if store == Store::Legacy { "legacy" } else { "new" };
        if let Err(StoreError::Unavailable(why) | StoreError::Internal(why)) = &result {
            let _ = self.store_failure.set(format!("the {store} store failed ({name}): {why}"));
        }
        crate::metrics::store_operation(store, name, started.elapsed());
        Ok(result?)
    }

    /// [`AccountScope::on`] for a store call that may wait (a write's
    /// commit): `plain`'s future is awaited, so an async worker is not held.
    async fn on_async<'a, T, F>(
        &'a self,
        store: Store,
        name: &'static str,
        batched: impl FnOnce(&ScopeBatch, &dyn DataStore) -> std::result::Result<T, StoreError>,
        plain: impl FnOnce(&'a dyn DataStore) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, StoreError>>,
    {
        let target = self.store(store)?;
        let started = std::time::Instant::now();
        let result = match &self.batch {
            None => plain(target).await,
            Some(batch) => batched(batch, target),
        };
        self.record(store, name, started, result)
    }

    /// A write a plugin asked for: checked as [`Stores::put`] checks it, and
    /// from an async worker (a plugin's import) it waits for its commit
    /// without holding the thread (`DataStore::put_async`).
    pub async fn put_async(&self, store: Store, note: &Note) -> Result<bool> {
        self.check_write(note)?;
        self.on_async(store, "put", |b, s| b.put(s, store, note), |s| s.put_async(note, self.epoch)).await
    }

    /// [`Stores::delete_if_not_newer`], waiting for its commit as [`AccountScope::put_async`] does.
    pub async fn delete_if_not_newer_async(&self, store: Store, note_id: &str, version: u64) -> Result<bool> {
        let account = self.account_id.as_str();
        self.on_async(store, "delete_if_not_newer", |b, s| b.delete_if_not_newer(s, store, note_id, version), |s| {
            s.delete_if_not_newer_async(account, note_id, version, self.epoch)
        })
        .await
    }

    /// [`Stores::get`] from an async worker (a plugin's import): a store
    /// reached over the network awaits its round trip (`DataStore::get_async`).
    pub async fn get_async(&self, store: Store, note_id: &str) -> Result<Option<Note>> {
        let account = self.account_id.as_str();
        self.on_async(store, "get", |b, s| b.get(s, store, note_id), |s| s.get_async(account, note_id)).await
    }

    /// [`Stores::list_ids`] from an async worker.
    pub async fn list_ids_async(&self, store: Store) -> Result<IdList> {
        let account = self.account_id.as_str();
        self.on_async(store, "list_ids", |b, s| b.list_ids(s, store), |s| s.list_ids_async(account)).await
    }

    /// [`Stores::recorded_version`] from an async worker.
    pub async fn recorded_version_async(&self, store: Store, note_id: &str) -> Result<Option<u64>> {
        let account = self.account_id.as_str();
        self.on_async(store, "recorded_version", |b, s| b.recorded_version(s, store, note_id), |s| {
            s.recorded_version_async(account, note_id)
        })
        .await
    }

    /// A note a router may write in this scope: of its account, with an id.
    fn check_write(&self, note: &Note) -> Result<()> {
        if note.account_id != self.account_id {
            if let Some(refused) = &self.refused_writes {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            return Err(Error::Invalid(format!(
                "a plugin serving account {} cannot write a note of account {}",
                self.account_id, note.account_id
            )));
        }
        if note.id.is_empty() {
            return Err(Error::Invalid("a note needs an id".into()));
        }
        Ok(())
    }
}

impl Stores for AccountScope {
    fn get(&self, store: Store, note_id: &str) -> Result<Option<Note>> {
        let account = self.account_id.as_str();
        self.on(store, "get", |b, s| b.get(s, store, note_id), |s| s.get(account, note_id))
    }

    fn put(&self, store: Store, note: &Note) -> Result<bool> {
        self.check_write(note)?;
        self.on(store, "put", |b, s| b.put(s, store, note), |s| s.put(note, self.epoch))
    }

    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> Result<bool> {
        let account = self.account_id.as_str();
        self.on(store, "delete_if_not_newer", |b, s| b.delete_if_not_newer(s, store, note_id, version), |s| {
            s.delete_if_not_newer(account, note_id, version, self.epoch)
        })
    }

    fn list_ids(&self, store: Store) -> Result<IdList> {
        let account = self.account_id.as_str();
        self.on(store, "list_ids", |b, s| b.list_ids(s, store), |s| s.list_ids(account))
    }

    fn is_configured(&self, store: Store) -> bool {
        self.stores.get(store).is_some()
    }

    fn recorded_version(&self, store: Store, note_id: &str) -> Result<Option<u64>> {
        let account = self.account_id.as_str();
        self.on(store, "recorded_version", |b, s| b.recorded_version(s, store, note_id), |s| s.recorded_version(account, note_id))
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

