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

/// Writes `note` into the store `route` drains too, at its version. Refused
/// (not newer) when that store already has this version or a newer record,
/// such as a racing delete's tombstone: the mirror never goes back in time.
fn mirror(stores: &dyn Stores, route: Route, note: &Note) -> Result<()> {
    if let Some(other) = route.other {
        stores.put(other, note)?;
    }
    Ok(())
}

impl Router for DualWrite {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "dual-write".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }

    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        let note = ops::create(s, route, a, c)?;
        mirror(s, route, &note)?;
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

    /// The next version goes to `home` (after bringing the newest copy there
    /// if only `other` had it), then to `other` at the same version. The
    /// SDK's `ops::update` would also remove `other`'s copy (migrate's
    /// placement), so it runs on `home` alone.
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        let route = route(s, m).route();
        if route.other.is_none() {
            return ops::update(s, route, c, v);
        }
        let newest = self.get_note(s, a, &c.id, m)?;
        if s.get(route.home, &c.id)?.is_none_or(|h| h.version < newest.version) && !s.put(route.home, &newest)? && finish_half_done_delete(s, route, &newest)? {
            return Err(Error::NotFound);
        }
        let next = ops::update(s, Route { home: route.home, other: None }, c, v)?;
        mirror(s, route, &next)?;
        Ok(next)
    }

    fn delete_note(&self, s: &dyn Stores, _: &str, id: &str, m: bool) -> Result<()> {
        ops::delete(s, route(s, m).route(), id)
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
            let home = s.put(route.home, &note)?;
            if !home && finish_half_done_delete(s, route, &note)? {
                report.missing += 1;
                continue;
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
