//! The HTTP API: Notely-compatible shapes, clear errors for bad input, the
//! admin token and protected mode.

use notes_scenarios::*;
use serde_json::json;

#[test]
fn accounts_are_created_read_listed_and_changed() {
    let host = Host::start();
    host.get("/healthz").expect(200);
    let created = host.post("/accounts", json!({ "name": "  Ada  " })).expect(201).json();
    assert_eq!((created["name"].as_str(), created["isMigrating"].as_bool()), (Some("Ada"), Some(false)));
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(host.get(&format!("/accounts/{id}")).expect(200).json(), created);

    let chosen = uuid::Uuid::new_v4().to_string();
    host.post("/accounts", json!({ "name": "Bob", "id": chosen, "isMigrating": true })).expect(201);
    host.post("/accounts", json!({ "name": "Bob again", "id": chosen })).expect(409);
    assert_eq!(host.get("/accounts").expect(200).json().as_array().unwrap().len(), 2);

    let put = host.put(&format!("/accounts/{id}"), json!({ "name": "Ada L." })).expect(200).json();
    assert_eq!((put["name"].as_str(), put["isMigrating"].as_bool()), (Some("Ada L."), Some(false)));
    let patched = host.patch(&format!("/accounts/{id}"), json!({ "isMigrating": true })).expect(200).json();
    assert_eq!((patched["name"].as_str(), patched["isMigrating"].as_bool()), (Some("Ada L."), Some(true)));
}

#[test]
fn bad_account_input_gets_a_clear_error_and_changes_nothing() {
    let host = Host::start();
    let long = "x".repeat(101);
    for (body, needle) in [
        (json!({}), "name is required"),
        (json!({ "name": "   " }), "account name cannot be only whitespace"),
        (json!({ "name": long }), "account name too long (max 100 characters)"),
        (json!({ "name": "A", "id": "not-a-uuid" }), "Invalid account ID"),
        (json!({ "name": "A", "isMigrating": "yes" }), "Invalid JSON"),
    ] {
        let r = host.post("/accounts", body.clone()).expect(400);
        assert!(r.error().contains(needle), "{body}: {}", r.error());
    }
    assert!(host.get("/accounts").json().as_array().unwrap().is_empty());
    host.post("/accounts", json!({ "name": "x".repeat(100) })).expect(201);

    let id = host.create_account(false);
    host.patch(&format!("/accounts/{id}"), json!({})).expect(400);
    host.put(&format!("/accounts/{id}"), json!({ "isMigrating": true })).expect(400);
    host.get("/accounts/not-a-uuid").expect(400);
    host.get(&format!("/accounts/{}", uuid::Uuid::new_v4())).expect(404);
    host.patch(&format!("/accounts/{}", uuid::Uuid::new_v4()), json!({ "name": "ghost" })).expect(404);
}

#[test]
fn notes_have_the_notely_shape() {
    let host = Host::start();
    let account = host.create_account(false);
    let r = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "hello" })).expect(201);
    let active = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(r.header("x-plugin"), Some(format!("migrate@0.1.0; digest={}", &active[..12]).as_str()), "name@version and the build");
    assert_eq!(r.header("etag"), Some("\"1\""));
    let note = r.json();
    for key in ["id", "creator", "createdAt", "updatedAt", "content", "version"] {
        assert!(note.get(key).is_some(), "missing {key} in {note}");
    }
    assert_eq!(note["creator"], account.as_str());
    assert!(note["createdAt"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {note}");
    let id = note["id"].as_str().unwrap();
    assert_eq!(host.get(&format!("/accounts/{account}/notes")).json(), json!([id]));

    let chosen = uuid::Uuid::new_v4().to_string();
    host.post(&format!("/accounts/{account}/notes"), json!({ "content": "mine", "id": chosen })).expect(201);
    host.post(&format!("/accounts/{account}/notes"), json!({ "content": "again", "id": chosen })).expect(409);
}

/// The ETag a note carries is one a client can send back: over HTTP, with
/// the real plugin, a GET that names it is a 304 without the note.
#[test]
fn a_get_with_the_notes_etag_in_if_none_match_answers_304_and_no_body() {
    let host = Host::start();
    let account = host.create_account(false);
    let created = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "cached" })).expect(201);
    let location = created.header("location").expect("a created note says where it is").to_owned();
    let note = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/accounts/{account}/notes/{note}"));
    let etag = created.header("etag").unwrap().to_owned();
    let unchanged = host.request("GET", &location, None, &[("if-none-match", &etag)]).expect(304);
    assert!(unchanged.body.is_empty(), "no body: {}", unchanged.body);
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));
    assert_eq!(unchanged.header("x-plugin"), created.header("x-plugin"), "a 304 names the plugin that served it");
    host.update_note(&account, &note, "changed").expect(200);
    let changed = host.request("GET", &location, None, &[("if-none-match", &etag)]).expect(200);
    assert_eq!((changed.header("etag"), changed.json()["content"].as_str()), (Some("\"2\""), Some("changed")));
}

#[test]
fn bad_note_input_gets_a_clear_error_and_changes_nothing() {
    let host = Host::start();
    let account = host.create_account(false);
    let notes = format!("/accounts/{account}/notes");
    assert!(host.post(&notes, json!({ "content": "" })).expect(400).error().contains("note content is required"));
    host.post(&notes, json!({})).expect(400);
    host.request("POST", &notes, Some("{not json"), &[]).expect(400);
    let big = json!({ "content": "x".repeat(1024 * 1024) });
    host.post(&notes, big).expect(413);
    assert!(host.list_notes(&account).is_empty());

    host.post(&format!("/accounts/{}/notes", uuid::Uuid::new_v4()), json!({ "content": "c" })).expect(404);
    host.get(&format!("{notes}/not-a-uuid")).expect(400);
    let note = host.create_note(&account, "v1");
    host.request("PUT", &format!("{notes}/{note}"), Some("{\"content\":\"v2\"}"), &[("if-match", "soon")]).expect(400);
    assert_eq!(host.get_note(&account, &note).json()["version"], 1);
}

#[test]
fn update_of_a_missing_note_is_404_and_creates_nothing() {
    let host = Host::start();
    let account = host.create_account(true);
    let ghost = uuid::Uuid::new_v4().to_string();
    host.update_note(&account, &ghost, "anything").expect(404);
    assert_eq!(host.placement(&account, &ghost), NOWHERE);
    host.delete_note(&account, &ghost).expect(204); // idempotent, as Notely's clients expect
    assert_eq!(host.placement(&account, &ghost), NOWHERE, "deleting nothing created nothing");
    host.get_note(&account, &ghost).expect(404);
}

#[test]
fn an_account_never_sees_another_accounts_notes() {
    let host = Host::start();
    let (ada, bob) = (host.create_account(true), host.create_account(true));
    let note = host.create_note(&ada, "Ada's");
    host.get_note(&bob, &note).expect(404);
    host.update_note(&bob, &note, "Bob was here").expect(404);
    host.delete_note(&bob, &note).expect(204); // nothing of Bob's to delete
    assert!(host.list_notes(&bob).is_empty());
    assert_eq!(host.get_note(&ada, &note).expect(200).json()["content"], "Ada's");
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let host = Host::start();
    assert_eq!(host.get("/nothing/here").expect(404).error(), "no such route");
    host.delete("/accounts").expect(405);
    host.request("PATCH", "/healthz", None, &[]).expect(405);
}

#[test]
fn with_an_admin_token_every_route_but_healthz_needs_it() {
    let token = "correct-horse-battery-staple";
    let host = Host::builder().admin_token(token).start();
    host.get("/accounts").expect(200);
    let anonymous = Host::builder().data_dir(&host.data_dir).admin_token(token).start();
    // Same data dir, but a client that sends no or a wrong token:
    let client = notes_client::Client::new(&anonymous.base);
    let bare = |headers: &[(&str, &str)]| client.request("GET", "/accounts", None, headers).unwrap().status;
    assert_eq!(bare(&[]), 401);
    assert_eq!(bare(&[("authorization", "Bearer wrong-token-wrong-token")]), 403);
    assert_eq!(bare(&[("authorization", &format!("Bearer {token}"))]), 200);
    assert_eq!(bare(&[("authorization", &format!("bearer {token}"))]), 200, "the scheme is case-insensitive");
    assert_eq!(client.healthz().unwrap().status, 200);
}

#[test]
fn the_admin_token_can_be_read_from_a_file_with_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (good, short) = (dir.path().join("token"), dir.path().join("short"));
    std::fs::write(&good, "correct-horse-battery-staple\n").unwrap();
    std::fs::write(&short, "tiny\n").unwrap();
    let err = Host::builder().arg("--admin-token-file").arg(short.to_str().unwrap()).start_fails();
    assert!(err.contains("at least 16 characters") && err.contains("short"), "the refusal names the check and the file: {err}");
    let host = Host::builder().arg("--admin-token-file").arg(good.to_str().unwrap()).arg("--listen").arg("0.0.0.0:0").start();
    let client = notes_client::Client::new(&host.base);
    let status = |headers: &[(&str, &str)]| client.request("GET", "/accounts", None, headers).unwrap().status;
    assert_eq!(status(&[]), 401, "a token from a file guards the routes as --admin-token does");
    assert_eq!(status(&[("authorization", "Bearer correct-horse-battery-staple")]), 200, "the file's newline is not part of the token");
}

#[test]
fn without_a_token_the_host_refuses_to_listen_beyond_loopback() {
    let err = Host::builder().arg("--listen").arg("0.0.0.0:0").start_fails();
    assert!(err.contains("protected mode"), "{err}");
}

#[test]
fn a_note_list_comes_in_pages_on_request_and_whole_without() {
    let host = Host::start();
    let account = host.create_account(true);
    let mut notes: Vec<String> = (0..5).map(|i| host.create_note(&account, &format!("note {i}"))).collect();
    notes.sort();
    let page = |query: &str| host.get(&format!("/accounts/{account}/notes{query}"));
    let ids = |r: &Resp| r.json().as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>();

    assert_eq!(ids(&page("").expect(200)), notes, "without parameters: every id, as Notely answers");
    let first = page("?limit=2").expect(200);
    assert_eq!(ids(&first), notes[..2]);
    let next = first.header("link").expect("a full page links to the next");
    assert_eq!(next, format!("</accounts/{account}/notes?limit=2&after={}>; rel=\"next\"", notes[1]));
    let second = page(&format!("?limit=2&after={}", notes[1])).expect(200);
    assert_eq!(ids(&second), notes[2..4]);
    let last = page(&format!("?limit=2&after={}", notes[3])).expect(200);
    assert_eq!((ids(&last), last.header("link")), (notes[4..].to_vec(), None), "the last page is short and links nowhere");
    let full_last = page(&format!("?limit=3&after={}", notes[1])).expect(200);
    assert_eq!((ids(&full_last), full_last.header("link")), (notes[2..].to_vec(), None), "a last page exactly full links nowhere either");
    assert_eq!(ids(&page(&format!("?after={}", notes[2])).expect(200)), notes[3..], "after alone: every id after it");

    for bad in ["?limit=0", "?limit=10001", "?limit=two", "?after=banana"] {
        let refused = page(bad).expect(400);
        assert!(!refused.error().is_empty(), "{bad}: a JSON error: {}", refused.body);
    }
    assert_eq!(
        page("?limit=two").expect(400).error(),
        r#"query parameter "limit" must be a whole number between 1 and 10000, got "two""#,
        "a value that does not parse: the API's words, naming the parameter"
    );
}
