//! The note operations every strategy builds on, parameterised by
//! [`Route`]: which store writes go to (`home`) and which store may still
//! hold copies that must be read and cleaned up (`other`). They keep the
//! duties of the WIT contract (`wit/notes.wit`), which a strategy written
//! from scratch would have to keep itself: versions grow by one, the newest
//! copy wins, a stale copy is removed on the way, a write that raced a
//! delete cannot bring the note back, and a delete cut in half between the
//! stores is finished, not retried forever.
//!
//! ```
//! use notes_routing::memory::MemoryStores;
//! use notes_routing::ops::{self, Route};
//! use notes_routing::{NoteChange, Store};
//!
//! let stores = MemoryStores::new(true);
//! let change = NoteChange { id: "n1".into(), content: "hello".into(), at_ms: 1 };
//! let note = ops::create(&stores, Route::MIGRATION, "account", change).unwrap();
//! assert_eq!(note.version, 1);
//! assert!(stores.peek(Store::New, "n1").is_some(), "migration mode writes to the new store");
//! ```
//!
//! Every operation reads both stores and trusts the newest version, so a note
//! left in both stores (a move cut off between its write and its cleanup) is
//! never read stale and is resolved by the next read or write.
//!
//! # Which to use
//!
//! - **One home per note** (migrate, rollback): [`get`], [`update`] and
//!   [`move_notes`] drain `other`: each removes the older copy it meets, so
//!   the account empties out of the store it leaves.
//! - **Both copies kept** (dual write, a mirror, a shadow store you may
//!   abandon at any time): [`get_keeping_copies`] and
//!   [`update_keeping_copies`] never remove the other copy, and [`mirror`]
//!   writes a note into `other` at its version. Use [`create`], [`list`] and
//!   [`delete`] as they are (a delete must remove every copy), with
//!   [`mirror`] after a create. `plugins/examples/dual-write` is such a
//!   strategy; it keeps the contract and is not the `migrate` profile's
//!   placement (its notes live in both stores).

use crate::{Error, IdList, MoveReport, Note, NoteChange, Result, Store, Stores};

/// How often an update or delete re-reads and retries after losing a race to
/// another writer of the same note before answering `conflict`.
const MAX_ATTEMPTS: usize = 8;

/// Where an operation writes, and which store it drains: chosen per request
/// from the account's `is_migrating` (see `migrate::route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where creates and updates write.
    pub home: Store,
    /// The store that may still hold notes from before the route changed.
    pub other: Option<Store>,
}

impl Route {
    pub const LEGACY_ONLY: Route = Route { home: Store::Legacy, other: None };
    /// Migration mode: write to new, drain legacy.
    pub const MIGRATION: Route = Route { home: Store::New, other: Some(Store::Legacy) };
    /// Rollback mode: write to legacy, drain new.
    pub const ROLLBACK: Route = Route { home: Store::Legacy, other: Some(Store::New) };
}

/// The newest copy of a note and, if another store holds an older copy, where.
struct Found {
    newest: Note,
    newest_in: Store,
    stale_copy: Option<(Store, u64)>,
}

/// Reads `other` first, then `home`. Within one mode notes only flow from
/// `other` to `home`, and every writer makes the `home` copy durable before
/// it removes the `other` one: so a note not seen in `other` is already in
/// `home` when `home` is read, and a racing move can never hide it from a
/// read, a delete or an update. On equal versions `home` wins.
fn find(stores: &dyn Stores, route: Route, note_id: &str) -> Result<Option<Found>> {
    let other = match route.other {
        Some(store) => stores.get(store, note_id)?.map(|n| (store, n)),
        None => None,
    };
    let home = stores.get(route.home, note_id)?;
    Ok(match (home, other) {
        (None, None) => None,
        (Some(n), None) => Some(Found { newest: n, newest_in: route.home, stale_copy: None }),
        (None, Some((store, n))) => Some(Found { newest: n, newest_in: store, stale_copy: None }),
        (Some(h), Some((store, o))) if o.version > h.version => {
            Some(Found { stale_copy: Some((route.home, h.version)), newest: o, newest_in: store })
        }
        (Some(h), Some((store, o))) => {
            Some(Found { stale_copy: Some((store, o.version)), newest: h, newest_in: route.home })
        }
    })
}

/// Creates at version 1, or, for an id whose note was deleted, one past
/// the newest tombstone in either store: nothing older (a late write of the
/// deleted note) can then overwrite the new note, and the version rules hold.
pub fn create(stores: &dyn Stores, route: Route, account_id: &str, change: NoteChange) -> Result<Note> {
    // `other` before `home` (see `find`), and in each store the recorded
    // version before the live note: two creates racing then compute the same
    // version and one `put` is refused; a create racing a create, a move or
    // an update always sees the live note.
    let mut recorded = None;
    for store in route.other.into_iter().chain(Some(route.home)) {
        recorded = recorded.max(stores.recorded_version(store, &change.id)?);
        if stores.get(store, &change.id)?.is_some() {
            return Err(taken(&change.id));
        }
    }
    let note = Note {
        id: change.id,
        account_id: account_id.to_owned(),
        content: change.content,
        created_at_ms: change.at_ms,
        updated_at_ms: change.at_ms,
        version: recorded.map_or(1, |v| v + 1),
    };
    // `put` refuses if a racing create or write got to this version first.
    if stores.put(route.home, &note)? { Ok(note) } else { Err(taken(&note.id)) }
}

fn taken(id: &str) -> Error {
    Error::Conflict(format!("note id {id} is already taken"))
}

/// Puts each note in `home`, then removes the other store's copy up to the
/// version moved. The note keeps its version, unless `home` holds a
/// tombstone at exactly that version (left when the note moved or was
/// written away from `home` earlier): versions never go down in a store, so
/// it then goes one above. A tombstone *above* the newest copy is a delete
/// that stopped between its two stores (see `update`): the move finishes it.
///
/// A client write racing the move writes a newer version: the move's `put`
/// is refused and the move re-reads, or the client's write replaces the
/// move's (the router's update re-reads and writes past it). The cleanup
/// removes only versions up to the one moved, so it never removes a newer
/// write. A crash between the two steps leaves a duplicate that newest-wins
/// reads resolve, never a loss; a retry finds the note in place.
pub fn move_notes(stores: &dyn Stores, route: Route, note_ids: &[String]) -> Result<MoveReport> {
    let mut report = MoveReport::default();
    for id in note_ids {
        match move_one(stores, route, id)? {
            Moved::Moved => report.moved += 1,
            Moved::InPlace => report.in_place += 1,
            Moved::Missing => report.missing += 1,
        }
    }
    Ok(report)
}

enum Moved {
    Moved,
    InPlace,
    Missing,
}

fn move_one(stores: &dyn Stores, route: Route, id: &str) -> Result<Moved> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(found) = find(stores, route, id)? else { return Ok(Moved::Missing) };
        let copies: Vec<(Store, u64)> = found
            .stale_copy
            .into_iter()
            .chain(Some((found.newest_in, found.newest.version)))
            .filter(|(store, _)| *store != route.home)
            .collect();
        if found.newest_in == route.home {
            for (store, version) in &copies {
                stores.delete_if_not_newer(*store, id, *version)?;
            }
            return Ok(if copies.is_empty() { Moved::InPlace } else { Moved::Moved });
        }
        let mut note = found.newest.clone();
        match stores.recorded_version(route.home, id)? {
            Some(t) if t > note.version => {
                // A delete stopped between the stores: finish it.
                for (store, _) in &copies {
                    stores.delete_if_not_newer(*store, id, t)?;
                }
                return Ok(Moved::Missing);
            }
            Some(t) if t == note.version => note.version += 1,
            _ => {}
        }
        if stores.put(route.home, &note)? {
            for (store, version) in &copies {
                stores.delete_if_not_newer(*store, id, *version)?;
            }
            return Ok(Moved::Moved);
        }
        // A racing write got there first: re-read.
    }
    Err(Error::Conflict(format!("note {id} kept changing during the move; retry")))
}

/// The newest copy of the note in either store (`NotFound` if none), with
/// read-repair: an older copy in the other store is removed on the way.
pub fn get(stores: &dyn Stores, route: Route, note_id: &str) -> Result<Note> {
    let found = find(stores, route, note_id)?.ok_or(Error::NotFound)?;
    if let Some((store, version)) = found.stale_copy {
        // Read repair: the older copy can never be served again, drop it.
        // Best effort: a failure leaves a harmless duplicate for the next
        // read or write to resolve.
        let _ = stores.delete_if_not_newer(store, note_id, version);
    }
    Ok(found.newest)
}

/// Every live id in both stores, sorted, each once. `other` first, then
/// `home`, as in `find`: a note moving meanwhile is listed.
pub fn list(stores: &dyn Stores, route: Route) -> Result<IdList> {
    let other = match route.other {
        Some(other) => stores.list_ids(other)?,
        None => IdList::default(),
    };
    Ok(other.union(stores.list_ids(route.home)?))
}

/// Writes the next version to `home`, then removes every older copy from the
/// other store. A crash between the two leaves a duplicate whose newest copy
/// wins every later read, never a loss.
///
/// A refused `put` means a newer record is in `home`. If the re-read shows the
/// same newest copy, that record is invisible to reads: a tombstone left by a
/// delete that stopped between its two stores (its host crashed). That delete
/// read this version and was never answered; it takes effect now: the update
/// finishes it and answers `NotFound`, as it would had the delete completed
/// first. (Writing past the tombstone instead would let an update racing a
/// delete that is still running bring the note back after both succeed.)
pub fn update(stores: &dyn Stores, route: Route, change: NoteChange, expected_version: Option<u64>) -> Result<Note> {
    let mut refused: Option<(u64, Store)> = None;
    for _ in 0..MAX_ATTEMPTS {
        let found = find(stores, route, &change.id)?.ok_or(Error::NotFound)?;
        let current = found.newest.version;
        if refused == Some((current, found.newest_in)) {
            let copies = found.stale_copy.map(|(store, _)| store).into_iter().chain(Some(found.newest_in));
            for store in copies {
                stores.delete_if_not_newer(store, &change.id, current + 1)?;
            }
            return Err(Error::NotFound);
        }
        if let Some(expected) = expected_version {
            if expected != current {
                return Err(Error::VersionMismatch(current));
            }
        }
        let next = Note {
            content: change.content.clone(),
            updated_at_ms: change.at_ms,
            version: current + 1,
            ..found.newest
        };
        if !stores.put(route.home, &next)? {
            // Another writer got this version first, or a tombstone: re-read.
            refused = Some((current, found.newest_in));
            continue;
        }
        let copy_elsewhere = found.stale_copy.map(|(store, _)| store).into_iter().chain(Some(found.newest_in));
        for store in copy_elsewhere.filter(|s| *s != route.home) {
            // Best effort, as in `get`: the new version is durable in `home`.
            let _ = stores.delete_if_not_newer(store, &next.id, next.version);
        }
        return Ok(next);
    }
    Err(Error::Conflict(format!("note {} kept changing during the update; retry", change.id)))
}

/// Deletes from every store. The tombstone goes one version past the newest
/// one read, so an update that raced this delete (it read that version and is
/// about to write the next) is refused instead of bringing the note back.
pub fn delete(stores: &dyn Stores, route: Route, note_id: &str) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(found) = find(stores, route, note_id)? else {
            return Err(Error::NotFound);
        };
        let tombstone = found.newest.version + 1;
        let mut removed = stores.delete_if_not_newer(route.home, note_id, tombstone)?;
        if let Some(other) = route.other {
            removed |= stores.delete_if_not_newer(other, note_id, tombstone)?;
        }
        if removed {
            return Ok(());
        }
        // Nothing removed: a racing writer moved past our tombstone, or a
        // racing delete won. Re-read to tell which.
        if find(stores, route, note_id)?.is_none() {
            return Ok(());
        }
    }
    Err(Error::Conflict(format!("note {note_id} kept changing during the delete; retry")))
}

/// The newest copy of the note in either store (`NotFound` if none), leaving
/// an older copy where it is: for strategies that keep both copies (dual
/// write, mirror). [`get`] removes it instead (one home per note).
pub fn get_keeping_copies(stores: &dyn Stores, route: Route, note_id: &str) -> Result<Note> {
    Ok(find(stores, route, note_id)?.ok_or(Error::NotFound)?.newest)
}

/// Writes `note` into `other` at its version, best effort, and answers
/// whether it was written: the note is durable in `home` already, so a
/// failure here must not fail the client's write (the next write refreshes
/// the copy). Refused when `other` holds this version or a newer record, such
/// as a racing delete's tombstone: the copy never goes back in time. Two
/// hosts never write one account's notes under two modes at once (a flip
/// drains the account first), so `other` is the same store for every writer.
pub fn mirror(stores: &dyn Stores, route: Route, note: &Note) -> bool {
    match route.other {
        Some(other) => stores.put(other, note).unwrap_or(false),
        None => false,
    }
}

/// Writes the next version of the newest copy to `home`, then [`mirror`]s
/// it into `other`; never removes a copy: for strategies that keep both
/// (dual write, mirror). [`update`] instead removes the other copy (one home
/// per note).
///
/// A refused `put` means a newer record in `home`: a racing write (re-read
/// and retry) or a tombstone above the newest copy, left by a delete that
/// stopped between its two stores, which the update finishes (`NotFound`),
/// as [`update`] does.
pub fn update_keeping_copies(stores: &dyn Stores, route: Route, change: NoteChange, expected_version: Option<u64>) -> Result<Note> {
    for _ in 0..MAX_ATTEMPTS {
        let newest = get_keeping_copies(stores, route, &change.id)?;
        if expected_version.is_some_and(|expected| expected != newest.version) {
            return Err(Error::VersionMismatch(newest.version));
        }
        let next = Note { content: change.content.clone(), updated_at_ms: change.at_ms, version: newest.version + 1, ..newest.clone() };
        if stores.put(route.home, &next)? {
            mirror(stores, route, &next);
            return Ok(next);
        }
        if finish_half_done_delete(stores, route, &newest)? {
            return Err(Error::NotFound);
        }
    }
    Err(Error::Conflict(format!("note {} kept changing during the update; retry", change.id)))
}

/// After `home` refused a write past `newest`: if what it holds is a
/// tombstone above it (a delete that stopped between the stores), finishes
/// that delete in `other` and answers true. False for a live newer copy (a
/// racing write).
pub fn finish_half_done_delete(stores: &dyn Stores, route: Route, newest: &Note) -> Result<bool> {
    let tombstone = match stores.recorded_version(route.home, &newest.id)? {
        Some(t) if t > newest.version && stores.get(route.home, &newest.id)?.is_none() => t,
        _ => return Ok(false),
    };
    if let Some(other) = route.other {
        stores.delete_if_not_newer(other, &newest.id, tombstone)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStores;

    fn change(id: &str, content: &str) -> NoteChange {
        NoteChange { id: id.into(), content: content.into(), at_ms: 1 }
    }

    #[test]
    fn the_keeping_variants_leave_the_other_copy_where_get_and_update_drain_it() {
        let route = Route::MIGRATION;
        let s = MemoryStores::new(true);
        let note = create(&s, Route::ROLLBACK, "a", change("n1", "first")).unwrap();
        assert!(mirror(&s, Route::ROLLBACK, &note), "a copy in new at version 1");
        assert_eq!(get_keeping_copies(&s, route, "n1").unwrap().version, 1);
        assert!(s.peek(Store::Legacy, "n1").is_some() && s.peek(Store::New, "n1").is_some(), "both copies stay");
        let next = update_keeping_copies(&s, route, change("n1", "second"), Some(1)).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(s.peek(Store::New, "n1").map(|n| n.version), Some(2));
        assert_eq!(s.peek(Store::Legacy, "n1").map(|n| (n.version, n.content)), Some((2, "second".into())), "mirrored, not removed");
        assert_eq!(update_keeping_copies(&s, route, change("n1", "stale"), Some(1)), Err(Error::VersionMismatch(2)));

        // The draining ones, on the same two copies: one home per note.
        update(&s, route, change("n1", "third"), None).unwrap();
        assert!(s.peek(Store::Legacy, "n1").is_none() && s.peek(Store::New, "n1").is_some(), "update drained legacy");
    }

    #[test]
    fn update_keeping_copies_finishes_a_delete_cut_in_half() {
        let route = Route::MIGRATION;
        let s = MemoryStores::new(true);
        let note = create(&s, Route::ROLLBACK, "a", change("n1", "first")).unwrap();
        // A delete tombstoned new (above the note) and died before legacy.
        s.delete_if_not_newer(Store::New, "n1", note.version + 1).unwrap();
        assert_eq!(update_keeping_copies(&s, route, change("n1", "x"), None), Err(Error::NotFound));
        assert_eq!(get_keeping_copies(&s, route, "n1"), Err(Error::NotFound), "the delete is finished");
    }
}
