//! `cargo xtask <command>`: the project's build and test entry points.
//!
//! - `build`  install the wasm32-wasip2 target if missing, build the plugins
//!   (their own workspace, wasm32-wasip2) and the host (release); leaves
//!   `target/release/notes-host` and `target/plugins/*.wasm`.
//! - `run [ARGS]`  build, then `notes-host serve --data-dir data ARGS`.
//! - `test [ARGS]` build, then every test: plugin routing unit tests
//!   (native), host unit tests and the scenario tests (release profile, so
//!   wasmtime is compiled once for the binary and the tests). ARGS go to the
//!   host workspace's `cargo test`.
//! - `test` installs schemathesis (PyPI, pinned) if missing, for the API
//!   contract test, Debian's `postgresql` package if its server binaries
//!   are missing (the PostgreSQL tests start throwaway servers), and
//!   Debian's `chromium` and `chromium-driver` if missing (the console's
//!   browser tests), and builds the Python and JavaScript example plugins
//!   (componentize-py from PyPI, componentize-js from npm, installed when
//!   missing) into `target/plugins/examples/`.
//! - `test` also runs `notes-host sim --chaos --backfill` for 30 s on
//!   3 hosts: flips, restarts and migration jobs under strict clients (0
//!   anomalies or it fails).
//! - `bench [PART…]`  build, then `xtask/bench.py`: the benchmark suite (micro,
//!   http, scaling, profile, fleet, plugins; all by default). Each part writes
//!   its block of BENCHMARKS.md and its section of docs/bench-results.json.
//!
//! No dependencies on purpose: it must build in seconds on a fresh machine.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";
/// (crate in plugins/, artifact under target/plugins/)
const PLUGINS: &[(&str, &str)] = &[
    ("legacy_only_plugin", "legacy-only.wasm"),
    ("migrate_plugin", "migrate.wasm"),
    ("dual_write_plugin", "examples/dual-write.wasm"),
    ("notely_data_proxy_plugin", "examples/notely-data-proxy.wasm"),
    ("consul_kv_plugin", "examples/consul-kv.wasm"),
    ("faulty_plugin", "testing/faulty.wasm"),
    ("always_fails_plugin", "testing/always-fails.wasm"),
    ("future_wit_plugin", "testing/future-wit.wasm"),
    ("remembers_plugin", "testing/remembers.wasm"),
    ("list_duplicates_plugin", "testing/list-duplicates.wasm"),
    ("ignores_migrating_plugin", "testing/ignores-migrating.wasm"),
    ("places_by_id_plugin", "testing/places-by-id.wasm"),
    ("resurrects_plugin", "testing/resurrects.wasm"),
    ("version_stuck_plugin", "testing/version-stuck.wasm"),
    ("unfinished_delete_plugin", "testing/unfinished-delete.wasm"),
    ("writes_elsewhere_plugin", "testing/writes-elsewhere.wasm"),
];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("run") => build().and_then(|()| run(&args[1..])),
        Some("test") => build().and_then(|()| test(&args[1..])),
        Some("bench") => build().and_then(|()| {
            let mut suite = Command::new("python3");
            suite.arg(root().join("xtask/bench.py")).args(&args[1..]).env("CARGO_TARGET_DIR", target_dir());
            run_cmd(suite)
        }),
        _ => Err("usage: cargo xtask build | run [SERVE ARGS] | test [CARGO TEST ARGS] | bench [all|micro|http|scaling|profile|fleet|plugins|fairness|jobs|postgres|writes|ceilings|memory|languages|soak|stores]… | bench compare REV".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the repo root").to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    // Both workspaces share one target dir: the native crates they have in
    // common (notes-routing) are built once.
    cmd.env("CARGO_TARGET_DIR", target_dir());
    cmd
}

fn run_cmd(mut cmd: Command) -> Result {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed: {status}")) }
}

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to install the {WASM_TARGET} target: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    run_cmd(add)
}

fn build() -> Result {
    ensure_wasm_target()?;
    let mut plugins = cargo();
    plugins.args(["build", "--release", "--target", WASM_TARGET, "--manifest-path", "plugins/Cargo.toml"]);
    for (krate, _) in PLUGINS {
        plugins.args(["-p", &krate.replace('_', "-")]);
    }
    run_cmd(plugins)?;
    let built = target_dir().join(WASM_TARGET).join("release");
    let out = target_dir().join("plugins");
    for (krate, artifact) in PLUGINS {
        let dest = out.join(artifact);
        fs::create_dir_all(dest.parent().expect("artifact has a parent")).map_err(|e| e.to_string())?;
        fs::copy(built.join(format!("{krate}.wasm")), &dest).map_err(|e| format!("cannot copy {krate}.wasm: {e}"))?;
    }
    // The whole workspace, as `test` builds it: cargo unifies features over
    // the packages it builds, so a host-only build would give wasmparser
    // (shared by wasmtime and the tests' wit-component) other features, and
    // the test run would compile wasmtime a second time.
    let mut host = cargo();
    host.args(["build", "--release", "--workspace"]);
    run_cmd(host)
}

fn run(args: &[String]) -> Result {
    // `cargo xtask run -- --listen …`: the alias already ends in `--`, so a
    // second one arrives here as an argument.
    let args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    let mut host = Command::new(target_dir().join("release").join("notes-host"));
    host.arg("serve");
    if !args.iter().any(|a| a == "--data-dir" || a.starts_with("--data-dir=")) {
        host.args(["--data-dir", "data"]);
    }
    host.args(args).current_dir(root());
    run_cmd(host)
}

/// What `test` needs from PyPI: schemathesis checks the API against its
/// OpenAPI document (tests/tests/scenarios/contract.rs). Pinned, with the
/// hypothesis it runs on (schemathesis only bounds it, `<7`), so a new
/// release of either cannot change what CI checks.
const CONTRACT_TOOLS: [&str; 2] = ["schemathesis==4.32.5", "hypothesis==6.170.29"];

fn ensure_schemathesis() -> Result {
    let probe = Command::new("python3")
        .args(["-c", "import importlib.metadata as m\nfor p in ('schemathesis', 'hypothesis'):\n    try: print(p + '==' + m.version(p))\n    except m.PackageNotFoundError: pass"])
        .output()
        .map_err(|e| format!("python3 is needed for the API contract test: {e}"))?;
    let installed = String::from_utf8_lossy(&probe.stdout);
    if CONTRACT_TOOLS.iter().all(|pin| installed.lines().any(|line| line == *pin)) {
        return Ok(());
    }
    let mut install = Command::new("python3");
    install.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(CONTRACT_TOOLS);
    run_cmd(install)
}

/// componentize-py, pinned like schemathesis: a new release may change the
/// component it makes (its core instances, its WASI imports).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// `componentize-py ARGS`, as `python3 -c COMPONENTIZE_PY_MAIN ARGS`.
const COMPONENTIZE_PY_MAIN: &str = "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()";

/// The migrate strategy ported to Python and JavaScript
/// (`plugins/examples/`), built with the toolchains from PyPI and npm into
/// `target/plugins/examples/`: the scenario tests check and serve them. Only
/// `test` builds them; building or running the host needs neither toolchain.
fn build_other_language_plugins() -> Result {
    let out = target_dir().join("plugins/examples");
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let version = COMPONENTIZE_PY.split("==").nth(1).expect("pinned");
    let probe = Command::new("python3")
        .args(["-c", "import importlib.metadata as m; print(m.version('componentize-py'))"])
        .output()
        .map_err(|e| format!("python3 is needed to build the Python example plugin: {e}"))?;
    if String::from_utf8_lossy(&probe.stdout).trim() != version {
        let mut install = Command::new("python3");
        install.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", COMPONENTIZE_PY]);
        run_cmd(install)?;
    }
    let python = root().join("plugins/examples/python");
    // Through python3, not the `componentize-py` script: a fresh install's
    // script may not be on PATH yet (pyenv adds its shim only on a rehash).
    let mut componentize = Command::new("python3");
    componentize.args(["-c", COMPONENTIZE_PY_MAIN]);
    // Without --stub-wasi, which would stub stderr too (and with it every
    // traceback): the interpreter's wasi:sockets imports are the host's to
    // deny, and it does (every socket call traps).
    componentize.current_dir(&python).args(["-d", "../../sdk/wit", "-w", "note-plugin", "componentize", "app", "-o"]).arg(out.join("migrate-python.wasm"));
    run_cmd(componentize)?;
    let js = root().join("plugins/examples/js");
    let node = Command::new("node").arg("--version").output().map_err(|e| format!("Node.js 20 or later is needed to build the JavaScript example plugin: {e}"))?;
    let major = String::from_utf8_lossy(&node.stdout).trim().trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < 20) {
        return Err(format!("Node.js 20 or later is needed to build the JavaScript example plugin (componentize-js); found {:?}", String::from_utf8_lossy(&node.stdout).trim()));
    }
    // npm records what it installed in node_modules/.package-lock.json: a
    // newer package-lock.json (a bumped toolchain) installs again.
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(&js.join("node_modules/.package-lock.json"));
    if !js.join("node_modules/.bin/componentize-js").exists() || installed < modified(&js.join("package-lock.json")) {
        let mut install = Command::new("npm");
        install.current_dir(&js).args(["ci", "--no-audit", "--no-fund"]);
        run_cmd(install)?;
    }
    let mut build = Command::new("npm");
    build.current_dir(&js).args(["run", "-s", "build"]).env("OUT", out.join("migrate-js.wasm"));
    run_cmd(build)
}

/// The PostgreSQL tests start their own throwaway servers
/// (tests/src/postgres.rs) from Debian's server binaries: install the
/// package when they are missing.
fn ensure_postgres() -> Result {
    if env::var_os("NOTES_POSTGRES_BIN").is_some() {
        return Ok(());
    }
    let installed = fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().any(|v| v.path().join("bin/initdb").exists()))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    apt_install(&["postgresql"])
}

/// The console's browser tests (tests/tests/scenarios/console.rs) drive
/// Debian's Chromium through its ChromeDriver: install both when missing.
fn ensure_chromium() -> Result {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    apt_install(&["chromium", "chromium-driver"])
}

fn apt_install(packages: &[&str]) -> Result {
    let install = || {
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y", "--no-install-recommends"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
        run_cmd(apt)
    };
    // A fresh machine may have no package lists yet.
    install().or_else(|_| {
        let mut update = Command::new("apt-get");
        update.arg("update");
        run_cmd(update).and_then(|()| install())
    })
}

fn test(args: &[String]) -> Result {
    ensure_schemathesis()?;
    ensure_postgres()?;
    ensure_chromium()?;
    build_other_language_plugins()?;
    let mut routing = cargo();
    routing.args(["test", "--release", "--manifest-path", "plugins/Cargo.toml", "-p", "notes-routing"]);
    run_cmd(routing)?;
    // The SDK and the routing crate build on their own, as they would be
    // published (the WIT inside the SDK), outside the plugins workspace.
    let mut package = cargo();
    package.args(["package", "--manifest-path", "plugins/Cargo.toml", "-p", "notes-routing", "-p", "notes-plugin-sdk", "--allow-dirty"]);
    run_cmd(package)?;
    // The benchmarks are not run here, but they must compile: a trait
    // change once broke `cargo xtask bench micro` unnoticed.
    let mut benches = cargo();
    benches.args(["build", "--release", "--workspace", "--benches"]);
    run_cmd(benches)?;
    let mut workspace = cargo();
    workspace.args(["test", "--release", "--workspace"]).args(args);
    run_cmd(workspace)?;
    if !args.is_empty() {
        return Ok(()); // a filtered run (`cargo xtask test fleet`) skips the soak
    }
    // The strict-client soak: 3 hosts, random flips and restarts, 0 anomalies.
    let mut sim = Command::new(target_dir().join("release/notes-host"));
    sim.args(["sim", "--hosts", "3", "--accounts", "8", "--seconds", SIM_SECONDS, "--chaos", "--backfill"]);
    run_cmd(sim)
}

/// How long `cargo xtask test` (and so CI) runs the chaos simulator.
const SIM_SECONDS: &str = "30";
