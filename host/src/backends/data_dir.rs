//! A service on one machine: every database a SQLite file in the data dir.
//! The one place that names those files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layout::{StorePluginRecord, StorePlugins};
use super::{Backends, StoreChoice};
use crate::plugins::store::{PluginStore, StorePlugin};
use crate::stores::versions::VersionTable;
use super::layout;
use crate::catalog::SqliteCatalog;
use crate::coordination::SqliteCoordination;
use crate::fleet::liveness::Liveness;
use crate::stores::{DataStore, DataStores, SqliteStore};

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

    /// The host's version table for a store plugin serving as the new store.
    pub fn new_versions_db(self) -> PathBuf {
        self.0.join(Self::NEW_VERSIONS_DB)
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
    pub(super) const NEW_VERSIONS_DB: &'static str = "new-versions.db";

    pub(super) fn new_shard_name(i: u32) -> String {
        format!("new-shard-{i}.db")
    }

    /// Whether `name` is one of a data dir's store files.
    pub(super) fn is_store_file(name: &str) -> bool {
        name == Self::LEGACY_DB || name == Self::LEGACY_VERSIONS_DB || name == Self::NEW_VERSIONS_DB || (name.starts_with("new-shard-") && name.ends_with(".db"))
    }

    /// The legacy store and `new_shards` new-store shards (none: plain mode).
    pub fn stores(self, new_shards: u32) -> anyhow::Result<DataStores> {
        self.stores_with(None, None, new_shards)
    }

    fn new_shards(self, new_shards: u32) -> Vec<PathBuf> {
        (0..new_shards).map(|i| self.new_shard_db(i)).collect()
    }

    /// The data dir's stores: `legacy.db` or `legacy`'s plugin, and
    /// `new_shards` shard files or `new`'s plugin, each plugin over its
    /// version table in the data dir.
    fn stores_with(self, legacy: Option<&Arc<StorePlugin>>, new: Option<&Arc<StorePlugin>>, new_shards: u32) -> anyhow::Result<DataStores> {
        let served = |plugin: &Arc<StorePlugin>, table: PathBuf| -> anyhow::Result<Arc<dyn DataStore>> {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("a store plugin must be opened from within the host's tokio runtime, and this thread is outside it"))?;
            let versions = VersionTable::open(&table)?;
            Ok(Arc::new(PluginStore::new(plugin.clone(), (!plugin.info().keeps_versions).then_some(versions), runtime)?))
        };
        let legacy: Arc<dyn DataStore> = match legacy {
            Some(plugin) => served(plugin, self.legacy_versions_db())?,
            None => Arc::new(SqliteStore::open(&self.legacy_db())?),
        };
        let new = match new {
            Some(plugin) => Some(served(plugin, self.new_versions_db())?),
            None => DataStores::open_new_shards(&self.new_shards(new_shards))?,
        };
        Ok(DataStores { legacy, new })
    }
}

/// Checks (or creates) the data dir's layout, then opens its databases.
pub(super) fn open(
    dir: &Path,
    new_shards: u32,
    (legacy, new): (&StoreChoice, &StoreChoice),
    sqlite_cache_bytes: i64,
    host_name: &str,
    host_id: &str,
) -> anyhow::Result<Backends> {
    let files = DataDir(dir);
    crate::db::cap_memory(sqlite_cache_bytes);
    let load = |choice: &StoreChoice, role: &str| -> anyhow::Result<Option<Arc<StorePlugin>>> {
        let StoreChoice::Plugin(source) = choice else { return Ok(None) };
        let plugin = source.load()?;
        tracing::info!(plugin = %plugin.label(), keeps_versions = plugin.info().keeps_versions, "the {role} is a store plugin");
        // Asked once at start: a misconfiguration (no `url`) is the
        // operator's to fix now, not every client's 400 later; an upstream
        // down now may be up later, and is only said.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            match runtime.block_on(plugin.health()) {
                Ok(()) => {}
                Err(crate::stores::StoreError::Invalid(problem)) => anyhow::bail!("the {role}'s store plugin is misconfigured: {problem}"),
                Err(e) => tracing::warn!(plugin = %plugin.label(), error = %e, "the {role}'s store plugin's upstream does not answer now; its requests will get 503 until it does"),
            }
        }
        Ok(Some(Arc::new(plugin)))
    };
    let (legacy, new) = (load(legacy, "legacy store")?, load(new, "new store")?);
    fn record(p: &Arc<StorePlugin>) -> StorePluginRecord<'_> {
        StorePluginRecord { name: p.info().name.as_str(), keeps_versions: p.info().keeps_versions }
    }
    let plugins = StorePlugins { legacy: legacy.as_ref().map(record), new: new.as_ref().map(record) };
    let new_shards = if new.is_some() { 1 } else { new_shards };
    layout::open_data_dir(dir, new_shards, plugins, || files.stores_with(legacy.as_ref(), new.as_ref(), new_shards).map(drop))?;
    let stores = files.stores_with(legacy.as_ref(), new.as_ref(), new_shards)?;
    Ok(Backends {
        coordination: Arc::new(SqliteCoordination::open(&files.accounts_db())?),
        catalog: Arc::new(SqliteCatalog::open(&files.plugins_db(), host_name)?),
        stores,
        liveness: Liveness::lock_files(&files.hosts_dir(), host_id)?,
    })
}
