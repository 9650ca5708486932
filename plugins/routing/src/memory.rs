//! [`MemoryStores`]: an in-memory [`Stores`] that keeps the WIT contract
//! (versions never go down, deletes leave tombstones), for unit-testing
//! routers without a host.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{IdList, Note, Result, Store, Stores};

#[derive(Debug, Clone)]
enum Slot {
    Live(Note),
    Tombstone(u64),
}

impl Slot {
    fn version(&self) -> u64 {
        match self {
            Slot::Live(n) => n.version,
            Slot::Tombstone(v) => *v,
        }
    }
}

/// One account's stores. `new_configured = false` gives plain mode.
#[derive(Debug)]
pub struct MemoryStores {
    legacy: RefCell<BTreeMap<String, Slot>>,
    new: RefCell<BTreeMap<String, Slot>>,
    new_configured: bool,
}

impl MemoryStores {
    pub fn new(new_configured: bool) -> Self {
        MemoryStores { legacy: Default::default(), new: Default::default(), new_configured }
    }

    fn map(&self, store: Store) -> &RefCell<BTreeMap<String, Slot>> {
        match store {
            Store::Legacy => &self.legacy,
            Store::New => &self.new,
        }
    }

    /// The live note in `store`, for assertions.
    pub fn peek(&self, store: Store, note_id: &str) -> Option<Note> {
        self.get(store, note_id).unwrap()
    }
}

impl Stores for MemoryStores {
    fn get(&self, store: Store, note_id: &str) -> Result<Option<Note>> {
        Ok(match self.map(store).borrow().get(note_id) {
            Some(Slot::Live(n)) => Some(n.clone()),
            _ => None,
        })
    }

    fn put(&self, store: Store, note: &Note) -> Result<bool> {
        let mut map = self.map(store).borrow_mut();
        if map.get(&note.id).is_some_and(|slot| slot.version() >= note.version) {
            return Ok(false);
        }
        map.insert(note.id.clone(), Slot::Live(note.clone()));
        Ok(true)
    }

    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> Result<bool> {
        let mut map = self.map(store).borrow_mut();
        let (removed, write) = match map.get(note_id) {
            Some(slot) if slot.version() > version => (false, false),
            Some(Slot::Live(_)) => (true, true),
            Some(Slot::Tombstone(_)) | None => (false, true),
        };
        if write {
            map.insert(note_id.to_owned(), Slot::Tombstone(version));
        }
        Ok(removed)
    }

    fn list_ids(&self, store: Store) -> Result<IdList> {
        let map = self.map(store).borrow();
        Ok(map.iter().filter(|(_, s)| matches!(s, Slot::Live(_))).map(|(id, _)| id).collect())
    }

    fn is_configured(&self, store: Store) -> bool {
        store == Store::Legacy || self.new_configured
    }

    fn recorded_version(&self, store: Store, note_id: &str) -> Result<Option<u64>> {
        Ok(self.map(store).borrow().get(note_id).map(Slot::version))
    }
}
