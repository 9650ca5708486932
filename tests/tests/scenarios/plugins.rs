//! Hot-swapping plugins: upload → validate → precompile → activate → drain
//! → rollback, with the host serving throughout.

use std::collections::BTreeMap;

use notes_scenarios::*;
use serde_json::json;

#[test]
fn an_upload_is_validated_and_described() {
    let host = Host::start();
    let pushed = host.push_plugin(Plugin::Faulty).expect(201).json();
    assert_eq!((pushed["name"].as_str(), pushed["version"].as_str()), (Some("faulty"), Some("0.1.0")));
    assert_eq!((pushed["supportsMigration"].as_bool(), pushed["witVersion"].as_str()), (Some(true), Some("0.4.0")));
    assert_eq!(pushed["sizeBytes"].as_u64(), Some(Plugin::Faulty.bytes().len() as u64));
    assert_eq!(pushed["digest"].as_str().unwrap().len(), 64);
    // The same bytes again: already stored, same digest.
    assert_eq!(host.push_plugin(Plugin::Faulty).expect(200).json()["digest"], pushed["digest"]);
    // Stored but not active until activated.
    let account = host.create_account(false);
    assert_eq!(host.serving_plugin(&account), "migrate@0.1.0");
}

#[test]
fn a_bad_upload_is_refused_with_the_reason_and_changes_nothing() {
    let host = Host::start();
    let before = host.plugins();
    let future = host.push_plugin(Plugin::FutureWit).expect(422);
    let error = future.error();
    assert!(error.contains("built against notes:plugin@0.9.0"), "{error}");
    assert!(error.contains("serves notes:plugin@0.1.0, notes:plugin@0.2.0, notes:plugin@0.3.0, notes:plugin@0.4.0"), "{error}");
    let garbage = host.request_bytes("POST", "/plugins", Some(b"definitely not wasm".to_vec()), &[]).expect(422);
    assert!(garbage.error().contains("not a valid component"), "{}", garbage.error());
    // A core module (valid wasm, but not a component).
    let core = host.request_bytes("POST", "/plugins", Some(b"\0asm\x01\0\0\0".to_vec()), &[]).expect(422);
    assert!(core.error().contains("plugin rejected"), "{}", core.error());
    assert!(core.error().contains("core WebAssembly module") && core.error().contains("wasm32-wasip2"), "a hint for the author: {}", core.error());
    let net = host.request_bytes("POST", "/plugins", Some(hostile::needs_network()), &[]).expect(422);
    let error = net.error();
    assert!(error.contains("imports example:net/fetch") && error.contains("does not provide"), "names the import: {error}");
    assert!(error.contains("wasi:cli, wasi:io") && error.contains("-d http"), "what the host links, and how to build without it: {error}");
    host.request_bytes("POST", "/plugins", Some(Vec::new()), &[]).expect(400);
    assert_eq!(host.plugins(), before, "nothing stored, nothing activated");
    let files = std::fs::read_dir(host.data_dir.join("plugins")).unwrap().count();
    assert_eq!(files, 2, "only the startup plugin's .wasm and .cwasm are stored");
}

#[test]
fn activation_swaps_the_plugin_for_new_requests_and_rollback_brings_it_back() {
    let host = Host::start();
    let account = host.create_account(false);
    let migrate = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    let faulty = host.activate(Plugin::Faulty);
    assert_eq!(host.serving_plugin(&account), "faulty@0.1.0");
    let view = host.plugins();
    assert_eq!(view["active"]["digest"], faulty.as_str());
    let history: Vec<_> = view["history"].as_array().unwrap().iter().map(|h| h["digest"].as_str().unwrap().to_owned()).collect();
    assert_eq!(history, [migrate.clone(), faulty.clone()]);

    let back = host.post("/plugins/rollback", json!({})).expect(200).json();
    assert_eq!(back["digest"], migrate.as_str());
    assert_eq!(host.serving_plugin(&account), "migrate@0.1.0");
    host.put("/plugins/active", json!({ "digest": "0".repeat(64) })).expect(404);
    host.put("/plugins/active", json!({ "digest": "nope" })).expect(400);
}

#[test]
fn activating_a_plugin_without_migration_is_refused_while_an_account_migrates() {
    let host = Host::start();
    let migrating = host.create_account(true);
    let legacy = host.push_plugin(Plugin::LegacyOnly).expect(201).json()["digest"].as_str().unwrap().to_owned();
    let refused = host.put("/plugins/active", json!({ "digest": legacy })).expect(409);
    assert!(refused.error().contains(&migrating), "names the migrating account: {}", refused.error());
    assert_eq!(host.serving_plugin(&migrating), "migrate@0.1.0");
    // Once no account migrates, the old code may be activated.
    host.set_migrating(&migrating, false).expect(200);
    host.put("/plugins/active", json!({ "digest": legacy })).expect(200);
    assert_eq!(host.serving_plugin(&migrating), "legacy-only@0.1.0");
    host.set_migrating(&migrating, true).expect(409);
}

#[test]
fn swapping_back_and_forth_under_load_fails_no_request_and_never_mixes_plugins() {
    let host = Host::start();
    let faulty = host.push_plugin(Plugin::Faulty).expect(201).json()["digest"].as_str().unwrap().to_owned();
    let migrate = host.plugins()["active"]["digest"].as_str().unwrap().to_owned();
    let accounts: Vec<String> = (0..4).map(|i| host.create_account(i % 2 == 0)).collect();
    let served: BTreeMap<String, usize> = std::thread::scope(|s| {
        let clients: Vec<_> = accounts
            .iter()
            .map(|account| {
                let host = &host;
                s.spawn(move || {
                    let mut seen = BTreeMap::new();
                    for i in 0..250 {
                        let note = host.create_note(account, &format!("note {i}"));
                        for r in [host.get_note(account, &note), host.update_note(account, &note, "edited")] {
                            let r = r.expect(200);
                            let plugin = r.headers.iter().filter(|(k, _)| k == "x-plugin").map(|(_, v)| v.clone()).collect::<Vec<_>>();
                            assert_eq!(plugin.len(), 1, "exactly one plugin per response");
                            *seen.entry(plugin_label(&plugin[0]).to_owned()).or_insert(0) += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        for i in 0..20 {
            let digest = if i % 2 == 0 { &faulty } else { &migrate };
            host.put("/plugins/active", json!({ "digest": digest })).expect(200);
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        clients.into_iter().fold(BTreeMap::new(), |mut all, c| {
            for (k, v) in c.join().expect("a client failed a request") {
                *all.entry(k).or_insert(0) += v;
            }
            all
        })
    });
    assert_eq!(served.values().sum::<usize>(), 4 * 250 * 2);
    assert!(served.keys().all(|p| p == "migrate@0.1.0" || p == "faulty@0.1.0"), "{served:?}");
    let history = host.plugins()["history"].as_array().unwrap().len();
    assert_eq!(history, 21, "startup + 20 swaps");
    for account in &accounts {
        assert_eq!(host.list_notes(account).len(), 250, "every note survived the swaps");
    }
}

#[test]
fn a_request_running_during_a_swap_finishes_on_the_plugin_it_started_with() {
    let host = Host::builder().plugin(Plugin::Faulty).args(NO_PACING).start();
    let account = host.create_account(false);
    let migrate = host.push_plugin(Plugin::Migrate).json()["digest"].as_str().unwrap().to_owned();
    std::thread::scope(|s| {
        let slow = s.spawn(|| host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:slow" })));
        std::thread::sleep(std::time::Duration::from_millis(50));
        host.put("/plugins/active", json!({ "digest": migrate })).expect(200);
        assert_eq!(host.serving_plugin(&account), "migrate@0.1.0", "new requests get the new plugin at once");
        assert!(!slow.is_finished(), "the slow request must still be running for this test to mean anything");
        let slow = slow.join().unwrap().expect(201);
        assert_eq!(slow.header("x-plugin").map(plugin_label), Some("faulty@0.1.0"), "the running request finished on the old plugin");
    });
}

#[test]
fn a_plugin_failing_its_first_requests_is_rolled_back_automatically() {
    let host = Host::start();
    let account = host.create_account(false);
    let kept = host.create_note(&account, "written by migrate");
    host.activate(Plugin::AlwaysFails);
    // The default probation: more than 25% of the first 20 requests failing.
    let statuses: Vec<u16> = (0..10).map(|_| host.get_note(&account, &kept).status).collect();
    assert_eq!(statuses[..6], [500; 6], "the bad plugin served (and failed) the first requests");
    assert_eq!(host.serving_plugin(&account), "migrate@0.1.0", "rolled back after the 6th failure");
    assert_eq!(host.get_note(&account, &kept).expect(200).json()["content"], "written by migrate");
    let view = host.plugins();
    let last = view["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "automatic");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("always-fails@0.1.0 failed 6 of its first 20 requests"), "{reason}");
}

#[test]
fn a_restart_restores_the_active_plugin_from_its_precompiled_artifact() {
    let host = Host::start();
    let account = host.create_account(false);
    let faulty = host.activate(Plugin::Faulty);
    let host = host.restart_without_plugin_flag();
    assert_eq!(host.serving_plugin(&account), "faulty@0.1.0");
    let active = host.plugins()["active"].clone();
    assert_eq!(active["digest"], faulty.as_str());
    assert_eq!(active["loadedFrom"], "artifact", "no recompilation at restart");
    assert!(host.data_dir.join(format!("plugins/{faulty}.cwasm")).is_file());
}

#[test]
fn a_plugin_returning_a_huge_value_fails_that_request_only() {
    let host = Host::start_with(Plugin::Faulty);
    let account = host.create_account(false);
    let huge = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "fault:huge" })).expect(500);
    host.plugin_fault(&huge, "over the 1048576 byte limit");
    host.create_note(&account, "served after the huge value");
}

#[test]
fn the_cli_pushes_activates_lists_and_rolls_back() {
    let token = "cli-token-cli-token-cli-token";
    let host = Host::builder().admin_token(token).start();
    let account = host.create_account(false);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(host_binary())
            .arg("plugin")
            .args(args)
            .args(["--url", &host.base])
            .env("NOTES_ADMIN_TOKEN", token)
            .output()
            .expect("run notes-host plugin");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pushed: serde_json::Value = serde_json::from_str(&cli(&["push", Plugin::Faulty.path().to_str().unwrap(), "--activate"])).unwrap();
    assert_eq!(pushed["name"], "faulty");
    assert_eq!(host.serving_plugin(&account), "faulty@0.1.0");
    let listed: serde_json::Value = serde_json::from_str(&cli(&["list", "--json"])).unwrap();
    assert_eq!(listed["active"]["digest"], pushed["digest"]);
    cli(&["rollback"]);
    assert_eq!(host.serving_plugin(&account), "migrate@0.1.0");
    cli(&["rollback"]);
    // By the 12 hex digits `plugin list` and the console show.
    let short = &pushed["digest"].as_str().unwrap()[..12];
    let activated: serde_json::Value = serde_json::from_str(&cli(&["activate", short])).unwrap();
    assert_eq!(activated["digest"], pushed["digest"]);
    assert_eq!(host.serving_plugin(&account), "faulty@0.1.0");
}

#[test]
fn the_native_baseline_routes_exactly_like_the_migrate_plugin() {
    let host = Host::builder().arg("--router").arg("native-migrate").start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    assert_eq!(host.placement(&account, &note), LEGACY);
    host.set_migrating(&account, true).expect(200);
    let moved = host.update_note(&account, &note, "v2").expect(200);
    assert_eq!(moved.header("x-plugin"), Some("native-migrate@0.1.0"));
    assert_eq!(host.placement(&account, &note), NEW, "update moves the note to the new store");
    host.set_migrating(&account, false).expect(200);
    host.update_note(&account, &note, "v3").expect(200);
    assert_eq!(host.placement(&account, &note), LEGACY, "rollback brings it back");
    let digest = host.push_plugin(Plugin::Faulty).json()["digest"].as_str().unwrap().to_owned();
    let refused = host.put("/plugins/active", json!({ "digest": digest })).expect(409);
    assert!(refused.error().contains("routes natively"), "{}", refused.error());
}

also_on_postgres!(
    activation_swaps_the_plugin_for_new_requests_and_rollback_brings_it_back,
    activating_a_plugin_without_migration_is_refused_while_an_account_migrates,
    swapping_back_and_forth_under_load_fails_no_request_and_never_mixes_plugins,
    a_plugin_failing_its_first_requests_is_rolled_back_automatically,
    a_restart_restores_the_active_plugin_from_its_precompiled_artifact,
);

#[test]
fn a_plugin_whose_name_cannot_go_in_a_header_is_refused_at_upload() {
    let host = Host::start();
    let before = host.plugins();
    for (name, why) in [("n".repeat(40_000), "bytes"), ("two words".to_owned(), "visible ASCII")] {
        let refused = host.request_bytes("POST", "/plugins", Some(hostile::inert(&name)), &[]).expect(422);
        assert!(refused.error().contains("info() gave a name") && refused.error().contains(why), "{}", refused.error());
    }
    assert_eq!(host.plugins(), before, "nothing stored");
}
