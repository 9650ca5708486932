//! Store plugins: a store backend written as a Wasm component, served as the
//! legacy store. Here the legacy store is a running Notely data proxy (the
//! stand-in of `notes_scenarios::notely`, over real HTTP, with its lock and
//! its 1–5 ms per call), reached by `plugins/examples/notely-data-proxy`.

use std::time::Duration;

use notes_scenarios::notely::Proxy;
use notes_scenarios::*;
use serde_json::json;

const AT: &str = "2026-11-30T09:15:00.250Z";

fn host_over(proxy: &Proxy) -> HostBuilder {
    Host::builder()
        .arg(format!("--legacy-store=plugin:{}", Plugin::NotelyDataProxy.path().display()))
        .arg(format!("--store-config=url={}", proxy.url))
        .arg(format!("--store-allow-http={}", proxy.origin))
}

fn job(host: &Host, kind: &str) -> serde_json::Value {
    let id = host.post("/jobs", json!({ "kind": kind })).expect(201).json()["id"].as_str().unwrap().to_owned();
    eventually_within(&format!("the {kind} job finished"), Duration::from_secs(60), || host.get(&format!("/jobs/{id}")).expect(200).json()["state"] == "done");
    host.get(&format!("/jobs/{id}")).expect(200).json()
}

fn account_state(host: &Host, account: &str) -> String {
    host.get(&format!("/accounts/{account}/migration")).expect(200).json()["state"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn notes_kept_in_notely_are_served_backfilled_verified_and_rolled_back_into_notely() {
    let proxy = Proxy::start();
    let accounts: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut notes = Vec::new();
    for account in &accounts {
        for i in 0..8 {
            let id = uuid::Uuid::new_v4().to_string();
            proxy.create(account, &id, &format!("{account} note {i}"), AT);
            notes.push((account.clone(), id, format!("{account} note {i}")));
        }
    }
    let host = host_over(&proxy).start();
    for account in &accounts {
        host.post("/accounts", json!({ "id": account, "name": "from Notely", "isMigrating": false })).expect(201);
    }

    // Served through the host as Notely served them: same ids, content and times, version 1.
    let (account, id) = (notes[0].0.clone(), notes[0].1.clone());
    let (account, id) = (&account, &id);
    let note = host.get_note(account, id).expect(200).json();
    assert_eq!(note["content"], notes[0].2);
    assert_eq!(note["createdAt"], AT, "the proxy's times, as they were");
    assert_eq!(note["version"], 1, "a note the host never wrote counts as created once");
    assert_eq!(host.list_notes(account).len(), 8);

    // Written through the host, into Notely.
    host.update_note(account, id, "edited through the host").expect(200);
    assert_eq!(proxy.note(account, id).unwrap()["content"], "edited through the host", "an update lands in the proxy");
    assert_eq!(host.get_note(account, id).expect(200).json()["version"], 2);
    let created = host.create_note(account, "created through the host");
    assert_eq!(proxy.note(account, &created).unwrap()["content"], "created through the host", "a create lands in the proxy");
    notes[0].2 = "edited through the host".into();
    notes.push((account.clone(), created, "created through the host".into()));

    // Backfill: every note moves out of Notely into the sharded store.
    for account in &accounts {
        host.set_migrating(account, true).expect(200);
    }
    let backfill = job(&host, "backfill");
    assert_eq!(backfill["moved"], 25, "{backfill}");
    for account in &accounts {
        assert_eq!(proxy.count(account), 0, "the backfill emptied Notely of {account}");
    }
    let verify = job(&host, "verify");
    assert_eq!(verify["problems"], 0, "{verify}");
    for account in &accounts {
        assert_eq!(account_state(&host, account), "migrated");
    }
    for (account, id, content) in &notes {
        assert_eq!(host.get_note(account, id).expect(200).json()["content"], content.as_str(), "served from the new store");
    }

    // Roll back: every note goes back into Notely, as it is now.
    for account in &accounts {
        host.set_migrating(account, false).expect(200);
    }
    let rollback = job(&host, "rollback");
    assert_eq!(rollback["moved"], 25, "{rollback}");
    job(&host, "verify");
    for (account, id, content) in &notes {
        let back = proxy.note(account, id).unwrap_or_else(|| panic!("note {id} is back in Notely"));
        assert_eq!(back["content"], content.as_str());
        assert_eq!(back["creator"], account.as_str());
        assert_eq!(host.get_note(account, id).expect(200).json()["content"], content.as_str());
    }
    for account in &accounts {
        assert_eq!(account_state(&host, account), "rolled-back");
        assert_eq!(host.counts(account), (if account == &accounts[0] { 9 } else { 8 }, 0), "all in legacy, none in the new store");
    }
}

#[test]
fn a_note_deleted_through_the_host_stays_deleted_though_notely_keeps_no_tombstones() {
    let proxy = Proxy::start();
    let account = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    proxy.create(&account, &id, "doomed", AT);
    let host = host_over(&proxy).start();
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": false })).expect(201);
    host.delete_note(&account, &id).expect(204);
    assert!(proxy.note(&account, &id).is_none(), "the delete reached the proxy");
    // A writer behind the host's back puts it into Notely again: the host's tombstone wins.
    proxy.create(&account, &id, "written behind the host's back", AT);
    host.get_note(&account, &id).expect(404);
    assert!(host.list_notes(&account).is_empty(), "a deleted note is not listed");
    // Created again through the host, it starts above its tombstone.
    let again = host.post(&format!("/accounts/{account}/notes"), json!({ "id": id, "content": "reborn" })).expect(201).json();
    assert_eq!(again["version"], 3, "above the tombstone at version 2");
}

#[test]
fn an_upstream_that_is_down_answers_503_with_retry_after_and_a_write_retried_later_lands_once() {
    let mut proxy = Proxy::start();
    let account = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    proxy.create(&account, &id, "before", AT);
    let host = host_over(&proxy).start();
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": false })).expect(201);

    proxy.stop();
    let read = host.get_note(&account, &id).expect(503);
    assert!(read.header("retry-after").is_some(), "a 503 says when to retry");
    assert!(read.body.contains("Notely data proxy"), "the error names the upstream: {}", read.body);
    host.update_note(&account, &id, "while down").expect(503);
    // Other accounts' requests and the host itself are fine.
    host.get("/healthz").expect(200);

    proxy.restart();
    let note = host.get_note(&account, &id).expect(200).json();
    assert_eq!(note["content"], "before", "the failed update changed nothing");
    assert_eq!(note["version"], 1);
    assert_eq!(host.update_note(&account, &id, "after").expect(200).json()["version"], 2, "the retry lands, once");
    assert_eq!(proxy.note(&account, &id).unwrap()["content"], "after");
}

#[test]
fn a_backfill_goes_on_when_the_upstream_restarts_midway_and_loses_nothing() {
    let mut proxy = Proxy::start();
    let account = uuid::Uuid::new_v4().to_string();
    let ids: Vec<String> = (0..150).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        proxy.create(&account, id, &format!("note {i}"), AT);
    }
    let host = host_over(&proxy).start();
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": true })).expect(201);
    let id = host.post("/jobs", json!({ "kind": "backfill", "rate": 100 })).expect(201).json()["id"].as_str().unwrap().to_owned();
    eventually("the backfill moved some notes", || proxy.count(&account) < 140);
    proxy.stop();
    std::thread::sleep(Duration::from_millis(500));
    proxy.restart();
    eventually_within("the backfill finished", Duration::from_secs(60), || host.get(&format!("/jobs/{id}")).expect(200).json()["state"] == "done");
    assert_eq!(proxy.count(&account), 0, "every note left Notely");
    assert_eq!(host.counts(&account), (0, 150));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(host.get_note(&account, id).expect(200).json()["content"], format!("note {i}"));
    }
}

#[test]
fn a_request_outside_the_allow_list_fails_and_the_log_names_its_origin() {
    let proxy = Proxy::start();
    let account = uuid::Uuid::new_v4().to_string();
    // Configured with the proxy's URL, but only another origin allowed.
    let host = Host::builder()
        .arg(format!("--legacy-store=plugin:{}", Plugin::NotelyDataProxy.path().display()))
        // A token in the URL: the plugin names its URL in its errors.
        .arg(format!("--store-config=url={}?key=s3cret-value-never-logged", proxy.url))
        .arg("--store-allow-http=http://127.0.0.1:9")
        .start();
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": false })).expect(201);
    let refused = host.get(&format!("/accounts/{account}/notes")).expect(503);
    assert!(refused.body.contains("denied"), "{}", refused.body);
    assert!(refused.body.contains("[config]") && !refused.body.contains("s3cret"), "a configuration value is blanked out of answers: {}", refused.body);
    eventually("the log names the origin refused", || host.log().contains(&format!("origin={}", proxy.origin)));
    assert!(!host.log().contains("s3cret-value-never-logged"), "a configuration value is never logged");
}

#[test]
fn a_data_dir_keeps_the_legacy_store_it_was_created_with() {
    let proxy = Proxy::start();
    let host = host_over(&proxy).start();
    let stopped = host.stop();
    let refused = Host::builder().state_of(&stopped).start_fails();
    assert!(refused.contains("store plugin \"notely-data-proxy\""), "{refused}");
    let sqlite = Host::start().stop();
    let refused = host_over(&proxy).state_of(&sqlite).start_fails();
    assert!(refused.contains("legacy store is legacy.db"), "{refused}");
    let refused = Host::builder().arg("--legacy-store=plugin:/nonexistent.wasm").start_fails();
    assert!(refused.contains("cannot read the store plugin /nonexistent.wasm"), "{refused}");
    let refused = Host::builder().arg(format!("--legacy-store=plugin:{}", Plugin::Migrate.path().display())).start_fails();
    assert!(refused.contains("this is a router plugin"), "{refused}");
    let refused = host_over(&proxy).arg("--store-allow-http=https://notely.example").start_fails();
    assert!(refused.contains("https is not supported"), "{refused}");
    // Asked for its health at start, a plugin missing its configuration stops the start.
    let refused = Host::builder().arg(format!("--legacy-store=plugin:{}", Plugin::NotelyDataProxy.path().display())).start_fails();
    assert!(refused.contains("misconfigured") && refused.contains("no `url` configured"), "{refused}");
}

#[test]
fn the_kit_checks_a_store_plugin_against_the_store_rules_before_an_operator_serves_it() {
    let proxy = Proxy::start();
    let wasm = Plugin::NotelyDataProxy.path();
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(host_binary())
            .args(["plugin", "check", wasm.to_str().unwrap(), "--profile", "store"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let url = format!("url={}", proxy.url);
    let (passed, report) = check(&["--store-config", &url, "--store-allow-http", &proxy.origin]);
    assert!(passed, "{report}");
    assert!(report.contains("ok    [store] a tombstone refuses the deleted version and older"), "{report}");
    assert!(report.contains("8 passed, 0 failed"), "{report}");
    // Without the grant to reach its upstream, every case fails, and says why.
    let (passed, report) = check(&["--store-config", &url]);
    assert!(!passed);
    assert!(report.contains("not on the host's allow-list"), "{report}");
    // A router is not a store.
    let out = std::process::Command::new(host_binary())
        .args(["plugin", "check", Plugin::Migrate.path().to_str().unwrap(), "--profile", "store"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is a router plugin"));
}

#[test]
fn a_store_that_keeps_its_own_versions_serves_a_migration_and_its_rollback() {
    let kv = notes_scenarios::standin::Standin::start("kv-standin");
    let host = Host::builder()
        .arg(format!("--legacy-store=plugin:{}", Plugin::ConsulKv.path().display()))
        .arg(format!("--store-config=url={}", kv.url))
        .arg(format!("--store-allow-http={}", kv.origin))
        .start();
    assert!(!host.data_dir.join("legacy.db").exists(), "the legacy store is the plugin's");
    let account = host.create_account(false);
    let notes: Vec<String> = (0..20).map(|i| host.create_note(&account, &format!("kv note {i}"))).collect();
    host.update_note(&account, &notes[0], "edited").expect(200);
    host.delete_note(&account, &notes[1]).expect(204);
    assert_eq!(host.counts(&account), (19, 0));
    host.set_migrating(&account, true).expect(200);
    assert_eq!(job(&host, "backfill")["moved"], 19);
    assert_eq!(host.counts(&account), (0, 19));
    host.set_migrating(&account, false).expect(200);
    assert_eq!(job(&host, "rollback")["moved"], 19);
    assert_eq!(host.counts(&account), (19, 0));
    assert_eq!(host.get_note(&account, &notes[0]).expect(200).json()["content"], "edited");
    host.get_note(&account, &notes[1]).expect(404);
    let again = host.post(&format!("/accounts/{account}/notes"), json!({ "id": notes[1], "content": "again" })).expect(201).json();
    assert_eq!(again["version"], 3, "created again above the tombstone the store kept through both moves");
}

/// The strict-client simulator against two hosts on one data dir whose
/// legacy store is Notely, through the store plugin: random flips,
/// backfill and rollback jobs, hosts killed and restarted, and the data
/// proxy itself killed and restarted midway. Every read is checked against
/// what was acknowledged: 0 lost, stale, duplicated or resurrected notes.
#[test]
fn the_simulator_finds_no_anomaly_with_notely_as_the_legacy_store_while_its_proxy_restarts() {
    let mut proxy = Proxy::start();
    let dir = tempfile::tempdir().unwrap();
    let mut sim = std::process::Command::new(host_binary());
    sim.args(["sim", "--hosts", "2", "--accounts", "4", "--max-notes", "12", "--seconds", "12", "--chaos", "--backfill", "--seed", "31"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(format!("--host-arg=--legacy-store=plugin:{}", Plugin::NotelyDataProxy.path().display()))
        .arg(format!("--host-arg=--store-config=url={}", proxy.url))
        .arg(format!("--host-arg=--store-allow-http={}", proxy.origin))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let running = sim.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    proxy.stop();
    std::thread::sleep(Duration::from_millis(700));
    proxy.restart();
    let out = running.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("anomalies: lost 0 stale 0 duplicated 0 resurrected 0 unexpected 0"), "{report}");
}

#[test]
fn notes_move_from_notely_into_a_key_value_store_both_served_by_store_plugins() {
    let proxy = Proxy::start();
    let kv = notes_scenarios::standin::Standin::start("kv-standin");
    let account = uuid::Uuid::new_v4().to_string();
    let ids: Vec<String> = (0..12).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        proxy.create(&account, id, &format!("note {i}"), AT);
    }
    let serve = || {
        host_over(&proxy)
            .arg(format!("--new-store=plugin:{}", Plugin::ConsulKv.path().display()))
            .arg(format!("--new-store-config=url={}", kv.url))
            .arg(format!("--new-store-allow-http={}", kv.origin))
    };
    let host = serve().start();
    for file in ["legacy-versions.db", "new-versions.db"] {
        assert!(host.data_dir.join(file).exists(), "{file}");
    }
    assert!(!host.data_dir.join("new-shard-0.db").exists(), "the new store is the plugin's");
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": true })).expect(201);
    assert_eq!(job(&host, "backfill")["moved"], 12);
    assert_eq!(proxy.count(&account), 0, "Notely is empty");
    assert_eq!(host.counts(&account), (0, 12), "every note is in the key-value store");
    let edited = host.update_note(&account, &ids[0], "edited in the new store").expect(200).json();
    assert_eq!(edited["version"], 2);

    // A restart must name both plugins again.
    let stopped = host.stop();
    let refused = host_over(&proxy).state_of(&stopped).start_fails();
    assert!(refused.contains("new store is served by the store plugin \"consul-kv\""), "{refused}");
    let host = serve().state_of(&stopped).start();
    host.set_migrating(&account, false).expect(200);
    assert_eq!(job(&host, "rollback")["moved"], 12);
    assert_eq!(proxy.count(&account), 12, "back in Notely");
    assert_eq!(proxy.note(&account, &ids[0]).unwrap()["content"], "edited in the new store");
    assert_eq!(host.get_note(&account, &ids[0]).expect(200).json()["version"], 2);
}

/// A host over a proxy whose every call takes `delay` (`"300-300"`), with
/// one note of one account (flag off) and the host's extra `arg`.
fn over_a_slow_proxy(delay: &'static str, content: &str, arg: &str) -> (Proxy, Host, String, String) {
    let proxy = Proxy::slow(delay);
    let account = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    proxy.create(&account, &id, content, AT);
    let host = host_over(&proxy).arg(arg).start();
    host.post("/accounts", json!({ "id": account, "name": "n", "isMigrating": false })).expect(201);
    (proxy, host, account, id)
}

/// The router did nothing wrong: it stays the active plugin, rolled back by no one.
fn assert_the_router_stays(host: &Host) {
    let plugins = host.plugins();
    assert!(plugins.to_string().contains("migrate"), "the router is still the active plugin: {plugins}");
    let history = host.get("/plugins").expect(200).json()["history"].clone();
    assert_eq!(history.as_array().map_or(0, |h| h.iter().filter(|e| e.to_string().contains("automatic")).count()), 0, "{history}");
}

#[test]
fn a_slow_upstream_costs_time_but_never_the_routers_deadline() {
    // Every call of this proxy takes 300 ms; the router may run 200 ms.
    let (proxy, host, account, id) = over_a_slow_proxy("300-300", "slowly served", "--plugin-deadline-ms=200");
    assert_eq!(host.get_note(&account, &id).expect(200).json()["content"], "slowly served", "the store's wait is not the router's time");
    host.update_note(&account, &id, "slowly written").expect(200);
    assert_eq!(proxy.note(&account, &id).unwrap()["content"], "slowly written");
    assert_the_router_stays(&host);
}

#[test]
fn db_copy_refuses_a_data_dir_whose_store_is_a_plugins() {
    let proxy = Proxy::start();
    let stopped = host_over(&proxy).start().stop();
    let out = std::process::Command::new(host_binary())
        .args(["db", "copy", "--from"])
        .arg(&stopped.path)
        .args(["--coordination", "postgres://nobody@127.0.0.1:1/c", "--legacy-store", "postgres://nobody@127.0.0.1:1/l", "--new-store", "postgres://nobody@127.0.0.1:1/n"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("store plugin \"notely-data-proxy\""), "{said}");
}

#[test]
fn an_upstream_slower_than_the_stores_deadline_answers_503_with_retry_after_in_time_and_the_router_stays() {
    // Every call of this proxy takes 1.5 s; the store plugin may wait 200 ms.
    let (_proxy, host, account, id) = over_a_slow_proxy("1500-1500", "slowly kept", "--store-deadline-ms=200");
    let started = std::time::Instant::now();
    let read = host.get_note(&account, &id).expect(503);
    assert!(started.elapsed() < Duration::from_millis(1200), "answered at the store's deadline, not the upstream's pace: {:?}", started.elapsed());
    assert!(read.header("retry-after").is_some(), "a 503 says when to retry");
    assert!(read.body.contains("did not answer within"), "the error says the store was too slow: {}", read.body);
    host.get("/healthz").expect(200);
    assert_the_router_stays(&host);
}
