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
    assert_eq!(r.error(), "account name too long (max 100 characters)", "{}", r.body);
    let account = host.create_account(false);
    let notes = format!("/accounts/{account}/notes");
    host.post(&notes, json!({ "content": "x".repeat(10_000) })).expect(201);
    let r = host.post(&notes, json!({ "content": "x".repeat(10_001) })).expect(400);
    assert_eq!(r.error(), "note content too long (max 10000 characters)", "{}", r.body);
    let note = host.create_note(&account, "small");
    host.put(&format!("{notes}/{note}"), json!({ "content": "é".repeat(5_001) })).expect(400);
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "small", "a refused update changed nothing");
    assert_eq!(host.list_notes(&account).len(), 2, "refused creates stored nothing");
}

/// Notely's client shows `error` to its user: on Notely's routes it is
/// Notely's own text, and this host's more precise one is in `detail`.
#[test]
fn errors_on_notelys_routes_carry_notelys_texts() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "kept");
    let notes = format!("/accounts/{account}/notes");
    let missing = uuid::Uuid::new_v4();
    let raw = |method: &str, path: &str, body: &str| host.request(method, path, Some(body), &[]);
    let cases = [
        (host.post("/accounts", json!({ "id": NIL, "name": "", "isMigrating": false })), 400, "account name is required"),
        (host.post("/accounts", json!({ "id": NIL, "name": "  ", "isMigrating": false })), 400, "account name cannot be only whitespace"),
        (raw("POST", "/accounts", "{\"name\": "), 400, "Invalid JSON"),
        (host.put("/accounts/not-a-uuid", json!({ "name": "Ada", "isMigrating": false })), 400, "Invalid account ID"),
        (host.put(&format!("/accounts/{missing}"), json!({ "name": "Ada", "isMigrating": false })), 404, "Account not found"),
        (host.post(&notes, json!({ "id": NIL, "content": "" })), 400, "note content is required"),
        (host.get(&format!("{notes}/not-a-uuid")), 400, "Invalid note ID"),
        (host.get(&format!("{notes}/{missing}")), 404, "Note not found"),
        (host.get(&format!("/accounts/{missing}/notes")), 404, "Account not found"),
        (raw("PUT", &format!("{notes}/{note}"), "[1,"), 400, "Invalid JSON"),
    ];
    for (answer, status, text) in cases {
        assert_eq!((answer.status, answer.error()), (status, text.to_owned()), "{}", answer.body);
    }
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "kept", "nothing changed");
}

#[test]
fn healthz_carries_a_timestamp() {
    let host = Host::start();
    let health = host.get("/healthz").expect(200).json();
    assert_eq!(health["status"], "ok");
    let stamp = health["timestamp"].as_str().expect("timestamp");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "RFC 3339 UTC: {stamp}");
}

/// Go's zero `time.Time`, which Notely's client sends for a time its caller left unset.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The requests of Notely's load simulator, one account's life, in the
/// shape Notely's Go client serializes them: every field present, zero ids,
/// zero times, a `createdAt` 48 h in the past and an `updatedAt` older than
/// the stored note's.
#[test]
fn a_notely_simulator_session_replayed_request_by_request_gets_notelys_answers() {
    let host = Host::start();
    let account = host
        .post("/accounts", json!({ "id": NIL, "name": "sim-account-7", "isMigrating": false, "shard": "" }))
        .expect(201)
        .json();
    let id = account["id"].as_str().unwrap().to_owned();
    assert_ne!(id, NIL);
    assert_eq!(account["shard"], "", "the shard is echoed as sent");
    let renamed = host
        .put(&format!("/accounts/{id}"), json!({ "id": id, "name": "sim-account-7b", "isMigrating": false, "shard": "s2" }))
        .expect(200)
        .json();
    assert_eq!((renamed["name"].as_str(), renamed["shard"].as_str()), (Some("sim-account-7b"), Some("s2")));

    let created_at = "2026-11-25T08:00:00Z";
    let notes = format!("/accounts/{id}/notes");
    let note = host
        .post(&notes, json!({ "id": NIL, "creator": id, "createdAt": created_at, "updatedAt": ZERO_TIME, "content": "first draft" }))
        .expect(201)
        .json();
    assert_eq!(note["createdAt"], "2026-11-25T08:00:00.000Z", "the client's createdAt is kept (answered, as every time, with milliseconds)");
    let note_id = note["id"].as_str().unwrap().to_owned();
    let path = format!("{notes}/{note_id}");

    let edited_at = "2026-11-26T08:00:00Z";
    let body = |content: &str, updated_at: &str| {
        json!({ "id": note_id, "creator": id, "createdAt": created_at, "updatedAt": updated_at, "content": content })
    };
    let edited = host.put(&path, body("second draft", edited_at)).expect(200).json();
    assert_eq!((edited["content"].as_str(), edited["updatedAt"].as_str()), (Some("second draft"), Some("2026-11-26T08:00:00.000Z")));
    let stale = host.put(&path, body("a stale edit", "2026-11-25T20:00:00Z")).expect(200).json();
    assert_eq!(stale["content"], "second draft", "a write older than the stored note is not applied, and answered 200");
    assert_eq!(host.get(&path).expect(200).json()["content"], "second draft");
    let unset = host.put(&path, body("third draft", ZERO_TIME)).expect(200).json();
    assert_eq!(unset["content"], "third draft", "a zero updatedAt is no time: the write applies");

    host.delete(&path).expect(204);
    host.delete(&path).expect(204);
    host.get(&path).expect(404);
    assert!(host.list_notes(&id).is_empty());
}

/// RFC 3339 of now plus `ahead_ms`, by this machine's clock (the host's).
fn client_clock(ahead_ms: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ahead_ms);
    at.format(&time::format_description::well_known::Rfc3339).expect("a time formats")
}

#[test]
fn a_client_with_a_fast_clock_cannot_freeze_a_note_for_everyone_else() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "first");
    let path = format!("/accounts/{account}/notes/{note}");
    // An hour ahead: refused, and the note is as it was.
    let refused = host.put(&path, json!({ "content": "from 2030", "updatedAt": client_clock(3_600_000) })).expect(400);
    assert!(refused.error().contains("ahead of this host's clock"), "{}", refused.error());
    assert_eq!(host.get(&path).expect(200).json()["version"], 1);
    // Four minutes ahead: within the tolerance, so it writes...
    let skewed = host.put(&path, json!({ "content": "from a fast clock", "updatedAt": client_clock(240_000) })).expect(200).json();
    assert_eq!(skewed["version"], 2);
    // ...and every client with the right time still writes after it: no
    // answer is a 200 that silently dropped the content.
    for (i, version) in (3..6).enumerate() {
        let content = format!("from the right clock, write {i}");
        let written = host.put(&path, json!({ "content": content, "updatedAt": client_clock(0) })).expect(200).json();
        assert_eq!((&written["version"], &written["content"]), (&json!(version), &json!(content)), "{written}");
    }
    // A note stamped in 2030 before times were checked (as the probe left
    // one): the next write with the right time replaces it.
    let stamped = host.create_note(&account, "stamped in 2030");
    let year_2030_ms: i64 = 1_893_456_000_000;
    let changed = host.sqlite("legacy.db").execute("UPDATE notes SET updated_at_ms = ?1 WHERE id = ?2", rusqlite::params![year_2030_ms, stamped]).unwrap();
    assert_eq!(changed, 1);
    let path = format!("/accounts/{account}/notes/{stamped}");
    let written = host.put(&path, json!({ "content": "written today", "updatedAt": client_clock(0) })).expect(200).json();
    assert_eq!((&written["version"], &written["content"]), (&json!(2), &json!("written today")), "{written}");
}
