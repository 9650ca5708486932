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
    let (passed, report) = check(&wasm, &["--profile", "migrate"]);
    assert!(passed && report.contains("0 failed, 0 skipped"), "the template passes the kit unchanged:\n{report}");
    assert!(report.starts_with("my-plugin@0.1.0: "), "the plugin's label as its info() gives it, case kept:\n{report}");

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

/// `notes-host plugin check FILE ARGS`: whether it passed, and its report.
fn check(wasm: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(host_binary()).args(["plugin", "check"]).arg(wasm).args(args).output().expect("run plugin check");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn failed_cases(report: &str) -> Vec<&str> {
    report.lines().filter_map(|l| l.strip_prefix("  FAIL  ")).map(|l| l.split(':').next().unwrap()).collect()
}

#[test]
fn the_conformance_kit_passes_the_shipped_plugins_and_names_the_rule_a_broken_one_breaks() {
    let plugins = target_dir().join("plugins");
    let (passed, report) = check(&plugins.join("migrate.wasm"), &["--profile", "migrate"]);
    assert!(passed && report.contains("18 passed, 0 failed, 0 skipped"), "{report}");
    // It claims no migration: the placement profile does not apply to it.
    let (passed, report) = check(&plugins.join("legacy-only.wasm"), &["--profile", "migrate"]);
    assert!(passed && report.contains(" 0 failed"), "{report}");

    let (passed, report) = check(&plugins.join("testing/list-duplicates.wasm"), &[]);
    assert!(!passed, "{report}");
    assert_eq!(failed_cases(&report), ["[contract] list returns each id once, sorted"], "{report}");
    assert!(report.contains(r#"got ["a", "b", "c", "a", "b", "c"]"#), "the difference is shown: {report}");
    assert!(
        report.contains("\n        why it matters: Notes in both stores during a migration must be listed once"),
        "a failed case says what it guards and why: {report}"
    );

    // Each fixture is migrate with one rule broken, and fails exactly that rule's case.
    for (fixture, case) in [
        ("resurrects", "a write that raced a delete cannot resurrect the note"),
        ("version-stuck", "versions grow by one"),
        ("unfinished-delete", "a half-done delete is finished, not retried forever"),
        ("writes-elsewhere", "a plugin writes and answers only its request's account"),
    ] {
        let (passed, report) = check(&plugins.join(format!("testing/{fixture}.wasm")), &["--profile", "migrate"]);
        assert!(!passed, "{fixture}: {report}");
        assert_eq!(failed_cases(&report), [format!("[contract] {case}").as_str()], "{fixture}: {report}");
    }

    let (passed, report) = check(&plugins.join("testing/ignores-migrating.wasm"), &["--profile", "migrate"]);
    assert!(!passed, "{report}");
    let failed = failed_cases(&report);
    for placement in ["migration mode creates in the new store", "update moves the note to the new store"] {
        assert!(failed.contains(&format!("[migrate] {placement}").as_str()), "{placement}: {report}");
    }

    // A strategy that places each note by its id, not by the flag: the note
    // `n1` lands where the mode wants by luck, so it passed placement cases
    // checked with that one note; with six notes a case, it fails each.
    // Its `homes` says where its writes put each note, so it keeps the
    // contract, that case included.
    let (passed, report) = check(&plugins.join("testing/places-by-id.wasm"), &[]);
    assert!(passed && report.contains("13 passed, 0 failed"), "it keeps the contract: {report}");
    let (_, report) = check(&plugins.join("testing/places-by-id.wasm"), &["--profile", "migrate"]);
    assert_eq!(
        failed_cases(&report),
        [
            "[migrate] migration mode creates in the new store",
            "[migrate] update moves the note to the new store",
            "[migrate] rollback mode creates in legacy and an update brings the note back",
            "[migrate] a move puts the note where the mode wants it",
        ],
        "{report}"
    );

    // Another strategy keeps every duty of the contract and fails only the
    // placement profile it does not claim; so does the simulator judge it.
    let (passed, report) = check(&Plugin::DualWrite.path(), &[]);
    assert!(passed && report.contains("13 passed, 0 failed"), "dual-write keeps the contract: {report}");
    let (passed, report) = check(&Plugin::DualWrite.path(), &["--profile", "migrate"]);
    assert!(!passed && failed_cases(&report).iter().all(|case| case.starts_with("[migrate]")), "{report}");
    let sim = |profile: &[&str]| {
        let out = Command::new(host_binary())
            .args(["sim", "--hosts", "2", "--accounts", "4", "--seconds", "4", "--chaos", "--plugin"])
            .arg(Plugin::DualWrite.path())
            .args(profile)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let duplicated = |said: &str| -> u64 {
        let count = said.split("duplicated ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok());
        count.unwrap_or_else(|| panic!("no anomaly line: {said}"))
    };
    let (passed, said) = sim(&[]);
    assert!(passed && said.contains("lost 0 stale 0 duplicated 0 resurrected 0 unexpected 0"), "judged by the contract: {said}");
    let (passed, said) = sim(&["--profile", "migrate"]);
    assert!(!passed && duplicated(&said) > 0, "judged by migrate's placement, its copies are duplicates: {said}");

    // The host can run the kit on upload: a broken plugin is refused naming the case, and not stored.
    let host = Host::start();
    let broken = std::fs::read(plugins.join("testing/list-duplicates.wasm")).unwrap();
    let refused = host.request_bytes("POST", "/plugins?check=true", Some(broken.clone()), &[]).expect(422);
    assert!(refused.error().contains("list returns each id once, sorted"), "{}", refused.body);
    assert_eq!(host.plugins()["plugins"].as_array().unwrap().len(), 1, "only the startup plugin is stored");
    host.request_bytes("POST", "/plugins", Some(broken), &[]).expect(201); // without the check, as before
    let good = std::fs::read(plugins.join("migrate.wasm")).unwrap();
    host.request_bytes("POST", "/plugins?check=true", Some(good), &[]).expect(200);

    let (passed, report) = check(&plugins.join("testing/always-fails.wasm"), &[]);
    assert!(!passed && report.contains("0 passed, 13 failed"), "{report}");
    let (passed, report) = check(&plugins.join("migrate.wasm"), &["--profile", "dual-write"]);
    assert!(!passed && report.is_empty(), "an unknown profile is refused: {report}");
}

/// The migrate strategy ported to Python (componentize-py) and JavaScript
/// (componentize-js): each passes the kit with the migrate profile, uploads,
/// activates, and serves the migration's core cycle.
#[test]
fn python_and_javascript_plugins_pass_the_kit_and_serve_a_migration() {
    for (plugin, label) in [(Plugin::MigratePython, "migrate-python@0.1.0"), (Plugin::MigrateJs, "migrate-js@0.1.0")] {
        let (passed, report) = check(&plugin.path(), &["--profile", "migrate"]);
        assert!(passed && report.contains("18 passed, 0 failed, 0 skipped"), "{label}:\n{report}");

        let host = Host::start();
        let account = host.create_account(false);
        let before = host.create_note(&account, "written before the migration");
        host.push_plugin(plugin).expect(201);
        host.activate(plugin);
        host.set_migrating(&account, true).expect(200);
        assert_eq!(host.serving_plugin(&account), label);
        let during = host.create_note(&account, "written during it");
        assert_eq!(host.placement(&account, &during), NEW, "{label}: create goes to the new store");
        assert_eq!(host.placement(&account, &before), LEGACY);
        let mut listed = host.list_notes(&account);
        listed.sort();
        let mut both = vec![before.clone(), during.clone()];
        both.sort();
        assert_eq!(listed, both, "{label}: list reads both stores");
        let updated = host.update_note(&account, &before, "edited").expect(200).json();
        assert_eq!((updated["version"].as_u64(), updated["content"].as_str()), (Some(2), Some("edited")), "{label}");
        assert_eq!(host.placement(&account, &before), NEW, "{label}: update moves the note to the new store");
        host.delete_note(&account, &during).expect(204);
        assert_eq!(host.placement(&account, &during), NOWHERE, "{label}: delete removes from both");
        host.set_migrating(&account, false).expect(200);
        host.update_note(&account, &before, "back").expect(200);
        assert_eq!(host.placement(&account, &before), LEGACY, "{label}: in rollback mode an update brings the note back");

        // Strict clients, flips and host restarts: nothing lost, stale or resurrected.
        let sim = Command::new(host_binary())
            .args(["sim", "--hosts", "2", "--accounts", "4", "--seconds", "5", "--chaos", "--profile", "migrate", "--plugin"])
            .arg(plugin.path())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&sim.stdout);
        assert!(sim.status.success() && said.contains("anomalies: lost 0 stale 0 duplicated 0 resurrected 0 unexpected 0"), "{label}:\n{said}");
    }
}

/// `plugin new --lang python|js` outside the repo: the project builds with
/// its own README's command and passes the kit unchanged.
#[test]
fn python_and_javascript_projects_from_plugin_new_build_and_pass_the_kit() {
    let outside = tempfile::tempdir().unwrap();
    let new = |lang: &str, name: &str| plugin_new(outside.path(), name, lang).0;
    let run = |dir: &Path, program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    };

    let python = new("python", "py-router");
    // `componentize-py ARGS`, through python3 (as `cargo xtask test`, which installed it, runs it).
    let componentize_py = "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()";
    run(&python, "python3", &["-c", componentize_py, "-d", "wit", "-w", "note-plugin", "componentize", "app", "-o", "py-router.wasm"]);
    let (passed, report) = check(&python.join("py-router.wasm"), &["--profile", "migrate"]);
    assert!(passed && report.starts_with("py-router@0.1.0") && report.contains("18 passed, 0 failed"), "{report}");

    let js = new("js", "js-router");
    // The toolchain `cargo xtask test` installed for the example (the same
    // package-lock), instead of a second 380 MB install.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/js/node_modules"), js.join("node_modules")).unwrap();
    run(&js, "npm", &["run", "-s", "build"]);
    let (passed, report) = check(&js.join("js-router.wasm"), &["--profile", "migrate"]);
    assert!(passed && report.starts_with("js-router@0.1.0") && report.contains("18 passed, 0 failed"), "{report}");
}

/// A Python plugin with a bug: its author reads the traceback, and what the
/// call printed before it, in `notes-host plugin errors`, built as its own
/// README says; the client is told only an error id.
#[test]
fn a_python_plugins_key_error_shows_its_traceback_and_prints_in_plugin_errors() {
    let outside = tempfile::tempdir().unwrap();
    let (project, next) = plugin_new(outside.path(), "buggy", "python");
    assert!(!next.contains("--stub-wasi"), "the build it suggests keeps stderr: {next}");
    let app = std::fs::read_to_string(project.join("app.py")).unwrap();
    let create = "    def create_note(self, account_id: str, change: NoteChange, is_migrating: bool) -> Note:\n";
    assert!(app.contains(create), "the template's create_note changed; update this test");
    let bug = "        if change.content == \"paint it\":\n            print(\"looking up the colour of\", change.id)\n            return {}[\"colour\"]\n";
    std::fs::write(project.join("app.py"), app.replace(create, &format!("{create}{bug}"))).unwrap();
    let componentize_py = "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()";
    let built = Command::new("python3")
        .args(["-c", componentize_py, "-d", "wit", "-w", "note-plugin", "componentize", "app", "-o", "buggy.wasm"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    let host = Host::builder().args(["--probation-requests", "0"]).start();
    let pushed = host.request_bytes("POST", "/plugins", Some(std::fs::read(project.join("buggy.wasm")).unwrap()), &[]).expect(201);
    let digest = pushed.json()["digest"].as_str().unwrap().to_owned();
    host.put("/plugins/active", serde_json::json!({ "digest": digest })).expect(200);
    let account = host.create_account(false);
    host.create_note(&account, "an ordinary note");
    let failed = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "paint it" }));
    let fault = host.plugin_fault(&failed, "KeyError: 'colour'");
    let message = fault["message"].as_str().unwrap();
    assert!(message.contains("Traceback (most recent call last)") && message.contains("app.py\", line") && message.contains("in create_note"), "{message}");
    let printed = message.find("looking up the colour of").unwrap_or_else(|| panic!("the call's print is kept: {message}"));
    assert!(printed < message.find("Traceback").unwrap(), "in the order written: {message}");

    // What its author runs.
    let errors = Command::new(host_binary()).args(["plugin", "errors", &digest[..12], "--url", &host.base]).output().unwrap();
    let said = String::from_utf8_lossy(&errors.stdout);
    assert!(errors.status.success() && said.contains("KeyError: 'colour'"), "{said}{}", String::from_utf8_lossy(&errors.stderr));
}

/// `plugin check` on a terminal shows what it is doing while a plugin
/// compiles (seconds for Python); piped, its report is only the report.
#[test]
fn plugin_check_shows_progress_on_a_terminal_while_it_compiles() {
    let wasm = Plugin::MigratePython.path();
    // `script` gives the command a terminal, as an author's shell would.
    let command = format!("{} plugin check {} --profile migrate", host_binary().display(), wasm.display());
    let out = Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("script (util-linux)");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{seen}");
    assert!(seen.contains("compiling the plugin (18.") || seen.contains("compiling the plugin (19."), "a spinner while it compiles: {seen}");
    assert!(seen.contains("18 passed, 0 failed"), "{seen}");
    let (_, piped) = check(&wasm, &["--profile", "migrate"]);
    assert!(piped.starts_with("migrate-python@0.1.0: 18 case(s)\n") && !piped.contains("compiling"), "{piped}");
}

/// A JavaScript plugin with a bug: the stack in `plugin errors` points at
/// the plugin's own file and line, not only at the bindings' `initializer.js`.
#[test]
fn a_javascript_plugins_type_error_shows_a_stack_in_its_own_file() {
    let outside = tempfile::tempdir().unwrap();
    let (project, _) = plugin_new(outside.path(), "buggy-js", "js");
    let plugin = std::fs::read_to_string(project.join("plugin.js")).unwrap();
    let create = "  createNote: (accountId, change, isMigrating) => answer(() => create(...route(isMigrating), accountId, change)),";
    assert!(plugin.contains(create), "the template's createNote changed; update this test");
    let bug = "  createNote: (accountId, change, isMigrating) => answer(() => {\n    if (change.content === 'paint it') { const settings = {}; return settings.colour.name; }\n    return create(...route(isMigrating), accountId, change);\n  }),";
    let buggy = plugin.replace(create, bug);
    let bug_line = buggy.lines().position(|l| l.contains("settings.colour.name")).unwrap() + 1;
    std::fs::write(project.join("plugin.js"), buggy).unwrap();
    // The toolchain `cargo xtask test` installed for the example.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/js/node_modules"), project.join("node_modules")).unwrap();
    let built = Command::new("npm").args(["run", "-s", "build"]).current_dir(&project).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    let host = Host::builder().args(["--probation-requests", "0"]).start();
    let pushed = host.request_bytes("POST", "/plugins", Some(std::fs::read(project.join("buggy-js.wasm")).unwrap()), &[]).expect(201);
    host.put("/plugins/active", serde_json::json!({ "digest": pushed.json()["digest"] })).expect(200);
    let account = host.create_account(false);
    let failed = host.post(&format!("/accounts/{account}/notes"), serde_json::json!({ "content": "paint it" }));
    let fault = host.plugin_fault(&failed, "settings.colour is undefined");
    let message = fault["message"].as_str().unwrap();
    let line = message.lines().find(|l| l.starts_with("createNote/<@plugin.js:")).unwrap_or_else(|| panic!("a frame in plugin.js: {message}"));
    assert!(line.starts_with(&format!("createNote/<@plugin.js:{bug_line}:")), "the line of the bug, {bug_line}: {line}\n{message}");
}

/// `plugin new NAME --lang LANG` in `outside`, as an author runs it: the
/// project's directory, and what the command printed (its next steps).
fn plugin_new(outside: &Path, name: &str, lang: &str) -> (std::path::PathBuf, String) {
    let made = Command::new(host_binary()).args(["plugin", "new", name, "--lang", lang, "--dir"]).arg(outside).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (outside.join(name), String::from_utf8_lossy(&made.stdout).into_owned())
}

#[test]
fn a_store_plugin_written_from_the_template_outside_the_repo_builds_and_keeps_the_store_rules() {
    let outside = tempfile::tempdir().unwrap();
    let new = Command::new(host_binary()).args(["plugin", "new", "my-store", "--kind", "store", "--dir"]).arg(outside.path()).output().unwrap();
    assert!(new.status.success(), "{}", String::from_utf8_lossy(&new.stderr));
    assert!(String::from_utf8_lossy(&new.stdout).contains("--profile store"), "it says how to check it");
    cargo_in(&outside.path().join("my-store"), &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target_dir().join("plugin-template/wasm32-wasip2/release/my_store.wasm");
    let proxy = notes_scenarios::notely::Proxy::start();
    let url = format!("url={}", proxy.url);
    let (passed, report) = check(&wasm, &["--profile", "store", "--store-config", &url, "--store-allow-http", &proxy.origin]);
    assert!(passed && report.starts_with("my-store@0.1.0: "), "the template keeps the store rules unchanged:\n{report}");
}
