//! One account's view of the stores, given to a router for one call.
//!
//! Invariant: a router sees only its request's account. Every store call goes
//! through an [`AccountScope`], which supplies the account id itself and
//! refuses a note carrying another one.

use notes_routing::{Error, Note, Result, Store, Stores};

use crate::stores::{DataStore, DataStores, StoreError};

/// One account's view of the host's data stores.
#[derive(Clone)]
pub struct AccountScope {
    account_id: String,
    stores: DataStores,
}

impl AccountScope {
    pub fn new(account_id: String, stores: DataStores) -> Self {
        AccountScope { account_id, stores }
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    fn store(&self, store: Store) -> Result<&dyn DataStore> {
        self.stores.get(store).ok_or_else(|| Error::Invalid("the new store is not configured on this host".into()))
    }
}

impl Stores for AccountScope {
    fn get(&self, store: Store, note_id: &str) -> Result<Option<Note>> {
        Ok(self.store(store)?.get(&self.account_id, note_id)?)
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
        Ok(self.store(store)?.put(note)?)
    }

    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> Result<bool> {
        Ok(self.store(store)?.delete_if_not_newer(&self.account_id, note_id, version)?)
    }

    fn list_ids(&self, store: Store) -> Result<Vec<String>> {
        Ok(self.store(store)?.list_ids(&self.account_id)?)
    }

    fn is_configured(&self, store: Store) -> bool {
        self.stores.get(store).is_some()
    }

    fn recorded_version(&self, store: Store, note_id: &str) -> Result<Option<u64>> {
        Ok(self.store(store)?.recorded_version(&self.account_id, note_id)?)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::Invalid(m) => Error::Invalid(m),
            StoreError::Internal(m) => Error::Internal(m),
        }
    }
}

