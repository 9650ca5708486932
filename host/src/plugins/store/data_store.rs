//! [`PluginStore`]: a store plugin served as one of the host's stores, so the
//! router plugin and every job see a [`DataStore`](crate::stores::DataStore)
//! like the SQLite and PostgreSQL ones.
//!
//! A plugin that keeps versions is called through as it is. For one that
//! keeps content only, the host keeps each note's version and tombstone in a
//! [`VersionTable`] and makes every write conditional there; the plugin holds
//! the content. A note the store held before the host ever wrote it (the
//! legacy system's own notes) counts as version 1.

use std::sync::Arc;

use notes_routing::{IdList, Note};

use super::StorePlugin;
use crate::stores::versions::{Recorded, VersionTable};
use crate::stores::{AsyncStore, BlockingStore, StoreBatch, StoreError, StoredRow};

/// The version of a note found in a content-only store that the host never
/// wrote: the legacy system's own notes, as if each had been created once.
const UNTRACKED_VERSION: u64 = 1;

#[derive(Clone)]
pub struct PluginStore(Arc<Inner>);

struct Inner {
    plugin: Arc<StorePlugin>,
    /// `Some` for a plugin that keeps content only.
    versions: Option<VersionTable>,
    /// The runtime the blocking calls (jobs, `db` tools) run the plugin's
    /// async calls on: its HTTP client needs a tokio reactor.
    runtime: tokio::runtime::Handle,
    /// Notes counted per account, for a while: `/metrics` and `migrate
    /// status` count every account's notes, and each count is a full list
    /// from the upstream. Forgotten at this host's writes of the account.
    counts: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// How long a count is reused (another host's writes show after it).
const COUNT_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl PluginStore {
    /// `versions` must be given for a plugin whose `keeps-versions` is false.
    pub fn new(plugin: Arc<StorePlugin>, versions: Option<VersionTable>, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let versions = match (plugin.info().keeps_versions, versions) {
            (true, _) => None,
            (false, Some(v)) => Some(v),
            (false, None) => anyhow::bail!("{} keeps no versions, and no version table was given for it", plugin.label()),
        };
        Ok(PluginStore(Arc::new(Inner { plugin, versions, runtime, counts: Default::default() })))
    }
}

impl Inner {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The note the content-only store holds, under the version the host
    /// recorded, read while no write of the store runs: content and version
    /// belong together.
    async fn tracked_get(&self, versions: &VersionTable, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        let _reading = versions.reading().await?;
        let recorded = versions.recorded(account_id, note_id)?;
        let note = self.plugin.get(account_id, note_id).await?;
        Ok(match (recorded, note) {
            (Some(Recorded { deleted: true, .. }), _) | (_, None) => None,
            (Some(Recorded { version, .. }), Some(note)) => Some(Note { version, ..note }),
            (None, Some(note)) => Some(Note { version: UNTRACKED_VERSION, ..note }),
        })
    }

    /// What counts as recorded for a note: the host's row, or version 1 for
    /// a note the store holds that the host never wrote.
    async fn effective(&self, recorded: Option<Recorded>, account_id: &str, note_id: &str) -> Result<Option<Recorded>, StoreError> {
        match recorded {
            Some(r) => Ok(Some(r)),
            None => Ok(self.plugin.get(account_id, note_id).await?.map(|_| Recorded { version: UNTRACKED_VERSION, deleted: false })),
        }
    }

    fn forget_count(&self, account_id: &str) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).remove(account_id);
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        if let Some((at, n)) = self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(account_id)
            && at.elapsed() < COUNT_FOR
        {
            return Ok(*n);
        }
        let n = self.block_on(self.list_any(account_id))?.len() as u64;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the accounts counted in the last while.
        counts.retain(|_, (at, _)| at.elapsed() < COUNT_FOR);
        counts.insert(account_id.to_owned(), (std::time::Instant::now(), n));
        Ok(n)
    }

    async fn put_any(&self, note: &Note) -> Result<bool, StoreError> {
        self.forget_count(&note.account_id);
        let Some(versions) = &self.versions else { return self.plugin.put(note).await };
        // Refused before the store is written, not after.
        crate::stores::version_to_sql(note.version)?;
        let written = versions
            .write(&note.account_id, &note.id, async |recorded| {
                let current = self.effective(recorded, &note.account_id, &note.id).await?;
                if current.is_some_and(|c| note.version <= c.version) {
                    return Ok(None);
                }
                if !self.plugin.put(note).await? {
                    return Err(StoreError::Internal(format!("{} keeps content only but did not store note {}", self.plugin.label(), note.id)));
                }
                Ok(Some((Recorded { version: note.version, deleted: false }, ())))
            })
            .await?;
        Ok(written.is_some())
    }

    async fn delete_any(&self, account_id: &str, note_id: &str, version: u64) -> Result<bool, StoreError> {
        self.forget_count(account_id);
        let Some(versions) = &self.versions else { return self.plugin.delete_if_not_newer(account_id, note_id, version).await };
        crate::stores::version_to_sql(version)?;
        let removed = versions
            .write(account_id, note_id, async |recorded| {
                let current = self.effective(recorded, account_id, note_id).await?;
                if current.is_some_and(|c| c.version > version) {
                    return Ok(None);
                }
                let live = current.is_some_and(|c| !c.deleted);
                if live {
                    self.plugin.delete_if_not_newer(account_id, note_id, version).await?;
                }
                Ok(Some((Recorded { version, deleted: true }, live)))
            })
            .await?;
        Ok(removed.unwrap_or(false))
    }

    async fn get_any(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        match &self.versions {
            Some(versions) => self.tracked_get(versions, account_id, note_id).await,
            None => self.plugin.get(account_id, note_id).await,
        }
    }

    async fn recorded_any(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        match &self.versions {
            Some(versions) => {
                let _reading = versions.reading().await?;
                let recorded = versions.recorded(account_id, note_id)?;
                Ok(self.effective(recorded, account_id, note_id).await?.map(|r| r.version))
            }
            None => self.plugin.recorded_version(account_id, note_id).await,
        }
    }

    async fn list_any(&self, account_id: &str) -> Result<IdList, StoreError> {
        let Some(versions) = &self.versions else { return self.plugin.list_ids(account_id).await };
        let _reading = versions.reading().await?;
        let listed = self.plugin.list_ids(account_id).await?;
        let deleted = versions.deleted_ids(account_id)?;
        if deleted.is_empty() {
            return Ok(listed);
        }
        Ok(listed.iter().filter(|id| !deleted.contains(*id)).collect())
    }

    async fn first_any(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let Some(versions) = &self.versions else { return self.plugin.first_ids(account_id, after, limit).await };
        let _reading = versions.reading().await?;
        let deleted = versions.deleted_ids(account_id)?;
        let mut ids = Vec::new();
        let mut after = after.to_owned();
        // A page may be all tombstones the store still holds: go on past them.
        loop {
            let page = self.plugin.first_ids(account_id, &after, limit).await?;
            let full = page.len() == limit;
            if let Some(last) = page.last() {
                after = last.clone();
            }
            ids.extend(page.into_iter().filter(|id| !deleted.contains(id)));
            if ids.len() >= limit || !full {
                ids.truncate(limit);
                return Ok(ids);
            }
        }
    }
}

impl BlockingStore for PluginStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        self.0.block_on(self.0.get_any(account_id, note_id))
    }

    fn put(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        self.0.block_on(self.0.put_any(note))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        self.0.block_on(self.0.delete_any(account_id, note_id, version))
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        self.0.block_on(self.0.list_any(account_id))
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.0.block_on(self.0.first_any(account_id, after, limit))
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        self.0.count(account_id)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.0.block_on(self.0.recorded_any(account_id, note_id))
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError> {
        self.0.block_on(async {
            let mut rows = Vec::with_capacity(note_ids.len());
            for id in note_ids {
                if let Some(note) = self.0.get_any(account_id, id).await? {
                    rows.push(StoredRow { note, deleted: false });
                } else if let Some(version) = self.0.recorded_any(account_id, id).await? {
                    let note = Note { id: id.clone(), account_id: account_id.to_owned(), content: String::new(), created_at_ms: 0, updated_at_ms: 0, version };
                    rows.push(StoredRow { note, deleted: true });
                }
            }
            Ok(rows)
        })
    }

    fn begin_batch(&self, _account_id: &str, _epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        Ok(Box::new(Batch { store: self.clone(), writes: Vec::new().into() }))
    }

    /// One machine (a data dir): no host is ever skipped by a flip, as for
    /// the SQLite stores, so there is no fence to raise.
    fn raise_fence(&self, _account_id: &str, _epoch: i64) -> Result<(), StoreError> {
        Ok(())
    }
}

impl PluginStore {
    /// Runs `call` on the caller's task if it is on a tokio runtime (a
    /// request), else as a task of the host's runtime, awaited from here (a
    /// job's batch, driven by `pollster` on its own thread): the plugin's
    /// deadline and its HTTP client need a tokio reactor.
    async fn on_runtime<R: Send + 'static, F: Future<Output = Result<R, StoreError>> + Send + 'static>(
        &self,
        call: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<R, StoreError> {
        let future = call(self.0.clone());
        if tokio::runtime::Handle::try_current().is_ok() {
            return future.await;
        }
        self.spawned(future).await
    }

    /// A write runs to its end as a task of its own: a request dropped
    /// midway (its client gone, its timeout) must not cut a write between
    /// the store's change and the version the host records for it.
    async fn write<R: Send + 'static, F: Future<Output = Result<R, StoreError>> + Send + 'static>(
        &self,
        call: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<R, StoreError> {
        self.spawned(call(self.0.clone())).await
    }

    /// `future` as a task of the host's runtime, awaited from here.
    async fn spawned<R: Send + 'static>(&self, future: impl Future<Output = Result<R, StoreError>> + Send + 'static) -> Result<R, StoreError> {
        self.0.runtime.spawn(future).await.map_err(|e| StoreError::Internal(format!("a store plugin call did not finish: {e}")))?
    }
}

#[async_trait::async_trait]
impl AsyncStore for PluginStore {
    fn serves_requests_async(&self) -> bool {
        true
    }

    fn waits_on_an_upstream(&self) -> bool {
        true
    }

    async fn put_async(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        let note = note.clone();
        self.write(move |s| async move { s.put_any(&note).await }).await
    }

    async fn delete_if_not_newer_async(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        let (account_id, note_id) = (account_id.to_owned(), note_id.to_owned());
        self.write(move |s| async move { s.delete_any(&account_id, &note_id, version).await }).await
    }

    async fn get_async(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        let (account_id, note_id) = (account_id.to_owned(), note_id.to_owned());
        self.on_runtime(move |s| async move { s.get_any(&account_id, &note_id).await }).await
    }

    async fn list_ids_async(&self, account_id: &str) -> Result<IdList, StoreError> {
        let account_id = account_id.to_owned();
        self.on_runtime(move |s| async move { s.list_any(&account_id).await }).await
    }

    async fn recorded_version_async(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        let (account_id, note_id) = (account_id.to_owned(), note_id.to_owned());
        self.on_runtime(move |s| async move { s.recorded_any(&account_id, &note_id).await }).await
    }
}

/// A batch's writes, kept until `commit` and then made one by one, each
/// conditional as a single write is. Not one transaction: a store plugin
/// has none to offer. A batch that fails midway has landed a prefix of its
/// writes, which a retry repeats as no-ops (every write is conditional on
/// its version); one dropped uncommitted lands nothing.
struct Batch {
    store: PluginStore,
    writes: std::sync::Mutex<Vec<Write>>,
}

enum Write {
    Put(Note),
    Delete { account_id: String, note_id: String, version: u64 },
}

impl StoreBatch for Batch {
    fn put(&self, note: &Note) -> Result<(), StoreError> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).push(Write::Put(note.clone()));
        Ok(())
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<(), StoreError> {
        let write = Write::Delete { account_id: account_id.to_owned(), note_id: note_id.to_owned(), version };
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).push(write);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        self.store.0.block_on(async {
            for write in &writes {
                match write {
                    Write::Put(note) => {
                        self.store.0.put_any(note).await?;
                    }
                    Write::Delete { account_id, note_id, version } => {
                        self.store.0.delete_any(account_id, note_id, *version).await?;
                    }
                }
            }
            Ok(())
        })
    }
}
