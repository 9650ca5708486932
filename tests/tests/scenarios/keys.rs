//! Per-account keys: a key reaches its own account's notes and nothing else;
//! the admin token reaches everything; bad keys are counted and throttled.

use notes_client::{Client, Response};
use notes_scenarios::*;
use serde_json::json;

const TOKEN: &str = "a-sufficiently-long-admin-token";

fn call(client: &Client, method: &str, path: &str, body: Option<&str>) -> Response {
    let body = body.map(|b| notes_client::Body { content_type: "application/json".into(), bytes: b.as_bytes().to_vec() });
    client.request(method, path, body, &[]).unwrap()
}

#[test]
fn an_account_key_reaches_its_own_notes_and_nothing_else() {
    let host = Host::builder().admin_token(TOKEN).start();
    let (a, b) = (host.create_account(false), host.create_account(false));
    let b_note = host.create_note(&b, "b's secret");
    let answer = host.post(&format!("/accounts/{a}/keys"), json!({ "label": "a's phone" })).expect(201);
    let created = answer.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let as_a = Client::new(&host.base).with_token(Some(key.clone()));

    let note = call(&as_a, "POST", &format!("/accounts/{a}/notes"), Some(r#"{"content":"mine"}"#));
    assert_eq!(note.status, 201, "{}", note.body);
    assert_eq!(call(&as_a, "GET", &format!("/accounts/{a}/notes"), None).status, 200);
    assert_eq!(call(&as_a, "GET", &format!("/accounts/{a}"), None).status, 200);

    let other = call(&as_a, "GET", &format!("/accounts/{b}/notes/{b_note}"), None);
    let missing = call(&as_a, "GET", &format!("/accounts/{}/notes/{b_note}", uuid::Uuid::new_v4()), None);
    assert_eq!((other.status, missing.status), (403, 403));
    let error = |r: &Response| r.json().unwrap()["error"].clone();
    assert_eq!(error(&other), error(&missing), "the same answer whether or not the other account exists");
    for (method, path) in [
        ("GET", "/plugins".to_owned()),
        ("GET", "/accounts".to_owned()),
        ("PATCH", format!("/accounts/{a}")),
        ("POST", format!("/accounts/{a}/keys")),
        ("GET", "/metrics".to_owned()),
        ("GET", format!("/accounts/{}", a.to_uppercase())),
    ] {
        assert_eq!(call(&as_a, method, &path, Some(r#"{"isMigrating":true}"#)).status, 403, "{method} {path}");
    }
    assert!(!host.is_migrating(&a), "the key could not change its account's flag");

    let listed = host.get(&format!("/accounts/{a}/keys")).expect(200).json();
    assert_eq!(listed[0]["label"], "a's phone");
    assert!(listed[0].get("key").is_none() && !listed.to_string().contains(&key), "the key is shown once, never listed");
    let location = answer.header("location").expect("a created key says where it is");
    assert_eq!(location, format!("/accounts/{a}/keys/{}", created["id"].as_str().unwrap()));
    host.delete(location).expect(204);
    assert_eq!(call(&as_a, "GET", &format!("/accounts/{a}/notes"), None).status, 401, "a revoked key");
    host.get(&format!("/accounts/{b}/notes/{b_note}")).expect(200);
}

#[test]
fn a_burst_of_bad_keys_from_one_address_is_answered_429() {
    let host = Host::builder().admin_token(TOKEN).start();
    let account = host.create_account(false);
    let guessing = Client::new(&host.base).with_token(Some("nk_0123_guess".into()));
    let statuses: Vec<u16> = (0..25).map(|_| call(&guessing, "GET", &format!("/accounts/{account}/notes"), None).status).collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    let throttled = call(&guessing, "GET", &format!("/accounts/{account}/notes"), None);
    assert_eq!((throttled.status, throttled.header("retry-after")), (429, Some("1")));
    // Only its wrong credentials: the admin token still passes from the same
    // address, so a guesser sharing the operator's address (a NAT) cannot
    // lock the operator out. One failure's worth comes back every second.
    assert_eq!(host.get("/metrics").status, 200);
    assert_eq!(call(&guessing, "GET", &format!("/accounts/{account}/notes"), None).status, 429, "still throttled");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(call(&guessing, "GET", &format!("/accounts/{account}/notes"), None).status, 401, "a try came back");
    assert_eq!(call(&guessing, "GET", &format!("/accounts/{account}/notes"), None).status, 429, "and was used");
    let scrape = host.get("/metrics").expect(200).body;
    let counted: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("notes_auth_failures_total{reason=\"key\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no key failures counted: {scrape}"));
    assert!(counted >= 20.0, "{counted}");
}

#[test]
fn requests_without_credentials_are_refused_but_never_lock_out_the_address() {
    let host = Host::builder().admin_token(TOKEN).start();
    let anonymous = Client::new(&host.base).with_token(None);
    let statuses: Vec<u16> = (0..40).map(|_| call(&anonymous, "GET", "/accounts", None).status).collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // The same address, now with the token, is served at once.
    host.get("/accounts").expect(200);
}

#[test]
fn without_an_admin_token_no_key_can_be_made() {
    let host = Host::start();
    let account = host.create_account(false);
    let refused = host.post(&format!("/accounts/{account}/keys"), json!({})).expect(409);
    assert!(refused.error().contains("--admin-token"), "{}", refused.body);
}
