//! Where a service's data lives, and the one seam that opens it.
//!
//! A service lives in one of two places ([`Location`]):
//! - a SQLite **data dir**, one machine: every database a file in it
//!   ([`DataDir`] names them), hosts known by lock files;
//! - **PostgreSQL**, a fleet: the coordination state and the plugin catalog
//!   in one database, each store in its own ([`PostgresBackends`]), hosts
//!   known by leases. The data dir then holds only this host's plugin cache.
//!
//! [`open`] turns a location into the [`Backends`] a host serves from:
//! `serve` starts on them, and `db copy` ([`copy`]) moves a data dir's
//! service into PostgreSQL by the same names. [`layout`] refuses a location
//! opened with another shard count than it was created with, or mixed with
//! files or databases of another service.

pub mod copy;
mod data_dir;
pub mod layout;
mod postgres;

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::coordination::Coordination;
use crate::fleet::liveness::Liveness;
use crate::plugins::store::{StoreGrant, StorePlugin};
use crate::plugins::{PluginLimits, Runtime};
use crate::stores::DataStores;

pub use data_dir::DataDir;
pub use postgres::PostgresBackends;

/// Where a service's databases are.
#[derive(Debug, Clone)]
pub enum Location {
    /// SQLite files in the data dir, with `new_shards` new-store shards (0:
    /// plain mode); SQLite's page caches kept under `sqlite_cache_bytes` over
    /// the whole process (`db::cap_memory`).
    DataDir {
        new_shards: u32,
        legacy: StoreChoice,
        /// A store plugin here replaces the `new_shards` shard files.
        new: StoreChoice,
        sqlite_cache_bytes: i64,
    },
    Postgres(PostgresBackends),
}

impl Location {
    /// How many new-store shards the service has (0: plain mode).
    pub fn new_shards(&self) -> u32 {
        match self {
            Location::DataDir { new: StoreChoice::Plugin(_), .. } => 1,
            Location::DataDir { new_shards, .. } => *new_shards,
            Location::Postgres(pg) => pg.new_stores.len() as u32,
        }
    }
}

/// What serves one of a data dir's stores.
#[derive(Debug, Clone, Default)]
pub enum StoreChoice {
    /// Its SQLite files in the data dir: `legacy.db`, or the new store's shards.
    #[default]
    Sqlite,
    /// A store plugin (`--legacy-store plugin:FILE.wasm`, `--new-store
    /// plugin:FILE.wasm`), with what the operator granted it.
    Plugin(StorePluginSource),
}

/// A store plugin to serve, and what it is granted.
#[derive(Debug, Clone)]
pub struct StorePluginSource {
    pub wasm: PathBuf,
    pub grant: StoreGrant,
    /// How long one of its calls may take, waits on its upstream included.
    pub deadline: Duration,
}

impl StorePluginSource {
    /// Compiles and links the plugin on an engine of its own (the routers'
    /// is made later, by the registry), and asks it who it is.
    pub fn load(&self) -> anyhow::Result<StorePlugin> {
        let wasm = std::fs::read(&self.wasm).with_context(|| format!("cannot read the store plugin {}", self.wasm.display()))?;
        let limits = PluginLimits { deadline: self.deadline, max_instances: STORE_INSTANCES, ..PluginLimits::default() };
        StorePlugin::load(&Runtime::new(limits.clone())?, &wasm, self.grant.clone(), limits)
            .with_context(|| format!("cannot serve {} as a store", self.wasm.display()))
    }
}

/// Store plugin instances alive at once (the store engine's pool): every
/// request in flight calls its store at most once at a time.
const STORE_INSTANCES: u32 = 256;

/// What a host serves from.
pub struct Backends {
    pub coordination: Arc<dyn Coordination>,
    pub catalog: Arc<dyn Catalog>,
    pub stores: DataStores,
    /// How this host tells whether another host still runs.
    pub liveness: Liveness,
}

/// The host opening a location: its name (the catalog records its compiled
/// artifacts under it), its id (its lock file in a data dir) and how long
/// its lease lasts on PostgreSQL.
pub struct Opener<'a> {
    pub host_name: &'a str,
    pub host_id: &'a str,
    pub lease: Duration,
}

/// Opens the service at `location` (`data_dir`: this host's data dir),
/// after its layout checks. Blocking: it may talk to PostgreSQL, whose
/// blocking client must not run on an async worker.
pub fn open(data_dir: &Path, location: &Location, host: &Opener) -> anyhow::Result<Backends> {
    match location {
        Location::DataDir { new_shards, legacy, new, sqlite_cache_bytes } => {
            data_dir::open(data_dir, *new_shards, (legacy, new), *sqlite_cache_bytes, host.host_name, host.host_id)
        }
        Location::Postgres(pg) => postgres::open(pg, host.host_name, host.lease),
    }
}
