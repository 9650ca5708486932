//! A batched call's writes, held back until the call has returned.
//!
//! A move of many notes is one plugin call, and its writes land in one
//! transaction per store (one fsync each). They are not written while the
//! plugin runs: on SQLite a transaction holds the file's write lock, so a
//! plugin that loops (hostile or buggy) would hold every account's writes
//! to that store until its deadline. Instead the call reads the stores as
//! they are, plus its own writes so far. Each write is predicted with the
//! version rules ([`StoredRow`]) and kept; at commit the kept writes land,
//! in the store notes move to first, each under the same conditional rules
//! in the store, with no plugin code running. What a batch holds is bounded
//! by bytes ([`MAX_KEPT_BYTES`]): the read-ahead takes only as many notes as
//! fit, and a call that writes more than that is refused, landing nothing.
//!
//! Why nothing is lost: every kept write is conditional in the store too. A
//! client write that lands between the prediction and the commit is newer
//! than the copy being moved (the plugin read the older one), so the moved
//! copy's `put` changes nothing, and the source's `delete_if_not_newer`
//! removes only versions up to the one moved. A prediction can be wrong
//! only in what the move reports, never in which note survives.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use notes_routing::{IdList, Note, Store};

use crate::stores::{DataStore, DataStores, StoreError, StoredRow};

/// Content bytes one batch may hold, read ahead and again in its kept
/// writes: a batch of 512 notes of 1 MiB each must not hold 1 GiB of the
/// host's memory.
pub(super) const MAX_KEPT_BYTES: usize = 16 << 20;

/// The kept writes of one batched call (`AccountScope::batched`), landed by
/// [`ScopeBatch::commit`] once the call succeeded; dropped (a trap, an
/// error), nothing lands.
pub struct ScopeBatch {
    account_id: String,
    epoch: i64,
    stores: DataStores,
    /// The store the call moves notes to. Its writes land first, so a crash
    /// between the two commits leaves a note in both stores (the newest wins
    /// on the next read), never in neither.
    first: Store,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Each note the call touched, per store (`slot`): as read, then as its
    /// own writes leave it.
    rows: [HashMap<String, Option<StoredRow>>; 2],
    /// In the order the call made them.
    writes: Vec<(Store, Write)>,
    bytes: usize,
    committed: bool,
}

enum Write {
    Put(Note),
    Delete { note_id: String, version: u64 },
}

fn slot(store: Store) -> usize {
    match store {
        Store::Legacy => 0,
        Store::New => 1,
    }
}

impl ScopeBatch {
    pub(super) fn new(account_id: String, epoch: i64, stores: DataStores, first: Store) -> Self {
        ScopeBatch { account_id, epoch, stores, first, kept: Mutex::default() }
    }

    fn kept(&self) -> Result<MutexGuard<'_, Kept>, StoreError> {
        let kept = crate::lock::lock(&self.kept);
        if kept.committed {
            return Err(StoreError::Internal("the batch of this call was already committed".into()));
        }
        Ok(kept)
    }

    /// Runs `rule` on the note's row as this call sees it, reading it from
    /// `target` the first time.
    fn on_row<T>(
        &self,
        kept: &mut Kept,
        target: &dyn DataStore,
        store: Store,
        note_id: &str,
        rule: impl FnOnce(&mut Option<StoredRow>) -> T,
    ) -> Result<T, StoreError> {
        let rows = &mut kept.rows[slot(store)];
        if !rows.contains_key(note_id) {
            let row = target.rows(&self.account_id, &[note_id.to_owned()])?.pop();
            rows.insert(note_id.to_owned(), row);
        }
        Ok(rule(rows.get_mut(note_id).expect("inserted above")))
    }

    /// Reads the rows of `note_ids` in each configured store, one query per
    /// store, before the call that will touch them (a move batch): the call
    /// then makes no store read of its own for them. Keeps the first of them
    /// whose contents fit in [`MAX_KEPT_BYTES`] (at least one) and returns
    /// how many: the batch hands the plugin only those.
    pub fn read_ahead(&self, note_ids: &[String]) -> Result<usize, StoreError> {
        let mut kept = self.kept()?;
        let mut found: [HashMap<String, StoredRow>; 2] = Default::default();
        for store in [Store::Legacy, Store::New] {
            if let Some(target) = self.stores.get(store) {
                found[slot(store)] = target.rows(&self.account_id, note_ids)?.into_iter().map(|row| (row.note.id.clone(), row)).collect();
            }
        }
        let mut bytes = 0;
        let mut taken = 0;
        for id in note_ids {
            let size: usize = found.iter().filter_map(|rows| rows.get(id)).map(|row| row.note.content.len()).sum();
            if taken > 0 && bytes + size > MAX_KEPT_BYTES {
                break;
            }
            bytes += size;
            taken += 1;
            for store in [Store::Legacy, Store::New] {
                let row = found[slot(store)].remove(id);
                kept.rows[slot(store)].entry(id.clone()).or_insert(row);
            }
        }
        Ok(taken)
    }

    pub fn get(&self, target: &dyn DataStore, store: Store, note_id: &str) -> Result<Option<Note>, StoreError> {
        let mut kept = self.kept()?;
        self.on_row(&mut kept, target, store, note_id, |row| row.as_ref().and_then(StoredRow::live).cloned())
    }

    pub fn recorded_version(&self, target: &dyn DataStore, store: Store, note_id: &str) -> Result<Option<u64>, StoreError> {
        let mut kept = self.kept()?;
        self.on_row(&mut kept, target, store, note_id, |row| row.as_ref().map(|r| r.note.version))
    }

    pub fn put(&self, target: &dyn DataStore, store: Store, note: &Note) -> Result<bool, StoreError> {
        let mut kept = self.kept()?;
        let landed = self.on_row(&mut kept, target, store, &note.id, |row| StoredRow::put(row, note))?;
        if landed {
            kept.bytes += note.content.len();
            if kept.bytes > MAX_KEPT_BYTES {
                return Err(StoreError::Invalid(format!(
                    "this batch's writes hold over {} MiB of notes; the batch is refused and lands nothing",
                    MAX_KEPT_BYTES >> 20
                )));
            }
            kept.writes.push((store, Write::Put(note.clone())));
        }
        Ok(landed)
    }

    pub fn delete_if_not_newer(&self, target: &dyn DataStore, store: Store, note_id: &str, version: u64) -> Result<bool, StoreError> {
        let mut kept = self.kept()?;
        let (changed, removed) = self.on_row(&mut kept, target, store, note_id, |row| {
            let before = row.clone();
            let removed = StoredRow::delete_if_not_newer(row, &self.account_id, note_id, version);
            (*row != before, removed)
        })?;
        if changed {
            kept.writes.push((store, Write::Delete { note_id: note_id.to_owned(), version }));
        }
        Ok(removed)
    }

    /// The store's live ids, with this call's own writes applied.
    pub fn list_ids(&self, target: &dyn DataStore, store: Store) -> Result<IdList, StoreError> {
        let listed = target.list_ids(&self.account_id)?;
        let kept = self.kept()?;
        let mut writes = kept.writes.iter().filter(|(s, _)| *s == store).peekable();
        if writes.peek().is_none() {
            return Ok(listed);
        }
        let mut ids: BTreeSet<&str> = listed.iter().collect();
        for (_, write) in writes {
            match write {
                Write::Put(note) => ids.insert(&note.id),
                Write::Delete { note_id, .. } => ids.remove(note_id.as_str()),
            };
        }
        Ok(ids.into_iter().collect())
    }

    /// Lands every kept write: one transaction in `first`, then one in the
    /// other store.
    pub fn commit(&self) -> Result<(), StoreError> {
        let mut kept = self.kept()?;
        self.land(&mut kept)?;
        kept.committed = true;
        Ok(())
    }

    /// Lands the kept writes in order, `first` first. A failure after the
    /// first store committed leaves duplicates that newest-wins reads
    /// resolve, as a crash there would.
    fn land(&self, kept: &mut Kept) -> Result<(), StoreError> {
        let other = if self.first == Store::New { Store::Legacy } else { Store::New };
        for store in [self.first, other] {
            let mut writes = kept.writes.iter().filter(|(s, _)| *s == store).peekable();
            if writes.peek().is_none() {
                continue;
            }
            let target = self.stores.get(store).ok_or_else(|| StoreError::Invalid("the new store is not configured on this host".into()))?;
            let batch = target.begin_batch(&self.account_id, self.epoch)?;
            for (_, write) in writes {
                match write {
                    Write::Put(note) => batch.put(note)?,
                    Write::Delete { note_id, version } => batch.delete_if_not_newer(&self.account_id, note_id, *version)?,
                }
            }
            batch.commit()?;
        }
        kept.writes.clear();
        kept.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stores::MemoryStore;

    fn note(id: &str, version: u64, content: &str) -> Note {
        Note { id: id.into(), account_id: "a".into(), content: content.into(), created_at_ms: 1, updated_at_ms: 1, version }
    }

    fn stores() -> DataStores {
        DataStores { legacy: Arc::new(MemoryStore::default()), new: Some(Arc::new(MemoryStore::default())) }
    }

    #[test]
    fn a_batched_call_reads_its_own_writes_and_nothing_lands_before_commit() {
        let stores = stores();
        stores.legacy.put(&note("n", 1, "old"), 0).unwrap();
        let new = stores.new.clone().unwrap();
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        assert!(batch.put(&*new, Store::New, &note("n", 1, "old")).unwrap());
        assert!(batch.delete_if_not_newer(&*stores.legacy, Store::Legacy, "n", 1).unwrap());
        assert_eq!(batch.get(&*new, Store::New, "n").unwrap().unwrap().content, "old", "the call sees its put");
        assert_eq!(batch.get(&*stores.legacy, Store::Legacy, "n").unwrap(), None, "and its delete");
        assert_eq!(batch.recorded_version(&*stores.legacy, Store::Legacy, "n").unwrap(), Some(1), "a tombstone at 1");
        assert_eq!(batch.list_ids(&*stores.legacy, Store::Legacy).unwrap().len(), 0);
        assert_eq!(batch.list_ids(&*new, Store::New).unwrap(), ["n"]);
        assert!(new.get("a", "n").unwrap().is_none() && stores.legacy.get("a", "n").unwrap().is_some(), "nothing landed yet");
        batch.commit().unwrap();
        assert_eq!(new.get("a", "n").unwrap().unwrap().content, "old");
        assert!(stores.legacy.get("a", "n").unwrap().is_none(), "the move landed in both stores");
        assert!(batch.put(&*new, Store::New, &note("m", 1, "late")).is_err(), "a committed batch takes no more writes");
    }

    #[test]
    fn a_list_shows_the_calls_own_writes_only() {
        let stores = stores();
        let new = stores.new.clone().unwrap();
        new.put(&note("n", 1, "there"), 0).unwrap();
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        batch.read_ahead(&["n".into()]).unwrap();
        new.delete_if_not_newer("a", "n", 1, 0).unwrap(); // by a client, after the read-ahead
        batch.put(&*new, Store::New, &note("m", 1, "moved")).unwrap();
        assert_eq!(batch.list_ids(&*new, Store::New).unwrap(), ["m"], "the store as it is now, plus the call's own put");
    }

    #[test]
    fn a_client_write_that_lands_before_the_commit_wins() {
        let stores = stores();
        stores.legacy.put(&note("n", 1, "moved copy"), 0).unwrap();
        let new = stores.new.clone().unwrap();
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        let read = batch.get(&*stores.legacy, Store::Legacy, "n").unwrap().unwrap();
        assert!(batch.put(&*new, Store::New, &read).unwrap());
        batch.delete_if_not_newer(&*stores.legacy, Store::Legacy, "n", 1).unwrap();
        // A client updates the note (migration mode: to new) mid-move.
        new.put(&note("n", 2, "client's update"), 0).unwrap();
        batch.commit().unwrap();
        assert_eq!(new.get("a", "n").unwrap().unwrap().content, "client's update", "the newer write survives");
        assert!(stores.legacy.get("a", "n").unwrap().is_none());
    }

    #[test]
    fn a_batch_reads_ahead_only_the_notes_that_fit_its_byte_bound() {
        let stores = stores();
        let half = "x".repeat(MAX_KEPT_BYTES / 2);
        for id in ["a1", "a2", "a3"] {
            stores.legacy.put(&note(id, 1, &half), 0).unwrap();
        }
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        assert_eq!(batch.read_ahead(&["a1".into(), "a2".into(), "a3".into()]).unwrap(), 2, "two halves fit, not three");
        let huge = "x".repeat(MAX_KEPT_BYTES + 1);
        stores.legacy.put(&note("big", 1, &huge), 0).unwrap();
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        assert_eq!(batch.read_ahead(&["big".into()]).unwrap(), 1, "one note always goes, whatever its size");
    }

    #[test]
    fn a_call_that_writes_more_than_the_byte_bound_is_refused_and_lands_nothing() {
        let stores = stores();
        let new = stores.new.clone().unwrap();
        let batch = ScopeBatch::new("a".into(), 0, stores.clone(), Store::New);
        let big = "x".repeat(MAX_KEPT_BYTES / 2 + 1);
        batch.put(&*new, Store::New, &note("one", 1, &big)).unwrap();
        assert!(batch.put(&*new, Store::New, &note("two", 1, &big)).is_err(), "over the bound");
        drop(batch);
        assert_eq!(new.recorded_version("a", "one").unwrap(), None, "nothing landed");
    }
}
