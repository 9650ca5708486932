//! The migration router: the routing the design note asks for (see
//! ARCHITECTURE.md, "Words").
//!
//! - migration mode (flag on): create → new; update moves the note to new
//!   (write the next version to new, then delete it from legacy); get → new
//!   first, then legacy; list → union; delete → both.
//! - rollback mode (flag off, new store configured): data flows back: create →
//!   legacy; update upserts to legacy, then deletes from new; get → legacy
//!   first, then new; list → union; delete → both.
//! - plain mode (no new store configured): legacy only.

use crate::ops::{self, Route};
use crate::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Store, Stores};

#[derive(Debug, Default, Clone, Copy)]
pub struct Migrate;

/// The route for one request, from the account's flag and the host's stores.
pub fn route(stores: &dyn Stores, is_migrating: bool) -> Mode {
    match (stores.is_configured(Store::New), is_migrating) {
        (false, _) => Mode::Plain,
        (true, true) => Mode::Migration,
        (true, false) => Mode::Rollback,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Migration,
    Rollback,
}

impl Mode {
    /// The stores this mode writes to and drains.
    pub fn route(self) -> Route {
        match self {
            Mode::Plain => Route::LEGACY_ONLY,
            Mode::Migration => Route::MIGRATION,
            Mode::Rollback => Route::ROLLBACK,
        }
    }
}

impl Router for Migrate {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "migrate".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }

    fn create_note(&self, stores: &dyn Stores, account_id: &str, change: NoteChange, is_migrating: bool) -> Result<Note> {
        ops::create(stores, route(stores, is_migrating).route(), account_id, change)
    }

    fn get_note(&self, stores: &dyn Stores, _: &str, note_id: &str, is_migrating: bool) -> Result<Note> {
        ops::get(stores, route(stores, is_migrating).route(), note_id)
    }

    fn list_notes(&self, stores: &dyn Stores, _: &str, is_migrating: bool) -> Result<IdList> {
        ops::list(stores, route(stores, is_migrating).route())
    }

    fn update_note(
        &self,
        stores: &dyn Stores,
        _: &str,
        change: NoteChange,
        expected: Option<u64>,
        is_migrating: bool,
    ) -> Result<Note> {
        ops::update(stores, route(stores, is_migrating).route(), change, expected)
    }

    fn delete_note(&self, stores: &dyn Stores, _: &str, note_id: &str, is_migrating: bool) -> Result<()> {
        ops::delete(stores, route(stores, is_migrating).route(), note_id)
    }

    fn move_notes(&self, stores: &dyn Stores, _: &str, note_ids: &[String], is_migrating: bool) -> Result<MoveReport> {
        ops::move_notes(stores, route(stores, is_migrating).route(), note_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::legacy_only::LegacyOnly;
    use crate::memory::MemoryStores;
    use Store::{Legacy as L, New as N};

    const ACCOUNT: &str = "acct";

    fn change(id: &str, content: &str, at_ms: i64) -> NoteChange {
        NoteChange { id: id.into(), content: content.into(), at_ms }
    }

    fn create(s: &MemoryStores, id: &str, migrating: bool) -> Note {
        Migrate.create_note(s, ACCOUNT, change(id, "first", 10), migrating).unwrap()
    }

    fn placement(s: &MemoryStores, id: &str) -> (bool, bool) {
        (s.peek(L, id).is_some(), s.peek(N, id).is_some())
    }

    /// A delete whose host died after tombstoning one store and before the
    /// other: the note is still readable in the other store, and must not
    /// become impossible to update (each `put` refused by the tombstone).
    #[test]
    fn an_update_finishes_a_delete_cut_in_half_instead_of_failing_forever() {
        for migrating in [true, false] {
            let s = MemoryStores::new(true);
            let n = create(&s, "a", !migrating); // in the store that is "other" now
            let home = if migrating { N } else { L };
            s.delete_if_not_newer(home, "a", n.version + 1).unwrap(); // half of a delete
            assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", migrating).unwrap().content, "first");
            let err = Migrate.update_note(&s, ACCOUNT, change("a", "late", 20), None, migrating).unwrap_err();
            assert_eq!(err, Error::NotFound, "the unanswered delete took effect");
            assert_eq!(placement(&s, "a"), (false, false));
            assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", migrating).unwrap_err(), Error::NotFound);
            assert!(Migrate.list_notes(&s, ACCOUNT, migrating).unwrap().is_empty());
        }
    }

    #[test]
    fn migration_mode_create_goes_to_the_new_store() {
        let s = MemoryStores::new(true);
        let n = create(&s, "a", true);
        assert_eq!((n.version, n.created_at_ms, n.account_id.as_str()), (1, 10, ACCOUNT));
        assert_eq!(placement(&s, "a"), (false, true));
    }

    #[test]
    fn migration_mode_update_moves_the_note_to_the_new_store() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        assert_eq!(placement(&s, "a"), (true, false));
        let n = Migrate.update_note(&s, ACCOUNT, change("a", "second", 20), None, true).unwrap();
        assert_eq!((n.version, n.content.as_str(), n.created_at_ms, n.updated_at_ms), (2, "second", 10, 20));
        assert_eq!(placement(&s, "a"), (false, true));
    }

    #[test]
    fn rollback_mode_update_brings_the_note_back_to_legacy() {
        let s = MemoryStores::new(true);
        create(&s, "a", true);
        Migrate.update_note(&s, ACCOUNT, change("a", "back", 20), None, false).unwrap();
        assert_eq!(placement(&s, "a"), (true, false));
        assert_eq!(s.peek(L, "a").unwrap().content, "back");
    }

    #[test]
    fn rollback_mode_create_goes_to_legacy() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        assert_eq!(placement(&s, "a"), (true, false));
    }

    #[test]
    fn list_reads_both_stores_once_each_id() {
        let s = MemoryStores::new(true);
        create(&s, "b", false);
        create(&s, "a", true);
        // A duplicate left by a cut-off move is listed once.
        s.put(L, &Note { version: 1, ..s.peek(N, "a").unwrap() }).unwrap();
        for migrating in [true, false] {
            assert_eq!(Migrate.list_notes(&s, ACCOUNT, migrating).unwrap(), ["a", "b"]);
        }
    }

    #[test]
    fn get_returns_the_newest_copy_and_drops_the_stale_one() {
        for migrating in [true, false] {
            let s = MemoryStores::new(true);
            create(&s, "a", false);
            // A move cut off after its write: new has v2, legacy still v1.
            let v2 = Note { content: "moved".into(), version: 2, ..s.peek(L, "a").unwrap() };
            s.put(N, &v2).unwrap();
            assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", migrating).unwrap(), v2);
            assert_eq!(placement(&s, "a"), (false, true), "migrating={migrating}");
        }
    }

    #[test]
    fn update_after_a_cut_off_move_writes_past_the_newest_copy() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        s.put(N, &Note { content: "moved".into(), version: 2, ..s.peek(L, "a").unwrap() }).unwrap();
        let n = Migrate.update_note(&s, ACCOUNT, change("a", "third", 30), None, false).unwrap();
        assert_eq!(n.version, 3);
        assert_eq!(placement(&s, "a"), (true, false));
    }

    #[test]
    fn delete_removes_from_both_stores() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        s.put(N, &Note { version: 2, ..s.peek(L, "a").unwrap() }).unwrap();
        Migrate.delete_note(&s, ACCOUNT, "a", true).unwrap();
        assert_eq!(placement(&s, "a"), (false, false));
        assert_eq!(Migrate.delete_note(&s, ACCOUNT, "a", true), Err(Error::NotFound));
    }

    #[test]
    fn a_write_that_raced_a_delete_cannot_bring_the_note_back() {
        let s = MemoryStores::new(true);
        let v1 = create(&s, "a", true);
        Migrate.delete_note(&s, ACCOUNT, "a", true).unwrap();
        // An update that read v1 before the delete now writes v2.
        assert!(!s.put(N, &Note { version: 2, ..v1.clone() }).unwrap());
        assert!(!s.put(L, &Note { version: 2, ..v1 }).unwrap());
        assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", true), Err(Error::NotFound));
    }

    #[test]
    fn update_of_a_missing_note_is_not_found() {
        let s = MemoryStores::new(true);
        assert_eq!(Migrate.update_note(&s, ACCOUNT, change("x", "c", 1), None, true), Err(Error::NotFound));
        assert_eq!(placement(&s, "x"), (false, false));
    }

    #[test]
    fn expected_version_must_match() {
        let s = MemoryStores::new(true);
        create(&s, "a", true);
        assert_eq!(
            Migrate.update_note(&s, ACCOUNT, change("a", "c", 1), Some(7), true),
            Err(Error::VersionMismatch(1))
        );
        assert_eq!(Migrate.update_note(&s, ACCOUNT, change("a", "c", 1), Some(1), true).unwrap().version, 2);
    }

    /// Stores that run `between` once, just after the first read a router
    /// makes: another request's work slipping into the middle of this one.
    struct Interleaved<'a> {
        inner: &'a MemoryStores,
        between: std::cell::RefCell<Option<Box<dyn FnOnce(&MemoryStores) + 'a>>>,
    }

    impl Interleaved<'_> {
        fn now(&self) {
            if let Some(f) = self.between.borrow_mut().take() {
                f(self.inner);
            }
        }
    }

    impl Stores for Interleaved<'_> {
        fn get(&self, store: Store, id: &str) -> Result<Option<Note>> {
            let r = self.inner.get(store, id);
            self.now();
            r
        }
        fn put(&self, store: Store, note: &Note) -> Result<bool> {
            self.inner.put(store, note)
        }
        fn delete_if_not_newer(&self, store: Store, id: &str, version: u64) -> Result<bool> {
            self.inner.delete_if_not_newer(store, id, version)
        }
        fn list_ids(&self, store: Store) -> Result<IdList> {
            let r = self.inner.list_ids(store);
            self.now();
            r
        }
        fn is_configured(&self, store: Store) -> bool {
            self.inner.is_configured(store)
        }
        fn recorded_version(&self, store: Store, id: &str) -> Result<Option<u64>> {
            let r = self.inner.recorded_version(store, id);
            self.now();
            r
        }
    }

    #[test]
    fn two_creates_of_one_id_racing_never_overwrite_each_other() {
        let s = MemoryStores::new(true);
        let racing = Interleaved {
            inner: &s,
            between: std::cell::RefCell::new(Some(Box::new(|s: &MemoryStores| {
                Migrate.create_note(s, ACCOUNT, change("a", "the other create", 1), true).unwrap();
            }))),
        };
        let err = Migrate.create_note(&racing, ACCOUNT, change("a", "this create", 2), true).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", true).unwrap().content, "the other create");
    }

    #[test]
    fn a_note_moving_home_meanwhile_is_still_found_deleted_and_listed() {
        for op in ["get", "delete", "list"] {
            let s = MemoryStores::new(true);
            create(&s, "a", false);
            // The move (a backfill's batch) commits to new, then cleans legacy,
            // between this request's first read and its second.
            let racing = Interleaved {
                inner: &s,
                between: std::cell::RefCell::new(Some(Box::new(|s: &MemoryStores| {
                    Migrate.move_notes(s, ACCOUNT, &["a".to_owned()], true).unwrap();
                }))),
            };
            match op {
                "get" => assert_eq!(Migrate.get_note(&racing, ACCOUNT, "a", true).unwrap().content, "first"),
                "delete" => {
                    Migrate.delete_note(&racing, ACCOUNT, "a", true).unwrap();
                    assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", true), Err(Error::NotFound), "the delete took effect");
                }
                _ => assert_eq!(Migrate.list_notes(&racing, ACCOUNT, true).unwrap(), ["a"]),
            }
        }
    }

    #[test]
    fn create_refuses_an_id_taken_in_either_store() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        for migrating in [true, false] {
            let err = Migrate.create_note(&s, ACCOUNT, change("a", "dup", 1), migrating).unwrap_err();
            assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        }
    }

    #[test]
    fn a_deleted_id_can_be_created_again_above_its_tombstone() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        Migrate.update_note(&s, ACCOUNT, change("a", "v2", 2), None, false).unwrap();
        Migrate.delete_note(&s, ACCOUNT, "a", false).unwrap();
        let again = Migrate.create_note(&s, ACCOUNT, change("a", "again", 3), true).unwrap();
        assert_eq!(again.version, 4, "one past the tombstone at 3");
        // A late write of the deleted note's next version cannot overwrite it.
        assert!(!s.put(Store::Legacy, &Note { version: 3, ..again.clone() }).unwrap());
        assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", true).unwrap().content, "again");
    }

    #[test]
    fn move_puts_each_note_where_the_mode_wants_it_and_keeps_its_version() {
        let s = MemoryStores::new(true);
        for id in ["a", "b"] {
            create(&s, id, false);
        }
        create(&s, "c", true);
        let ids: Vec<String> = ["a", "b", "c", "gone"].map(String::from).to_vec();
        let report = Migrate.move_notes(&s, ACCOUNT, &ids, true).unwrap();
        assert_eq!(report, MoveReport { moved: 2, in_place: 1, missing: 1 });
        for id in ["a", "b", "c"] {
            assert_eq!(placement(&s, id), (false, true), "{id} is in the new store only");
            assert_eq!(s.peek(Store::New, id).unwrap().version, 1, "{id} kept its version");
        }
        assert_eq!(Migrate.move_notes(&s, ACCOUNT, &ids, true).unwrap(), MoveReport { moved: 0, in_place: 3, missing: 1 }, "a retry is a no-op");
        assert_eq!(Migrate.move_notes(&s, ACCOUNT, &ids, false).unwrap().moved, 3, "rollback mode moves them back");
        for id in ["a", "b", "c"] {
            assert_eq!(placement(&s, id), (true, false), "{id} is back in legacy only");
            assert_eq!(Migrate.get_note(&s, ACCOUNT, id, false).unwrap().content, "first");
        }
        // And forth again: each round trip leaves every note readable, once.
        for migrating in [true, false, true] {
            Migrate.move_notes(&s, ACCOUNT, &ids, migrating).unwrap();
            assert_eq!(Migrate.list_notes(&s, ACCOUNT, migrating).unwrap(), ["a", "b", "c"]);
        }
    }

    #[test]
    fn a_note_updated_in_migration_mode_moves_back_in_a_rollback() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        // The update writes v2 to new and leaves a tombstone at 2 in legacy.
        Migrate.update_note(&s, ACCOUNT, change("a", "moved by an update", 2), None, true).unwrap();
        assert_eq!(Migrate.move_notes(&s, ACCOUNT, &["a".to_owned()], false).unwrap().moved, 1);
        assert_eq!(placement(&s, "a"), (true, false));
        let back = Migrate.get_note(&s, ACCOUNT, "a", false).unwrap();
        assert_eq!((back.content.as_str(), back.version), ("moved by an update", 3), "one above legacy's tombstone at 2");
    }

    #[test]
    fn a_client_write_racing_a_move_wins() {
        let s = MemoryStores::new(true);
        create(&s, "a", false);
        // The client's update (migration mode) lands first at version 2 in new;
        // the move then finds the newest copy already home.
        Migrate.update_note(&s, ACCOUNT, change("a", "client", 2), None, true).unwrap();
        let report = Migrate.move_notes(&s, ACCOUNT, &["a".to_owned()], true).unwrap();
        assert_eq!(report.in_place, 1);
        assert_eq!(Migrate.get_note(&s, ACCOUNT, "a", true).unwrap().content, "client");
        // A stale move (it read version 1) can never overwrite version 2.
        let stale = Note { id: "a".into(), account_id: ACCOUNT.into(), content: "c".into(), created_at_ms: 1, updated_at_ms: 1, version: 1 };
        assert!(!s.put(Store::New, &stale).unwrap());
    }

    #[test]
    fn plain_mode_keeps_everything_in_legacy_whatever_the_flag() {
        let s = MemoryStores::new(false);
        create(&s, "a", true);
        Migrate.update_note(&s, ACCOUNT, change("a", "b", 2), None, true).unwrap();
        assert_eq!(placement(&s, "a"), (true, false));
        assert_eq!(Migrate.list_notes(&s, ACCOUNT, true).unwrap(), ["a"]);
    }

    #[test]
    fn old_code_loses_track_of_a_moved_note() {
        // The design note's first data-loss case: the legacy-only plugin cannot see or
        // update a note the migrate plugin moved.
        let s = MemoryStores::new(true);
        create(&s, "a", true);
        assert_eq!(LegacyOnly.get_note(&s, ACCOUNT, "a", true), Err(Error::NotFound));
        assert_eq!(LegacyOnly.update_note(&s, ACCOUNT, change("a", "x", 2), None, true), Err(Error::NotFound));
        assert!(!LegacyOnly.info().supports_migration && Migrate.info().supports_migration);
    }
}
