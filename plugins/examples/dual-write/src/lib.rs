//! An example strategy other than migrate: **dual writes**. Every create and
//! update lands in the store the account's mode writes to (`home`, as in
//! migrate) and is then mirrored, at the same version, into the other store,
//! so either store alone stays a complete copy and a rollback loses nothing
//! even if the new store is abandoned. Reads take the newest copy and leave
//! the mirror in place (no read repair); deletes remove both.
//!
//! It keeps every duty of the contract (the conformance kit's `contract`
//! cases) and breaks the `migrate` profile on purpose: its notes live in both
//! stores. `notes-host plugin check` passes it; `--profile migrate` fails only
//! the placement cases. The simulator judges it without the profile.
//!
//! Built on the SDK's operations that keep both copies
//! (`ops::get_keeping_copies`, `ops::update_keeping_copies`, `ops::mirror`)
//! where migrate uses the ones that drain the other store.

use notes_routing::migrate::route;
use notes_routing::ops;
use notes_routing::{Error, IdList, MoveReport, Note, NoteChange, Placement, PluginInfo, Result, Router, Store, Stores};

struct DualWrite;

/// How often a delete re-reads after losing a race.
const MAX_ATTEMPTS: usize = 8;

impl Router for DualWrite {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "dual-write".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }

    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        let note = ops::create(s, route, a, c)?;
        ops::mirror(s, route, &note);
        Ok(note)
    }

    /// The newest copy of either store; an older mirror stays (the next write refreshes it).
    fn get_note(&self, s: &dyn Stores, _: &str, id: &str, m: bool) -> Result<Note> {
        ops::get_keeping_copies(s, route(s, m).route(), id)
    }

    fn list_notes(&self, s: &dyn Stores, _: &str, m: bool) -> Result<IdList> {
        ops::list(s, route(s, m).route())
    }

    /// The next version of the newest copy goes to `home`, then to the other
    /// store. (The SDK's `ops::update` would remove the other copy: migrate's
    /// placement.)
    fn update_note(&self, s: &dyn Stores, _: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        ops::update_keeping_copies(s, route(s, m).route(), c, v)
    }

    /// Removes both copies. The SDK's delete answers once it removed one;
    /// with two live copies a racing update may still have written the
    /// other, so this re-reads until neither store has the note.
    fn delete_note(&self, s: &dyn Stores, a: &str, id: &str, m: bool) -> Result<()> {
        let route = route(s, m).route();
        ops::delete(s, route, id)?;
        for _ in 0..MAX_ATTEMPTS {
            match self.get_note(s, a, id, m) {
                Err(Error::NotFound) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => match ops::delete(s, route, id) {
                    Ok(()) | Err(Error::NotFound) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Err(Error::Conflict(format!("note {id} kept changing during the delete; retry")))
    }

    /// A move is a mirror of the newest copy into both stores, at its version.
    fn move_notes(&self, s: &dyn Stores, a: &str, ids: &[String], m: bool) -> Result<MoveReport> {
        let route = route(s, m).route();
        let mut report = MoveReport::default();
        for id in ids {
            let note = match self.get_note(s, a, id, m) {
                Err(Error::NotFound) => {
                    report.missing += 1;
                    continue;
                }
                result => result?,
            };
            let mut note = note;
            let mut home = s.put(route.home, &note)?;
            if !home && ops::finish_half_done_delete(s, route, &note)? {
                report.missing += 1;
                continue;
            }
            if !home && s.get(route.home, id)?.is_none() && s.recorded_version(route.home, id)? == Some(note.version) {
                // `home` holds a tombstone at this very version (the note was
                // moved away from it before): one above, as the SDK's move does.
                note.version += 1;
                home = s.put(route.home, &note)?;
            }
            let other = match route.other {
                Some(store) => s.put(store, &note)?,
                None => false,
            };
            if home || other { report.moved += 1 } else { report.in_place += 1 }
        }
        Ok(report)
    }

    /// A copy in each store whenever the host has a new store, whatever the
    /// flag: the host's verify then counts a note with one copy as misplaced
    /// (a move mirrors it), and two copies as in place, not as duplicates.
    fn home(&self, s: &dyn Stores, _: &str, _: &str, _: bool) -> Result<Placement> {
        Ok(if s.is_configured(Store::New) { Placement::Both } else { Placement::Legacy })
    }
}

notes_plugin_sdk::export_plugin!(DualWrite);
