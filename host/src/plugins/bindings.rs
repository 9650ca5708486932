//! Host-side bindings of `wit/notes.wit`, and their conversions to the plain
//! [`notes_routing`] types the rest of the host uses.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "note-plugin",
});

pub use notes::plugin::stores::Store as WitStore;
pub use notes::plugin::types::{Error as WitError, Note as WitNote, NoteChange as WitChange};

use notes_routing::{Error, Note, NoteChange, Store};

impl notes::plugin::types::Host for super::CallState {}

impl From<WitStore> for Store {
    fn from(s: WitStore) -> Self {
        match s {
            WitStore::Legacy => Store::Legacy,
            WitStore::New => Store::New,
        }
    }
}

impl From<WitNote> for Note {
    fn from(n: WitNote) -> Self {
        let WitNote { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
        Note { id, account_id, content, created_at_ms, updated_at_ms, version }
    }
}

impl From<Note> for WitNote {
    fn from(n: Note) -> Self {
        let Note { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
        WitNote { id, account_id, content, created_at_ms, updated_at_ms, version }
    }
}

impl From<NoteChange> for WitChange {
    fn from(c: NoteChange) -> Self {
        WitChange { id: c.id, content: c.content, at_ms: c.at_ms }
    }
}

impl From<Error> for WitError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => WitError::NotFound,
            Error::VersionMismatch(v) => WitError::VersionMismatch(v),
            Error::Conflict(m) => WitError::Conflict(m),
            Error::Invalid(m) => WitError::Invalid(m),
            Error::Unavailable(m) => WitError::Unavailable(m),
            Error::Internal(m) => WitError::Internal(m),
        }
    }
}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::NotFound => Error::NotFound,
            WitError::VersionMismatch(v) => Error::VersionMismatch(v),
            WitError::Conflict(m) => Error::Conflict(m),
            WitError::Invalid(m) => Error::Invalid(m),
            WitError::Unavailable(m) => Error::Unavailable(m),
            WitError::Internal(m) => Error::Internal(m),
        }
    }
}
