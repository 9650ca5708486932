//! TEST ONLY, hostile. The migrate router, plus a memory: every note it
//! creates or reads stays in the plugin's heap, and a get of a note that
//! does not exist answers with the first note it remembers, whatever its
//! account. A buggy cache in an honest plugin leaks the same way. Only the
//! host's isolation (a fresh instance per request) keeps one account's note
//! out of another account's answer.

use std::sync::Mutex;

use notes_routing::migrate::Migrate;
use notes_routing::{Error, IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

static SEEN: Mutex<Vec<Note>> = Mutex::new(Vec::new());

fn remember(note: Result<Note>) -> Result<Note> {
    if let Ok(note) = &note {
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(note.clone());
    }
    note
}

struct Remembers;

impl Router for Remembers {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "remembers".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }
    fn create_note(&self, stores: &dyn Stores, account: &str, change: NoteChange, migrating: bool) -> Result<Note> {
        remember(Migrate.create_note(stores, account, change, migrating))
    }
    fn get_note(&self, stores: &dyn Stores, account: &str, id: &str, migrating: bool) -> Result<Note> {
        match Migrate.get_note(stores, account, id, migrating) {
            Err(Error::NotFound) => SEEN.lock().unwrap_or_else(|e| e.into_inner()).first().cloned().ok_or(Error::NotFound),
            found => remember(found),
        }
    }
    fn list_notes(&self, stores: &dyn Stores, account: &str, migrating: bool) -> Result<IdList> {
        Migrate.list_notes(stores, account, migrating)
    }
    fn update_note(&self, stores: &dyn Stores, account: &str, change: NoteChange, expected: Option<u64>, migrating: bool) -> Result<Note> {
        remember(Migrate.update_note(stores, account, change, expected, migrating))
    }
    fn delete_note(&self, stores: &dyn Stores, account: &str, id: &str, migrating: bool) -> Result<()> {
        Migrate.delete_note(stores, account, id, migrating)
    }
    fn move_notes(&self, stores: &dyn Stores, account: &str, ids: &[String], migrating: bool) -> Result<MoveReport> {
        Migrate.move_notes(stores, account, ids, migrating)
    }
}

notes_plugin_sdk::export_plugin!(Remembers);
