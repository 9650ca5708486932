//! Rollback mode: flag off with a new store configured; data flows back.

use notes_scenarios::*;

/// An account whose note `moved` sits in the new store, flag now off.
fn rolled_back(host: &Host) -> (String, String) {
    let account = host.create_account(true);
    let moved = host.create_note(&account, "v1");
    assert_eq!(host.placement(&account, &moved), NEW);
    host.set_migrating(&account, false).expect(200);
    (account, moved)
}

#[test]
fn rollback_mode_create_goes_to_legacy() {
    let host = Host::start();
    let (account, _) = rolled_back(&host);
    let note = host.create_note(&account, "after rollback");
    assert_eq!(host.placement(&account, &note), LEGACY);
}

#[test]
fn rollback_mode_update_upserts_to_legacy_then_deletes_from_new() {
    let host = Host::start();
    let (account, moved) = rolled_back(&host);
    let updated = host.update_note(&account, &moved, "v2").expect(200).json();
    assert_eq!(updated["version"], 2);
    assert_eq!(host.placement(&account, &moved), LEGACY);
    assert_eq!(host.get_note(&account, &moved).expect(200).json()["content"], "v2");
    assert_eq!(host.counts(&account), (1, 0));
}

#[test]
fn rollback_mode_get_and_list_still_find_notes_left_in_the_new_store() {
    let host = Host::start();
    let (account, moved) = rolled_back(&host);
    let back = host.create_note(&account, "legacy");
    assert_eq!(host.get_note(&account, &moved).expect(200).json()["content"], "v1");
    let mut expected = vec![moved, back];
    expected.sort();
    assert_eq!(host.list_notes(&account), expected);
}

#[test]
fn rollback_mode_delete_removes_from_both_stores() {
    let host = Host::start();
    let (account, moved) = rolled_back(&host);
    host.delete_note(&account, &moved).expect(204);
    assert_eq!(host.placement(&account, &moved), NOWHERE);
    assert!(host.list_notes(&account).is_empty());
}

also_on_postgres!(
    rollback_mode_create_goes_to_legacy,
    rollback_mode_update_upserts_to_legacy_then_deletes_from_new,
    rollback_mode_get_and_list_still_find_notes_left_in_the_new_store,
    rollback_mode_delete_removes_from_both_stores,
);
