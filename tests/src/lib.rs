//! Harness for the scenario tests: start the real `notes-host` binary with a
//! real plugin on a temp data dir, talk to it over HTTP on loopback.
//!
//! Hosts keep their state in SQLite files in the data dir, or, in a
//! scenario run through [`on_postgres`], in databases on a throwaway
//! PostgreSQL server (`postgres.rs`): the same scenario, the other backend.
//!
//! Build first (`cargo xtask build`, or `cargo xtask test` which does it).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notes_client::launcher::{Launcher, RunningHost, Signal, StartError};
use notes_client::{AccountChange, Body, Client, NewAccount, NewNote, TransportError};
use serde_json::Value;
use tempfile::TempDir;

pub mod browser;
pub mod hostile;
pub mod load;
pub mod notely;
pub mod standin;
pub mod postgres;

/// The plugins built by `cargo xtask build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Migrate,
    /// The router from before migrations: every note in the legacy store.
    LegacyOnly,
    /// Test-only: migrate plus faults triggered by note content.
    Faulty,
    /// Test-only: answers info(), panics on every note operation.
    AlwaysFails,
    /// Test-only: built against a WIT version the host does not serve (0.9.0).
    FutureWit,
    /// Test-only, hostile: keeps every note it sees in its memory and serves
    /// them to whoever asks next, whatever the account.
    Remembers,
    /// The migrate plugin as built against `notes:plugin@0.1.0`, kept as
    /// shipped (`tests/fixtures/`): an older plugin the host still serves.
    MigrateWit01,
    /// The migrate plugin as built against `notes:plugin@0.2.0` (lists of
    /// ids as `list<string>`), kept as shipped.
    MigrateWit02,
    /// The migrate plugin as built against `notes:plugin@0.3.0` (no
    /// `homes`: the host takes the migrate rule as its placement), kept as shipped.
    MigrateWit03,
    /// Test-only: migrate, but each note routed by its id's parity, not by
    /// the flag; its `homes` says so (`plugins/testing/places-by-id`).
    PlacesById,
    /// Another strategy: every write to both stores (`plugins/examples/dual-write`).
    DualWrite,
    /// A store backend, not a router: the legacy store is a Notely data
    /// proxy (`plugins/examples/notely-data-proxy`; see [`notely::Proxy`]).
    NotelyDataProxy,
    /// A store backend that keeps versions itself: notes in a key-value
    /// store with Consul's KV API (`plugins/examples/consul-kv`).
    ConsulKv,
    /// The migrate strategy in Python (`plugins/examples/python`, componentize-py).
    MigratePython,
    /// The migrate strategy in JavaScript (`plugins/examples/js`, componentize-js).
    MigrateJs,
}

/// Where this build's artifacts are: `CARGO_TARGET_DIR`, else the repo's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

impl Plugin {
    pub fn path(self) -> PathBuf {
        match self {
            Plugin::MigrateWit01 => return Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/migrate-wit-0.1.0.wasm"),
            Plugin::MigrateWit02 => return Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/migrate-wit-0.2.0.wasm"),
            Plugin::MigrateWit03 => return Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/migrate-wit-0.3.0.wasm"),
            Plugin::MigratePython | Plugin::MigrateJs => {
                let (file, source) = if self == Plugin::MigratePython {
                    ("migrate-python.wasm", "plugins/examples/python")
                } else {
                    ("migrate-js.wasm", "plugins/examples/js/migrate.js")
                };
                let path = target_dir().join("plugins/examples").join(file);
                assert!(path.is_file(), "{} is missing: `cargo xtask test` builds it (componentize-py, componentize-js)", path.display());
                assert_fresh(&path, &[source, "plugins/examples/js/package-lock.json", "plugins/sdk/wit"]);
                return path;
            }
            _ => {}
        }
        let file = match self {
            Plugin::Migrate => "plugins/migrate.wasm",
            Plugin::LegacyOnly => "plugins/legacy-only.wasm",
            Plugin::Faulty => "plugins/testing/faulty.wasm",
            Plugin::AlwaysFails => "plugins/testing/always-fails.wasm",
            Plugin::FutureWit => "plugins/testing/future-wit.wasm",
            Plugin::Remembers => "plugins/testing/remembers.wasm",
            Plugin::DualWrite => "plugins/examples/dual-write.wasm",
            Plugin::NotelyDataProxy => "plugins/examples/notely-data-proxy.wasm",
            Plugin::ConsulKv => "plugins/examples/consul-kv.wasm",
            Plugin::PlacesById => "plugins/testing/places-by-id.wasm",
            Plugin::MigrateWit01 | Plugin::MigrateWit02 | Plugin::MigrateWit03 | Plugin::MigratePython | Plugin::MigrateJs => {
                unreachable!("returned above")
            }
        };
        let path = target_dir().join(file);
        assert!(path.is_file(), "{} is missing: run `cargo xtask build` first", path.display());
        assert_fresh(&path, &["plugins/routing/src", "plugins/sdk/src", "plugins/examples/dual-write/src", "plugins/examples/notely-data-proxy/src", "plugins/examples/consul-kv/src", "plugins/testing", "wit"]);
        path
    }

    pub fn bytes(self) -> Vec<u8> {
        std::fs::read(self.path()).expect("read plugin")
    }
}

pub fn host_binary() -> PathBuf {
    let path = target_dir().join("release/notes-host");
    assert!(path.is_file(), "{} is missing: run `cargo xtask build` first", path.display());
    assert_fresh(&path, &["host/src", "client/src", "cli/src", "wit", "plugins/routing/src"]);
    path
}

/// `cargo test` alone does not rebuild the binary or the plugins these tests
/// run; refuse to test a stale build (`cargo xtask test` builds first).
/// A source is a directory (its newest file counts) or a file.
fn assert_fresh(artifact: &Path, sources: &[&str]) {
    fn newest(dir: &Path) -> std::time::SystemTime {
        let mut newest = std::time::SystemTime::UNIX_EPOCH;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let time = if path.is_dir() { newest_of(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
            newest = newest.max(time.unwrap_or(newest));
        }
        newest
    }
    fn newest_of(dir: &Path) -> Option<std::time::SystemTime> {
        Some(newest(dir))
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::fs::metadata(artifact).and_then(|m| m.modified()).expect("artifact time");
    for source in sources {
        let source_path = root.join(source);
        let changed = match std::fs::metadata(&source_path) {
            Ok(meta) if meta.is_file() => meta.modified().expect("file time"),
            _ => newest(&source_path),
        };
        assert!(
            changed <= built,
            "{} is older than {source}/: run `cargo xtask build` (or `cargo xtask test`)",
            artifact.display()
        );
    }
}

/// Where hosts keep accounts, flags and notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in the data dir (one machine).
    Sqlite,
    /// Databases on the test PostgreSQL server; the data dir is only a plugin cache.
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
    /// On PostgreSQL, whether a service's stores are schemas of one database.
    static IN_SCHEMAS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `scenario` with every host it starts on PostgreSQL.
pub fn on_postgres(scenario: fn()) {
    BACKEND.set(Backend::Postgres);
    scenario();
}

/// Runs `scenario` with every host it starts on PostgreSQL, its legacy
/// store and new-store shards in schemas of one database
/// ([`PgService::in_schemas`]).
pub fn on_postgres_schemas(scenario: fn()) {
    BACKEND.set(Backend::Postgres);
    IN_SCHEMAS.set(true);
    scenario();
}

/// The backend of the scenario running on this thread.
pub fn backend() -> Backend {
    BACKEND.get()
}

/// The databases of one service on the test PostgreSQL server: what hosts
/// of one fleet share. New-store shard databases are made as asked for.
pub struct PgService {
    coordination: String,
    legacy: String,
    shards: Mutex<Vec<String>>,
    /// Makes a database: on the shared test server, or on a test's own.
    create: Box<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for PgService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgService").field("coordination", &self.coordination).finish_non_exhaustive()
    }
}

impl PgService {
    /// A service on the shared test server.
    pub fn new() -> Arc<PgService> {
        Self::with(Box::new(postgres::database))
    }

    /// A service on the shared test server whose stores (the legacy store
    /// and each new-store shard) are schemas of one database
    /// (`?schema=store0`, `store1`, …), as an operator may lay them out.
    pub fn in_schemas() -> Arc<PgService> {
        let stores = postgres::with_schemas(postgres::database(), &["store0", "store1", "store2", "store3", "store4", "store5"]);
        let made = std::sync::atomic::AtomicUsize::new(0);
        let coordination = postgres::database();
        Arc::new(PgService {
            coordination,
            legacy: format!("{stores}?schema=store0"),
            shards: Mutex::default(),
            create: Box::new(move || format!("{stores}?schema=store{}", 1 + made.fetch_add(1, std::sync::atomic::Ordering::Relaxed))),
        })
    }

    /// A service on a server of the test's own (one it stops and restarts).
    pub fn on(server: &Arc<postgres::Server>) -> Arc<PgService> {
        let server = server.clone();
        Self::with(Box::new(move || server.create_database()))
    }

    fn with(create: Box<dyn Fn() -> String + Send + Sync>) -> Arc<PgService> {
        Arc::new(PgService { coordination: create(), legacy: create(), shards: Mutex::default(), create })
    }

    /// `serve` arguments for this service with `shards` new-store shards.
    pub fn args(&self, shards: usize) -> Vec<String> {
        let mut made = self.shards.lock().unwrap();
        while made.len() < shards {
            made.push((self.create)());
        }
        let mut args = vec!["--coordination".to_owned(), self.coordination.clone(), "--legacy-store".to_owned(), self.legacy.clone()];
        for url in &made[..shards] {
            args.extend(["--new-store".to_owned(), url.clone()]);
        }
        args
    }

    pub fn coordination_url(&self) -> &str {
        &self.coordination
    }
}

/// How a host is started. `Host::builder().plugin(Plugin::LegacyOnly).start()`.
#[derive(Debug, Clone)]
pub struct HostBuilder {
    /// `None`: no `--plugin`, the host restores the registry's active plugin.
    plugin: Option<Plugin>,
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    token: Option<String>,
    backend: Backend,
    /// The PostgreSQL service the host serves from (made at the first start).
    postgres: Option<Arc<PgService>>,
}

impl HostBuilder {
    pub fn plugin(mut self, plugin: Plugin) -> Self {
        self.plugin = Some(plugin);
        self
    }

    /// Start without `--plugin`: the host serves the plugin that was active.
    pub fn without_plugin_flag(mut self) -> Self {
        self.plugin = None;
        self
    }

    /// Use this data dir (to restart on the same files) instead of a new one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.args.extend(args.into_iter().map(str::to_owned));
        self
    }

    pub fn admin_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The state a stopped host left: its data dir, and its databases on PostgreSQL.
    pub fn state_of(mut self, stopped: &DataDir) -> Self {
        self.data_dir = Some(stopped.path.clone());
        self.postgres = stopped.postgres.clone();
        self
    }

    /// Serve from this PostgreSQL service (hosts of one fleet share one).
    pub fn postgres(mut self, service: &Arc<PgService>) -> Self {
        self.backend = Backend::Postgres;
        self.postgres = Some(service.clone());
        self
    }

    /// The PostgreSQL service, made on first use (PostgreSQL backend only).
    fn service(&mut self) -> Option<Arc<PgService>> {
        if self.backend == Backend::Postgres && self.postgres.is_none() {
            self.postgres = Some(if IN_SCHEMAS.get() { PgService::in_schemas() } else { PgService::new() });
        }
        self.postgres.clone()
    }

    /// The `serve` arguments, with `--shards N` turned into N `--new-store`
    /// databases on PostgreSQL.
    fn serve_args(&mut self) -> Vec<String> {
        let Some(service) = self.service() else { return self.args.clone() };
        let mut args = Vec::new();
        let mut shards = 4; // serve's default
        let mut given = self.args.iter();
        while let Some(arg) = given.next() {
            match arg.as_str() {
                "--shards" => shards = given.next().and_then(|n| n.parse().ok()).expect("--shards N"),
                _ => args.push(arg.clone()),
            }
        }
        args.extend(service.args(shards));
        args
    }

    fn launcher(&mut self, data_dir: &Path) -> Launcher {
        let mut launcher = Launcher::serve(host_binary(), data_dir);
        if let Some(plugin) = self.plugin {
            launcher = launcher.arg("--plugin").arg(plugin.path());
        }
        launcher = launcher.args(&self.serve_args()).env_remove("NOTES_ADMIN_TOKEN");
        if let Some(token) = &self.token {
            launcher = launcher.env("NOTES_ADMIN_TOKEN", token);
        }
        launcher
    }

    pub fn start(mut self) -> Host {
        let (tmp, data_dir) = match &self.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::tempdir().expect("temp dir");
                let dir = tmp.path().join("data");
                (Some(tmp), dir)
            }
        };
        std::fs::create_dir_all(data_dir.parent().expect("parent")).unwrap();
        let process = self
            .launcher(&data_dir)
            .stderr_to(log_path(&data_dir))
            .start()
            .unwrap_or_else(|e| panic!("host did not start: {e}"));
        let client = Client::new(process.url()).with_token(self.token.clone());
        Host { process, base: client.base().to_owned(), data_dir, client, builder: self, _tmp: tmp }
    }

    /// Runs the host expecting it to refuse to start; returns its stderr.
    pub fn start_fails(mut self) -> String {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = self.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        match self.launcher(&data_dir).stderr_to(tmp.path().join("stderr")).start() {
            Ok(_) => panic!("the host listens but should have refused to start"),
            Err(StartError::Exited { status, stderr }) => {
                assert!(!status.success(), "the host exited 0 but should have refused: {stderr}");
                stderr
            }
            Err(e) => panic!("the host should have refused to start: {e}"),
        }
    }
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("host.log")
}

/// A running host; killed when dropped.
pub struct Host {
    // Declared before `_tmp`: the process dies before its data dir is deleted.
    process: RunningHost,
    pub base: String,
    pub data_dir: PathBuf,
    client: Client,
    builder: HostBuilder,
    _tmp: Option<TempDir>,
}

/// The state of a stopped host: its data dir (deleted when dropped, if it
/// was a temp dir), and its PostgreSQL service if it had one.
pub struct DataDir {
    pub path: PathBuf,
    pub postgres: Option<Arc<PgService>>,
    _tmp: Option<TempDir>,
}

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl From<notes_client::Response> for Resp {
    fn from(r: notes_client::Response) -> Resp {
        Resp { status: r.status, body: r.body, headers: r.headers }
    }
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `error` message of an error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error message in {:?}", self.body)).to_owned()
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self
    }
}

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder { plugin: Some(Plugin::Migrate), data_dir: None, args: Vec::new(), token: None, backend: backend(), postgres: None }
    }

    /// A host with the migrate plugin on a new data dir.
    pub fn start() -> Host {
        Host::builder().start()
    }

    pub fn start_with(plugin: Plugin) -> Host {
        Host::builder().plugin(plugin).start()
    }

    /// Stops this host and starts another on the same data dir, the same
    /// settings, and `plugin`.
    pub fn restart_with(self, plugin: Plugin) -> Host {
        let builder = self.builder.clone().plugin(plugin);
        self.restart(builder)
    }

    /// Stops this host and starts another on the same data dir without
    /// `--plugin`: it must restore the plugin that was active.
    pub fn restart_without_plugin_flag(self) -> Host {
        let builder = self.builder.clone().without_plugin_flag();
        self.restart(builder)
    }

    fn restart(mut self, builder: HostBuilder) -> Host {
        let _ = self.process.kill();
        let tmp = self._tmp.take();
        let mut next = builder.data_dir(&self.data_dir).start();
        next._tmp = tmp;
        next
    }

    /// Stops the host, keeping its data dir for another host to open.
    pub fn stop(mut self) -> DataDir {
        let _ = self.process.kill();
        DataDir { path: self.data_dir.clone(), postgres: self.builder.postgres.clone(), _tmp: self._tmp.take() }
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends a signal (`KILL`, `STOP`, `CONT`, `TERM`) to the host process.
    pub fn signal(&self, signal: &str) {
        let signal = match signal {
            "KILL" => Signal::Kill,
            "STOP" => Signal::Stop,
            "CONT" => Signal::Cont,
            "TERM" => Signal::Term,
            other => panic!("no such signal here: {other}"),
        };
        self.process.signal(signal).unwrap_or_else(|e| panic!("kill -{signal:?} failed: {e}"));
    }

    /// Plugin calls this host has started (fresh instances made), from
    /// `/metrics`: to know that a request is running in its plugin.
    pub fn plugin_calls_started(&self) -> u64 {
        self.metric("notes_plugin_instances_total{source=\"fresh\"}")
    }

    /// A counter from `/metrics`, named with its labels as the host prints
    /// them (`name{label="value",…}`); 0 if the host has not counted it yet.
    pub fn metric(&self, series: &str) -> u64 {
        self.get("/metrics")
            .expect(200)
            .body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.data_dir)).unwrap_or_default()
    }

    // ---- raw HTTP ---------------------------------------------------------

    pub fn request(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        self.request_bytes(method, path, body.map(|b| b.as_bytes().to_vec()), headers)
    }

    pub fn request_bytes(&self, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Resp {
        self.try_request(method, path, body, headers).unwrap_or_else(|e| panic!("{method} {path} failed: {e}; host log:\n{}", self.log()))
    }

    /// Like `request_bytes`, but a broken connection (the host was killed) is
    /// an `Err` instead of a panic.
    pub fn try_request(&self, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Result<Resp, String> {
        let body = body.map(|bytes| Body { content_type: "application/json".into(), bytes });
        self.client.request(method, path, body, headers).map(Resp::from).map_err(|e| e.to_string())
    }

    /// The typed client's answer; a failure to get one panics with the host's log.
    fn answer(&self, reply: Result<notes_client::Response, TransportError>) -> Resp {
        reply.map(Resp::from).unwrap_or_else(|e| panic!("{e}; host log:\n{}", self.log()))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.request("POST", path, Some(&body.to_string()), &[])
    }

    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.request("PUT", path, Some(&body.to_string()), &[])
    }

    pub fn patch(&self, path: &str, body: Value) -> Resp {
        self.request("PATCH", path, Some(&body.to_string()), &[])
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[])
    }

    // ---- the design note's vocabulary (ARCHITECTURE.md, "Words") --------------------------------------------

    /// Creates an account; returns its id.
    pub fn create_account(&self, is_migrating: bool) -> String {
        let account = NewAccount { id: None, name: "Ada".into(), is_migrating };
        let r = self.answer(self.client.create_account(&account)).expect(201);
        r.json()["id"].as_str().expect("id").to_owned()
    }

    pub fn set_migrating(&self, account: &str, on: bool) -> Resp {
        self.answer(self.client.patch_account(account, &AccountChange { name: None, is_migrating: Some(on) }))
    }

    /// The account's `isMigrating`, as this host answers it.
    pub fn is_migrating(&self, account: &str) -> bool {
        self.answer(self.client.get_account(account)).expect(200).json()["isMigrating"].as_bool().expect("isMigrating")
    }

    /// Creates a note; returns its id.
    pub fn create_note(&self, account: &str, content: &str) -> String {
        let r = self.answer(self.client.create_note(account, &NewNote { id: None, content: content.into() })).expect(201);
        r.json()["id"].as_str().expect("id").to_owned()
    }

    pub fn get_note(&self, account: &str, note: &str) -> Resp {
        self.answer(self.client.get_note(account, note))
    }

    pub fn update_note(&self, account: &str, note: &str, content: &str) -> Resp {
        self.answer(self.client.update_note(account, note, content))
    }

    pub fn delete_note(&self, account: &str, note: &str) -> Resp {
        self.answer(self.client.delete_note(account, note))
    }

    /// The account's note ids, as listed through the plugin.
    pub fn list_notes(&self, account: &str) -> Vec<String> {
        let r = self.answer(self.client.list_notes(account)).expect(200);
        serde_json::from_value(r.json()).expect("array of ids")
    }

    /// Where the note is stored right now: (legacy, new).
    pub fn placement(&self, account: &str, note: &str) -> (bool, bool) {
        let r = self.answer(self.client.placement(account, note));
        match r.status {
            404 => (false, false),
            _ => {
                let v = r.expect(200).json();
                (v["legacy"].as_bool().unwrap(), v["new"].as_bool().unwrap())
            }
        }
    }

    /// (legacyNotes, newNotes) from the migration endpoint.
    pub fn counts(&self, account: &str) -> (u64, u64) {
        let v = self.answer(self.client.migration(account)).expect(200).json();
        (v["legacyNotes"].as_u64().unwrap(), v["newNotes"].as_u64().unwrap())
    }

    /// Uploads a plugin (`POST /plugins`).
    pub fn push_plugin(&self, plugin: Plugin) -> Resp {
        self.answer(self.client.push_plugin(plugin.bytes()))
    }

    /// Uploads (if needed) and activates a plugin; returns its digest.
    pub fn activate(&self, plugin: Plugin) -> String {
        let pushed = self.push_plugin(plugin);
        assert!(pushed.status == 200 || pushed.status == 201, "push failed: {}", pushed.body);
        let digest = pushed.json()["digest"].as_str().unwrap().to_owned();
        self.answer(self.client.activate_plugin(&digest)).expect(200);
        digest
    }

    /// `GET /plugins`.
    pub fn plugins(&self) -> Value {
        self.answer(self.client.list_plugins()).expect(200).json()
    }

    /// The failure a 500 from a plugin stands for, as an operator reads it
    /// at `GET /plugins/{digest}/errors` (the active plugin's, by the short
    /// digest `X-Plugin` shows), after checking that the client was told
    /// only its id and not `hidden`.
    #[track_caller]
    pub fn plugin_fault(&self, failed: &Resp, hidden: &str) -> Value {
        assert_eq!(failed.status, 500, "{}", failed.body);
        assert!(!failed.body.contains(hidden), "the client must not see the plugin's message {hidden:?}: {}", failed.body);
        let id = failed.json()["errorId"].as_str().unwrap_or_else(|| panic!("no errorId in {}", failed.body)).to_owned();
        let digest = self.plugins()["active"]["digest"].as_str().expect("active digest").to_owned();
        let x_plugin = failed.header("x-plugin").unwrap_or_else(|| panic!("a plugin's 500 names its plugin in X-Plugin: {}", failed.body));
        assert!(x_plugin.ends_with(&format!("; digest={}", &digest[..12])), "X-Plugin {x_plugin:?} names the active plugin's digest");
        let path = format!("/plugins/{}/errors", &digest[..12]);
        assert!(failed.error().contains(&path), "the message names where an operator reads the failure, {path}: {}", failed.body);
        let faults = self.get(&path).expect(200).json();
        assert_eq!(faults["digest"], digest.as_str());
        let fault = faults["errors"].as_array().expect("errors").iter().find(|f| f["id"] == id.as_str()).cloned();
        let fault = fault.unwrap_or_else(|| panic!("failure {id} is not among the plugin's errors: {faults}"));
        assert!(fault["message"].as_str().unwrap().contains(hidden), "the operator sees the message: {fault}");
        fault
    }

    /// The `name@version` of a note request's `X-Plugin`: which plugin
    /// serves now.
    pub fn serving_plugin(&self, account: &str) -> String {
        let r = self.answer(self.client.list_notes(account)).expect(200);
        plugin_label(r.header("x-plugin").expect("X-Plugin header")).to_owned()
    }

    /// Opens one of the host's SQLite files directly (as an operator or a
    /// failing disk would).
    pub fn sqlite(&self, file: &str) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.data_dir.join(file)).expect("open sqlite");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }
}

/// The test-only switch that turns off the fleet gate and the flip barrier.
pub const UNSAFE_NO_FLEET_SAFETY: &str = "--unsafe-no-fleet-safety";

/// The faulty plugin's `fault:slow` spins about 0.2 s of CPU: more than a
/// call may use at full speed before the host paces it. Tests that need a
/// request to stay in flight that long turn pacing off.
pub const NO_PACING: [&str; 2] = ["--plugin-pacing-after-ms", "0"];

/// Several hosts on one data dir (the embedded fleet), named `host-0`,
/// `host-1`, …; all killed when dropped, then the dir is deleted.
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub dir: PathBuf,
    _tmp: TempDir,
}

impl Fleet {
    /// One host per plugin, each with `args`.
    pub fn of(plugins: &[Plugin], args: &[&str]) -> Fleet {
        Fleet::start(
            plugins
                .iter()
                .map(|p| args.iter().fold(Host::builder().plugin(*p), |b, a| b.arg(*a)))
                .collect(),
        )
    }

    pub fn start(builders: Vec<HostBuilder>) -> Fleet {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let hosts = builders.into_iter().enumerate().map(|(i, b)| Fleet::named(b, i).data_dir(&dir).start()).collect();
        Fleet { hosts, dir, _tmp: tmp }
    }

    fn named(builder: HostBuilder, i: usize) -> HostBuilder {
        builder.arg("--host-name").arg(format!("host-{i}"))
    }

    /// Replaces host `i` (killed if still running) with a new process from
    /// `builder`, under the same name.
    pub fn restart(&mut self, i: usize, builder: HostBuilder) {
        let _ = self.hosts[i].process.kill();
        self.hosts[i] = Fleet::named(builder, i).data_dir(&self.dir).start();
    }

    /// `GET /hosts` as seen from host `i`: the names of the hosts listed.
    pub fn host_names(&self, i: usize) -> Vec<String> {
        let hosts = self.hosts[i].answer(self.hosts[i].client.hosts()).expect(200).json();
        hosts.as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap().to_owned()).collect()
    }
}

/// Polls `condition` until it holds; panics with `what` after 10 s. For
/// states that arrive eventually (a heartbeat, a pruned host), not timing.
#[track_caller]
/// The `name@version` of an `X-Plugin` value (`name@version; digest=…`).
pub fn plugin_label(x_plugin: &str) -> &str {
    x_plugin.split(';').next().unwrap_or(x_plugin).trim()
}

pub fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), condition)
}

/// `eventually`, for something that takes longer than 10 s on a slow machine.
#[track_caller]
pub fn eventually_within(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const LEGACY: (bool, bool) = (true, false);
pub const NEW: (bool, bool) = (false, true);
pub const BOTH: (bool, bool) = (true, true);
pub const NOWHERE: (bool, bool) = (false, false);
