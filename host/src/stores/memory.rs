//! [`DataStore`] in one process's memory, with the same rules as the SQLite
//! stores (versions only move forward; a delete leaves a tombstone): the
//! stores of in-process tests. A batch writes through at once (there is no
//! durability to batch).

use notes_routing::IdList;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DataStore, Note, StoreBatch, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    notes: Arc<Mutex<Notes>>,
}

/// (account, note) → its recorded version, and the note (`None`: a tombstone).
#[derive(Default)]
struct Notes(BTreeMap<(String, String), (u64, Option<Note>)>);

fn lock(notes: &Mutex<Notes>) -> MutexGuard<'_, Notes> {
    notes.lock().unwrap_or_else(|e| e.into_inner())
}

impl Notes {
    fn get(&self, account_id: &str, note_id: &str) -> Option<Note> {
        self.0.get(&(account_id.to_owned(), note_id.to_owned())).and_then(|(_, note)| note.clone())
    }

    fn put(&mut self, note: &Note) -> bool {
        let key = (note.account_id.clone(), note.id.clone());
        if self.0.get(&key).is_some_and(|(recorded, _)| note.version <= *recorded) {
            return false;
        }
        self.0.insert(key, (note.version, Some(note.clone())));
        true
    }

    fn delete_if_not_newer(&mut self, account_id: &str, note_id: &str, version: u64) -> bool {
        match self.0.get_mut(&(account_id.to_owned(), note_id.to_owned())) {
            Some((recorded, note)) if *recorded <= version => {
                *recorded = version;
                note.take().is_some()
            }
            Some(_) => false,
            None => {
                self.0.insert((account_id.to_owned(), note_id.to_owned()), (version, None));
                false
            }
        }
    }

    fn list_ids(&self, account_id: &str) -> IdList {
        self.0.iter().filter(|((a, _), (_, n))| a == account_id && n.is_some()).map(|((_, id), _)| id).collect()
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Option<u64> {
        self.0.get(&(account_id.to_owned(), note_id.to_owned())).map(|(version, _)| *version)
    }
}

impl DataStore for MemoryStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        Ok(lock(&self.notes).get(account_id, note_id))
    }

    fn put(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        Ok(lock(&self.notes).put(note))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        Ok(lock(&self.notes).delete_if_not_newer(account_id, note_id, version))
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id))
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id).len() as u64)
    }

    fn first_ids(&self, account_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.notes).list_ids(account_id).iter().take(limit).map(str::to_owned).collect())
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.notes).recorded_version(account_id, note_id))
    }

    /// No fence in one process (see `DataStore`).
    fn raise_fence(&self, _account_id: &str, _epoch: i64) -> Result<(), StoreError> {
        Ok(())
    }

    fn begin_batch(&self, _: &str, _epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        Ok(Box::new(MemoryBatch(self.notes.clone())))
    }
}

struct MemoryBatch(Arc<Mutex<Notes>>);

impl StoreBatch for MemoryBatch {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        Ok(lock(&self.0).get(account_id, note_id))
    }

    fn put(&self, note: &Note) -> Result<bool, StoreError> {
        Ok(lock(&self.0).put(note))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<bool, StoreError> {
        Ok(lock(&self.0).delete_if_not_newer(account_id, note_id, version))
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        Ok(lock(&self.0).list_ids(account_id))
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.0).recorded_version(account_id, note_id))
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}
