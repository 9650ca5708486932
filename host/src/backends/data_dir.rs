//! A service on one machine: every database a SQLite file in the data dir.
//! The one place that names those files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Backends, LegacyStore};
use crate::plugins::store::{PluginStore, StorePlugin};
use crate::stores::versions::VersionTable;
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

    /// The versions and tombstones the host keeps for a store plugin serving
    /// as the legacy store (`stores::versions`), when the plugin keeps none.
    pub fn legacy_versions_db(self) -> PathBuf {
        self.0.join(Self::LEGACY_VERSIONS_DB)
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
    pub(super) const LEGACY_VERSIONS_DB: &'static str = "legacy-versions.db";

    pub(super) fn new_shard_name(i: u32) -> String {
        format!("new-shard-{i}.db")
    }

    /// Whether `name` is one of a data dir's store files.
    pub(super) fn is_store_file(name: &str) -> bool {
        name == Self::LEGACY_DB || name == Self::LEGACY_VERSIONS_DB || (name.starts_with("new-shard-") && name.ends_with(".db"))
    }

    /// The legacy store and `new_shards` new-store shards (none: plain mode).
    pub fn stores(self, new_shards: u32) -> anyhow::Result<DataStores> {
        DataStores::open_sqlite(&self.legacy_db(), &self.new_shards(new_shards))
    }

    fn new_shards(self, new_shards: u32) -> Vec<PathBuf> {
        (0..new_shards).map(|i| self.new_shard_db(i)).collect()
    }

    /// The stores with `legacy` as the legacy store (a store plugin), its
    /// version table in the data dir, and `new_shards` new-store shards.
    fn stores_over(self, legacy: &Arc<StorePlugin>, new_shards: u32) -> anyhow::Result<DataStores> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("a store plugin is opened from within the host's runtime"))?;
        let versions = VersionTable::open(&self.legacy_versions_db())?;
        let legacy = PluginStore::new(legacy.clone(), (!legacy.info().keeps_versions).then_some(versions), runtime)?;
        Ok(DataStores { legacy: Arc::new(legacy), new: DataStores::open_new_shards(&self.new_shards(new_shards))? })
    }
}

/// Checks (or creates) the data dir's layout, then opens its databases.
pub(super) fn open(dir: &Path, new_shards: u32, legacy: &LegacyStore, sqlite_cache_bytes: i64, host_name: &str, host_id: &str) -> anyhow::Result<Backends> {
    let files = DataDir(dir);
    crate::db::cap_memory(sqlite_cache_bytes);
    let stores = match legacy {
        LegacyStore::Sqlite => {
            layout::open_data_dir(dir, new_shards, None, || files.stores(new_shards).map(drop))?;
            files.stores(new_shards)?
        }
        LegacyStore::Plugin(source) => {
            let plugin = Arc::new(source.load()?);
            let name = plugin.info().name.clone();
            tracing::info!(plugin = %plugin.label(), keeps_versions = plugin.info().keeps_versions, "the legacy store is a store plugin");
            layout::open_data_dir(dir, new_shards, Some(&name), || files.stores_over(&plugin, new_shards).map(drop))?;
            files.stores_over(&plugin, new_shards)?
        }
    };
    Ok(Backends {
        coordination: Arc::new(SqliteCoordination::open(&files.accounts_db())?),
        catalog: Arc::new(SqliteCatalog::open(&files.plugins_db(), host_name)?),
        stores,
        liveness: Liveness::lock_files(&files.hosts_dir(), host_id)?,
    })
}
