//! The sandbox holds against hostile plugins: a plugin cannot take more
//! memory than its cap, carry one account's data into another's request,
//! starve other accounts, or kill the host.

use std::time::{Duration, Instant};

use notes_scenarios::{Host, Plugin, hostile};
use serde_json::json;

/// The host's resident memory, MiB.
fn rss_mib(host: &Host) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).expect("read /proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// Uploads and activates a hostile component; returns its digest.
fn activate_bytes(host: &Host, wasm: Vec<u8>) -> String {
    let pushed = host.request_bytes("POST", "/plugins", Some(wasm), &[]);
    assert!(pushed.status == 201 || pushed.status == 200, "upload refused: {}", pushed.body);
    let digest = pushed.json()["digest"].as_str().unwrap().to_owned();
    host.put("/plugins/active", json!({ "digest": digest })).expect(200);
    digest
}

/// No automatic rollback: the hostile plugin stays active for every request.
fn host_keeping_hostile_plugins() -> Host {
    Host::builder().arg("--probation-requests").arg("0").arg("--breaker-requests").arg("1000000").start()
}

/// Activates `bomb` on a host that keeps it, calls it `calls` times: every
/// call fails naming `limit`, the host's RSS ends near where it started, and
/// the host still answers.
fn bombs_fail_and_memory_returns(bomb: Vec<u8>, calls: usize, limit: &str) {
    let host = host_keeping_hostile_plugins();
    let account = host.create_account(false);
    let baseline = rss_mib(&host);
    activate_bytes(&host, bomb);
    for _ in 0..calls {
        let r = host.get(&format!("/accounts/{account}/notes")).expect(500);
        host.plugin_fault(&r, limit);
    }
    let metrics = host.get("/metrics").expect(200).body;
    let limited: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("notes_plugin_calls_total{") && l.contains("outcome=\"limit\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(limited as usize, calls, "each call counted as over a limit (outcome=\"limit\"), not as a trap");
    let after = rss_mib(&host);
    assert!(after < baseline + 16.0, "RSS went from {baseline:.1} to {after:.1} MiB after {calls} calls");
    host.get("/healthz").expect(200);
}

#[test]
fn a_plugin_that_grows_a_table_fails_its_call_and_host_memory_stays_bounded() {
    bombs_fail_and_memory_returns(hostile::table_bomb(), 8, "table limit");
}

#[test]
fn many_memories_count_together_against_one_cap_and_their_pages_are_returned() {
    // Three more memories of 30 MiB each: each under the 64 MiB cap, 90 MiB together.
    bombs_fail_and_memory_returns(hostile::memory_bomb(3, 30), 6, "memory limit");
}

#[test]
fn a_plugin_with_more_memories_than_a_plugin_may_have_is_refused_at_upload() {
    let host = Host::start();
    let r = host.request_bytes("POST", "/plugins", Some(hostile::memory_bomb(99, 1)), &[]).expect(422);
    assert!(r.error().contains("memor"), "the reason names memories: {}", r.body);
    assert_eq!(host.plugins()["plugins"].as_array().unwrap().len(), 1, "nothing was stored");
}

#[test]
fn no_request_sees_what_the_plugin_kept_from_another_accounts_request() {
    let host = Host::builder().plugin(Plugin::Remembers).start();
    let (alice, bob) = (host.create_account(false), host.create_account(false));
    host.create_note(&alice, "alice's secret");
    for _ in 0..20 {
        let r = host.get_note(&bob, &uuid::Uuid::new_v4().to_string());
        assert_eq!(r.status, 404, "bob must not get alice's note: {}", r.body);
    }
}

#[test]
fn reusing_instances_is_opt_in_and_then_a_plugin_can_leak_across_accounts() {
    // The same plugin and requests with --unsafe-reuse-instances: the leak the
    // default prevents is real, so the test above can fail.
    let host = Host::builder().plugin(Plugin::Remembers).arg("--unsafe-reuse-instances").arg("4").start();
    let (alice, bob) = (host.create_account(false), host.create_account(false));
    host.create_note(&alice, "alice's secret");
    let leaked = (0..20).filter(|_| host.get_note(&bob, &uuid::Uuid::new_v4().to_string()).status == 200).count();
    assert!(leaked > 0, "with reuse, the remembering plugin answers bob with alice's note");
}

#[test]
fn instances_kept_per_account_serve_only_their_own_account_and_for_at_most_n_requests() {
    let host = Host::builder().plugin(Plugin::Remembers).start();
    let digest = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    let instances = format!("/plugins/{}/instances", &digest[..12]);
    assert_eq!(host.plugins()["plugins"][0]["instances"], json!({ "mode": "fresh" }), "a fresh instance per request by default");
    let refused = host.put(&instances, json!({ "mode": "per-account", "maxRequests": 0, "maxSeconds": 60 })).expect(400);
    assert!(refused.error().contains("maxRequests"), "the error names the bad field: {}", refused.body);
    host.put(&instances, json!({ "mode": "per-account" })).expect(400);
    assert_eq!(host.plugins()["plugins"][0]["instances"], json!({ "mode": "fresh" }), "bad input changed nothing");

    let per_account = json!({ "mode": "per-account", "maxRequests": 1000, "maxSeconds": 60 });
    assert_eq!(host.put(&instances, per_account.clone()).expect(200).json()["instances"], per_account);
    assert_eq!(host.plugins()["plugins"][0]["instances"], per_account, "GET /plugins shows the mode");
    let (alice, bob) = (host.create_account(false), host.create_account(false));
    host.create_note(&alice, "alice's secret");
    for _ in 0..20 {
        let r = host.get_note(&bob, &uuid::Uuid::new_v4().to_string());
        assert_eq!(r.status, 404, "bob never gets an instance that served alice: {}", r.body);
    }
    // The plugin answers a missing note with one it remembers: alice's own
    // instance was kept, and serves her again.
    let remembered = host.get_note(&alice, &uuid::Uuid::new_v4().to_string()).expect(200);
    assert_eq!(remembered.json()["content"], "alice's secret");
    assert!(host.plugins()["active"]["usage"]["keptInstances"].as_u64().unwrap() >= 1);

    // At most 2 requests per instance: the create and one get, then a fresh one.
    host.put(&instances, json!({ "mode": "per-account", "maxRequests": 2, "maxSeconds": 60 })).expect(200);
    let carol = host.create_account(false);
    host.create_note(&carol, "carol's note");
    host.get_note(&carol, &uuid::Uuid::new_v4().to_string()).expect(200);
    host.get_note(&carol, &uuid::Uuid::new_v4().to_string()).expect(404);

    host.put(&instances, json!({ "mode": "fresh" })).expect(200);
    host.create_note(&alice, "again");
    host.get_note(&alice, &uuid::Uuid::new_v4().to_string()).expect(404);
}

#[test]
fn a_kept_instance_whose_stderr_fills_up_is_replaced_not_failed() {
    // A kept instance keeps every call's stderr (4 KiB at most); once full, a
    // Rust plugin's `eprintln!` would panic. It is replaced before that.
    let host = Host::builder().plugin(Plugin::Faulty).start();
    let digest = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    host.put(&format!("/plugins/{digest}/instances"), json!({ "mode": "per-account", "maxRequests": 1000, "maxSeconds": 60 })).expect(200);
    let account = host.create_account(false);
    for _ in 0..12 {
        host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:chatty" })).expect(201);
    }
}

#[test]
fn one_account_looping_in_its_plugin_does_not_starve_other_accounts() {
    let host = Host::builder()
        .plugin(Plugin::Faulty)
        .args(["--plugin-deadline-ms", "1000", "--max-requests-per-account", "4", "--probation-requests", "0"])
        .start();
    let (looping, other) = (host.create_account(false), host.create_account(false));
    let note = host.create_note(&other, "served");
    let (statuses, served) = std::thread::scope(|s| {
        let loopers: Vec<_> = (0..32)
            .map(|_| {
                let (host, looping) = (&host, &looping);
                s.spawn(move || {
                    let r = host.post(&format!("/accounts/{looping}/notes"), json!({ "content": "fault:loop" }));
                    (r.status, r.header("retry-after").map(str::to_owned))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let until = Instant::now() + Duration::from_millis(800);
        let mut served = 0;
        while Instant::now() < until {
            host.get_note(&other, &note).expect(200);
            served += 1;
        }
        (loopers.into_iter().map(|l| l.join().unwrap()).collect::<Vec<_>>(), served)
    });
    let refused = statuses.iter().filter(|(status, _)| *status == 429).count();
    let stopped = statuses.iter().filter(|(status, _)| *status == 503).count();
    assert!(statuses.iter().all(|(status, _)| *status == 429 || *status == 503), "{statuses:?}");
    assert!(stopped <= 4 * 2, "at most 4 loop at once (a few more may start as others end): {stopped} ran");
    assert!(refused >= 32 - 8, "the rest are refused at once: {refused}");
    assert!(statuses.iter().filter(|(s, _)| *s == 429).all(|(_, retry)| retry.is_some()), "429 carries Retry-After");
    assert!(served > 10, "the other account kept being served while one looped: {served} gets");
    host.create_note(&looping, "the looping account is served again once its loops ended");
}

#[test]
fn a_plugin_that_keeps_failing_after_probation_is_rolled_back_by_the_circuit_breaker() {
    let host = Host::builder().args(["--probation-requests", "5", "--breaker-requests", "20"]).start();
    let account = host.create_account(false);
    host.activate(Plugin::Faulty);
    for i in 0..25 {
        host.create_note(&account, &format!("fine {i}")); // probation passes, and a healthy block
    }
    let failed = (0..40)
        .map(|_| host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:panic" })).status)
        .take_while(|&status| status == 500)
        .count();
    assert!(failed <= 20, "the breaker tripped within one block: {failed} failures");
    assert!(host.serving_plugin(&account).starts_with("migrate@"), "rolled back to migrate");
    let history = host.plugins()["history"].as_array().unwrap().clone();
    let reason = history.last().unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("circuit breaker"), "the history says why: {reason}");
    assert!(host.log().contains("circuit breaker"), "so does the log");
}

#[test]
fn a_failing_plugin_with_nothing_to_roll_back_to_is_suspended_until_an_operator_acts() {
    let host = Host::builder().plugin(Plugin::Faulty).args(["--probation-requests", "0", "--breaker-requests", "10"]).start();
    let account = host.create_account(false);
    for _ in 0..10 {
        host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:panic" })).expect(500);
    }
    let r = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fine" })).expect(503);
    assert!(r.error().contains("suspended"), "{}", r.body);
    assert!(!r.body.contains("panics, as asked"), "the plugin's last failure is for operators only: {}", r.body);
    let why = host.plugins()["active"]["suspended"].as_str().unwrap().to_owned();
    assert!(why.contains("circuit breaker") && why.contains("panics, as asked"), "operators see why: {why}");
    host.activate(Plugin::Faulty);
    host.create_note(&account, "served again once activated");
}

#[test]
fn racing_uploads_of_the_same_plugin_all_succeed_and_store_verified_files() {
    let host = Host::start();
    let mut digests = Vec::new();
    for round in 0..20 {
        // A new plugin each round: a race on a digest the registry lacks.
        let wasm = hostile::inert(&format!("race-{round}"));
        let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
            let uploads: Vec<_> = (0..16)
                .map(|_| {
                    let (host, wasm) = (&host, wasm.clone());
                    s.spawn(move || {
                        let r = host.request_bytes("POST", "/plugins", Some(wasm), &[]);
                        (r.status, r.body)
                    })
                })
                .collect();
            uploads.into_iter().map(|u| u.join().unwrap()).collect()
        });
        for (status, body) in &statuses {
            assert!(*status == 200 || *status == 201, "round {round}: {status} {body}");
            assert!(!body.contains(host.data_dir.to_str().unwrap()), "no host path in an answer: {body}");
        }
        assert_eq!(statuses.iter().filter(|(s, _)| *s == 201).count(), 1, "round {round}: stored once");
        let digest = serde_json::from_str::<serde_json::Value>(&statuses[0].1).unwrap()["digest"].as_str().unwrap().to_owned();
        let stored = std::fs::read(host.data_dir.join(format!("plugins/{digest}.wasm"))).unwrap();
        assert_eq!(stored, wasm, "round {round}: the stored .wasm is the upload");
        digests.push(digest);
    }
    let leftovers: Vec<_> = std::fs::read_dir(host.data_dir.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
    let host = host.restart_without_plugin_flag();
    for digest in digests.iter().step_by(7) {
        host.put("/plugins/active", json!({ "digest": digest })).expect(200);
    }
}

#[test]
fn a_host_whose_active_artifact_is_gone_or_damaged_recompiles_it_at_start() {
    let host = Host::start();
    let digest = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    let account = host.create_account(false);
    let note = host.create_note(&account, "kept");
    let data = host.stop();
    let artifact = data.path.join(format!("plugins/{digest}.cwasm"));
    std::fs::remove_file(&artifact).unwrap();
    let host = Host::builder().data_dir(&data.path).without_plugin_flag().start();
    assert_eq!(host.plugins()["active"]["loadedFrom"], "compiled");
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "kept");
    let _data = host.stop();
    let bytes = std::fs::read(&artifact).unwrap();
    std::fs::write(&artifact, &bytes[..bytes.len() / 2]).unwrap(); // truncated
    let host = Host::builder().data_dir(&data.path).without_plugin_flag().start();
    assert_eq!(host.plugins()["active"]["loadedFrom"], "compiled");
    assert_eq!(host.get_note(&account, &note).expect(200).json()["content"], "kept");
}

#[test]
fn a_plugin_cannot_sleep_in_the_host_past_its_deadline() {
    // Sleeping through WASI would block in the host, where the deadline
    // cannot reach; the host's clock is frozen and every wait on it is over
    // at once, so the plugin spins in its own code and is stopped there.
    let host = Host::builder().plugin(Plugin::Faulty).args(["--probation-requests", "0"]).start();
    let account = host.create_account(false);
    let r = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:sleep-forever" })).expect(503);
    assert!(r.error().contains("did not finish within"), "{}", r.body);
    host.create_note(&account, "the account is served again");
}

#[test]
fn a_plugin_importing_sockets_loads_and_every_socket_call_traps_naming_it() {
    // componentize-py's interpreter imports wasi:sockets whether or not the
    // plugin uses it: such a plugin loads (so it needs no stub that would
    // take its stderr too), and the network stays out of its reach.
    let host = host_keeping_hostile_plugins();
    let account = host.create_account(false);
    activate_bytes(&host, hostile::opens_a_socket());
    let failed = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "hello" }));
    let denied = "wasi:sockets/instance-network@0.2.0#instance-network is denied: a plugin has no network";
    let fault = host.plugin_fault(&failed, denied);
    assert_eq!(fault["operation"], "create_note", "{fault}");
}
