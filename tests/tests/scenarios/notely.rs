//! Notely's own clients, unmodified: the requests they send, replayed as
//! they send them, get the answers Notely's server gives.

use notes_scenarios::*;
use serde_json::json;

/// What Notely's client sends for an id its caller left unset.
const NIL: &str = "00000000-0000-0000-0000-000000000000";

#[test]
fn the_nil_uuid_means_generate_an_id_for_accounts_and_notes() {
    let host = Host::start();
    let first = host.post("/accounts", json!({ "id": NIL, "name": "Ada", "isMigrating": false })).expect(201).json();
    let second = host.post("/accounts", json!({ "id": NIL, "name": "Bob", "isMigrating": false })).expect(201).json();
    assert_ne!(first["id"], NIL, "an id was generated");
    assert_ne!(first["id"], second["id"], "a second account without an id is another account, not a conflict");
    let account = first["id"].as_str().unwrap();
    let notes = format!("/accounts/{account}/notes");
    let a = host.post(&notes, json!({ "id": NIL, "content": "one" })).expect(201).json();
    let b = host.post(&notes, json!({ "id": NIL, "content": "two" })).expect(201).json();
    assert_ne!(a["id"], NIL);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(host.list_notes(account).len(), 2);
}

#[test]
fn deleting_a_note_twice_or_one_that_never_existed_answers_204() {
    let host = Host::start();
    let account = host.create_account(true);
    let note = host.create_note(&account, "short-lived");
    host.delete_note(&account, &note).expect(204);
    host.delete_note(&account, &note).expect(204);
    host.delete_note(&account, &uuid::Uuid::new_v4().to_string()).expect(204);
    host.get_note(&account, &note).expect(404);
    // An unknown account is still an error.
    host.delete_note(&uuid::Uuid::new_v4().to_string(), &note).expect(404);
}

#[test]
fn limits_are_notelys_and_count_bytes() {
    let host = Host::start();
    // 50 two-byte characters are 100 bytes: the most a name may have.
    host.post("/accounts", json!({ "name": "é".repeat(50) })).expect(201);
    let r = host.post("/accounts", json!({ "name": "é".repeat(51) })).expect(400);
    assert!(r.error().contains("at most 100 bytes"), "{}", r.body);
    let account = host.create_account(false);
    let notes = format!("/accounts/{account}/notes");
    host.post(&notes, json!({ "content": "x".repeat(10_000) })).expect(201);
    let r = host.post(&notes, json!({ "content": "x".repeat(10_001) })).expect(400);
    assert!(r.error().contains("at most 10000 bytes"), "{}", r.body);
    let note = host.create_note(&account, "small");
    host.put(&format!("{notes}/{note}"), json!({ "content": "é".repeat(5_001) })).expect(400);
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "small", "a refused update changed nothing");
    assert_eq!(host.list_notes(&account).len(), 2, "refused creates stored nothing");
}

#[test]
fn healthz_carries_a_timestamp() {
    let host = Host::start();
    let health = host.get("/healthz").expect(200).json();
    assert_eq!(health["status"], "ok");
    let stamp = health["timestamp"].as_str().expect("timestamp");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "RFC 3339 UTC: {stamp}");
}
