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

use notes_routing::migrate::route;
use notes_routing::ops::{self, Route};
use notes_routing::{Error, IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Stores};

struct DualWrite;

/// How often an update or delete re-reads after losing a race.
const MAX_ATTEMPTS: usize = 8;

/// Writes `note` into the store `route` drains too, at its version, best
/// effort: the write is durable in `home` already, so a failure here must not
/// fail it (the next write refreshes the mirror). Refused (not newer) when
/// that store has this version or a newer record, such as a racing delete's
/// tombstone: the mirror never goes back in time. Two hosts never mirror one
/// account's notes under two modes at once: a flip drains the account first.
fn mirror(stores: &dyn Stores, route: Route, note: &Note) {
    if let Some(other) = route.other {
        let _ = stores.put(other, note);
    }
}

impl Router for DualWrite {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "dual-write".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }

    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        let note = ops::create(s, route, a, c)?;
        mirror(s, route, &note);
        Ok(note)
    }

    /// The newest copy of either store; an older mirror stays (the next write refreshes it).
    fn get_note(&self, s: &dyn Stores, _: &str, id: &str, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        let other = match route.other {
            Some(store) => s.get(store, id)?,
            None => None,
        };
        match (s.get(route.home, id)?, other) {
            (Some(h), Some(o)) => Ok(if o.version > h.version { o } else { h }),
            (Some(n), None) | (None, Some(n)) => Ok(n),
            (None, None) => Err(Error::NotFound),
        }
    }

    fn list_notes(&self, s: &dyn Stores, _: &str, m: bool) -> Result<IdList> {
        ops::list(s, route(s, m).route())
    }

    /// The next version of the newest copy goes to `home`, then to the other
    /// store. (The SDK's `ops::update` would remove the other copy: migrate's
    /// placement.) A refused write means a newer record in `home`: a racing
    /// write (re-read) or a half-done delete's tombstone (finish it).
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        for _ in 0..MAX_ATTEMPTS {
            let newest = self.get_note(s, a, &c.id, m)?;
            if v.is_some_and(|expected| expected != newest.version) {
                return Err(Error::VersionMismatch(newest.version));
            }
            let next = Note { content: c.content.clone(), updated_at_ms: c.at_ms, version: newest.version + 1, ..newest.clone() };
            if s.put(route.home, &next)? {
                mirror(s, route, &next);
                return Ok(next);
            }
            if finish_half_done_delete(s, route, &newest)? {
                return Err(Error::NotFound);
            }
        }
        Err(Error::Conflict(format!("note {} kept changing during the update; retry", c.id)))
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
            if !home && finish_half_done_delete(s, route, &note)? {
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
}

/// After `home` refused `newest`: if what it holds is a tombstone above it
/// (a delete that stopped between the stores), finishes that delete in the
/// other store and answers true. False for a live newer copy (a racing write).
fn finish_half_done_delete(stores: &dyn Stores, route: Route, newest: &Note) -> Result<bool> {
    let tombstone = match stores.recorded_version(route.home, &newest.id)? {
        Some(t) if t > newest.version && stores.get(route.home, &newest.id)?.is_none() => t,
        _ => return Ok(false),
    };
    if let Some(other) = route.other {
        stores.delete_if_not_newer(other, &newest.id, tombstone)?;
    }
    Ok(true)
}

notes_plugin_sdk::export_plugin!(DualWrite);
