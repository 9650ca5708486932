//! The "old code": every note in the legacy store, the flag ignored.
//!
//! It exists to show the deployment-timing problem: run beside the migrate
//! router with the flag on, it misses notes that were moved, creates notes
//! in the wrong store and leaves copies behind on delete. The host refuses to
//! turn the flag on while this router is active (`supports_migration = false`).

use crate::ops::{self, Route};
use crate::{Error, IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

#[derive(Debug, Default, Clone, Copy)]
pub struct LegacyOnly;

impl Router for LegacyOnly {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "legacy-only".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: false }
    }

    fn create_note(&self, stores: &dyn Stores, account_id: &str, change: NoteChange, _: bool) -> Result<Note> {
        ops::create(stores, Route::LEGACY_ONLY, account_id, change)
    }

    fn get_note(&self, stores: &dyn Stores, _: &str, note_id: &str, _: bool) -> Result<Note> {
        ops::get(stores, Route::LEGACY_ONLY, note_id)
    }

    fn list_notes(&self, stores: &dyn Stores, _: &str, _: bool) -> Result<IdList> {
        ops::list(stores, Route::LEGACY_ONLY)
    }

    fn update_note(&self, stores: &dyn Stores, _: &str, change: NoteChange, expected: Option<u64>, _: bool) -> Result<Note> {
        ops::update(stores, Route::LEGACY_ONLY, change, expected)
    }

    fn delete_note(&self, stores: &dyn Stores, _: &str, note_id: &str, _: bool) -> Result<()> {
        ops::delete(stores, Route::LEGACY_ONLY, note_id)
    }

    /// Old code knows one store: it has nowhere to move notes to.
    fn move_notes(&self, _: &dyn Stores, _: &str, _: &[String], _: bool) -> Result<MoveReport> {
        Err(Error::Invalid("the legacy-only plugin knows only the legacy store: it does not move notes".into()))
    }
}
