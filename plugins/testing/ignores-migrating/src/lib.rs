//! TEST ONLY, broken on purpose: migrate, but every request is routed as if
//! the account's `isMigrating` were off (rollback mode), while it claims
//! migration support. It keeps the WIT contract, so `notes-host plugin
//! check` passes it; `--profile migrate` must fail its placement cases.

use notes_routing::migrate::Migrate;
use notes_routing::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

struct IgnoresMigrating;

impl Router for IgnoresMigrating {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "ignores-migrating".into(), ..Migrate.info() }
    }
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, _: bool) -> Result<Note> {
        Migrate.create_note(s, a, c, false)
    }
    fn get_note(&self, s: &dyn Stores, a: &str, id: &str, _: bool) -> Result<Note> {
        Migrate.get_note(s, a, id, false)
    }
    fn list_notes(&self, s: &dyn Stores, a: &str, _: bool) -> Result<IdList> {
        Migrate.list_notes(s, a, false)
    }
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, _: bool) -> Result<Note> {
        Migrate.update_note(s, a, c, v, false)
    }
    fn delete_note(&self, s: &dyn Stores, a: &str, id: &str, _: bool) -> Result<()> {
        Migrate.delete_note(s, a, id, false)
    }
    fn move_notes(&self, s: &dyn Stores, a: &str, ids: &[String], _: bool) -> Result<MoveReport> {
        Migrate.move_notes(s, a, ids, false)
    }
}

notes_plugin_sdk::export_plugin!(IgnoresMigrating);
