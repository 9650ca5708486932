//! The plugin catalog: which plugins were uploaded, and which each host had
//! active when (`GET /plugins`). The newest activation of a host is its
//! active plugin, so it survives a restart.
//!
//! One owner per store of it: the [`Catalog`] trait, with
//! [`SqliteCatalog`] (`plugins.db`; the only code that runs SQL on it),
//! [`PostgresCatalog`] (the fleet's coordination database, plugin bytes
//! included) and [`MemoryCatalog`] (one process, for in-process tests). A catalog is
//! opened for one host (its `--host-name`): activations are recorded and
//! read per host.
//!
//! [`PluginLoader`] is the other half of a registry: turning uploaded bytes
//! into a router. `plugins::registry::Registry` does it with wasmtime; the
//! in-process seam (crate `notes-in-process`) with native routers.

mod postgres;
mod sqlite;

use std::sync::Arc;

pub use crate::router::Instances;
use crate::router::Router;

pub use postgres::PostgresCatalog;
pub use sqlite::SqliteCatalog;

/// What the catalog knows of a stored plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRecord {
    pub digest: String,
    pub name: String,
    pub version: String,
    pub supports_migration: bool,
    pub wit_version: String,
    pub size_bytes: u64,
    pub uploaded_at_ms: i64,
    /// How its instances are made (`PUT /plugins/{digest}/instances`).
    pub instances: Instances,
}


#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub seq: i64,
    pub digest: String,
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
    pub host: String,
}

/// Plugin records and activation history; every method is one atomic step.
pub trait Catalog: Send + Sync {
    /// Records a plugin, or (already recorded) the sha256 of its artifact.
    /// A catalog shared by hosts that share no files keeps `wasm` too.
    fn insert(&self, record: &PluginRecord, artifact_sha256: &str, wasm: &[u8]) -> anyhow::Result<()>;
    /// The plugin's bytes, if this catalog keeps them (`None` for
    /// `plugins.db`, whose data dir's files are the bytes).
    fn wasm(&self, digest: &str) -> anyhow::Result<Option<Vec<u8>>>;
    fn record(&self, digest: &str) -> anyhow::Result<Option<PluginRecord>>;
    /// Every plugin, oldest upload first.
    fn records(&self) -> anyhow::Result<Vec<PluginRecord>>;
    /// The recorded sha256 of the plugin's precompiled artifact; `None` if
    /// there is no such plugin, `Some("")` if none is recorded.
    fn artifact_sha256(&self, digest: &str) -> anyhow::Result<Option<String>>;
    fn set_artifact_sha256(&self, digest: &str, sha256: &str) -> anyhow::Result<()>;
    /// Every activation of every host, oldest first.
    fn history(&self) -> anyhow::Result<Vec<Activation>>;
    /// This host's newest activation.
    fn active_digest(&self) -> anyhow::Result<Option<String>>;
    /// The plugin this host had active before the current one.
    fn previous_digest(&self) -> anyhow::Result<Option<String>>;
    fn record_activation(&self, digest: &str, actor: &str, reason: &str, now_ms: i64) -> anyhow::Result<()>;
    /// Sets how the plugin's instances are made; `false` if there is no such plugin.
    fn set_instances(&self, digest: &str, instances: Instances) -> anyhow::Result<bool>;
}

/// How a plugin came to be in memory: measured, for `GET /plugins`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// True if loaded from the precompiled artifact (no compilation).
    pub from_artifact: bool,
    pub millis: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The upload is not a plugin this host can run (HTTP 422).
    #[error("{0}")]
    Rejected(String),
    #[error("no plugin with digest {0}")]
    Unknown(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Turns uploads into routers: validates and stores them (recording them in
/// the catalog), and loads them back by digest.
pub trait PluginLoader: Send + Sync {
    /// Validates and stores an upload; does not activate it. Returns its
    /// record and whether it is new (an identical upload is stored once).
    fn push(&self, wasm: &[u8], now_ms: i64) -> Result<(PluginRecord, bool), RegistryError>;
    /// The plugin with this digest, ready to route.
    fn load(&self, digest: &str) -> Result<(Arc<dyn Router>, LoadReport), RegistryError>;
    /// Runs the conformance kit's contract cases on an upload, on this
    /// host's own engine and limits (`POST /plugins?check=true`); stores
    /// nothing. `Rejected` if it cannot even be loaded.
    fn check(&self, wasm: &[u8]) -> Result<Checked, RegistryError>;
}

/// What the conformance kit found on an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `name@version`.
    pub plugin: String,
    /// Each failing case: its name, and what differed.
    pub failed: Vec<String>,
}

/// The first 12 hex digits of a digest, for messages.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// A plugin's digest: the sha256 of its bytes, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
