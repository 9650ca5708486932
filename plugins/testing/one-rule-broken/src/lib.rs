//! TEST ONLY: what the broken fixture plugins share. Each is the migrate
//! strategy with one operation replaced (`OneRuleBroken`'s methods default
//! to migrate's), so the conformance kit must name exactly the case of the
//! rule it breaks. Export one with `export_plugin!(Broken(Fixture))`.

use notes_routing::migrate::Migrate;
use notes_routing::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Store, Stores};

pub trait OneRuleBroken {
    /// The plugin's name (`info().name`).
    const NAME: &'static str;
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        Migrate.create_note(s, a, c, m)
    }
    fn get_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<Note> {
        Migrate.get_note(s, a, id, m)
    }
    fn list_notes(&self, s: &dyn Stores, a: &str, m: bool) -> Result<IdList> {
        Migrate.list_notes(s, a, m)
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

/// A fixture as a router (a wrapper: `Router` is another crate's trait).
pub struct Broken<T>(pub T);

impl<T: OneRuleBroken> Router for Broken<T> {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: T::NAME.into(), ..Migrate.info() }
    }
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        self.0.create_note(s, a, c, m)
    }
    fn get_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<Note> {
        self.0.get_note(s, a, id, m)
    }
    fn list_notes(&self, s: &dyn Stores, a: &str, m: bool) -> Result<IdList> {
        self.0.list_notes(s, a, m)
    }
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        self.0.update_note(s, a, c, v, m)
    }
    fn delete_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<()> {
        self.0.delete_note(s, a, id, m)
    }
    fn move_notes(&self, s: &dyn Stores, a: &str, ids: &[String], m: bool) -> Result<MoveReport> {
        self.0.move_notes(s, a, ids, m)
    }
}

/// The store a write goes to in the mode `m` (migrate's placement).
pub fn home(m: bool) -> Store {
    if m { Store::New } else { Store::Legacy }
}

/// The note as found in either store, live.
pub fn live_copy(s: &dyn Stores, id: &str) -> Result<Option<Note>> {
    for store in [Store::New, Store::Legacy] {
        if s.is_configured(store)
            && let Some(note) = s.get(store, id)?
        {
            return Ok(Some(note));
        }
    }
    Ok(None)
}
