//! TEST ONLY. A plugin that loads and says who it is, then panics on every
//! note operation: the kind of bad release automatic rollback exists for.

use notes_routing::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

struct AlwaysFails;

impl Router for AlwaysFails {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "always-fails".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }
    fn create_note(&self, _: &dyn Stores, _: &str, _: NoteChange, _: bool) -> Result<Note> {
        panic!("always-fails: create")
    }
    fn get_note(&self, _: &dyn Stores, _: &str, _: &str, _: bool) -> Result<Note> {
        panic!("always-fails: get")
    }
    fn list_notes(&self, _: &dyn Stores, _: &str, _: bool) -> Result<IdList> {
        panic!("always-fails: list")
    }
    fn update_note(&self, _: &dyn Stores, _: &str, _: NoteChange, _: Option<u64>, _: bool) -> Result<Note> {
        panic!("always-fails: update")
    }
    fn delete_note(&self, _: &dyn Stores, _: &str, _: &str, _: bool) -> Result<()> {
        panic!("always-fails: delete")
    }
    fn move_notes(&self, _: &dyn Stores, _: &str, _: &[String], _: bool) -> Result<MoveReport> {
        panic!("always-fails: move")
    }
}

notes_plugin_sdk::export_plugin!(AlwaysFails);
