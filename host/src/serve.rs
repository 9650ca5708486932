//! `notes-host serve`: opens the data dir, loads the plugin, listens.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::api::server::ConnectionLimits;
use crate::api::{self, AdminToken, ApiConfig};
use crate::app::{App, AppParts, AppSettings, FleetJoin, WatchConfig};
use crate::backends::{self, Backends, Location};
use crate::catalog::PluginLoader;
use crate::clock::{Clock, SystemClock};
use crate::fleet::{FleetSettings, Identity};
use crate::plugins::registry::Registry;
use crate::plugins::{PluginLimits, Runtime};
use crate::router::{NativeRouter, Router};

pub use crate::db::DEFAULT_CACHE_BYTES as DEFAULT_SQLITE_CACHE_BYTES;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Plugin to push and activate at startup. `None`: the registry's active
    /// plugin, or `default_plugin` in a new data dir.
    pub plugin: Option<PathBuf>,
    pub default_plugin: PathBuf,
    /// Where the service's databases are: SQLite files in the data dir, or
    /// PostgreSQL (the data dir then holds only the plugin cache).
    pub location: Location,
    pub admin_token: Option<String>,
    pub limits: PluginLimits,
    pub max_body_bytes: usize,
    pub max_plugin_bytes: usize,
    /// Longest note content and account name, in bytes (400 above).
    pub max_content_bytes: usize,
    pub max_name_bytes: usize,
    /// A request body must arrive within this (408).
    pub body_read_timeout: std::time::Duration,
    /// Wrong credentials one address may send at once before it gets 429s.
    pub auth_failure_burst: u32,
    pub connections: ConnectionLimits,
    pub probation: WatchConfig,
    pub breaker: WatchConfig,
    pub router: RouterChoice,
    /// This host's name in the fleet; `None`: its listen address.
    pub host_name: Option<String>,
    pub fleet: FleetSettings,
}

/// What routes note requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouterChoice {
    /// The active Wasm plugin (the product).
    Plugin,
    /// The migrate router compiled into the host: the benchmark baseline.
    NativeMigrate,
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let admin_token = config.admin_token.clone().map(AdminToken::new).transpose()?;
    if admin_token.is_none() && !config.listen.ip().is_loopback() {
        bail!(
            "protected mode: refusing to listen on {} without an admin token; set --admin-token or NOTES_ADMIN_TOKEN, \
             or listen on a loopback address",
            config.listen
        );
    }
    // Bound first: the fleet registers this host under its real address.
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // On a blocking thread: opening may talk to PostgreSQL, whose blocking
    // client must never run on an async worker (it would panic).
    let app = {
        let config = config.clone();
        Arc::new(tokio::task::spawn_blocking(move || open(&config, addr)).await??)
    };
    tracing::info!(plugin = app.plugins().active().plugin.label(), router = ?config.router, data_dir = %config.data_dir.display(), shards = config.location.new_shards(), "host ready");

    // The first stdout line is the contract scripts and tests rely on.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    if admin_token.is_none() {
        tracing::warn!("no admin token: protected mode, serving on loopback only");
    }

    let router = api::router(
        app.clone(),
        ApiConfig {
            max_body_bytes: config.max_body_bytes,
            max_plugin_bytes: config.max_plugin_bytes,
            body_read_timeout: config.body_read_timeout,
            admin_token,
            auth_failure_burst: config.auth_failure_burst,
        },
    );
    crate::freed_memory::return_memory_when_freed();
    // Migration jobs run beside the requests, on their own thread.
    let stop_jobs = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = crate::app::spawn_job_runner(app.clone(), stop_jobs.clone())?;
    api::server::serve(listener, router, config.connections, shutdown_signal()).await?;
    // A job step in progress finishes (a batch is short), then the runner stops.
    stop_jobs.store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || jobs.join()).await;
    // Requests have finished: leave the fleet now rather than when the last
    // reference goes, so flips stop waiting for this host at once.
    tokio::task::spawn_blocking(move || app.leave_fleet()).await?;
    Ok(())
}

/// Opens everything a host serves from; fails early and clearly.
pub fn open(config: &ServeConfig, addr: SocketAddr) -> anyhow::Result<App> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // The configured address, not the bound one: the name must survive a
    // restart (port 0 binds another port each time).
    let host_name = config.host_name.clone().unwrap_or_else(|| default_host_name(config));
    let identity = Identity { id: uuid::Uuid::new_v4(), name: host_name.clone(), address: format!("http://{addr}") };
    let host_id = identity.id.to_string();
    let opener = backends::Opener { host_name: &host_name, host_id: &host_id, lease: config.fleet.host_timeout };
    let Backends { coordination, catalog, stores, liveness } = backends::open(&config.data_dir, &config.location, &opener)?;
    let registry = Registry::open(&backends::DataDir(&config.data_dir).plugin_cache(), Runtime::new(config.limits.clone())?, catalog.clone())?;
    let clock = Arc::new(SystemClock);
    let digest = match (&config.plugin, catalog.active_digest()?) {
        (None, Some(active)) => active,
        (Some(path), _) => push_file(&registry, path, clock.now_ms())?,
        // A host new to the fleet (a name never seen) runs what the fleet
        // activated last, fetched from the catalog on PostgreSQL; the
        // default plugin only in a new service.
        (None, None) => match catalog.history()?.pop() {
            Some(latest) => latest.digest,
            None => push_file(&registry, &config.default_plugin, clock.now_ms())?,
        },
    };
    let settings = AppSettings {
        probation: config.probation,
        breaker: config.breaker,
        max_note_bytes: config.max_body_bytes,
        max_content_bytes: config.max_content_bytes,
        max_name_bytes: config.max_name_bytes,
        note_turn_wait: config.limits.deadline + std::time::Duration::from_secs(1),
    };
    let native: Option<Arc<dyn Router>> = match config.router {
        RouterChoice::Plugin => None,
        RouterChoice::NativeMigrate => Some(Arc::new(NativeRouter::new(notes_routing::migrate::Migrate))),
    };
    let join = FleetJoin { liveness, identity, settings: config.fleet };
    let parts = AppParts { coordination, stores, catalog, loader: Arc::new(registry), clock, native };
    Ok(App::start(parts, &digest, settings, join)?)
}

/// The `--listen` value; on PostgreSQL, prefixed with the machine's name,
/// since hosts of one fleet run on several machines, maybe on one port.
fn default_host_name(config: &ServeConfig) -> String {
    match config.location {
        Location::DataDir { .. } => config.listen.to_string(),
        Location::Postgres(_) => format!("{}/{}", machine_name(), config.listen),
    }
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn push_file(registry: &Registry, path: &std::path::Path, now_ms: i64) -> anyhow::Result<String> {
    let wasm = std::fs::read(path).with_context(|| {
        format!("cannot read plugin {}; build the plugins with `cargo xtask build` or pass --plugin FILE", path.display())
    })?;
    let (record, _) = registry.push(&wasm, now_ms).with_context(|| format!("plugin {}", path.display()))?;
    Ok(record.digest)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

