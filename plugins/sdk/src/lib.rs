//! The notes plugin SDK: WIT bindings for `notes:plugin`, conversions to the
//! plain-Rust [`notes_routing`] types, and [`export_plugin!`], which turns a
//! [`Router`](notes_routing::Router) into the component's exports.
//!
//! ```ignore
//! notes_plugin_sdk::export_plugin!(notes_routing::migrate::Migrate);
//! ```

pub use notes_routing as routing;

pub mod store;

/// The wit-bindgen bindings of the `note-plugin` world.
#[allow(clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "note-plugin",
        path: "wit/notes.wit",
        pub_export_macro: true,
        export_macro_name: "export_note_plugin",
        default_bindings_module: "notes_plugin_sdk::bindings",
    });
}

use bindings::notes::plugin::stores as host;
use bindings::notes::plugin::types as wit;
use routing::{Error, IdList, MoveReport, Note, NoteChange, Placement, PluginInfo, Router, Store};

/// Exports `$router` (an expression of a type implementing
/// [`Router`](notes_routing::Router)) as the component's `router`.
#[macro_export]
macro_rules! export_plugin {
    ($router:expr) => {
        struct Exported;

        impl $crate::bindings::exports::notes::plugin::router::Guest for Exported {
            fn info() -> $crate::bindings::notes::plugin::types::PluginInfo {
                $crate::glue::info(&$router)
            }
            fn create_note(
                account_id: String,
                change: $crate::bindings::notes::plugin::types::NoteChange,
                is_migrating: bool,
            ) -> Result<$crate::bindings::notes::plugin::types::Note, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::create_note(&$router, account_id, change, is_migrating)
            }
            fn get_note(
                account_id: String,
                note_id: String,
                is_migrating: bool,
            ) -> Result<$crate::bindings::notes::plugin::types::Note, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::get_note(&$router, account_id, note_id, is_migrating)
            }
            fn list_notes(
                account_id: String,
                is_migrating: bool,
            ) -> Result<String, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::list_notes(&$router, account_id, is_migrating)
            }
            fn update_note(
                account_id: String,
                change: $crate::bindings::notes::plugin::types::NoteChange,
                expected_version: Option<u64>,
                is_migrating: bool,
            ) -> Result<$crate::bindings::notes::plugin::types::Note, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::update_note(&$router, account_id, change, expected_version, is_migrating)
            }
            fn delete_note(
                account_id: String,
                note_id: String,
                is_migrating: bool,
            ) -> Result<(), $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::delete_note(&$router, account_id, note_id, is_migrating)
            }
            fn move_notes(
                account_id: String,
                note_ids: Vec<String>,
                is_migrating: bool,
            ) -> Result<$crate::bindings::notes::plugin::types::MoveReport, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::move_notes(&$router, account_id, note_ids, is_migrating)
            }
            fn homes(
                account_id: String,
                note_ids: String,
                is_migrating: bool,
            ) -> Result<Vec<$crate::bindings::notes::plugin::types::Placement>, $crate::bindings::notes::plugin::types::Error> {
                $crate::glue::homes(&$router, account_id, note_ids, is_migrating)
            }
        }

        $crate::bindings::export_note_plugin!(Exported);
    };
}

/// The calls behind [`export_plugin!`]: convert, delegate, convert back.
#[doc(hidden)]
pub mod glue {
    use super::*;

    pub fn info(s: &impl Router) -> wit::PluginInfo {
        let PluginInfo { name, version, supports_migration } = s.info();
        wit::PluginInfo { name, version, supports_migration }
    }

    pub fn create_note(s: &impl Router, account: String, change: wit::NoteChange, migrating: bool) -> Result<wit::Note, wit::Error> {
        s.create_note(&HostStores, &account, change_from_wit(change), migrating).map(note_to_wit).map_err(error_to_wit)
    }

    pub fn get_note(s: &impl Router, account: String, id: String, migrating: bool) -> Result<wit::Note, wit::Error> {
        s.get_note(&HostStores, &account, &id, migrating).map(note_to_wit).map_err(error_to_wit)
    }

    /// The ids as one `note-id-list`.
    pub fn list_notes(s: &impl Router, account: String, migrating: bool) -> Result<String, wit::Error> {
        s.list_notes(&HostStores, &account, migrating).map(IdList::into_joined).map_err(error_to_wit)
    }

    pub fn update_note(
        s: &impl Router,
        account: String,
        change: wit::NoteChange,
        expected: Option<u64>,
        migrating: bool,
    ) -> Result<wit::Note, wit::Error> {
        s.update_note(&HostStores, &account, change_from_wit(change), expected, migrating)
            .map(note_to_wit)
            .map_err(error_to_wit)
    }

    pub fn delete_note(s: &impl Router, account: String, id: String, migrating: bool) -> Result<(), wit::Error> {
        s.delete_note(&HostStores, &account, &id, migrating).map_err(error_to_wit)
    }

    pub fn move_notes(s: &impl Router, account: String, ids: Vec<String>, migrating: bool) -> Result<wit::MoveReport, wit::Error> {
        let MoveReport { moved, in_place, missing } = s.move_notes(&HostStores, &account, &ids, migrating).map_err(error_to_wit)?;
        Ok(wit::MoveReport { moved, in_place, missing })
    }

    /// One [`Router::home`] per id of the `note-id-list`, in its order.
    pub fn homes(s: &impl Router, account: String, ids: String, migrating: bool) -> Result<Vec<wit::Placement>, wit::Error> {
        IdList::from_joined(ids)
            .iter()
            .map(|id| s.home(&HostStores, &account, id, migrating).map(placement_to_wit))
            .collect::<Result<_, _>>()
            .map_err(error_to_wit)
    }
}

fn placement_to_wit(p: Placement) -> wit::Placement {
    match p {
        Placement::Legacy => wit::Placement::Legacy,
        Placement::New => wit::Placement::New,
        Placement::Both => wit::Placement::Both,
    }
}

/// The host's `stores` import as a [`routing::Stores`].
pub struct HostStores;

impl routing::Stores for HostStores {
    fn get(&self, store: Store, note_id: &str) -> routing::Result<Option<Note>> {
        host::get(store_to_wit(store), note_id).map(|n| n.map(note_from_wit)).map_err(error_from_wit)
    }

    fn put(&self, store: Store, note: &Note) -> routing::Result<bool> {
        host::put(store_to_wit(store), &note_to_wit(note.clone())).map_err(error_from_wit)
    }

    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> routing::Result<bool> {
        host::delete_if_not_newer(store_to_wit(store), note_id, version).map_err(error_from_wit)
    }

    fn list_ids(&self, store: Store) -> routing::Result<IdList> {
        host::list_ids(store_to_wit(store)).map(IdList::from_joined).map_err(error_from_wit)
    }

    fn is_configured(&self, store: Store) -> bool {
        host::is_configured(store_to_wit(store))
    }

    fn recorded_version(&self, store: Store, note_id: &str) -> routing::Result<Option<u64>> {
        host::recorded_version(store_to_wit(store), note_id).map_err(error_from_wit)
    }
}

fn store_to_wit(s: Store) -> host::Store {
    match s {
        Store::Legacy => host::Store::Legacy,
        Store::New => host::Store::New,
    }
}

fn note_to_wit(n: Note) -> wit::Note {
    let Note { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
    wit::Note { id, account_id, content, created_at_ms, updated_at_ms, version }
}

fn note_from_wit(n: wit::Note) -> Note {
    let wit::Note { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
    Note { id, account_id, content, created_at_ms, updated_at_ms, version }
}

fn change_from_wit(c: wit::NoteChange) -> NoteChange {
    NoteChange { id: c.id, content: c.content, at_ms: c.at_ms }
}

fn error_to_wit(e: Error) -> wit::Error {
    match e {
        Error::NotFound => wit::Error::NotFound,
        Error::VersionMismatch(v) => wit::Error::VersionMismatch(v),
        Error::Conflict(m) => wit::Error::Conflict(m),
        Error::Invalid(m) => wit::Error::Invalid(m),
        Error::Unavailable(m) => wit::Error::Unavailable(m),
        Error::Internal(m) => wit::Error::Internal(m),
    }
}

fn error_from_wit(e: wit::Error) -> Error {
    match e {
        wit::Error::NotFound => Error::NotFound,
        wit::Error::VersionMismatch(v) => Error::VersionMismatch(v),
        wit::Error::Conflict(m) => Error::Conflict(m),
        wit::Error::Invalid(m) => Error::Invalid(m),
        wit::Error::Unavailable(m) => Error::Unavailable(m),
        wit::Error::Internal(m) => Error::Internal(m),
    }
}
