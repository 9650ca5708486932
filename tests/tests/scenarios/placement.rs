//! Where notes belong is the plugin's to say (`homes`, `notes:plugin@0.4.0`):
//! verify and the account states judge every note by it. A plugin built
//! against an older version is judged by the migrate rule (new with the flag
//! on, legacy with it off).

use notes_scenarios::*;
use serde_json::{Value, json};

/// The flag the places-by-id fixture routes a note by: its id's, not the
/// account's (the parity of the sum of its bytes, as `mode_of` in
/// `plugins/testing/places-by-id`).
fn routed_as_migrating(note: &str) -> bool {
    note.bytes().map(u32::from).sum::<u32>() % 2 == 1
}

fn verify(host: &Host, account: &str) -> Value {
    host.post(&format!("/accounts/{account}/migration/verify"), json!({})).expect(200).json()
}

fn state(host: &Host, account: &str) -> String {
    host.get(&format!("/accounts/{account}/migration")).expect(200).json()["state"].as_str().unwrap().to_owned()
}

/// Notes created until the account has some of each kind the fixture
/// routes: some it keeps in new, some in legacy, whatever the flag.
fn notes_of_both_kinds(host: &Host, account: &str, content: &str) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    while notes.len() < 6 || !(notes.iter().any(|n| routed_as_migrating(n)) && notes.iter().any(|n| !routed_as_migrating(n))) {
        notes.push(host.create_note(account, content));
    }
    notes
}

#[test]
fn a_plugin_that_places_notes_by_their_id_verifies_clean_and_its_account_migrates_and_rolls_back() {
    let host = Host::start_with(Plugin::PlacesById);
    let account = host.create_account(false);
    let before = notes_of_both_kinds(&host, &account, "written before the migration");
    host.set_migrating(&account, true).expect(200);
    assert_eq!(host.serving_plugin(&account), "places-by-id@0.1.0");
    let during = notes_of_both_kinds(&host, &account, "written during it");
    for note in &before {
        host.update_note(&account, note, "edited during it").expect(200);
    }
    for note in before.iter().chain(&during) {
        let home = if routed_as_migrating(note) { NEW } else { LEGACY };
        assert_eq!(host.placement(&account, note), home, "the plugin keeps note {note} where its id says, not where the flag says");
    }
    let (legacy, new) = host.counts(&account);
    assert!(legacy > 0 && new > 0, "notes in both stores: {legacy} in legacy, {new} in new");

    let report = verify(&host, &account);
    assert_eq!(report["misplaced"], 0, "every note is where the plugin says it belongs: {report}");
    assert_eq!((report["clean"].as_bool(), report["notes"].as_u64()), (Some(true), Some((before.len() + during.len()) as u64)), "{report}");
    assert_eq!(report["state"], "migrated", "a clean verify with the flag on: {report}");

    host.set_migrating(&account, false).expect(200);
    for note in &during {
        host.update_note(&account, note, "edited after it").expect(200);
    }
    assert_ne!(state(&host, &account), "rolling-back", "no note is away from where the plugin says it belongs");
    let report = verify(&host, &account);
    assert_eq!(report["misplaced"], 0, "{report}");
    assert_eq!(report["state"], "rolled-back", "a clean verify with the flag off, after it was on: {report}");
    let service = host.get("/migration").expect(200).json();
    assert_eq!(service["accounts"]["rolled-back"], 1, "the service counts it the same way: {service}");
    assert_eq!(service["accounts"]["rolling-back"], 0, "{service}");

    // The plugin judged these notes once: scrapes of the states (the
    // console's, Prometheus') make no further plugin call while nothing changed.
    let calls = host.plugin_calls_started();
    for _ in 0..5 {
        assert_eq!(state(&host, &account), "rolled-back");
        host.get("/migration").expect(200);
    }
    assert_eq!(host.plugin_calls_started(), calls, "no plugin call for a state already judged");
    host.create_note(&account, "one more");
    for _ in 0..3 {
        assert_eq!(state(&host, &account), "rolled-back");
    }
    assert_eq!(host.plugin_calls_started(), calls + 2, "the create's call, and one to judge the account with its new note again");
}

#[test]
fn a_plugin_built_against_wit_0_3_is_verified_by_the_migrate_rule() {
    let host = Host::start();
    let account = host.create_account(false);
    let old = host.create_note(&account, "written before the migration");
    let pushed = host.push_plugin(Plugin::MigrateWit03).expect(201).json();
    assert_eq!(pushed["witVersion"], "0.3.0", "{pushed}");
    host.activate(Plugin::MigrateWit03);
    host.set_migrating(&account, true).expect(200);
    let fresh = host.create_note(&account, "written during it");
    assert_eq!((host.placement(&account, &old), host.placement(&account, &fresh)), (LEGACY, NEW));

    // With the flag on, the migrate rule wants every note in new: the one
    // left in legacy is misplaced, and the account still migrating.
    let report = verify(&host, &account);
    assert_eq!((report["misplaced"].as_u64(), report["clean"].as_bool()), (Some(1), Some(false)), "{report}");
    assert_eq!(report["problems"][0]["note"], old.as_str(), "{report}");
    assert_eq!(report["problems"][0]["problem"], "only in the legacy store, but the plugin places it in new", "{report}");
    assert_eq!(report["state"], "migrating", "{report}");

    host.update_note(&account, &old, "edited during it").expect(200);
    let report = verify(&host, &account);
    assert_eq!((report["misplaced"].as_u64(), report["clean"].as_bool()), (Some(0), Some(true)), "{report}");
    assert_eq!(report["state"], "migrated", "{report}");

    // Flag off: the migrate rule wants legacy, so notes in new are rolling back.
    host.set_migrating(&account, false).expect(200);
    assert_eq!(state(&host, &account), "rolling-back");
}
