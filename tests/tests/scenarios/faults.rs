//! A failing plugin fails one request, not the host; a move cut in half is
//! resolved by the next read or write, never a loss.

use notes_scenarios::*;
use serde_json::json;

#[test]
fn a_plugin_that_traps_fails_one_request_and_the_host_keeps_serving() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let failed = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "fault:panic" })).expect(500);
    assert_eq!(failed.json()["plugin"], "faulty@0.1.0");
    assert!(failed.error().contains("faulty@0.1.0"), "{}", failed.error());
    // The panic is the plugin's internals: its authors read it, clients do not.
    let fault = host.plugin_fault(&failed, "panics, as asked");
    // The trap, then what the plugin printed, each on its own; no hint to set
    // an environment variable a plugin never gets.
    let message = fault["message"].as_str().unwrap();
    let (trap, printed) = message.split_once("\n--- the plugin's stderr and stdout ---\n").unwrap_or_else(|| panic!("the trap and the output apart: {message}"));
    assert!(trap.contains("unreachable") && !trap.contains("panicked"), "{message}");
    assert!(printed.contains("panicked at") && printed.contains("the faulty plugin panics, as asked"), "{message}");
    assert!(!message.contains("RUST_BACKTRACE"), "{message}");
    assert_eq!((fault["operation"].as_str(), fault["account"].as_str(), fault["plugin"].as_str()), (Some("create_note"), Some(account.as_str()), Some("faulty@0.1.0")));
    assert_eq!(fault["requestId"].as_str(), failed.json()["requestId"].as_str(), "the failure names the request, for its log lines");
    assert!(host.list_notes(&account).is_empty(), "the failed create stored nothing");
    let note = host.create_note(&account, "fine");
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "fine");
    // Every answer a plugin gave names it, an error as much as a note.
    let missing = host.get_note(&account, &uuid::Uuid::new_v4().to_string()).expect(404);
    assert!(missing.header("x-plugin").is_some_and(|p| p.starts_with("faulty@0.1.0; digest=")), "a plugin's 404 names it: {:?}", missing.header("x-plugin"));
}

#[test]
fn a_plugin_stuck_in_a_loop_is_stopped_at_its_deadline() {
    let host = Host::builder().plugin(Plugin::Faulty).arg("--plugin-deadline-ms").arg("200").start();
    let account = host.create_account(false);
    let stuck = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "fault:loop" })).expect(503);
    assert!(stuck.error().contains("did not finish within 200ms"), "{}", stuck.error());
    assert!(stuck.header("x-plugin").is_some_and(|p| p.starts_with("faulty@0.1.0")), "the plugin that ran out of time is named");
    // Its author finds the loop among the plugin's errors, by the request's id.
    let digest = host.plugins()["active"]["digest"].as_str().expect("active digest").to_owned();
    let faults = host.get(&format!("/plugins/{}/errors", &digest[..12])).expect(200).json();
    let fault = faults["errors"].as_array().expect("errors").iter().find(|f| f["requestId"] == stuck.json()["requestId"]).cloned();
    let fault = fault.unwrap_or_else(|| panic!("the stopped call is not among the plugin's errors: {faults}"));
    assert_eq!(fault["message"], "deadline after 200 ms in create_note", "{fault}");
    assert_eq!(fault["account"].as_str(), Some(account.as_str()));
    host.create_note(&account, "served after the loop");
}

#[test]
fn a_fuel_budget_stops_a_looping_plugin_too() {
    let host = Host::builder().plugin(Plugin::Faulty).arg("--plugin-fuel").arg("5000000").start();
    let account = host.create_account(false);
    let stuck = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "fault:loop" })).expect(503);
    assert!(stuck.error().contains("ran out of fuel"), "{}", stuck.error());
    host.create_note(&account, "ordinary requests fit the budget");
}

#[test]
fn a_plugin_that_grabs_memory_hits_its_cap_and_the_host_keeps_serving() {
    let host = Host::builder().plugin(Plugin::Faulty).arg("--plugin-memory-mib").arg("16").start();
    let account = host.create_account(false);
    let bomb = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "fault:alloc" })).expect(500);
    assert_eq!(bomb.json()["plugin"], "faulty@0.1.0");
    host.create_note(&account, "served after the bomb");
}

#[test]
fn a_note_left_in_both_stores_is_resolved_by_the_next_write() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    host.set_migrating(&account, true).expect(200);
    host.update_note(&account, &note, "fault:crash-after-write").expect(500);
    assert_eq!(host.placement(&account, &note), BOTH, "the move was cut off after writing to new");
    assert_eq!(host.list_notes(&account), [note.as_str()], "listed once");

    let next = host.update_note(&account, &note, "v3").expect(200).json();
    assert_eq!(next["version"], 3, "written past the newest copy, not the stale one");
    assert_eq!(host.placement(&account, &note), NEW);
}

#[test]
fn a_note_left_in_both_stores_is_read_at_its_newest_and_cleaned_up() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    host.set_migrating(&account, true).expect(200);
    host.update_note(&account, &note, "fault:crash-after-write").expect(500);
    // Rolled back before anyone wrote again: legacy is read first now, yet
    // the newer copy in the new store wins.
    host.set_migrating(&account, false).expect(200);
    let read = host.get_note(&account, &note).expect(200).json();
    assert_eq!((read["version"].as_u64(), read["content"].as_str()), (Some(2), Some("fault:crash-after-write")));
    assert_eq!(host.placement(&account, &note), NEW, "the stale legacy copy is gone");
}

#[test]
fn a_plugin_cannot_write_into_another_account() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let other = "00000000-0000-4000-8000-000000000000";
    host.post("/accounts", serde_json::json!({ "name": "victim", "id": other })).expect(201);
    let refused =
        host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "fault:write-other-account" })).expect(400);
    assert!(refused.error().contains("cannot write a note of account"), "{}", refused.error());
    assert!(host.list_notes(other).is_empty(), "nothing was written into the other account");
    assert_eq!(host.counts(other), (0, 0));
}

#[test]
fn a_corrupted_store_is_the_hosts_503_naming_the_store_not_the_plugins_failure() {
    let host = Host::start();
    let account = host.create_account(false);
    let notes: Vec<String> = (0..300).map(|i| host.create_note(&account, &format!("note {i} {}", "x".repeat(400)))).collect();
    let digest = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    let stopped = host.stop();
    // Every note into the file itself, then every page but the schema's overwritten.
    let file = stopped.path.join("legacy.db");
    rusqlite::Connection::open(&file).unwrap().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    for (i, byte) in bytes.iter_mut().enumerate().skip(page) {
        *byte = (i * 31 % 251) as u8;
    }
    std::fs::write(&file, bytes).unwrap();
    let host = Host::builder().state_of(&stopped).start();
    let mut unavailable = 0;
    for note in &notes {
        let r = host.get_note(&account, note);
        assert_ne!(r.status, 500, "a store failure blamed on the plugin: {}", r.body);
        if r.status == 503 {
            assert!(r.error().contains("the legacy store failed"), "names the store: {}", r.error());
            unavailable += 1;
        }
    }
    assert!(unavailable > 0, "the corrupted pages were read");
    let faults = host.get(&format!("/plugins/{digest}/errors")).expect(200).json();
    assert_eq!(faults["errors"], json!([]), "nothing counted against the plugin: {faults}");
    assert_eq!(host.plugins()["active"]["digest"], digest.as_str(), "the plugin was not rolled back");
}
