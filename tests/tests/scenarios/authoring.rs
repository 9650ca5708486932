//! A plugin author's path, outside this repo: `notes-host plugin new`, the
//! project's own native test, the component build, push, activate, serve.

use std::path::Path;
use std::process::Command;

use notes_scenarios::*;

/// `cargo` in `dir`, with the plugin projects' shared target dir (so the
/// SDK's dependencies build once per machine, not once per test run).
fn cargo_in(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir().join("plugin-template");
    let out = Command::new(cargo).args(args).current_dir(dir).env("CARGO_TARGET_DIR", &target).output().expect("run cargo");
    assert!(out.status.success(), "cargo {args:?} in {}:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_plugin_written_from_the_template_outside_the_repo_tests_builds_and_serves_a_migration() {
    let outside = tempfile::tempdir().unwrap();
    let new = Command::new(host_binary()).args(["plugin", "new", "my-plugin", "--dir"]).arg(outside.path()).output().unwrap();
    assert!(new.status.success(), "{}", String::from_utf8_lossy(&new.stderr));
    let project = outside.path().join("my-plugin");
    cargo_in(&project, &["test", "--quiet"]);
    cargo_in(&project, &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target_dir().join("plugin-template/wasm32-wasip2/release/my_plugin.wasm");

    let token = "author-token-author-token-author";
    let host = Host::builder().admin_token(token).start();
    let pushed = Command::new(host_binary())
        .args(["plugin", "push", "--activate", "--url", &host.base])
        .arg(&wasm)
        .env("NOTES_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let account = host.create_account(false);
    let old = host.create_note(&account, "written before the migration");
    host.set_migrating(&account, true).expect(200);
    assert_eq!(host.serving_plugin(&account), "my-plugin@0.1.0", "the template's plugin serves, and claims migration");
    let fresh = host.create_note(&account, "written during it");
    assert_eq!(host.placement(&account, &fresh), NEW, "create goes to the new store");
    host.update_note(&account, &old, "edited").expect(200);
    assert_eq!(host.placement(&account, &old), NEW, "update moves the note to the new store");
    let mut listed = host.list_notes(&account);
    listed.sort();
    let mut both = vec![old.clone(), fresh.clone()];
    both.sort();
    assert_eq!(listed, both);
}
