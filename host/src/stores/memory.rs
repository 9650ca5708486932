//! [`DataStore`] in one process's memory, with the same rules as the SQLite
//! stores (versions only move forward; a delete leaves a tombstone): the
//! stores of in-process tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{DataStore, Note, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    /// (account, note) → the note, or a tombstone (`None`) at a version.
    notes: Mutex<BTreeMap<(String, String), (u64, Option<Note>)>>,
}

impl MemoryStore {
    fn notes(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), (u64, Option<Note>)>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DataStore for MemoryStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        Ok(self.notes().get(&(account_id.to_owned(), note_id.to_owned())).and_then(|(_, note)| note.clone()))
    }

    fn put(&self, note: &Note) -> Result<bool, StoreError> {
        let mut notes = self.notes();
        let key = (note.account_id.clone(), note.id.clone());
        if notes.get(&key).is_some_and(|(recorded, _)| note.version <= *recorded) {
            return Ok(false);
        }
        notes.insert(key, (note.version, Some(note.clone())));
        Ok(true)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64) -> Result<bool, StoreError> {
        let mut notes = self.notes();
        match notes.get_mut(&(account_id.to_owned(), note_id.to_owned())) {
            Some((recorded, note)) if *recorded <= version => {
                *recorded = version;
                Ok(note.take().is_some())
            }
            Some(_) => Ok(false),
            None => {
                notes.insert((account_id.to_owned(), note_id.to_owned()), (version, None));
                Ok(false)
            }
        }
    }

    fn list_ids(&self, account_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.notes().iter().filter(|((a, _), (_, n))| a == account_id && n.is_some()).map(|((_, id), _)| id.clone()).collect())
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        Ok(self.list_ids(account_id)?.len() as u64)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.notes().get(&(account_id.to_owned(), note_id.to_owned())).map(|(version, _)| *version))
    }
}
