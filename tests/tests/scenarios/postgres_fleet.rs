//! A fleet beyond one machine: hosts that share nothing but PostgreSQL
//! (each with its own data dir), known to each other by leases, kept safe by
//! fencing at the stores (ARCHITECTURE.md, "Beyond one machine").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notes_scenarios::postgres::Server;
use notes_scenarios::*;
use serde_json::json;

#[test]
fn three_hosts_with_separate_data_dirs_serve_one_account_set_and_a_flip_is_in_force_on_all_when_it_returns() {
    let service = PgService::new();
    let hosts: Vec<Host> = (0..3).map(|_| Host::builder().postgres(&service).start()).collect();
    let dirs: std::collections::BTreeSet<_> = hosts.iter().map(|h| h.data_dir.clone()).collect();
    assert_eq!(dirs.len(), 3, "each host has a data dir of its own");
    assert_eq!(hosts[0].get("/hosts").expect(200).json().as_array().unwrap().len(), 3, "they know each other");

    // One account set: an account made on one host is served by every host.
    let account = hosts[0].create_account(false);
    let notes: Vec<String> = hosts.iter().map(|h| h.create_note(&account, "written before the flip")).collect();
    for host in &hosts {
        let mut listed = host.list_notes(&account);
        listed.sort();
        let mut expected = notes.clone();
        expected.sort();
        assert_eq!(listed, expected, "every host sees every note");
    }

    // The flip returns once every host drained: from then on each host runs the new value.
    hosts[1].set_migrating(&account, true).expect(200);
    for host in &hosts {
        let fresh = host.create_note(&account, "created right after the flip");
        assert_eq!(hosts[0].placement(&account, &fresh), NEW, "{} serves the new value", host.base);
    }
}

/// Two hosts of one fleet: one that flips, and one, serving the faulty
/// plugin, that the test stops past its lease (2 s) while a request of it
/// runs. That request must still be running when it wakes: no deadline or
/// pacing to end it first.
fn flipper_and_sleeper(service: &Arc<PgService>) -> (Host, Host) {
    let flipper = Host::builder().postgres(service).start();
    let sleeper = Host::builder()
        .postgres(service)
        .plugin(Plugin::Faulty)
        .args(["--plugin-deadline-ms", "120000", "--plugin-pacing-after-ms", "0"])
        .start();
    (flipper, sleeper)
}

#[test]
fn a_host_stopped_past_its_lease_is_left_behind_by_a_flip_and_its_write_from_before_is_refused_at_the_store() {
    let service = PgService::new();
    let (flipper, sleeper) = flipper_and_sleeper(&service);
    let account = flipper.create_account(false);
    let before = flipper.create_note(&account, "in legacy");

    // A create on the sleeper reads the flag (off), then spins in the plugin
    // before it writes: stopped in between, once its plugin call started.
    let calls_before = sleeper.plugin_calls_started();
    let in_flight = {
        let (base, account) = (sleeper.base.clone(), account.clone());
        std::thread::spawn(move || {
            notes_client::Client::new(&base)
                .create_note(&account, &notes_client::NewNote { id: None, content: "fault:slow".into() })
                .map(|r| (r.status, r.body))
        })
    };
    eventually("the create's plugin call started", || sleeper.plugin_calls_started() > calls_before);
    sleeper.signal("STOP");

    // Past its lease (2 s), the flip goes on without it.
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    flipper.set_migrating(&account, true).expect(200);
    assert!(started.elapsed() < Duration::from_secs(1), "the flip did not wait for the stopped host");
    let fleet = flipper.get("/hosts").expect(200).json();
    assert_eq!(fleet.as_array().unwrap().len(), 1, "the stopped host was dropped: {fleet}");

    // Woken, its write from before the flip is refused by the store: the
    // client is told to retry, and no note was written under the old flag.
    sleeper.signal("CONT");
    let (status, body) = in_flight.join().unwrap().expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("changed while this request ran"), "{body}");
    assert_eq!(flipper.list_notes(&account), vec![before.clone()], "nothing landed from the stale request");

    // It joins again, and then serves the new flag.
    eventually("the woken host joins again", || sleeper.log().contains("joined the fleet again"));
    assert!(sleeper.log().contains("lease in the fleet lapsed"), "{}", sleeper.log());
    let fresh = sleeper.create_note(&account, "after it joined again");
    assert_eq!(flipper.placement(&account, &fresh), NEW, "it serves isMigrating = true");
    assert_eq!(flipper.get("/hosts").expect(200).json().as_array().unwrap().len(), 2);
}

/// A read is answered only if its host's lease held throughout it. Here the
/// host is stopped past its lease while a get runs, the flip goes on
/// without it, and it wakes and joins the fleet again before the get ends:
/// its lease holds again by then, yet the get ran under a flag a flip
/// changed (it could have read both stores around a move and missed the
/// note), so it is answered 503, not served.
#[test]
fn a_read_that_ran_while_its_host_was_stopped_past_its_lease_is_refused_even_once_the_host_joined_again() {
    let service = PgService::new();
    let (flipper, sleeper) = flipper_and_sleeper(&service);
    let account = flipper.create_account(false);
    let slow = flipper.create_note(&account, "fault:slow-read");

    let calls_before = sleeper.plugin_calls_started();
    let in_flight = {
        let (base, account, slow) = (sleeper.base.clone(), account.clone(), slow.clone());
        std::thread::spawn(move || notes_client::Client::new(&base).get_note(&account, &slow).map(|r| (r.status, r.body)))
    };
    eventually("the get's plugin call started", || sleeper.plugin_calls_started() > calls_before);
    sleeper.signal("STOP");
    std::thread::sleep(Duration::from_millis(2500));
    flipper.set_migrating(&account, true).expect(200);

    // Woken, it joins again within a heartbeat, while the get still spins.
    sleeper.signal("CONT");
    let (status, body) = in_flight.join().unwrap().expect("an answer");
    assert!(sleeper.log().contains("joined the fleet again"), "it joined again before the get ended: {}", sleeper.log());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lease lapsed while the request ran"), "{body}");

    // Reads admitted after it joined again are served.
    let plain = flipper.create_note(&account, "plain");
    assert_eq!(sleeper.get_note(&account, &plain).expect(200).json()["content"], "plain");
}

#[test]
fn a_postgresql_restart_under_load_answers_503_while_down_and_loses_no_acknowledged_write() {
    let server = Arc::new(Server::start());
    let host = Host::builder().postgres(&PgService::on(&server)).start();
    let account = host.create_account(false);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (base, account) = (host.base.clone(), account.clone());
            let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = notes_client::Client::new(&base);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let note = notes_client::NewNote { id: None, content: format!("writer {w} note {i}") };
                    match client.create_note(&account, &note) {
                        Ok(r) if r.status == 201 => {
                            let id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push(id);
                        }
                        Ok(r) => refused.lock().unwrap().push((r.status, r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("retry-after")))),
                        Err(e) => panic!("the host stopped answering: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let during = host.set_migrating(&account, true);
    assert_eq!(during.status, 503, "a flip fails cleanly while the database is down: {}", during.body);
    server.restart();
    eventually("the host reconnects by itself", || host.get(&format!("/accounts/{account}")).status == 200);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let refused = refused.lock().unwrap().clone();
    assert!(!refused.is_empty(), "some writes were refused while the database was down");
    assert!(refused.iter().all(|&(status, retry)| status == 503 && retry), "refusals are 503 with Retry-After: {refused:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "writes were acknowledged before and after ({})", acknowledged.len());
    for id in &acknowledged {
        assert_eq!(host.get_note(&account, id).status, 200, "acknowledged note {id} was lost");
    }
    assert!(host.post(&format!("/accounts/{account}/notes"), json!({ "content": "after" })).status == 201);
}

#[test]
fn db_copy_moves_a_sqlite_data_dir_to_postgresql_and_it_serves_unchanged() {
    const TOKEN: &str = "a-sufficiently-long-admin-token";
    let host = Host::builder().admin_token(TOKEN).arg("--shards").arg("2").start();
    let (stays, migrating) = (host.create_account(false), host.create_account(false));
    let kept: Vec<String> = (0..5).map(|i| host.create_note(&stays, &format!("stays {i}"))).collect();
    let deleted = host.create_note(&stays, "deleted");
    host.delete_note(&stays, &deleted).expect(204);
    let moved = host.create_note(&migrating, "moves to new");
    let left = host.create_note(&migrating, "left in legacy");
    host.set_migrating(&migrating, true).expect(200);
    host.update_note(&migrating, &moved, "moved, version 2").expect(200);
    let key = host.post(&format!("/accounts/{stays}/keys"), json!({ "label": "phone" })).expect(201).json()["key"].as_str().unwrap().to_owned();
    let digest = host.activate(Plugin::Faulty);
    let audit_before = host.get("/audit").expect(200).json()["entries"].as_array().unwrap().len();
    let accounts_before = host.get("/accounts").expect(200).json();
    let dir = host.stop();

    let service = PgService::new();
    let args = service.args(2);
    let copy = |args: &[String]| {
        std::process::Command::new(host_binary()).args(["db", "copy", "--from"]).arg(&dir.path).args(args).output().unwrap()
    };
    let out = copy(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("copied 2 account(s), 1 key(s)") && said.contains("every count checked"), "{said}");
    let again = copy(&args);
    assert!(!again.status.success(), "a second copy into a filled service is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds accounts"), "{}", String::from_utf8_lossy(&again.stderr));

    // A host with a fresh data dir serves the copy unchanged.
    let pg = Host::builder().admin_token(TOKEN).postgres(&service).arg("--shards").arg("2").without_plugin_flag().start();
    assert_eq!(pg.get("/accounts").expect(200).json(), accounts_before, "accounts and flags");
    for (i, note) in kept.iter().enumerate() {
        assert_eq!(pg.get_note(&stays, note).expect(200).json()["content"], format!("stays {i}"));
    }
    assert_eq!(pg.get_note(&stays, &deleted).status, 404, "a deleted note stays deleted");
    assert_eq!((pg.placement(&migrating, &moved), pg.placement(&migrating, &left)), (NEW, LEGACY), "each note in its store");
    assert_eq!(pg.get_note(&migrating, &moved).expect(200).json()["version"], 2, "versions kept");
    assert!(pg.is_migrating(&migrating));
    let as_key = notes_client::Client::new(&pg.base).with_token(Some(key));
    assert_eq!(as_key.list_notes(&stays).unwrap().status, 200, "account keys still work");
    let plugins = pg.get("/plugins").expect(200).json();
    assert!(plugins.to_string().contains(&digest), "the uploaded plugin is there: {plugins}");
    let audit_after = pg.get("/audit").expect(200).json()["entries"].as_array().unwrap().len();
    assert!(audit_after >= audit_before, "the audit log came along ({audit_before} → {audit_after})");
}

/// The strict-client simulator against 3 hosts on PostgreSQL, each with a
/// data dir of its own: random flips, backfill and rollback jobs, and hosts
/// killed (SIGKILL), stopped gracefully (SIGTERM) and stopped past their
/// lease (SIGSTOP, then SIGCONT). Every read is checked against what was
/// acknowledged: 0 anomalies.
#[test]
fn the_simulator_finds_no_anomaly_on_three_postgresql_hosts_killed_terminated_and_stopped_past_their_lease() {
    let service = PgService::new();
    let dir = tempfile::tempdir().unwrap();
    let mut sim = std::process::Command::new(host_binary());
    sim.args(["sim", "--hosts", "3", "--accounts", "6", "--seconds", "20", "--chaos", "--backfill", "--stop-hosts", "--own-data-dirs"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(service.args(2).into_iter().map(|arg| format!("--host-arg={arg}")));
    let out = sim.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("anomalies: lost 0 stale 0 duplicated 0 resurrected 0 unexpected 0"), "{report}");
    let restarts = report.lines().find(|l| l.contains("restarts")).unwrap_or_default();
    assert!(!restarts.ends_with("restarts 0") && !restarts.ends_with("restarts 1"), "hosts were killed, stopped and paused: {report}");
}

#[test]
fn a_plugin_uploaded_to_one_host_is_activated_on_another_that_never_saw_its_file() {
    let service = PgService::new();
    let (a, b) = (Host::builder().postgres(&service).start(), Host::builder().postgres(&service).start());
    let pushed = a.push_plugin(Plugin::LegacyOnly);
    assert!(pushed.status == 200 || pushed.status == 201, "{}", pushed.body);
    let digest = pushed.json()["digest"].as_str().unwrap().to_owned();
    assert!(!b.data_dir.join("plugins").join(format!("{digest}.wasm")).exists(), "b's data dir has never seen it");
    b.put("/plugins/active", json!({ "digest": digest })).expect(200);
    assert!(b.data_dir.join("plugins").join(format!("{digest}.wasm")).exists(), "b fetched it from the database and keeps it");
    let account = b.create_account(false);
    let note = b.create_note(&account, "routed by legacy-only on b");
    assert_eq!(a.placement(&account, &note), LEGACY);
    let hosts = a.get("/hosts").expect(200).json();
    assert!(hosts.to_string().contains("legacy-only"), "the fleet sees b's plugin: {hosts}");
}

#[test]
fn a_host_joining_with_an_empty_data_dir_runs_the_plugin_the_fleet_activated_last() {
    let service = PgService::new();
    let first = Host::builder().postgres(&service).start();
    let digest = first.activate(Plugin::Faulty);
    let joining = Host::builder().postgres(&service).without_plugin_flag().start();
    let active = joining.get("/plugins").expect(200).json();
    assert_eq!(active["active"]["digest"], digest.as_str(), "{active}");
    assert!(joining.data_dir.join("plugins").join(format!("{digest}.wasm")).exists(), "fetched into its own data dir");
}
