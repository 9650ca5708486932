//! [`DataStore`] in one process's memory, with the same rules as the SQLite
//! stores (versions only move forward; a delete leaves a tombstone;
//! [`StoredRow`] applies them): the stores of in-process tests. A batch
//! lands all its writes at once, under one lock, at commit.

use notes_routing::IdList;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{AsyncStore, BlockingStore, Note, StoreBatch, StoreError, StoredRow};
use crate::lock::lock;

#[derive(Default)]
pub struct MemoryStore {
    notes: Arc<Mutex<Notes>>,
}

/// (account, note) → its row, live or a tombstone.
#[derive(Default)]
struct Notes(BTreeMap<(String, String), StoredRow>);


fn key(account_id: &str, note_id: &str) -> (String, String) {
    (account_id.to_owned(), note_id.to_owned())
}

impl Notes {
    fn row(&self, account_id: &str, note_id: &str) -> Option<&StoredRow> {
        self.0.get(&key(account_id, note_id))
    }

    /// Applies `rule` to the note's row, writing back what it leaves.
    fn update<T>(&mut self, account_id: &str, note_id: &str, rule: impl FnOnce(&mut Option<StoredRow>) -> T) -> T {
        let key = key(account_id, note_id);
        let mut row = self.0.remove(&key);
        let answer = rule(&mut row);
        if let Some(row) = row {
            self.0.insert(key, row);
        }
        answer
    }

    fn put(&mut self, note: &Note) -> bool {
        self.update(&note.account_id, &note.id, |row| StoredRow::put(row, note))
    }

    fn delete_if_not_newer(&mut self, account_id: &str, note_id: &str, version: u64) -> bool {
        self.update(account_id, note_id, |row| StoredRow::delete_if_not_newer(row, account_id, note_id, version))
    }

    fn list_ids(&self, account_id: &str) -> IdList {
        self.0.iter().filter(|((a, _), row)| a == account_id && !row.deleted).map(|((_, id), _)| id).collect()
    }
}

impl BlockingStore for MemoryStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        Ok(lock(&self.notes).row(account_id, note_id).and_then(StoredRow::live).cloned())
    }

    fn put(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        // The range the SQL stores can record, so memory refuses what they refuse.
        super::version_to_sql(note.version)?;
        Ok(lock(&self.notes).put(note))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        super::version_to_sql(version)?;
        Ok(lock(&self.notes).delete_if_not_newer(account_id, note_id, version))
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id))
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id).len() as u64)
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id).iter().filter(|id| *id > after).take(limit).map(str::to_owned).collect())
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.notes).row(account_id, note_id).map(|row| row.note.version))
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError> {
        let notes = lock(&self.notes);
        Ok(note_ids.iter().filter_map(|id| notes.row(account_id, id).cloned()).collect())
    }

    /// No fence in one process (see `DataStore`).
    fn raise_fence(&self, _account_id: &str, _epoch: i64) -> Result<(), StoreError> {
        Ok(())
    }

    fn begin_batch(&self, _: &str, _epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        Ok(Box::new(MemoryBatch { notes: self.notes.clone(), writes: Mutex::default() }))
    }
}

impl AsyncStore for MemoryStore {
    fn is_in_process(&self) -> bool {
        true
    }
}

enum Write {
    Put(Note),
    Delete { account_id: String, note_id: String, version: u64 },
}

/// Writes kept until commit, then applied under one lock: all at once, as
/// a transaction would.
struct MemoryBatch {
    notes: Arc<Mutex<Notes>>,
    writes: Mutex<Vec<Write>>,
}

impl StoreBatch for MemoryBatch {
    fn put(&self, note: &Note) -> Result<(), StoreError> {
        lock(&self.writes).push(Write::Put(note.clone()));
        Ok(())
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<(), StoreError> {
        let delete = Write::Delete { account_id: account_id.to_owned(), note_id: note_id.to_owned(), version };
        lock(&self.writes).push(delete);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let mut notes = lock(&self.notes);
        for write in self.writes.into_inner().unwrap_or_else(|e| e.into_inner()) {
            match write {
                Write::Put(note) => notes.put(&note),
                Write::Delete { account_id, note_id, version } => notes.delete_if_not_newer(&account_id, &note_id, version),
            };
        }
        Ok(())
    }
}
