//! TEST ONLY, broken on purpose: migrate, but each note is routed as if the
//! account's `isMigrating` were the parity of its id's bytes (`n1` as on,
//! `n2` as off), whatever the flag says. It keeps the WIT contract; a kit
//! that checked placement with one note (`n1`) passed half its placement
//! cases by luck, and `--profile migrate` with six notes per case fails them.
//! It says where each note belongs (`home`: its id's mode), so the host's
//! verify and the account states judge it by its own placement.

use notes_routing::migrate::Migrate;
use notes_routing::{IdList, MoveReport, Note, NoteChange, Placement, PluginInfo, Result, Router, Store, Stores};

struct PlacesById;

/// The mode this fixture routes a note in: its id's, not the account's.
fn mode_of(id: &str) -> bool {
    id.bytes().map(u32::from).sum::<u32>() % 2 == 1
}

impl Router for PlacesById {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "places-by-id".into(), ..Migrate.info() }
    }
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, _: bool) -> Result<Note> {
        let m = mode_of(&c.id);
        Migrate.create_note(s, a, c, m)
    }
    fn get_note(&self, s: &dyn Stores, a: &str, id: &str, _: bool) -> Result<Note> {
        Migrate.get_note(s, a, id, mode_of(id))
    }
    fn list_notes(&self, s: &dyn Stores, a: &str, m: bool) -> Result<IdList> {
        Migrate.list_notes(s, a, m)
    }
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, _: bool) -> Result<Note> {
        let m = mode_of(&c.id);
        Migrate.update_note(s, a, c, v, m)
    }
    fn delete_note(&self, s: &dyn Stores, a: &str, id: &str, _: bool) -> Result<()> {
        Migrate.delete_note(s, a, id, mode_of(id))
    }
    fn move_notes(&self, s: &dyn Stores, a: &str, ids: &[String], _: bool) -> Result<MoveReport> {
        let mut report = MoveReport::default();
        for id in ids {
            let one = Migrate.move_notes(s, a, std::slice::from_ref(id), mode_of(id))?;
            report.moved += one.moved;
            report.in_place += one.in_place;
            report.missing += one.missing;
        }
        Ok(report)
    }
    /// Where its writes put the note: the migrate rule under the id's mode.
    fn home(&self, s: &dyn Stores, _: &str, id: &str, _: bool) -> Result<Placement> {
        Ok(Placement::by_migrate_rule(s.is_configured(Store::New), mode_of(id)))
    }
}

notes_plugin_sdk::export_plugin!(PlacesById);
