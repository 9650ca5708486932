//! Moving an account's notes through the plugin (`notes:plugin@0.2.0`'s and 0.3.0's
//! `move-notes`): a backfill with the flag on, a bulk rollback with it off;
//! and a plugin built against 0.1.0, which serves notes but cannot move them.

use std::time::Duration;

use notes_scenarios::*;
use serde_json::json;

#[test]
fn a_backfill_moves_every_note_to_the_new_store_and_a_bulk_rollback_brings_them_back() {
    let host = Host::start();
    let account = host.create_account(false);
    let notes: Vec<String> = (0..600).map(|i| host.create_note(&account, &format!("note {i}"))).collect();
    assert_eq!(host.counts(&account), (600, 0));
    host.set_migrating(&account, true).expect(200);

    let moved = host.post(&format!("/accounts/{account}/migration/move"), json!({})).expect(200).json();
    assert_eq!((moved["isMigrating"].as_bool(), moved["moved"].as_u64()), (Some(true), Some(600)), "{moved}");
    assert!(moved["batches"].as_u64().unwrap() > 1, "in batches: {moved}");
    assert_eq!((moved["legacyNotes"].as_u64(), moved["newNotes"].as_u64()), (Some(0), Some(600)));
    for (i, note) in notes.iter().enumerate().step_by(97) {
        let got = host.get_note(&account, note).expect(200).json();
        assert_eq!((got["content"].as_str(), got["version"].as_u64()), (Some(format!("note {i}").as_str()), Some(1)), "moved with its version");
        assert_eq!(host.placement(&account, note), (false, true));
    }
    let again = host.post(&format!("/accounts/{account}/migration/move"), json!({})).expect(200).json();
    assert_eq!((again["moved"].as_u64(), again["batches"].as_u64()), (Some(0), Some(0)), "nothing left to move: {again}");

    host.set_migrating(&account, false).expect(200);
    let back = host.post(&format!("/accounts/{account}/migration/move"), json!({})).expect(200).json();
    assert_eq!((back["isMigrating"].as_bool(), back["moved"].as_u64()), (Some(false), Some(600)), "{back}");
    assert_eq!(host.counts(&account), (600, 0));
    assert_eq!(host.list_notes(&account).len(), 600);
}

#[test]
fn a_deleted_notes_id_can_be_created_again_as_a_new_note() {
    let host = Host::start();
    let account = host.create_account(true);
    let note = host.create_note(&account, "first life");
    host.update_note(&account, &note, "edited").expect(200);
    host.delete_note(&account, &note).expect(204);
    let again = host.post(&format!("/accounts/{account}/notes"), json!({ "id": note, "content": "second life" })).expect(201).json();
    assert_eq!(again["content"], "second life");
    assert!(again["version"].as_u64().unwrap() > 2, "it starts above the deleted note's tombstone: {again}");
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "second life");
}

#[test]
fn a_plugin_built_against_wit_0_2_lists_moves_and_serves_every_note_as_before() {
    let host = Host::start();
    let pushed = host.push_plugin(Plugin::MigrateWit02).expect(201).json();
    assert_eq!(pushed["witVersion"], "0.2.0");
    host.activate(Plugin::MigrateWit02);
    let account = host.create_account(false);
    let mut notes: Vec<String> = (0..300).map(|i| host.create_note(&account, &format!("note {i}"))).collect();
    host.set_migrating(&account, true).expect(200);
    notes.push(host.create_note(&account, "in the new store"));
    notes.sort();
    assert_eq!(host.list_notes(&account), notes, "its list<string> lists read both stores");
    let moved = host.post(&format!("/accounts/{account}/migration/move"), json!({})).expect(200).json();
    assert_eq!(moved["moved"], 300, "{moved}");
    assert_eq!(host.counts(&account), (0, 301));
    assert_eq!(host.list_notes(&account), notes);
}

#[test]
fn a_plugin_built_against_wit_0_1_serves_notes_but_is_refused_for_a_move_naming_its_version() {
    let host = Host::start();
    let pushed = host.push_plugin(Plugin::MigrateWit01).expect(201).json();
    assert_eq!(pushed["witVersion"], "0.1.0");
    host.activate(Plugin::MigrateWit01);
    let account = host.create_account(false);
    let note = host.create_note(&account, "served by a 0.1 plugin");
    let untouched = host.create_note(&account, "never updated");
    host.set_migrating(&account, true).expect(200);
    host.update_note(&account, &note, "moved by an update").expect(200);
    assert_eq!(host.placement(&account, &note), (false, true), "update moves the note to the new store");
    assert_eq!(host.placement(&account, &untouched), (true, false));
    let refused = host.post(&format!("/accounts/{account}/migration/move"), json!({})).expect(409);
    assert!(refused.error().contains("notes:plugin@0.1.0") && refused.error().contains("cannot move notes"), "{}", refused.error());
}

fn job(host: &Host, id: &str) -> serde_json::Value {
    host.get(&format!("/jobs/{id}")).expect(200).json()
}

#[test]
fn a_backfill_job_killed_with_its_host_resumes_after_a_restart_and_loses_nothing() {
    let host = Host::start();
    let account = host.create_account(false);
    let notes: Vec<String> = (0..400).map(|i| host.create_note(&account, &format!("note {i}"))).collect();
    host.set_migrating(&account, true).expect(200);
    let created = host.post("/jobs", json!({ "kind": "backfill", "account": account, "rate": 100 })).expect(201).json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["total"], 400);
    eventually("the job made progress", || job(&host, &id)["done"].as_u64().unwrap() >= 64);
    let host = host.restart_without_plugin_flag(); // kill -9, then a new process on the same data dir
    let before = job(&host, &id)["done"].as_u64().unwrap();
    assert!(before < 400, "killed midway ({before} done)");
    // ~4 s at 100 notes/s, after (on PostgreSQL) the killed host's lease lapses.
    eventually_within("the job finished on the new process", Duration::from_secs(30), || job(&host, &id)["state"] == "done");
    let finished = job(&host, &id);
    assert_eq!(finished["moved"], 400, "{finished}");
    assert_eq!(host.counts(&account), (0, 400));
    for (i, note) in notes.iter().enumerate() {
        assert_eq!(host.get_note(&account, note).expect(200).json()["content"], format!("note {i}"));
    }
}

#[test]
fn a_job_whose_host_dies_is_taken_over_by_another_host_of_the_fleet() {
    let fleet = Fleet::of(&[Plugin::Migrate, Plugin::Migrate], &[]);
    let account = fleet.hosts[0].create_account(false);
    for i in 0..300 {
        fleet.hosts[0].create_note(&account, &format!("note {i}"));
    }
    fleet.hosts[0].set_migrating(&account, true).expect(200);
    let id = fleet.hosts[0].post("/jobs", json!({ "kind": "backfill", "rate": 100 })).expect(201).json()["id"].as_str().unwrap().to_owned();
    eventually("one host owns the job", || job(&fleet.hosts[0], &id)["owner"].is_string());
    let owner = job(&fleet.hosts[0], &id)["owner"].as_str().unwrap().to_owned();
    let hosts = fleet.hosts[0].get("/hosts").json();
    let owner_address = hosts.as_array().unwrap().iter().find(|h| h["id"] == owner.as_str()).unwrap()["address"].clone();
    let owner_index = fleet.hosts.iter().position(|h| h.base == owner_address.as_str().unwrap()).unwrap();
    let survivor = 1 - owner_index;
    fleet.hosts[owner_index].signal("KILL");
    eventually("the survivor took the job over and finished it", || {
        let j = job(&fleet.hosts[survivor], &id);
        j["state"] == "done" && j["owner"] != owner.as_str()
    });
    assert_eq!(fleet.hosts[survivor].counts(&account), (0, 300));
}

#[test]
fn the_migrate_cli_runs_a_backfill_to_the_end_and_reports_status() {
    let host = Host::start();
    let account = host.create_account(false);
    for i in 0..100 {
        host.create_note(&account, &format!("note {i}"));
    }
    host.set_migrating(&account, true).expect(200);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(host_binary()).arg("migrate").args(args).args(["--url", &host.base]).output().unwrap();
        assert!(out.status.success(), "notes-host migrate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let finished: serde_json::Value = serde_json::from_str(&cli(&["backfill", "--account", &account, "--watch"])).unwrap();
    assert_eq!((finished["state"].as_str(), finished["moved"].as_u64()), (Some("done"), Some(100)), "{finished}");
    cli(&["verify", "--account", &account, "--watch"]);
    let status = cli(&["status"]);
    let migrated = status.lines().find(|l| l.starts_with("migrated ")).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert!(migrated == Some(vec!["migrated", "1"]) && status.contains("recent changes:"), "{status}");
}

/// What one strict client remembers of the notes it alone writes: the content
/// of its last acknowledged write, or that it deleted the note.
#[derive(Default)]
struct Remembered {
    live: std::collections::BTreeMap<String, String>,
    deleted: std::collections::BTreeSet<String>,
}

/// A tiny xorshift: the clients' choices, reproducible from the thread index.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_backfill_empties_legacy_for_an_account_with_10_000_notes_while_strict_clients_read_and_write_it() {
    const NOTES: usize = 10_000;
    const CLIENTS: usize = 3;
    let host = Host::start();
    let account = host.create_account(false);
    // Each client owns the notes it seeded: only it writes them, so it knows
    // exactly what every read of them must answer.
    let mut owned: Vec<Remembered> = std::thread::scope(|s| {
        let seeders: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (host, account) = (&host, &account);
                s.spawn(move || {
                    let mut mine = Remembered::default();
                    for i in (c..NOTES).step_by(CLIENTS) {
                        let content = format!("note {i}");
                        mine.live.insert(host.create_note(account, &content), content);
                    }
                    mine
                })
            })
            .collect();
        seeders.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(host.counts(&account), (NOTES as u64, 0));
    host.set_migrating(&account, true).expect(200);
    // Throttled, so the job runs for seconds while the clients work.
    let job_id = host.post("/jobs", json!({ "kind": "backfill", "account": account, "rate": 2500 })).expect(201).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let done = std::sync::atomic::AtomicBool::new(false);
    let writes_while_moving = std::sync::atomic::AtomicU64::new(0);
    let anomalies: Vec<Vec<String>> = std::thread::scope(|s| {
        let clients: Vec<_> = owned
            .iter_mut()
            .enumerate()
            .map(|(c, mine)| {
                let (host, account, done, writes_while_moving) = (&host, &account, &done, &writes_while_moving);
                s.spawn(move || {
                    let mut seen_wrong = Vec::new();
                    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (c as u64 + 1);
                    let mut ops = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) || ops < 200 {
                        ops += 1;
                        let ids: Vec<String> = mine.live.keys().cloned().collect();
                        let id = &ids[next(&mut rng) as usize % ids.len()];
                        let roll = next(&mut rng) % 10;
                        if roll >= 5 && !done.load(std::sync::atomic::Ordering::Relaxed) {
                            writes_while_moving.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        match roll {
                            0..=4 => {
                                let r = host.get_note(account, id);
                                if r.status != 200 || r.json()["content"] != mine.live[id].as_str() {
                                    seen_wrong.push(format!("get {id}: {} {}", r.status, r.body));
                                }
                            }
                            5..=7 => {
                                let content = format!("{} / edit {ops} by client {c}", mine.live[id]);
                                host.update_note(account, id, &content).expect(200);
                                mine.live.insert(id.clone(), content);
                            }
                            8 => {
                                host.delete_note(account, id).expect(204);
                                mine.live.remove(id);
                                mine.deleted.insert(id.clone());
                            }
                            _ => {
                                let content = format!("new {ops} by client {c}");
                                mine.live.insert(host.create_note(account, &content), content);
                            }
                        }
                        if let Some(gone) = mine.deleted.iter().nth(next(&mut rng) as usize % mine.deleted.len().max(1)) {
                            let r = host.get_note(account, gone);
                            if r.status != 404 {
                                seen_wrong.push(format!("deleted {gone} came back: {} {}", r.status, r.body));
                            }
                        }
                    }
                    seen_wrong
                })
            })
            .collect();
        eventually_within("the backfill job finished", std::time::Duration::from_secs(120), || job(&host, &job_id)["state"] == "done");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        clients.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let anomalies: Vec<String> = anomalies.into_iter().flatten().collect();
    let writes_while_moving = writes_while_moving.into_inner();
    assert!(writes_while_moving >= 100, "the clients wrote while the job moved notes ({writes_while_moving} writes)");
    assert!(anomalies.is_empty(), "{} anomalies, first: {:?}", anomalies.len(), &anomalies[..anomalies.len().min(5)]);

    // Every acknowledged write is there, every delete stayed, and legacy is empty.
    let listed: std::collections::BTreeSet<String> = host.list_notes(&account).into_iter().collect();
    let expected: std::collections::BTreeSet<String> = owned.iter().flat_map(|m| m.live.keys().cloned()).collect();
    assert_eq!(listed.len(), expected.len(), "the list holds exactly the live notes");
    assert!(listed == expected, "the list holds exactly the live notes");
    for mine in &owned {
        for (id, content) in &mine.live {
            assert_eq!(host.get_note(&account, id).expect(200).json()["content"], content.as_str(), "note {id}");
        }
    }
    let (legacy, new) = host.counts(&account);
    assert_eq!((legacy, new), (0, expected.len() as u64), "legacy emptied");
    let finished = job(&host, &job_id);
    assert!(finished["moved"].as_u64().unwrap() > 0, "{finished}");
    let verify = host.post(&format!("/accounts/{account}/migration/verify"), json!({})).expect(200).json();
    assert_eq!((verify["clean"].as_bool(), verify["state"].as_str()), (Some(true), Some("migrated")), "{verify}");
}

also_on_postgres!(
    a_backfill_moves_every_note_to_the_new_store_and_a_bulk_rollback_brings_them_back,
    a_deleted_notes_id_can_be_created_again_as_a_new_note,
    a_plugin_built_against_wit_0_1_serves_notes_but_is_refused_for_a_move_naming_its_version,
    a_backfill_job_killed_with_its_host_resumes_after_a_restart_and_loses_nothing,
);

also_on_postgres_schemas!(a_backfill_moves_every_note_to_the_new_store_and_a_bulk_rollback_brings_them_back);

#[test]
fn a_move_plugin_that_loops_holds_up_no_other_accounts_writes_and_lands_nothing() {
    let host = Host::builder().plugin(Plugin::Faulty).args(["--plugin-deadline-ms", "8000", "--plugin-pacing-after-ms", "0"]).start();
    let looping = host.create_account(false);
    for i in 0..5 {
        host.create_note(&looping, &format!("note {i}"));
    }
    // Last in id order: the plugin has moved the other five when it loops.
    let last = "ffffffff-ffff-4fff-bfff-ffffffffffff";
    host.post(&format!("/accounts/{looping}/notes"), json!({ "id": last, "content": "fault:loop-on-move" })).expect(201);
    host.set_migrating(&looping, true).expect(200);
    // Flag off: its writes go to the legacy store, the file the move reads
    // and deletes from. Flag on: to a new store shard.
    let (plain, migrating) = (host.create_account(false), host.create_account(true));
    let before = host.plugin_calls_started();
    std::thread::scope(|s| {
        let mover = s.spawn(|| host.post(&format!("/accounts/{looping}/migration/move"), json!({})));
        eventually("the move runs in its plugin", || host.plugin_calls_started() > before);
        for account in [&plain, &migrating] {
            let note = host.create_note(account, "written while a move loops");
            host.update_note(account, &note, "and updated").expect(200);
            host.delete_note(account, &note).expect(204);
        }
        assert!(!mover.is_finished(), "other accounts' writes were answered while the move still looped");
        let stopped = mover.join().unwrap().expect(503);
        assert!(stopped.error().contains("did not finish within"), "{}", stopped.error());
    });
    assert_eq!(host.counts(&looping), (6, 0), "a move stopped at its deadline lands nothing, not even the notes it had moved");
    assert_eq!(host.list_notes(&looping).len(), 6);
}
