//! What an operator's monitoring sees: `GET /metrics` scraped while an
//! account migrates shows the documented series moving.

use notes_scenarios::*;
use serde_json::json;

/// The value of the series `name` whose labels include every `labels` pair.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().ok())?
    })
}

#[test]
fn metrics_show_a_migration_moving() {
    let host = Host::start();
    let account = host.create_account(false);
    for i in 0..40 {
        host.create_note(&account, &format!("note {i}"));
    }
    let before = host.get("/metrics").expect(200).body;
    assert_eq!(value(&before, "notes_notes", &[("store", "legacy")]), Some(40.0), "{before}");
    assert_eq!(value(&before, "notes_accounts", &[("state", "legacy")]), Some(1.0));
    assert_eq!(
        value(&before, "notes_http_requests_total", &[("route", "/accounts/{account}/notes"), ("method", "POST"), ("status", "201")]),
        Some(40.0)
    );
    assert!(value(&before, "notes_plugin_calls_total", &[("op", "create_note"), ("outcome", "ok")]).unwrap() >= 40.0);
    assert!(before.contains("notes_http_request_duration_seconds_bucket"), "latency histograms");

    host.set_migrating(&account, true).expect(200);
    let job = host.post("/jobs", json!({ "kind": "backfill", "account": account })).expect(201).json();
    eventually("the backfill finished", || host.get(&format!("/jobs/{}", job["id"].as_str().unwrap())).json()["state"] == "done");
    let after = host.get("/metrics").expect(200).body;
    assert_eq!(value(&after, "notes_notes", &[("store", "new")]), Some(40.0), "{after}");
    assert_eq!(value(&after, "notes_notes", &[("store", "legacy")]), Some(0.0));
    assert_eq!(value(&after, "notes_flips_total", &[("outcome", "flipped")]), Some(1.0));
    assert!(value(&after, "notes_plugin_calls_total", &[("op", "move_notes"), ("outcome", "ok")]).unwrap() >= 1.0);
    assert!(value(&after, "notes_store_operations_total", &[("store", "new"), ("op", "put")]).unwrap() >= 40.0);
    assert_eq!(value(&after, "notes_jobs", &[("state", "done")]), Some(1.0));
    assert!(!after.contains(&account), "no series is labelled with an account");
}

#[test]
fn the_admin_token_guards_metrics_and_failures_are_counted() {
    let token = "a-sufficiently-long-token";
    let host = Host::builder().admin_token(token).start();
    let anonymous = notes_client::Client::new(&host.base).request("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(anonymous.status, 401);
    let scrape = host.get("/metrics").expect(200).body;
    assert_eq!(value(&scrape, "notes_auth_failures_total", &[("reason", "missing")]), Some(1.0), "{scrape}");
}

#[test]
fn a_request_id_is_echoed_and_names_the_error_body_and_the_json_log_lines_of_its_request() {
    let host = Host::builder().plugin(Plugin::Faulty).args(["--log-format", "json"]).start();
    let account = host.create_account(false);
    let failed = host
        .request("POST", &format!("/accounts/{account}/notes"), Some(r#"{"content":"fault:panic"}"#), &[("x-request-id", "trace-me-42")])
        .expect(500);
    assert_eq!(failed.header("x-request-id"), Some("trace-me-42"), "echoed");
    assert_eq!(failed.json()["requestId"], "trace-me-42", "{}", failed.body);
    let generated = host.get(&format!("/accounts/{account}")).expect(200);
    assert!(uuid::Uuid::parse_str(generated.header("x-request-id").unwrap()).is_ok(), "generated when absent");

    eventually("the failure is logged", || host.log().contains("plugin failed"));
    let line = host.log().lines().find(|l| l.contains("trace-me-42") && l.contains("plugin failed")).unwrap().to_owned();
    let logged: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    assert_eq!(logged["span"]["request_id"], "trace-me-42", "{line}");
    assert_eq!(logged["fields"]["error_id"], failed.json()["errorId"], "the id the client got: {line}");
    assert!(logged["fields"]["error"].as_str().unwrap_or("").contains("panics, as asked"), "the plugin's own message, for its authors: {line}");
}
