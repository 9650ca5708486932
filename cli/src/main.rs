//! The `notes-host` command line: `serve` runs the server crate
//! (`notes_host`); `plugin`, `sim` and `launch` are clients of it
//! (`notes_client`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use notes_host::app::WatchConfig;
use notes_host::fleet::FleetSettings;
use notes_host::api::server::ConnectionLimits;
use notes_host::plugins::PluginLimits;
use notes_host::backends::{Location, PostgresBackends, StoreChoice, StorePluginSource};
use notes_host::plugins::store::{HttpGrant, StoreGrant};
use notes_host::serve::{RouterChoice, ServeConfig, serve};

mod launch;
mod logs;

#[derive(Parser)]
#[command(name = "notes-host", version, about = "A notes service whose storage routing is a WebAssembly plugin")]
struct Cli {
    /// Log lines on stderr: `text` for people, `json` (one object per line,
    /// with the request id of a request's lines) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NOTES_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Manage the plugins of a running host (over its HTTP API).
    Plugin(notes_client::plugin_cli::PluginArgs),
    /// Run a migration on a running host: backfill, bulk rollback and verify
    /// jobs (with progress bars), the rollout and its kill switch, status.
    Migrate(notes_client::migrate_cli::MigrateArgs),
    /// Strict-client simulator: drives hosts with N accounts, checks every
    /// read against what was acknowledged, optionally with chaos (random
    /// flips, host restarts). Exits 1 on any lost, stale, duplicated or
    /// resurrected note.
    Sim(notes_client::sim::SimArgs),
    /// Start hosts (`serve`) on one data dir, print one JSON line per host
    /// once all listen (`{"url":…,"pid":…}`), keep them until stdin closes
    /// or SIGTERM/SIGINT, then stop them. For scripts (the benchmarks).
    Launch(launch::LaunchArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (what `GET /openapi.json`
    /// serves; committed as docs/openapi.json).
    Openapi,
    /// Move a service between backends.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy a SQLite data dir (every host stopped) into empty PostgreSQL
    /// databases: accounts, flags, keys, audit log, jobs, notes with their
    /// versions and tombstones, plugins and their history; then check every
    /// count. Serve it afterwards with the same --coordination, --legacy-store
    /// and --new-store URLs.
    Copy(CopyArgs),
}

#[derive(clap::Args)]
struct CopyArgs {
    /// The data dir to copy (it is only read).
    #[arg(long, value_name = "DATA_DIR")]
    from: PathBuf,
    /// PostgreSQL database for the coordination state and the plugins.
    #[arg(long, value_name = "URL", env = "NOTES_COORDINATION", hide_env_values = true)]
    coordination: String,
    /// PostgreSQL database for the legacy store.
    #[arg(long, value_name = "URL", env = "NOTES_LEGACY_STORE", hide_env_values = true)]
    legacy_store: String,
    /// PostgreSQL database for one new-store shard, once per shard of the
    /// data dir, in shard order.
    #[arg(long, value_name = "URL")]
    new_store: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the SQLite files (accounts.db, legacy.db, new-shard-N.db); created if missing.
    /// With --coordination, only this host's cache of plugin files.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// PostgreSQL database of the fleet's shared state (accounts and flags,
    /// flips, hosts, jobs, audit log, plugins), e.g.
    /// postgres://notes@db.internal/notes_coordination. Hosts then share
    /// nothing but PostgreSQL. Needs --legacy-store.
    #[arg(long, value_name = "URL", env = "NOTES_COORDINATION", hide_env_values = true, requires = "legacy_store")]
    coordination: Option<String>,
    /// The legacy store: a PostgreSQL database (needs --coordination;
    /// `?schema=NAME` puts it in a schema of that database, beside the
    /// shards), or `plugin:FILE.wasm`, a store plugin serving it from another system
    /// (a data dir's legacy store; see --store-config, --store-allow-http).
    /// A data dir keeps the legacy store it was created with.
    #[arg(long, value_name = "URL|plugin:FILE.wasm", env = "NOTES_LEGACY_STORE", hide_env_values = true)]
    legacy_store: Option<String>,
    /// A configuration value for the store plugin (`config.get(KEY)`), such
    /// as its upstream's URL or a token; repeat for each. Never logged.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_store_config)]
    store_config: Vec<(String, String)>,
    /// An origin (http://host:port) the store plugin may send HTTP requests
    /// to; repeat for each. Any other origin is refused, and the log names it.
    #[arg(long, value_name = "ORIGIN")]
    store_allow_http: Vec<String>,
    /// Longest a store plugin's call may take, its upstream's answers included (503 past it).
    #[arg(long, value_name = "MS", default_value_t = notes_host::plugins::store::DEFAULT_STORE_DEADLINE.as_millis() as u64)]
    store_deadline_ms: u64,
    /// A store plugin's connect timeout to an allowed origin.
    #[arg(long, value_name = "MS", default_value_t = notes_host::plugins::store::http::DEFAULT_CONNECT_TIMEOUT_MS)]
    store_connect_timeout_ms: u64,
    /// A store plugin's wait for the response's headers from an allowed origin.
    #[arg(long, value_name = "MS", default_value_t = notes_host::plugins::store::http::DEFAULT_RESPONSE_TIMEOUT_MS)]
    store_response_timeout_ms: u64,
    /// Largest response a store plugin may read from an allowed origin.
    #[arg(long, value_name = "MIB", default_value_t = notes_host::plugins::store::http::DEFAULT_MAX_RESPONSE_MIB)]
    store_max_response_mib: u64,
    /// PostgreSQL database of one new-store shard (or `?schema=NAME`, a
    /// schema of one); give it once per shard, always in the same order
    /// (none: plain mode). Needs --coordination;
    /// replaces --shards. Or `plugin:FILE.wasm` (once): a store plugin
    /// serving a data dir's whole new store (see --new-store-config,
    /// --new-store-allow-http).
    #[arg(long, value_name = "URL|plugin:FILE.wasm", conflicts_with = "shards")]
    new_store: Vec<String>,
    /// A configuration value for the new store's store plugin; repeat for each. Never logged.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_store_config)]
    new_store_config: Vec<(String, String)>,
    /// An origin (http://host:port) the new store's store plugin may send HTTP requests to.
    #[arg(long, value_name = "ORIGIN")]
    new_store_allow_http: Vec<String>,
    /// Plugin component (.wasm) to store in the registry and activate.
    /// Default: the plugin that was active when the host last ran on this data
    /// dir; in a new data dir, the migrate plugin built by this repo
    /// (target/plugins/migrate.wasm, next to the binary's target dir).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Number of new-store shard files; 0 runs without a new store (plain mode).
    /// Fixed when the data dir is created.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Bearer token required on every route but /healthz. Without one the host
    /// only listens on loopback.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    admin_token: Option<String>,
    /// The admin token, read once at start from this file (one line; a
    /// trailing newline is dropped), so it appears in no process list or
    /// environment. The same checks as --admin-token apply.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Longest a plugin call may run before it is stopped (request gets 503).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    plugin_deadline_ms: u64,
    /// CPU a plugin call may use at full speed; after it, the call is paced
    /// to about 5% of a core until its deadline, so a looping plugin leaves
    /// the CPUs to other requests. 0 turns pacing off.
    #[arg(long, default_value_t = PluginLimits::default().pacing_after.map_or(0, |d| d.as_millis() as u64), value_name = "MS")]
    plugin_pacing_after_ms: u64,
    /// Cap on all the linear memory of one plugin instance together; growing
    /// past it fails the call (500).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    plugin_memory_mib: usize,
    /// Cap on all the table elements of one plugin instance together.
    #[arg(long, default_value_t = PluginLimits::default().table_elements, value_name = "ELEMENTS")]
    plugin_table_elements: usize,
    /// Plugin instances alive at once, over all plugins; a request that finds
    /// none free gets 503.
    #[arg(long, default_value_t = PluginLimits::default().max_instances, value_name = "N")]
    plugin_max_instances: u32,
    /// UNSAFE for plugins you did not write: keep up to N plugin instances
    /// after a call and reuse them for later requests of any account, so a
    /// plugin can carry one account's data into another's request. Saves a
    /// few microseconds per call. 0 (the default): a fresh instance per request.
    #[arg(long, default_value_t = 0, value_name = "N")]
    unsafe_reuse_instances: usize,
    /// What routes note requests: the Wasm plugin, or the same migrate
    /// router compiled into the host (a benchmark baseline). `--strategy`
    /// is its older name.
    #[arg(long, alias = "strategy", value_enum, default_value_t = RouterChoice::Plugin)]
    router: RouterChoice,
    /// Instruction budget per plugin call (wasmtime fuel); off when absent.
    #[arg(long, value_name = "UNITS")]
    plugin_fuel: Option<u64>,
    /// Largest request body accepted (413 above).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Longest note content, in bytes (Notely's limit; 400 above).
    #[arg(long, default_value_t = notes_host::app::DEFAULT_MAX_CONTENT_BYTES, value_name = "BYTES")]
    max_content_bytes: usize,
    /// Longest account name, in bytes (Notely's limit; 400 above).
    #[arg(long, default_value_t = notes_host::app::DEFAULT_MAX_NAME_BYTES, value_name = "BYTES")]
    max_name_bytes: usize,
    /// A request's headers must arrive within this; it also closes a
    /// keep-alive connection that sends nothing for this long.
    #[arg(long, default_value_t = ConnectionLimits::default().header_read_timeout.as_millis() as u64, value_name = "MS")]
    header_read_timeout_ms: u64,
    /// A request's body must arrive within this (else 408).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    body_read_timeout_ms: u64,
    /// Wrong credentials (admin token or account key) one client address may
    /// send at once; past them it gets 429 for wrong credentials, one more
    /// allowed each second. The right credentials always pass.
    #[arg(long, default_value_t = notes_host::api::DEFAULT_AUTH_FAILURE_BURST, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    auth_failure_burst: u32,
    /// Connections open at once; at the cap, new ones wait in the listen
    /// backlog (keep it under the file-descriptor limit, `ulimit -n`).
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Connections open at once from one client address; more are closed at
    /// once. Behind a proxy every client has the proxy's address: raise it.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections_per_client as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_client: u64,
    /// Largest plugin upload accepted by POST /plugins.
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    max_plugin_bytes: usize,
    /// Automatic rollback watches this many first requests of a newly activated plugin...
    #[arg(long, default_value_t = WatchConfig::PROBATION.requests)]
    probation_requests: u32,
    /// ...and rolls back when more than this share of them fail (trap or deadline).
    #[arg(long, default_value_t = WatchConfig::PROBATION.max_failure_share, value_parser = share)]
    probation_max_failure_share: f64,
    /// After probation too, a circuit breaker judges every block of this many
    /// requests of the active plugin...
    #[arg(long, default_value_t = WatchConfig::BREAKER.requests, value_parser = clap::value_parser!(u32).range(1..))]
    breaker_requests: u32,
    /// ...and rolls the plugin back (or suspends it, with nothing to roll back
    /// to) when more than this share of a block failed.
    #[arg(long, default_value_t = WatchConfig::BREAKER.max_failure_share, value_parser = share)]
    breaker_max_failure_share: f64,
    /// Memory SQLite may keep for page caches, over all its connections
    /// together. Past it, SQLite reuses cached pages instead of allocating
    /// more; a dropped page is read again from the kernel's page cache.
    #[arg(long, default_value_t = (notes_host::serve::DEFAULT_SQLITE_CACHE_BYTES >> 20) as u64, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    sqlite_cache_mib: u64,
    /// This host's name in the fleet (GET /hosts, plugin history). Default: the --listen value.
    #[arg(long)]
    host_name: Option<String>,
    /// Longest a change of isMigrating waits for every host to drain the
    /// account's requests; then it fails and changes nothing (503).
    #[arg(long, default_value_t = FleetSettings::default().flip_timeout.as_millis() as u64, value_name = "MS")]
    flip_timeout_ms: u64,
    /// Longest a note request waits while its account's isMigrating is being
    /// changed; then it fails (503) without running.
    #[arg(long, default_value_t = FleetSettings::default().flip_wait.as_millis() as u64, value_name = "MS")]
    flip_wait_ms: u64,
    /// Note requests one account may run at once on this host; more get 429
    /// with Retry-After, so one account (say, one whose plugin calls loop)
    /// cannot take every thread from the others.
    #[arg(long, default_value_t = FleetSettings::default().max_requests_per_account, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_per_account: u32,
    /// A host whose heartbeat is older than this is shown as unresponsive in
    /// GET /hosts (it is dropped when its process ends).
    #[arg(long, default_value_t = FleetSettings::default().host_timeout.as_millis() as u64, value_name = "MS")]
    host_timeout_ms: u64,
    /// TEST ONLY: turn off the fleet-wide deployment gate and the flip drain
    /// barrier, to reproduce the data loss they prevent. Never in production.
    #[arg(long, hide = true)]
    unsafe_no_fleet_safety: bool,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

fn default_plugin() -> PathBuf {
    // target/release/notes-host -> target/plugins/migrate.wasm
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|target| target.join("plugins").join("migrate.wasm")))
        .unwrap_or_else(|| PathBuf::from("target/plugins/migrate.wasm"))
}

/// The admin token in `file`: its one line, without the newline an editor
/// or `echo` leaves. Anything else (an empty file, more lines, spaces) is
/// left for the token's own checks to refuse, naming the file.
/// Where `serve` finds its databases: a data dir (each store its SQLite
/// files or a store plugin), or PostgreSQL.
fn location(args: &ServeArgs) -> anyhow::Result<Location> {
    let legacy_plugin = args.legacy_store.as_deref().and_then(|s| s.strip_prefix("plugin:"));
    let new_plugins: Vec<&str> = args.new_store.iter().filter_map(|s| s.strip_prefix("plugin:")).collect();
    let granted = |config: &[(String, String)], allow: &[String]| !config.is_empty() || !allow.is_empty();
    let legacy_granted = granted(&args.store_config, &args.store_allow_http);
    let new_granted = granted(&args.new_store_config, &args.new_store_allow_http);
    if let Some(coordination) = &args.coordination {
        if legacy_plugin.is_some() || !new_plugins.is_empty() {
            anyhow::bail!("a store plugin (plugin:FILE.wasm) serves a data dir's store (the host fences its writes with the data dir's files, on one machine); on PostgreSQL (--coordination) each store is a database URL");
        }
        if legacy_granted || new_granted {
            anyhow::bail!("--store-config, --store-allow-http and their --new-store-… twins are for a store plugin (plugin:FILE.wasm)");
        }
        let legacy_store = args.legacy_store.clone().ok_or_else(|| anyhow::anyhow!("--coordination needs --legacy-store"))?;
        return Ok(Location::Postgres(PostgresBackends { coordination: coordination.clone(), legacy_store, new_stores: args.new_store.clone() }));
    }
    if args.legacy_store.is_some() && legacy_plugin.is_none() {
        anyhow::bail!("--legacy-store URL (a PostgreSQL database) needs --coordination; for a store plugin write plugin:FILE.wasm");
    }
    if new_plugins.len() != args.new_store.len() {
        anyhow::bail!("--new-store URL (a PostgreSQL database) needs --coordination; for a store plugin write plugin:FILE.wasm");
    }
    if new_plugins.len() > 1 {
        anyhow::bail!("one --new-store plugin:FILE.wasm serves the whole new store (its upstream shards it, if it must)");
    }
    let choice = |plugin: Option<&str>, config: &[(String, String)], allow: &[String], flags: &str| -> anyhow::Result<StoreChoice> {
        let Some(file) = plugin else {
            if granted(config, allow) {
                anyhow::bail!("{flags} are for a store plugin (plugin:FILE.wasm), and none is given");
            }
            return Ok(StoreChoice::Sqlite);
        };
        let allowed = allow.iter().map(|o| notes_host::plugins::store::http::parse_origin(o)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(StoreChoice::Plugin(StorePluginSource {
            wasm: PathBuf::from(file),
            grant: StoreGrant {
                config: config.iter().cloned().collect(),
                http: HttpGrant {
                    allowed,
                    connect_timeout: Duration::from_millis(args.store_connect_timeout_ms.max(1)),
                    response_timeout: Duration::from_millis(args.store_response_timeout_ms.max(1)),
                    max_response_bytes: args.store_max_response_mib.saturating_mul(1 << 20),
                },
            },
            deadline: Duration::from_millis(args.store_deadline_ms.max(1)),
        }))
    };
    Ok(Location::DataDir {
        new_shards: args.shards,
        legacy: choice(legacy_plugin, &args.store_config, &args.store_allow_http, "--store-config and --store-allow-http")?,
        new: choice(new_plugins.first().copied(), &args.new_store_config, &args.new_store_allow_http, "--new-store-config and --new-store-allow-http")?,
        sqlite_cache_bytes: (args.sqlite_cache_mib << 20) as i64,
    })
}

/// `KEY=VALUE` of `--store-config`.
fn parse_store_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

fn read_token_file(file: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read the admin token file {}", file.display()))?;
    let token = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if token.is_empty() {
        anyhow::bail!("the admin token file {} is empty", file.display());
    }
    notes_host::api::AdminToken::new(token.to_owned()).with_context(|| format!("in the admin token file {}", file.display()))?;
    Ok(token.to_owned())
}

/// glibc's malloc and free were ≈12% of a request's CPU; mimalloc takes
/// about a third of that. Its freed pages go back through
/// `notes_host::freed_memory` (BENCHMARKS, "Memory after a burst").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `notes-host migrate status | head -1` ends quietly instead of
    // panicking in println!; the servers and launchers keep Rust's default.
    if !matches!(cli.command, Command::Serve(_) | Command::Launch(_) | Command::Sim(_)) {
        notes_client::exit_quietly_on_broken_pipe();
    }
    logs::init(matches!(cli.log_format, LogFormat::Json), std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match cli.command {
        Command::Serve(args) => {
            let location = match location(&args) {
                Ok(location) => location,
                Err(e) => {
                    eprintln!("notes-host: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let admin_token = match (&args.admin_token_file, args.admin_token) {
                (Some(file), _) => match read_token_file(file) {
                    Ok(token) => Some(token),
                    Err(e) => {
                        eprintln!("notes-host: {e:#}");
                        return ExitCode::FAILURE;
                    }
                },
                // NOTES_ADMIN_TOKEN= (empty) means no token, as unset would.
                (None, token) => token.filter(|t| !t.is_empty()),
            };
            let config = ServeConfig {
                listen: args.listen,
                data_dir: args.data_dir,
                plugin: args.plugin,
                default_plugin: default_plugin(),
                location,
                admin_token,
                limits: PluginLimits {
                    deadline: Duration::from_millis(args.plugin_deadline_ms.max(1)),
                    pacing_after: (args.plugin_pacing_after_ms > 0).then(|| Duration::from_millis(args.plugin_pacing_after_ms)),
                    memory_bytes: args.plugin_memory_mib.saturating_mul(1024 * 1024),
                    table_elements: args.plugin_table_elements,
                    reuse_instances: args.unsafe_reuse_instances,
                    fuel: args.plugin_fuel,
                    max_instances: args.plugin_max_instances,
                },
                max_body_bytes: args.max_body_bytes,
                max_plugin_bytes: args.max_plugin_bytes,
                body_read_timeout: Duration::from_millis(args.body_read_timeout_ms.max(1)),
                auth_failure_burst: args.auth_failure_burst,
                max_content_bytes: args.max_content_bytes,
                max_name_bytes: args.max_name_bytes,
                connections: ConnectionLimits {
                    max_connections: args.max_connections as usize,
                    max_connections_per_client: args.max_connections_per_client as usize,
                    header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
                },
                router: args.router,
                host_name: args.host_name,
                fleet: FleetSettings {
                    flip_timeout: Duration::from_millis(args.flip_timeout_ms.max(1)),
                    flip_wait: Duration::from_millis(args.flip_wait_ms),
                    host_timeout: Duration::from_millis(args.host_timeout_ms.max(1)),
                    max_requests_per_account: args.max_requests_per_account,
                    unsafe_no_fleet_safety: args.unsafe_no_fleet_safety,
                    ..FleetSettings::default()
                },
                probation: WatchConfig { requests: args.probation_requests, max_failure_share: args.probation_max_failure_share },
                breaker: WatchConfig { requests: args.breaker_requests, max_failure_share: args.breaker_max_failure_share },
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_park(notes_host::freed_memory::worker_idle)
                .build()
                .map_err(Into::into)
                .and_then(|rt| rt.block_on(serve(config)))
        }
        Command::Plugin(args) => notes_client::plugin_cli::run(args, &check_plugin),
        Command::Migrate(args) => notes_client::migrate_cli::run(args),
        Command::Launch(args) => launch::run(args),
        Command::Db(DbCommand::Copy(args)) => {
            let to = PostgresBackends { coordination: args.coordination, legacy_store: args.legacy_store, new_stores: args.new_store };
            notes_host::backends::copy::copy_data_dir(&args.from, &to).map(|report| {
                println!(
                    "copied {} account(s), {} key(s), {} audit entr(ies), {} job(s), {} plugin(s) with {} activation(s); \
                     store rows (tombstones included): legacy {}, new shards {:?}; every count checked",
                    report.accounts,
                    report.keys,
                    report.audit_entries,
                    report.jobs,
                    report.plugins,
                    report.activations,
                    report.rows.first().copied().unwrap_or(0),
                    report.rows.get(1..).unwrap_or_default()
                );
            })
        }
        Command::Openapi => {
            print!("{}", notes_host::api::render_openapi(&notes_host::api::openapi_document()));
            Ok(())
        }
        Command::Sim(args) => match notes_client::sim::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `notes-host plugin check --profile store`: the store rules on a store plugin.
fn check_store_plugin(request: notes_client::plugin_cli::CheckRequest<'_>) -> anyhow::Result<bool> {
    use notes_host::plugins::conformance::Outcome;
    if let Some(other) = request.profiles.iter().find(|p| *p != "store") {
        anyhow::bail!("--profile {other} checks a router; a store plugin is checked with --profile store alone");
    }
    let config = request.store_config.iter().map(|pair| parse_store_config(pair).map_err(|e| anyhow::anyhow!("--store-config {pair:?}: {e}"))).collect::<anyhow::Result<_>>()?;
    let allowed = request.store_allow_http.iter().map(|o| notes_host::plugins::store::http::parse_origin(o)).collect::<anyhow::Result<Vec<_>>>()?;
    let grant = StoreGrant { config, http: HttpGrant { allowed, ..HttpGrant::default() } };
    let report = notes_host::plugins::store::kit::check_plugin(request.wasm, grant, notes_host::plugins::store::DEFAULT_STORE_DEADLINE)?;
    println!("{}: {} case(s)", report.plugin, report.cases.len());
    for case in &report.cases {
        match &case.outcome {
            Outcome::Pass => println!("  ok    [store] {}", case.name),
            Outcome::Fail(difference) => {
                println!("  FAIL  [store] {}: {difference}", case.name);
                println!("        why it matters: {}", case.why);
            }
            Outcome::Skipped(why) => println!("  skip  [store] {}: {why}", case.name),
        }
    }
    let failed = report.failed();
    println!("{} passed, {failed} failed", report.cases.len() - failed);
    Ok(failed == 0)
}

/// `notes-host plugin check`: the conformance kit's report, one line per case.
fn check_plugin(request: notes_client::plugin_cli::CheckRequest<'_>) -> anyhow::Result<bool> {
    use notes_host::plugins::conformance::{Outcome, Progress, check_with_progress};
    let (wasm, profiles) = (request.wasm, request.profiles);
    if profiles.iter().any(|p| p == "store") {
        return check_store_plugin(request);
    }
    // On stderr, and only on a terminal (indicatif draws nothing otherwise):
    // the report on stdout stays what scripts read. Compiling a Python or
    // JavaScript plugin takes seconds with nothing else to show.
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    let report = check_with_progress(wasm, profiles, |progress| match progress {
        Progress::Compiling { bytes } => bar.set_message(format!("compiling the plugin ({:.1} MB)…", bytes as f64 / 1e6)),
        Progress::Case { index, total } => bar.set_message(format!("running case {} of {total}…", index + 1)),
    });
    bar.finish_and_clear();
    let report = report?;
    println!("{}: {} case(s)", report.plugin, report.cases.len());
    for case in &report.cases {
        match &case.outcome {
            Outcome::Pass => println!("  ok    [{}] {}", case.profile, case.name),
            Outcome::Fail(difference) => {
                println!("  FAIL  [{}] {}: {difference}", case.profile, case.name);
                println!("        why it matters: {}", case.why);
            }
            Outcome::Skipped(why) => println!("  skip  [{}] {}: {why}", case.profile, case.name),
        }
    }
    let usage = report.usage;
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    println!(
        "instances: {:.1} MiB of linear memory at start, at most {:.1} MiB after a call; {:.0} µs per call over {} calls (a fresh instance each, as served)",
        mib(usage.start_memory_bytes),
        mib(usage.peak_memory_bytes),
        usage.mean_call_micros,
        usage.calls
    );
    let failed = report.failed();
    println!("{} passed, {failed} failed, {} skipped", report.cases.iter().filter(|c| c.outcome == Outcome::Pass).count(),
        report.cases.iter().filter(|c| matches!(c.outcome, Outcome::Skipped(_))).count());
    Ok(failed == 0)
}
