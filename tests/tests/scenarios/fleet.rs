//! Several host processes on one data dir: the fleet view, the fleet-wide
//! deployment gate, and flips of `isMigrating` that are never half-applied.

use std::process::Command;
use std::time::{Duration, Instant};

use notes_scenarios::*;
use serde_json::json;

use Plugin::{Faulty, LegacyOnly, Migrate};

#[test]
fn every_host_is_listed_and_a_host_whose_process_ends_is_dropped() {
    let fleet = Fleet::of(&[Migrate, Migrate, LegacyOnly], &[]);
    let hosts = fleet.hosts[1].get("/hosts").expect(200).json();
    let hosts = hosts.as_array().unwrap();
    assert_eq!(fleet.host_names(1), ["host-0", "host-1", "host-2"]);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["address"], fleet.hosts[i].base.as_str());
        assert_eq!(h["state"], "live");
        assert_eq!(h["self"], i == 1, "the answering host is marked");
        assert_eq!(h["pid"], fleet.hosts[i].pid());
    }
    assert_eq!(hosts[0]["plugin"]["label"], "migrate@0.1.0");
    assert_eq!(hosts[2]["plugin"]["label"], "legacy-only@0.1.0");
    assert_eq!(hosts[2]["supportsMigration"], false);

    fleet.hosts[2].signal("KILL");
    eventually("the killed host is dropped from GET /hosts", || fleet.host_names(0) == ["host-0", "host-1"]);
}

#[test]
fn the_gate_refuses_while_one_host_runs_the_legacy_only_plugin_and_allows_once_it_is_upgraded() {
    let fleet = Fleet::of(&[Migrate, Migrate, LegacyOnly], &[]);
    let account = fleet.hosts[0].create_account(false);

    let refused = fleet.hosts[0].set_migrating(&account, true).expect(409);
    assert!(refused.error().contains("host-2") && refused.error().contains("legacy-only@0.1.0"), "{}", refused.error());
    for host in &fleet.hosts {
        assert!(!host.is_migrating(&account), "nothing changed");
    }
    let before = fleet.hosts[1].get("/accounts").json().as_array().unwrap().len();
    fleet.hosts[1].post("/accounts", json!({ "name": "Bob", "isMigrating": true })).expect(409);
    assert_eq!(fleet.hosts[1].get("/accounts").json().as_array().unwrap().len(), before, "no account was created");

    // host-2 is upgraded in place: now the migration may start.
    fleet.hosts[2].activate(Migrate);
    fleet.hosts[0].set_migrating(&account, true).expect(200);

    // The other side of the gate: no host may go back to old code now...
    let legacy = fleet.hosts[1].push_plugin(LegacyOnly).json()["digest"].as_str().unwrap().to_owned();
    let refused = fleet.hosts[1].put("/plugins/active", json!({ "digest": legacy })).expect(409);
    assert!(refused.error().contains(&account), "{}", refused.error());
    assert_eq!(fleet.hosts[1].serving_plugin(&account), "migrate@0.1.0");
    // ...and old code cannot join the fleet.
    let err = Host::builder().plugin(LegacyOnly).data_dir(&fleet.dir).start_fails();
    assert!(err.contains("does not support migration") && err.contains(&account), "{err}");
}

/// The design note's four ways old code running beside new code loses notes,
/// reproduced with the fleet gate and the flip barrier switched off.
#[test]
fn with_fleet_safety_off_old_code_beside_a_migration_loses_notes_in_the_design_notes_four_ways() {
    let fleet = Fleet::of(&[Migrate, Migrate, LegacyOnly], &[UNSAFE_NO_FLEET_SAFETY]);
    let (new_code, old_code) = (&fleet.hosts[0], &fleet.hosts[2]);
    let account = new_code.create_account(false);
    let note = new_code.create_note(&account, "v1");
    new_code.set_migrating(&account, true).expect(200); // the gate would have refused

    // 1. New code moves a note to the new store; old code's update of it finds nothing.
    new_code.update_note(&account, &note, "v2").expect(200);
    assert_eq!(new_code.placement(&account, &note), NEW);
    old_code.update_note(&account, &note, "v3, an update the user made").expect(404);
    assert_eq!(new_code.get_note(&account, &note).expect(200).json()["content"], "v2", "the user's update is lost");

    // 2. Old code creates a note on the legacy store rather than the new one.
    let misplaced = old_code.create_note(&account, "created by old code");
    assert_eq!(new_code.placement(&account, &misplaced), LEGACY, "a migrating account's new note in legacy");

    // 3. New code creates a note on the new store; old code's read misses it.
    let fresh = new_code.create_note(&account, "created by new code");
    old_code.get_note(&account, &fresh).expect(404);
    assert!(!old_code.list_notes(&account).contains(&fresh));

    // 4. Old code deletes only from the legacy store: the note is not deleted.
    let deleted = old_code.delete_note(&account, &fresh);
    assert!(deleted.status < 500, "{}", deleted.body);
    assert_eq!(new_code.get_note(&account, &fresh).expect(200).json()["content"], "created by new code");
}

/// The same four sequences with the gate on: the migration cannot start while
/// old code runs, and once every host runs new code, every host agrees.
#[test]
fn with_fleet_safety_on_none_of_the_four_can_happen() {
    let fleet = Fleet::of(&[Migrate, Migrate, LegacyOnly], &[]);
    let (a, b) = (&fleet.hosts[0], &fleet.hosts[2]);
    let account = a.create_account(false);
    let note = a.create_note(&account, "v1");
    a.set_migrating(&account, true).expect(409);

    // Old code still runs, so everything stays in legacy, where both read it.
    a.update_note(&account, &note, "v2").expect(200);
    b.update_note(&account, &note, "v3").expect(200);
    assert_eq!(a.get_note(&account, &note).expect(200).json()["content"], "v3");
    let by_b = b.create_note(&account, "by b");
    let by_a = a.create_note(&account, "by a");
    assert_eq!(a.placement(&account, &by_b), LEGACY);
    b.get_note(&account, &by_a).expect(200);
    b.delete_note(&account, &by_a).expect(204);
    a.get_note(&account, &by_a).expect(404);

    // Host b is upgraded; the migration starts, and every case now holds.
    b.activate(Migrate);
    a.set_migrating(&account, true).expect(200);
    // 1. an update through either host finds the moved note
    a.update_note(&account, &note, "v4").expect(200);
    assert_eq!(a.placement(&account, &note), NEW);
    b.update_note(&account, &note, "v5").expect(200);
    assert_eq!(a.get_note(&account, &note).expect(200).json()["content"], "v5");
    // 2. a create through either host goes to the new store
    let created = b.create_note(&account, "created by b");
    assert_eq!(a.placement(&account, &created), NEW);
    // 3. a read through either host finds notes in the new store
    let fresh = a.create_note(&account, "created by a");
    assert_eq!(b.get_note(&account, &fresh).expect(200).json()["content"], "created by a");
    // 4. a delete through either host removes every copy
    b.delete_note(&account, &fresh).expect(204);
    assert_eq!(a.placement(&account, &fresh), NOWHERE);
    a.get_note(&account, &fresh).expect(404);
}

/// Starts a slow create (≈0.2 s inside the plugin) on `host`; returns when
/// it was answered, and its status.
fn slow_create<'s>(scope: &'s std::thread::Scope<'s, '_>, host: &'s Host, account: &'s str) -> std::thread::ScopedJoinHandle<'s, (Result<Resp, String>, Instant)> {
    let body = json!({ "content": "fault:slow" }).to_string().into_bytes();
    let before = host.plugin_calls_started();
    let handle = scope.spawn(move || (host.try_request("POST", &format!("/accounts/{account}/notes"), Some(body), &[]), Instant::now()));
    // Once its plugin call started, the create has read the flag and runs.
    eventually("the slow create runs in its plugin", || host.plugin_calls_started() > before);
    handle
}

#[test]
fn a_flip_returns_only_after_every_request_that_read_the_old_value_has_finished() {
    let fleet = Fleet::of(&[Faulty, Faulty, Faulty], &NO_PACING);
    let account = fleet.hosts[0].create_account(false);
    let (created, created_at, flipped_at) = std::thread::scope(|s| {
        let slow = slow_create(s, &fleet.hosts[0], &account);
        fleet.hosts[1].set_migrating(&account, true).expect(200);
        let flipped_at = Instant::now();
        let (created, created_at) = slow.join().unwrap();
        (created.unwrap().expect(201), created_at, flipped_at)
    });
    assert!(created_at <= flipped_at, "the flip waited for the create that read isMigrating = false");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(fleet.hosts[1].placement(&account, &id), LEGACY, "routed by the value it read, finished before the flip");
    let after = fleet.hosts[0].create_note(&account, "after the flip");
    assert_eq!(fleet.hosts[1].placement(&account, &after), NEW);
}

/// Without the barrier, a request that read the old value still runs after
/// the flip was acknowledged: here a create lands in legacy after the
/// operator was told the account migrates (the design note's second case).
#[test]
fn without_the_barrier_a_create_under_the_old_value_lands_after_the_flip_was_acknowledged() {
    let fleet = Fleet::of(&[Faulty, Faulty, Faulty], &[UNSAFE_NO_FLEET_SAFETY, NO_PACING[0], NO_PACING[1]]);
    let account = fleet.hosts[0].create_account(false);
    let (created, created_at, flipped_at) = std::thread::scope(|s| {
        let slow = slow_create(s, &fleet.hosts[0], &account);
        fleet.hosts[1].set_migrating(&account, true).expect(200);
        let flipped_at = Instant::now();
        let (created, created_at) = slow.join().unwrap();
        (created.unwrap().expect(201), created_at, flipped_at)
    });
    assert!(flipped_at < created_at, "the flip did not wait");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert!(fleet.hosts[1].is_migrating(&account));
    assert_eq!(fleet.hosts[1].placement(&account, &id), LEGACY, "created in legacy after migration mode was acknowledged");
}

#[test]
fn a_host_killed_during_a_flip_leaves_the_account_neither_stuck_nor_split() {
    let mut fleet = Fleet::of(&[Faulty, Faulty, Faulty], &NO_PACING);
    let account = fleet.hosts[0].create_account(false);
    let kept = fleet.hosts[0].create_note(&account, "kept");
    std::thread::scope(|s| {
        let slow = slow_create(s, &fleet.hosts[2], &account);
        let flip = s.spawn(|| fleet.hosts[0].set_migrating(&account, true));
        std::thread::sleep(Duration::from_millis(30)); // the flip waits for host-2's create
        fleet.hosts[2].signal("KILL");
        flip.join().unwrap().expect(200); // an ended host runs nothing: no need to wait for it
        assert!(slow.join().unwrap().0.is_err(), "the slow create died with its host, unanswered");
    });
    for host in &fleet.hosts[..2] {
        assert!(host.is_migrating(&account));
        assert_eq!(host.get_note(&account, &kept).expect(200).json()["content"], "kept");
    }
    assert_eq!(fleet.hosts[0].list_notes(&account), fleet.hosts[1].list_notes(&account), "every host sees the same notes");
    for id in fleet.hosts[0].list_notes(&account) {
        let placement = fleet.hosts[1].placement(&account, &id);
        assert!(placement == LEGACY || placement == NEW, "note {id} in exactly one store: {placement:?}");
    }
    let created = fleet.hosts[1].create_note(&account, "after the flip");
    assert_eq!(fleet.hosts[0].placement(&account, &created), NEW);
    eventually("the killed host is dropped", || fleet.host_names(0) == ["host-0", "host-1"]);

    fleet.restart(2, Host::builder().plugin(Faulty).args(NO_PACING));
    let via_restarted = fleet.hosts[2].create_note(&account, "through the restarted host");
    assert_eq!(fleet.hosts[0].placement(&account, &via_restarted), NEW);
}

#[test]
fn a_flip_whose_own_host_is_killed_midway_is_aborted_and_changes_nothing() {
    let fleet = Fleet::of(&[Faulty, Faulty, Faulty], &NO_PACING);
    let account = fleet.hosts[0].create_account(false);
    std::thread::scope(|s| {
        // A request that runs until its 1 s deadline keeps host-2 from
        // draining, however fast or loaded the machine: the flip still waits
        // when its host is killed.
        let body = json!({ "content": "fault:loop" }).to_string().into_bytes();
        let host2 = &fleet.hosts[2];
        let before = host2.plugin_calls_started();
        let looping = s.spawn(|| host2.try_request("POST", &format!("/accounts/{account}/notes"), Some(body), &[]));
        // It has read the flag and runs in its plugin (not a fixed sleep: on
        // a loaded machine it may not have started within one).
        eventually("the looping request runs in its plugin", || host2.plugin_calls_started() > before);
        let flip = s.spawn(|| fleet.hosts[0].try_request("PATCH", &format!("/accounts/{account}"), Some(br#"{"isMigrating":true}"#.to_vec()), &[]));
        std::thread::sleep(Duration::from_millis(30)); // the flip is announced and waits
        fleet.hosts[0].signal("KILL");
        assert!(flip.join().unwrap().is_err(), "the flip died with its host");
        looping.join().unwrap().unwrap().expect(503);
    });
    // The others abort the orphaned flip: the account is served, unchanged.
    assert_unchanged_then_flippable(&fleet.hosts[1], &fleet.hosts[2], &account);
}

#[test]
fn a_flip_fails_cleanly_while_a_host_does_not_answer_and_succeeds_once_it_does() {
    let fleet = Fleet::of(&[Migrate, Migrate, Migrate], &["--flip-timeout-ms", "300"]);
    let account = fleet.hosts[0].create_account(false);
    fleet.hosts[2].signal("STOP");
    let failed = fleet.hosts[0].set_migrating(&account, true);
    fleet.hosts[2].signal("CONT");
    let failed = failed.expect(503);
    assert!(failed.error().contains("host-2") && failed.error().contains("nothing changed"), "{}", failed.error());
    assert_eq!(failed.header("retry-after"), Some("1"));
    assert_unchanged_then_flippable(&fleet.hosts[1], &fleet.hosts[0], &account);
}

/// After a flip that failed: the account is still not migrating, serves
/// creates into legacy (as `observer` sees the stores), and can be flipped.
fn assert_unchanged_then_flippable(host: &Host, observer: &Host, account: &str) {
    assert!(!host.is_migrating(account));
    let note = host.create_note(account, "served after the failed flip");
    assert_eq!(observer.placement(account, &note), LEGACY);
    host.set_migrating(account, true).expect(200);
}

#[test]
fn a_second_flip_of_an_account_while_one_runs_is_refused() {
    let fleet = Fleet::of(&[Faulty, Faulty], &NO_PACING);
    let account = fleet.hosts[0].create_account(false);
    std::thread::scope(|s| {
        let slow = slow_create(s, &fleet.hosts[1], &account);
        let first = s.spawn(|| fleet.hosts[0].set_migrating(&account, true));
        std::thread::sleep(Duration::from_millis(30));
        let second = fleet.hosts[1].set_migrating(&account, false).expect(409);
        assert!(second.error().contains("already in progress"), "{}", second.error());
        first.join().unwrap().expect(200);
        slow.join().unwrap().0.unwrap().expect(201);
    });
}

/// The strict-client simulator against three hosts while flags flip.
#[test]
fn flips_under_concurrent_load_leave_no_anomaly() {
    let fleet = Fleet::of(&[Migrate, Migrate, Migrate], &[]);
    let report = fleet.dir.with_extension("sim.json");
    let mut sim = Command::new(host_binary());
    sim.args(["sim", "--seconds", "3", "--accounts", "6", "--flip-every-ms", "40", "--seed", "7", "--json"]).arg(&report);
    for host in &fleet.hosts {
        sim.args(["--url", &host.base]);
    }
    let out = sim.output().expect("run notes-host sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sim failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["anomalies"], json!({ "lost": 0, "stale": 0, "duplicated": 0, "resurrected": 0, "unexpected": 0 }));
    assert!(report["flipsOk"].as_u64().unwrap() >= 10, "{stdout}");
    assert!(report["flippedAccountRequests"].as_u64().unwrap() > 0, "some requests met a flip of their account: {stdout}");
}
