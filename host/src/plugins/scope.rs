//! The `stores` import: every store call of a plugin goes to the
//! [`AccountScope`] of the call in progress (see `router::scope`).

use super::CallState;
use super::bindings::{WitError, WitNote, WitStore, notes};
use crate::router::AccountScope;
use notes_routing::Stores;

/// The WIT import: every call goes to the scope of the call in progress.
impl CallState {
    fn scope(&self) -> std::result::Result<&AccountScope, WitError> {
        self.scope.as_ref().ok_or_else(|| WitError::Internal("store calls are allowed only while serving a request".into()))
    }
}

impl notes::plugin::stores::Host for CallState {
    fn get(&mut self, s: WitStore, note_id: String) -> std::result::Result<Option<WitNote>, WitError> {
        Ok(self.scope()?.get(s.into(), &note_id)?.map(Into::into))
    }

    fn put(&mut self, s: WitStore, n: WitNote) -> std::result::Result<bool, WitError> {
        Ok(self.scope()?.put(s.into(), &n.into())?)
    }

    fn delete_if_not_newer(&mut self, s: WitStore, note_id: String, version: u64) -> std::result::Result<bool, WitError> {
        Ok(self.scope()?.delete_if_not_newer(s.into(), &note_id, version)?)
    }

    fn list_ids(&mut self, s: WitStore) -> std::result::Result<Vec<String>, WitError> {
        Ok(self.scope()?.list_ids(s.into())?)
    }

    fn is_configured(&mut self, s: WitStore) -> bool {
        self.scope.as_ref().is_some_and(|scope| scope.is_configured(s.into()))
    }
}
