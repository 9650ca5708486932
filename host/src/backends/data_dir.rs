//! A service on one machine: every database a SQLite file in the data dir.
//! The one place that names those files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Backends;
use super::layout;
use crate::catalog::SqliteCatalog;
use crate::coordination::SqliteCoordination;
use crate::fleet::liveness::Liveness;
use crate::stores::DataStores;

/// The files of a data dir. A data dir on PostgreSQL holds only the plugin
/// cache.
#[derive(Debug, Clone, Copy)]
pub struct DataDir<'a>(pub &'a Path);

impl<'a> DataDir<'a> {
    /// Accounts, flags, flips, hosts, jobs, keys, the audit log, and the
    /// data dir's layout record (`coordination::sqlite`).
    pub fn accounts_db(self) -> PathBuf {
        self.0.join(Self::ACCOUNTS_DB)
    }

    /// Plugin records and the activation history (`catalog::sqlite`).
    pub fn plugins_db(self) -> PathBuf {
        self.0.join("plugins.db")
    }

    /// The legacy store.
    pub fn legacy_db(self) -> PathBuf {
        self.0.join(Self::LEGACY_DB)
    }

    /// New-store shard `i` (the hash of an account id picks its shard).
    pub fn new_shard_db(self, i: u32) -> PathBuf {
        self.0.join(Self::new_shard_name(i))
    }

    /// One lock file per running host (`fleet::liveness`).
    pub fn hosts_dir(self) -> PathBuf {
        self.0.join("hosts")
    }

    /// Uploaded plugins' bytes and their compiled artifacts, by digest
    /// (`plugins::registry::Registry`).
    pub fn plugin_cache(self) -> PathBuf {
        self.0.join("plugins")
    }

    pub(super) const ACCOUNTS_DB: &'static str = "accounts.db";
    pub(super) const LEGACY_DB: &'static str = "legacy.db";

    pub(super) fn new_shard_name(i: u32) -> String {
        format!("new-shard-{i}.db")
    }

    /// Whether `name` is one of a data dir's store files.
    pub(super) fn is_store_file(name: &str) -> bool {
        name == Self::LEGACY_DB || (name.starts_with("new-shard-") && name.ends_with(".db"))
    }

    /// The legacy store and `new_shards` new-store shards (none: plain mode).
    pub fn stores(self, new_shards: u32) -> anyhow::Result<DataStores> {
        let shards = (0..new_shards).map(|i| self.new_shard_db(i)).collect::<Vec<_>>();
        DataStores::open_sqlite(&self.legacy_db(), &shards)
    }
}

/// Checks (or creates) the data dir's layout, then opens its databases.
pub(super) fn open(dir: &Path, new_shards: u32, sqlite_cache_bytes: i64, host_name: &str, host_id: &str) -> anyhow::Result<Backends> {
    let files = DataDir(dir);
    crate::db::cap_memory(sqlite_cache_bytes);
    layout::open_data_dir(dir, new_shards, || files.stores(new_shards).map(drop))?;
    Ok(Backends {
        coordination: Arc::new(SqliteCoordination::open(&files.accounts_db())?),
        catalog: Arc::new(SqliteCatalog::open(&files.plugins_db(), host_name)?),
        stores: files.stores(new_shards)?,
        liveness: Liveness::lock_files(&files.hosts_dir(), host_id)?,
    })
}
