//! Migration mode (flag on) and the full migrate → rollback cycle.

use notes_scenarios::*;
use serde_json::json;

#[test]
fn migration_mode_create_goes_to_the_new_store() {
    let host = Host::start();
    let account = host.create_account(true);
    let note = host.create_note(&account, "hello");
    assert_eq!(host.placement(&account, &note), NEW);
    assert_eq!(host.counts(&account), (0, 1));
}

#[test]
fn migration_mode_update_moves_the_note_to_the_new_store() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    assert_eq!(host.placement(&account, &note), LEGACY);
    host.set_migrating(&account, true).expect(200);
    assert_eq!(host.placement(&account, &note), LEGACY, "flipping the flag moves nothing by itself");
    let updated = host.update_note(&account, &note, "v2").expect(200).json();
    assert_eq!((updated["version"].as_u64(), updated["content"].as_str()), (Some(2), Some("v2")));
    assert_eq!(host.placement(&account, &note), NEW);
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "v2");
}

#[test]
fn migration_mode_list_reads_both_stores() {
    let host = Host::start();
    let account = host.create_account(false);
    let old = host.create_note(&account, "in legacy");
    host.set_migrating(&account, true).expect(200);
    let fresh = host.create_note(&account, "in new");
    assert_eq!((host.placement(&account, &old), host.placement(&account, &fresh)), (LEGACY, NEW));
    let mut expected = vec![old, fresh];
    expected.sort();
    assert_eq!(host.list_notes(&account), expected);
}

#[test]
fn migration_mode_get_tries_new_first_then_legacy() {
    let host = Host::start();
    let account = host.create_account(false);
    let old = host.create_note(&account, "still in legacy");
    host.set_migrating(&account, true).expect(200);
    assert_eq!(host.get_note(&account, &old).expect(200).json()["content"], "still in legacy");
    let fresh = host.create_note(&account, "in new");
    assert_eq!(host.get_note(&account, &fresh).expect(200).json()["content"], "in new");
}

#[test]
fn migration_mode_delete_removes_from_both_stores() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    host.set_migrating(&account, true).expect(200);
    // A move cut off after its write leaves the note in both stores.
    host.update_note(&account, &note, "fault:crash-after-write").expect(500);
    assert_eq!(host.placement(&account, &note), BOTH);
    host.delete_note(&account, &note).expect(204);
    assert_eq!(host.placement(&account, &note), NOWHERE);
    host.get_note(&account, &note).expect(404);
    assert!(host.list_notes(&account).is_empty());
    host.delete_note(&account, &note).expect(204); // deleting twice is fine
    assert_eq!(host.placement(&account, &note), NOWHERE);
}

/// The design note's whole story: notes in legacy → flag on → updates move them →
/// flag off → updates bring them back; every note readable and listed at
/// every step.
#[test]
fn a_full_cycle_moves_every_note_and_brings_it_back_without_losing_one() {
    let host = Host::start();
    let account = host.create_account(false);
    let mut notes: Vec<String> = (0..6).map(|i| host.create_note(&account, &format!("note {i} v1"))).collect();
    notes.sort();
    // Every note listed and readable; at `version` if the step gives one.
    let check_all = |step: &str, version: Option<u64>| {
        assert_eq!(host.list_notes(&account), notes, "list after {step}");
        for (i, note) in notes.iter().enumerate() {
            let n = host.get_note(&account, note).expect(200).json();
            if let Some(version) = version {
                assert_eq!(n["version"].as_u64(), Some(version), "note {i} after {step}");
            }
        }
    };
    check_all("create", Some(1));
    assert_eq!(host.counts(&account), (6, 0));

    host.set_migrating(&account, true).expect(200);
    check_all("flag on", Some(1));
    for (i, note) in notes.iter().enumerate() {
        host.update_note(&account, note, &format!("note {i} v2")).expect(200);
        assert_eq!(host.placement(&account, note), NEW);
        check_all(&format!("moving note {i}"), None);
    }
    assert_eq!(host.counts(&account), (0, 6));

    host.set_migrating(&account, false).expect(200);
    check_all("flag off", Some(2));
    for (i, note) in notes.iter().enumerate() {
        host.update_note(&account, note, &format!("note {i} v3")).expect(200);
        assert_eq!(host.placement(&account, note), LEGACY);
        check_all(&format!("bringing back note {i}"), None);
    }
    check_all("rollback", Some(3));
    assert_eq!(host.counts(&account), (6, 0));
}

#[test]
fn concurrent_updates_in_migration_mode_each_get_their_own_version() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    host.set_migrating(&account, true).expect(200);
    let versions: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (host, account, note) = (&host, &account, &note);
                s.spawn(move || {
                    (0..20)
                        .filter_map(|i| {
                            let r = host.update_note(account, note, &format!("w{w} i{i}"));
                            match r.status {
                                200 => r.json()["version"].as_u64(),
                                409 => None, // lost a race eight times in a row: the client may retry
                                s => panic!("unexpected status {s}: {}", r.body),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut sorted = versions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), versions.len(), "two updates were acknowledged with the same version");
    let last = host.get_note(&account, &note).expect(200).json();
    assert_eq!(last["version"].as_u64(), sorted.last().copied(), "the newest acknowledged write is what is read");
    assert_eq!(host.placement(&account, &note), NEW);
}

#[test]
fn if_match_guards_an_update_against_a_stale_version() {
    let host = Host::start();
    let account = host.create_account(true);
    let note = host.create_note(&account, "v1");
    let path = format!("/accounts/{account}/notes/{note}");
    let body = json!({ "content": "v2" }).to_string();
    let stale = host.request("PUT", &path, Some(&body), &[("if-match", "\"7\"")]).expect(412);
    assert_eq!(stale.json()["currentVersion"], 1);
    assert_eq!(host.get_note(&account, &note).json()["content"], "v1", "a refused update changes nothing");
    let ok = host.request("PUT", &path, Some(&body), &[("if-match", "\"1\"")]).expect(200);
    assert_eq!(ok.header("etag"), Some("\"2\""));
}

also_on_postgres!(
    migration_mode_create_goes_to_the_new_store,
    migration_mode_update_moves_the_note_to_the_new_store,
    migration_mode_list_reads_both_stores,
    migration_mode_get_tries_new_first_then_legacy,
    migration_mode_delete_removes_from_both_stores,
    a_full_cycle_moves_every_note_and_brings_it_back_without_losing_one,
    concurrent_updates_in_migration_mode_each_get_their_own_version,
    if_match_guards_an_update_against_a_stale_version,
);

also_on_postgres_schemas!(
    migration_mode_create_goes_to_the_new_store,
    migration_mode_update_moves_the_note_to_the_new_store,
    migration_mode_list_reads_both_stores,
    migration_mode_get_tries_new_first_then_legacy,
    migration_mode_delete_removes_from_both_stores,
    a_full_cycle_moves_every_note_and_brings_it_back_without_losing_one,
);
