//! TEST ONLY, broken on purpose: migrate, but `list-notes` names each id
//! twice. `notes-host plugin check` must fail "list returns each id once,
//! sorted" and pass the rest.

use notes_routing::migrate::Migrate;
use notes_routing::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

struct ListDuplicates;

impl Router for ListDuplicates {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "list-duplicates".into(), ..Migrate.info() }
    }
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        Migrate.create_note(s, a, c, m)
    }
    fn get_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<Note> {
        Migrate.get_note(s, a, id, m)
    }
    fn list_notes(&self, s: &dyn Stores, a: &str, m: bool) -> Result<IdList> {
        let ids = Migrate.list_notes(s, a, m)?.into_joined();
        Ok(IdList::from_joined(format!("{ids}{ids}")))
    }
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        Migrate.update_note(s, a, c, v, m)
    }
    fn delete_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<()> {
        Migrate.delete_note(s, a, id, m)
    }
    fn move_notes(&self, s: &dyn Stores, a: &str, ids: &[String], m: bool) -> Result<MoveReport> {
        Migrate.move_notes(s, a, ids, m)
    }
}

notes_plugin_sdk::export_plugin!(ListDuplicates);
