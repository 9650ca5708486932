//! The operator's command line (`notes-host migrate …`, `notes-host plugin
//! …`) as an operator meets it: tables for people by default, the API's
//! JSON with `--json`, plain sentences for a mistyped command, and output
//! piped into `head`.

use std::process::{Command, Output, Stdio};

use notes_scenarios::*;

/// `notes-host ARGS`, against `host` when given (`--url`).
fn notes_host(host: Option<&Host>, args: &[&str]) -> Output {
    let mut command = Command::new(host_binary());
    command.args(args);
    if let Some(host) = host {
        command.args(["--url", &host.base]);
    }
    command.env_remove("NOTES_URL").env_remove("NOTES_ADMIN_TOKEN").output().expect("run notes-host")
}

/// The stdout of `notes-host ARGS` against `host`, which must succeed.
#[track_caller]
fn succeeds(host: &Host, args: &[&str]) -> String {
    let out = notes_host(Some(host), args);
    assert!(out.status.success(), "notes-host {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The stderr of `notes-host ARGS`, which must fail (without a panic).
#[track_caller]
fn fails(host: Option<&Host>, args: &[&str]) -> String {
    let out = notes_host(host, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "notes-host {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The cells of the table line whose first cell is `first`.
fn row<'a>(text: &'a str, first: &str) -> Option<Vec<&'a str>> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|cells| cells.first() == Some(&first))
}

/// `2026-12-06T19:05:57Z`: a time in UTC at the second, 20 characters.
fn is_utc_second(cell: &str) -> bool {
    let b = cell.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn migrate_status_shows_accounts_per_state_as_a_table_and_the_api_json_with_json() {
    let host = Host::start();
    host.create_account(false);
    let on = host.create_account(false);
    host.create_note(&on, "to move");
    host.set_migrating(&on, true).expect(200);
    let api = host.get("/migration").json();

    let table = succeeds(&host, &["migrate", "status"]);
    let header = table.lines().next().unwrap();
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["STATE", "ACCOUNTS"], "{table}");
    for (state, count) in api["accounts"].as_object().unwrap() {
        assert_eq!(row(&table, state), Some(vec![state.as_str(), &count.to_string()]), "one row per state:\n{table}");
    }
    assert!(table.contains("notes to move: 1 to new, 0 to legacy"), "{table}");
    let changes = table.split("recent changes:\n").nth(1).unwrap_or_else(|| panic!("no recent changes:\n{table}"));
    let mut lines = changes.lines();
    assert!(lines.next().unwrap().starts_with("AT  "), "{changes}");
    let times: Vec<&str> = lines.map(|l| l.split_whitespace().next().unwrap()).collect();
    assert!(!times.is_empty() && times.iter().all(|t| is_utc_second(t)), "every change's time at the same width:\n{changes}");
    assert!(!table.split("recent changes:").next().unwrap().contains('{'), "no JSON in the tables:\n{table}");

    let json: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "status", "--json"])).expect("--json prints JSON");
    assert_eq!(json, api);
}

#[test]
fn migrate_jobs_shows_one_row_per_job_and_the_api_json_with_json() {
    let host = Host::start();
    let account = host.create_account(false);
    let job = host.post("/jobs", serde_json::json!({ "kind": "verify", "account": account })).expect(201).json();
    let id = job["id"].as_str().unwrap();
    // A verify of an empty account ends at once; wait for it, so the table and the API agree.
    eventually("the verify job ended", || host.get(&format!("/jobs/{id}")).json()["state"] != "running");
    let state = host.get(&format!("/jobs/{id}")).json()["state"].as_str().unwrap().to_owned();

    let table = succeeds(&host, &["migrate", "jobs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..4], ["ID", "KIND", "STATE", "ACCOUNT"], "{table}");
    let cells = row(&table, &id[..8]).unwrap_or_else(|| panic!("no row for job {id} by its first 8 characters:\n{table}"));
    assert!(!table.contains(id), "the full job id is not shown, only the 8 characters the console shows: {table}");
    assert_eq!(&cells[1..4], ["verify", state.as_str(), &account[..8]], "its account by the 8 characters the console shows: {table}");
    assert!(cells.iter().any(|c| is_utc_second(c)), "its creation time at the second:\n{table}");

    let json: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "jobs", "--json"])).expect("--json prints JSON");
    assert_eq!(json[0]["id"], id);
}

#[test]
fn migrate_jobs_are_paused_and_resumed_by_the_8_characters_the_console_shows() {
    let host = Host::start();
    for _ in 0..20 {
        host.create_account(false);
    }
    // A verify of every account at one account a second: running for a while.
    let job = host.post("/jobs", serde_json::json!({ "kind": "verify", "rate": 1 })).expect(201).json();
    let id = job["id"].as_str().unwrap();
    let short = &id[..8];
    let paused: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "pause", short])).unwrap();
    assert_eq!((paused["id"].as_str(), paused["state"].as_str()), (Some(id), Some("paused")), "{paused}");
    assert_eq!(host.get(&format!("/jobs/{short}")).expect(200).json()["state"], "paused");
    let resumed: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "resume", short])).unwrap();
    assert_eq!(resumed["state"], "running");
    succeeds(&host, &["migrate", "cancel", short]);
    let refused = fails(Some(&host), &["migrate", "pause", &id[..7]]);
    assert!(refused.contains('8'), "a shorter prefix is refused, naming the minimum: {refused}");
}

#[test]
fn plugin_list_shows_the_stored_plugins_as_a_table_and_the_api_json_with_json() {
    let host = Host::start();
    let faulty = host.push_plugin(Plugin::Faulty).json()["digest"].as_str().unwrap().to_owned();
    let active = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();

    let table = succeeds(&host, &["plugin", "list"]);
    assert!(table.starts_with("active: migrate@0.1.0"), "{table}");
    let stored = table.split("stored plugins:\n").nth(1).unwrap();
    assert_eq!(
        stored.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ACTIVE", "PLUGIN", "MIGRATES", "INSTANCES", "SIZE", "UPLOADED", "DIGEST"],
        "{table}"
    );
    let active_row = row(stored, "*").unwrap_or_else(|| panic!("the active plugin is starred:\n{table}"));
    assert_eq!((active_row[1], active_row.last().copied()), ("migrate@0.1.0", Some(active.as_str())), "{table}");
    let faulty_row = row(stored, "faulty@0.1.0").unwrap_or_else(|| panic!("no row for the pushed plugin:\n{table}"));
    assert_eq!(faulty_row.last().copied(), Some(faulty.as_str()));
    assert!(is_utc_second(faulty_row[faulty_row.len() - 2]), "its upload time at the second:\n{table}");

    let json: serde_json::Value = serde_json::from_str(&succeeds(&host, &["plugin", "list", "--json"])).expect("--json prints JSON");
    assert_eq!(json["active"]["digest"], active.as_str());
}

#[test]
fn migrate_rollout_takes_a_percentage_with_or_without_its_percent_sign() {
    let host = Host::start();
    for _ in 0..4 {
        host.create_account(false);
    }
    let answer: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "rollout", "10%"])).unwrap();
    assert_eq!(answer["percent"], 10.0, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "rollout", "0"])).unwrap();
    assert_eq!(answer["percent"], 0.0, "{answer}");
    let refused = fails(Some(&host), &["migrate", "rollout", "150%"]);
    assert!(refused.contains("from 0 to 100"), "{refused}");
}

#[test]
fn migrate_backfill_without_an_account_says_to_give_one_or_all() {
    for kind in ["backfill", "rollback", "verify"] {
        let refused = fails(None, &["migrate", kind]);
        assert!(refused.contains("--account") && refused.contains("--all"), "{kind}: {refused}");
    }
}

#[test]
fn a_host_url_without_http_gets_a_sentence_saying_what_was_given_and_what_is_accepted() {
    let bare = fails(None, &["migrate", "status", "--url", "localhost:8080"]);
    assert!(bare.contains("\"localhost:8080\"") && bare.contains("no scheme") && bare.contains("http://localhost:8080"), "{bare}");
    assert!(!bare.contains("invalid format"), "not the HTTP library's words: {bare}");
    let tls = fails(None, &["plugin", "list", "--url", "https://notes.internal:8080"]);
    assert!(tls.contains("https") && tls.contains("plain HTTP") && tls.contains("http://notes.internal:8080"), "{tls}");
}

#[test]
fn plugin_check_and_new_work_offline_and_offer_no_url_or_admin_token() {
    for command in ["check", "new"] {
        let help = Command::new(host_binary()).args(["plugin", command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(!help.contains("--url") && !help.contains("--admin-token"), "plugin {command} --help:\n{help}");
    }
    let help = Command::new(host_binary()).args(["plugin", "list", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--url") && help.contains("--admin-token"), "plugin list talks to a host:\n{help}");
    let dir = tempfile::tempdir().unwrap();
    let refused = fails(None, &["plugin", "new", "offline", "--dir", dir.path().to_str().unwrap(), "--url", "http://127.0.0.1:1"]);
    assert!(refused.contains("--url"), "{refused}");
}

#[test]
fn a_command_whose_output_pipe_is_closed_ends_quietly_without_a_panic() {
    let host = Host::start();
    for args in [&["migrate", "status"][..], &["migrate", "status", "--json"], &["migrate", "jobs"], &["plugin", "list"], &["openapi"]] {
        let mut child = Command::new(host_binary())
            .args(args)
            .args(if args[0] == "openapi" { vec![] } else { vec!["--url", &host.base] })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "notes-host {args:?}: {:?} {stderr}", out.status);
    }
}

/// Two accounts whose ids share their first 8 characters, and one alone.
fn accounts_sharing_a_prefix(host: &Host) -> [String; 3] {
    let ids = ["abcdef01-0000-4000-8000-000000000001", "abcdef01-1111-4000-8000-000000000002", "12345678-2222-4000-8000-000000000003"];
    for (i, id) in ids.iter().enumerate() {
        host.post("/accounts", serde_json::json!({ "id": id, "name": format!("account {i}") })).expect(201);
    }
    ids.map(str::to_owned)
}

#[test]
fn an_operator_route_takes_an_accounts_8_character_prefix_and_notelys_routes_a_whole_uuid() {
    let host = Host::start();
    let [first, second, alone] = accounts_sharing_a_prefix(&host);
    host.create_note(&alone, "a note");

    // The state, by the 8 characters the console and the CLI show.
    let status = host.get("/accounts/12345678/migration").expect(200).json();
    assert_eq!((status["state"].as_str(), status["legacyNotes"].as_u64()), (Some("legacy"), Some(1)), "{status}");
    // Ambiguous: refused, saying how many it names; too short: the minimum; none: 404.
    let ambiguous = host.get("/accounts/abcdef01/migration").expect(400).error();
    assert!(ambiguous.contains("2 accounts"), "{ambiguous}");
    let short = host.get("/accounts/1234567/migration").expect(400).error();
    assert!(short.contains('8'), "the refusal names the minimum: {short}");
    host.get("/accounts/fedcba98/migration").expect(404);
    host.get("/accounts/not-hex!/migration").expect(400);

    // A flip by prefix; an ambiguous one changes nothing.
    let flipped = host.patch("/accounts/abcdef01-1", serde_json::json!({ "isMigrating": true })).expect(200).json();
    assert_eq!((flipped["id"].as_str(), flipped["isMigrating"].as_bool()), (Some(second.as_str()), Some(true)), "{flipped}");
    host.patch("/accounts/abcdef01", serde_json::json!({ "isMigrating": true })).expect(400);
    assert!(!host.is_migrating(&first), "nothing changed");
    let audit = host.get("/audit?kind=flag").json();
    let subjects: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, [second.as_str()], "audited under the whole id: {audit}");

    // Move and verify, a job and a rollout by list.
    host.post("/accounts/12345678/migration/move", serde_json::json!({})).expect(200);
    assert_eq!(host.post("/accounts/12345678/migration/verify", serde_json::json!({})).expect(200).json()["clean"], true);
    let job = host.post("/jobs", serde_json::json!({ "kind": "verify", "account": "12345678" })).expect(201).json();
    assert_eq!(job["account"], alone.as_str(), "{job}");
    host.post("/jobs", serde_json::json!({ "kind": "verify", "account": "abcdef01" })).expect(400);
    let rollout = host.post("/migration/rollout", serde_json::json!({ "accounts": ["12345678"], "isMigrating": true })).expect(200).json();
    assert_eq!(rollout["turnedOn"], 1, "{rollout}");
    assert!(host.is_migrating(&alone));

    // Notely's routes take whole UUIDs only, as Notely's server does.
    assert_eq!(host.get("/accounts/12345678").expect(400).error(), "Invalid account ID");
    host.get("/accounts/12345678/notes").expect(400);
    host.put("/accounts/12345678", serde_json::json!({ "name": "renamed" })).expect(400);
    host.get(&format!("/accounts/{alone}/notes")).expect(200);
}

#[test]
fn migrate_takes_the_short_account_ids_its_tables_show() {
    let host = Host::start();
    let [_, second, alone] = accounts_sharing_a_prefix(&host);
    host.set_migrating(&second, true).expect(200);

    // `status` names the flipped account by its first 8 characters.
    let status = succeeds(&host, &["migrate", "status"]);
    let flip = status.lines().find(|l| l.contains(" flag ")).unwrap_or_else(|| panic!("no flip among the changes:\n{status}"));
    assert!(flip.split_whitespace().any(|c| c == &second[..8]) && !flip.contains(&second), "{flip}");

    // A job for the account named that way; `jobs` shows it the same way.
    let job: serde_json::Value = serde_json::from_str(&succeeds(&host, &["migrate", "verify", "--account", &alone[..8]])).unwrap();
    assert_eq!(job["account"], alone.as_str(), "{job}");
    let jobs = succeeds(&host, &["migrate", "jobs"]);
    let cells = row(&jobs, &job["id"].as_str().unwrap()[..8]).unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(cells[3], &alone[..8], "{jobs}");

    let refused = fails(Some(&host), &["migrate", "backfill", "--account", "abcdef01"]);
    assert!(refused.contains("2 accounts") && refused.contains("abcdef01"), "{refused}");
}
