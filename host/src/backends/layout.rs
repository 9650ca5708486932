//! What a data dir is: its identity and its layout, recorded twice so that
//! losing one file cannot silently reset it.
//!
//! - `data-dir.json` holds the id and the new-store shard count;
//! - `accounts.db` holds the same pair (table `layout`).
//!
//! A new data dir (none of the files below exist) gets a fresh id, written to
//! `accounts.db` first and to `data-dir.json` last, once the store files
//! exist: a start cut short leaves no identity file, and the next start
//! finishes it. Otherwise
//! a host starts only if both records exist and agree, and every store file
//! the layout names is there. A lost `data-dir.json` is rewritten from
//! `accounts.db`; a lost `accounts.db` (accounts, flags) is refused with a
//! message naming it, because recreating it empty would hide every note:
//! the notes are still in the stores, but no account would own them.
//!
//! The shard count decides which file holds an account's notes; starting a
//! host with another count would send accounts to other files and hide their
//! notes, so later starts must match.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DataDir;
use crate::coordination::{LayoutRecord, PostgresLayout};

const IDENTITY_FILE: &str = "data-dir.json";
const ACCOUNTS_DB: &str = DataDir::ACCOUNTS_DB;
const LEGACY_DB: &str = DataDir::LEGACY_DB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDirIdentity {
    pub id: Uuid,
    pub new_store_shards: u32,
}

/// The store plugins a data dir's stores are served by, by name (`None`:
/// its SQLite files): fixed when the data dir is created, since a start with
/// another store would serve an empty one, and every note in the recorded
/// one would seem gone.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorePlugins<'a> {
    /// `--legacy-store plugin:FILE.wasm`; else `legacy.db`.
    pub legacy: Option<StorePluginRecord<'a>>,
    /// `--new-store plugin:FILE.wasm`; else the `new-shard-N.db` files.
    pub new: Option<StorePluginRecord<'a>>,
}

/// What the layout keeps of a store plugin: its name, and who keeps its
/// notes' versions. A build of the same plugin that changed the latter
/// would lose them (the host's table ignored) or start them over at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorePluginRecord<'a> {
    pub name: &'a str,
    pub keeps_versions: bool,
}

/// Who keeps a store plugin's versions, as recorded (`..._versions` keys).
fn keeper(keeps_versions: bool) -> &'static str {
    if keeps_versions { "the plugin" } else { "the host" }
}

/// Where `accounts.db` records the name of each role's store plugin, the
/// flag that serves it, its SQLite files otherwise, and the host's own
/// table for it (the versions it keeps for a content-only plugin).
const ROLES: [(&str, &str, &str, &str); 2] = [
    ("legacy_store_plugin", "--legacy-store", LEGACY_DB, DataDir::LEGACY_VERSIONS_DB),
    ("new_store_plugin", "--new-store", "new-shard-N.db", DataDir::NEW_VERSIONS_DB),
];

/// Checks the data dir `dir` before anything is opened in it. If it is new,
/// creates its identity, with `create_stores` making the store files in
/// between. `new_shards` is the count this start asks for (1 for a store
/// plugin as the new store), `plugins` the store plugins it serves.
pub fn open_data_dir(
    dir: &Path,
    new_shards: u32,
    plugins: StorePlugins<'_>,
    create_stores: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<DataDirIdentity> {
    // Hosts of a fleet may start on a new data dir at once: one decides.
    let lock_path = dir.join("data-dir.lock");
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let accounts_db = DataDir(dir).accounts_db();
    // Opened only if the file exists, since opening creates it (the new-dir
    // branch opens its own).
    let conn = accounts_db.exists().then(|| LayoutRecord::open(&accounts_db)).transpose()?;
    let file_identity = read_identity_file(dir)?;
    let db_identity = conn.as_ref().map(|conn| read_db_identity(conn, &accounts_db)).transpose()?.flatten();
    let stores = existing_store_files(dir)?;

    let identity = match (file_identity, db_identity) {
        (None, None) if conn.is_none() && stores.is_empty() => {
            let identity = DataDirIdentity { id: Uuid::new_v4(), new_store_shards: new_shards };
            let record = LayoutRecord::open(&accounts_db)?;
            write_db_identity(&record, identity)?;
            for ((key, ..), plugin) in ROLES.iter().zip([plugins.legacy, plugins.new]) {
                if let Some(plugin) = plugin {
                    record.write(&[(*key, plugin.name.to_owned()), (&format!("{key}_versions"), keeper(plugin.keeps_versions).to_owned())])?;
                }
            }
            create_stores()?;
            write_identity_file(dir, identity)?;
            tracing::info!(data_dir = %dir.display(), id = %identity.id, shards = new_shards, "new data dir");
            return Ok(identity);
        }
        (Some(file), Some(db)) if file == db => file,
        (Some(file), Some(db)) => bail!(
            "{ACCOUNTS_DB} in {} belongs to another data dir (it records {} with {} shard(s), {IDENTITY_FILE} records {} with {}); \
             put back this data dir's own {ACCOUNTS_DB}",
            dir.display(),
            db.id,
            db.new_store_shards,
            file.id,
            file.new_store_shards
        ),
        (Some(_), None) => bail!(
            "the data dir {} is missing {ACCOUNTS_DB} (accounts and their isMigrating flags), but {IDENTITY_FILE} says it exists{}; \
             restore {ACCOUNTS_DB} from a backup. Starting would create it empty, and every account's notes would be orphaned",
            dir.display(),
            if stores.is_empty() { String::new() } else { format!(" and these store files are here: {}", stores.join(", ")) }
        ),
        (None, Some(db)) if stores.is_empty() => {
            let conn = conn.as_ref().expect("a record was read from it");
            // The first start was cut short before the stores existed, or the
            // identity file and every store were lost. Only the first may be
            // finished: if accounts exist, their notes were in those stores.
            let accounts = conn.count_accounts()?;
            if accounts > 0 {
                bail!(
                    "the data dir {} has {accounts} account(s) in {ACCOUNTS_DB} but none of its store files ({LEGACY_DB}, \
                     new-shard-N.db) and no {IDENTITY_FILE}: their notes would be silently gone; restore the files from a backup",
                    dir.display()
                );
            }
            // Only with the count it was begun with; another count leaves it
            // to be finished by a start with the right one.
            if db.new_store_shards == new_shards {
                create_stores()?;
                write_identity_file(dir, db)?;
            }
            db
        }
        (None, Some(db)) => {
            // Lost: rewrite it.
            write_identity_file(dir, db)?;
            tracing::warn!(data_dir = %dir.display(), id = %db.id, "{IDENTITY_FILE} was missing; rewritten from {ACCOUNTS_DB}");
            db
        }
        (None, None) if let Some(conn) = conn.as_ref() => {
            // A data dir from before identities: adopt it with the shard count
            // it recorded (checked below), or this start's.
            let identity = DataDirIdentity { id: Uuid::new_v4(), new_store_shards: legacy_layout(conn)?.unwrap_or(new_shards) };
            write_db_identity(conn, identity)?;
            write_identity_file(dir, identity)?;
            identity
        }
        (None, None) => bail!(
            "the data dir {} is missing {ACCOUNTS_DB} (accounts and their isMigrating flags), but holds store files: {}; \
             restore {ACCOUNTS_DB} from a backup, or start on an empty data dir",
            dir.display(),
            stores.join(", ")
        ),
    };
    // Which store serves each role first: its message names the plugin to give.
    for ((key, flag, files, _), plugin) in ROLES.iter().zip([plugins.legacy, plugins.new]) {
        let role = if *flag == "--legacy-store" { "legacy store" } else { "new store" };
        let recorded = conn.as_ref().map(|conn| conn.value(key)).transpose()?.flatten();
        if let (Some(name), Some(plugin), Some(conn)) = (&recorded, plugin, conn.as_ref())
            && *name == plugin.name
        {
            let kept_by = conn.value(&format!("{key}_versions"))?;
            let now = keeper(plugin.keeps_versions);
            if kept_by.as_deref().is_some_and(|was| was != now) {
                bail!(
                    "the store plugin {name:?} serving this data dir's {role} now says {now} keeps its notes' versions, \
                     but {} kept them when the data dir was created: its notes' versions and tombstones would be lost or start over; \
                     serve a build of it that keeps them where they are",
                    kept_by.unwrap_or_default()
                );
            }
        }
        let asked = plugin.map(|p| p.name);
        match (recorded.as_deref(), asked) {
            (recorded, asked) if recorded == asked => {}
            (Some(recorded), Some(asked)) => bail!(
                "this data dir's {role} is served by the store plugin {recorded:?}, not {asked:?}: another store would not hold its notes; \
                 start with {flag} plugin:FILE.wasm of {recorded:?}"
            ),
            (Some(recorded), None) => bail!(
                "this data dir's {role} is served by the store plugin {recorded:?}: start with {flag} plugin:FILE.wasm \
                 (and its configuration and allowed origins); without it the host would serve an empty {files} and every note there would seem gone"
            ),
            (None, Some(asked)) => bail!(
                "this data dir's {role} is {files}, not a store plugin: the store plugin {asked:?} can serve only a data dir created with it \
                 (start it on a new data dir)"
            ),
            (None, None) => unreachable!("equal"),
        }
    }
    if identity.new_store_shards != new_shards {
        bail!(
            "this data dir was created with {n} new-store shard(s), not {new_shards}: \
             another count would send accounts to other shard files and hide their notes; \
             start with --shards {n}",
            n = identity.new_store_shards
        );
    }
    let legacy_file = if plugins.legacy.is_some() { DataDir::LEGACY_VERSIONS_DB } else { LEGACY_DB };
    let new_files: Vec<String> = match plugins.new {
        Some(_) => vec![DataDir::NEW_VERSIONS_DB.to_owned()],
        None => (0..identity.new_store_shards).map(DataDir::new_shard_name).collect(),
    };
    let expected = std::iter::once(legacy_file.to_owned()).chain(new_files);
    let missing: Vec<String> = expected.filter(|f| !dir.join(f).exists()).collect();
    if !missing.is_empty() {
        bail!(
            "the data dir {} is missing {}: its notes would be silently gone; restore the file(s) from a backup",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(identity)
}

/// The identity of an existing data dir, without changing anything in it
/// (`db copy` reads one).
pub fn existing_data_dir(dir: &Path) -> anyhow::Result<DataDirIdentity> {
    read_identity_file(dir)?.ok_or_else(|| {
        anyhow::anyhow!("{} is not a data dir of this host: it has no {IDENTITY_FILE} (start a host on it once)", dir.display())
    })
}

/// The store plugins recorded for an existing data dir's stores, as
/// `(flag, name)`: a store a plugin serves has no SQLite file to copy.
pub fn recorded_store_plugins(dir: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let accounts_db = DataDir(dir).accounts_db();
    if !accounts_db.exists() {
        return Ok(Vec::new());
    }
    let record = LayoutRecord::open(&accounts_db)?;
    let mut found = Vec::new();
    for (key, flag, ..) in ROLES {
        if let Some(name) = record.value(key)? {
            found.push((flag, name));
        }
    }
    Ok(found)
}

/// `legacy.db` and `new-shard-N.db` files present in `dir`.
fn existing_store_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("cannot read data dir {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if DataDir::is_store_file(&name) {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

fn identity_path(dir: &Path) -> PathBuf {
    dir.join(IDENTITY_FILE)
}

fn read_identity_file(dir: &Path) -> anyhow::Result<Option<DataDirIdentity>> {
    let path = identity_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is damaged; it can be deleted, and is then rewritten from {ACCOUNTS_DB}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_identity_file(dir: &Path, identity: DataDirIdentity) -> anyhow::Result<()> {
    let path = identity_path(dir);
    let json = serde_json::to_vec_pretty(&identity).expect("plain data");
    crate::files::write_atomically(&path, &json).with_context(|| format!("cannot write {}", path.display()))
}

fn read_db_identity(conn: &LayoutRecord, accounts_db: &Path) -> anyhow::Result<Option<DataDirIdentity>> {
    let (Some(id), Some(shards)) = (conn.value("data_dir_id")?, conn.value("new_store_shards")?) else {
        return Ok(None);
    };
    let damaged = || format!("the layout record in {} is damaged: data_dir_id = {id:?}, new_store_shards = {shards:?}", accounts_db.display());
    Ok(Some(DataDirIdentity {
        id: id.parse().with_context(damaged)?,
        new_store_shards: shards.parse().with_context(damaged)?,
    }))
}

/// The shard count recorded by hosts from before the data-dir id.
fn legacy_layout(conn: &LayoutRecord) -> anyhow::Result<Option<u32>> {
    conn.value("new_store_shards")?
        .map(|v| v.parse().with_context(|| format!("the layout record is damaged: new_store_shards = {v:?}")))
        .transpose()
}

fn write_db_identity(conn: &LayoutRecord, identity: DataDirIdentity) -> anyhow::Result<()> {
    conn.write(&[("data_dir_id", identity.id.to_string()), ("new_store_shards", identity.new_store_shards.to_string())])
}

/// Where a service on PostgreSQL records its identity (the coordination
/// database): the same pairs as a data dir's `accounts.db`.
pub trait ServiceRecord {
    fn value(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Writes each pair whose key is not recorded yet, in one transaction:
    /// of hosts starting at once, the first one's values stay.
    fn write_if_absent(&self, pairs: &[(&str, String)]) -> anyhow::Result<()>;
}

impl ServiceRecord for PostgresLayout {
    fn value(&self, key: &str) -> anyhow::Result<Option<String>> {
        PostgresLayout::value(self, key)
    }

    fn write_if_absent(&self, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        PostgresLayout::write_if_absent(self, pairs)
    }
}

/// Checks (or, on a new coordination database, creates) the identity of a
/// service on PostgreSQL: its id, which each store database records too
/// (`stores::PostgresStore::claim`), and its new-store shard count.
pub fn open_service(record: &dyn ServiceRecord, new_shards: u32) -> anyhow::Result<DataDirIdentity> {
    record.write_if_absent(&[("data_dir_id", Uuid::new_v4().to_string()), ("new_store_shards", new_shards.to_string())])?;
    let (Some(id), Some(shards)) = (record.value("data_dir_id")?, record.value("new_store_shards")?) else {
        bail!("the coordination database did not keep its layout record");
    };
    let damaged = || format!("the layout record in the coordination database is damaged: data_dir_id = {id:?}, new_store_shards = {shards:?}");
    let identity = DataDirIdentity { id: id.parse().with_context(damaged)?, new_store_shards: shards.parse().with_context(damaged)? };
    if identity.new_store_shards != new_shards {
        bail!(
            "this service was created with {n} new-store shard(s), not {new_shards}: another count would send accounts to \
             other shards and hide their notes; give --new-store once per shard, {n} time(s), in the same order",
            n = identity.new_store_shards
        );
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_stores(dir: &Path, shards: u32) -> impl FnOnce() -> anyhow::Result<()> {
        move || DataDir(dir).stores(shards).map(drop)
    }

    fn nothing() -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn a_new_data_dir_gets_an_identity_that_later_starts_find() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_data_dir(dir.path(), 2, StorePlugins::default(), create_stores(dir.path(), 2)).unwrap();
        assert_eq!(open_data_dir(dir.path(), 2, StorePlugins::default(), nothing).unwrap(), first);
        let err = open_data_dir(dir.path(), 3, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("start with --shards 2"), "{err}");
    }

    #[test]
    fn a_lost_accounts_db_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        open_data_dir(dir.path(), 1, StorePlugins::default(), create_stores(dir.path(), 1)).unwrap();
        std::fs::remove_file(dir.path().join(ACCOUNTS_DB)).unwrap();
        let err = open_data_dir(dir.path(), 1, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("missing accounts.db"), "{err}");
        assert!(!dir.path().join(ACCOUNTS_DB).exists(), "refusing created nothing");
    }

    #[test]
    fn a_lost_accounts_db_and_identity_beside_stores_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        open_data_dir(dir.path(), 1, StorePlugins::default(), create_stores(dir.path(), 1)).unwrap();
        std::fs::remove_file(dir.path().join(ACCOUNTS_DB)).unwrap();
        std::fs::remove_file(dir.path().join(IDENTITY_FILE)).unwrap();
        let err = open_data_dir(dir.path(), 1, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("missing accounts.db") && err.contains("legacy.db"), "{err}");
    }

    #[test]
    fn a_lost_identity_file_is_rewritten_from_accounts_db() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_data_dir(dir.path(), 1, StorePlugins::default(), create_stores(dir.path(), 1)).unwrap();
        std::fs::remove_file(dir.path().join(IDENTITY_FILE)).unwrap();
        assert_eq!(open_data_dir(dir.path(), 1, StorePlugins::default(), nothing).unwrap(), first);
        assert!(dir.path().join(IDENTITY_FILE).exists());
    }

    #[test]
    fn a_lost_store_file_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        open_data_dir(dir.path(), 2, StorePlugins::default(), create_stores(dir.path(), 2)).unwrap();
        std::fs::remove_file(dir.path().join("new-shard-1.db")).unwrap();
        let err = open_data_dir(dir.path(), 2, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("missing new-shard-1.db"), "{err}");
    }

    #[test]
    fn a_first_start_cut_short_is_finished_by_the_next_with_the_same_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        let failing = || -> anyhow::Result<()> { anyhow::bail!("killed while creating the stores") };
        assert!(open_data_dir(dir.path(), 2, StorePlugins::default(), failing).is_err());
        let err = open_data_dir(dir.path(), 3, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("start with --shards 2"), "{err}");
        open_data_dir(dir.path(), 2, StorePlugins::default(), create_stores(dir.path(), 2)).unwrap();
        assert!(dir.path().join(IDENTITY_FILE).exists() && dir.path().join("new-shard-1.db").exists());
    }

    #[test]
    fn accounts_whose_stores_and_identity_are_all_gone_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        open_data_dir(dir.path(), 1, StorePlugins::default(), create_stores(dir.path(), 1)).unwrap();
        use crate::coordination::{Account, Accounts, Gate, SqliteCoordination};
        let ada = Account { id: Uuid::new_v4(), name: "Ada".into(), is_migrating: false, shard: None, verified: None, created_at_ms: 0, updated_at_ms: 0, was_migrating: false };
        SqliteCoordination::open(&dir.path().join(ACCOUNTS_DB)).unwrap().create_account(&ada, Gate::Checked).unwrap();
        for file in [IDENTITY_FILE, LEGACY_DB, "new-shard-0.db"] {
            std::fs::remove_file(dir.path().join(file)).unwrap();
        }
        let err = open_data_dir(dir.path(), 1, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("1 account(s)"), "{err}");
        assert!(!dir.path().join(LEGACY_DB).exists(), "refusing created nothing");
    }

    #[test]
    fn a_store_plugin_that_changes_who_keeps_its_versions_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = |keeps_versions| StorePlugins { legacy: Some(StorePluginRecord { name: "proxy", keeps_versions }), new: None };
        let versions = dir.path().join(DataDir::LEGACY_VERSIONS_DB);
        open_data_dir(dir.path(), 0, plugin(false), || Ok(drop(std::fs::File::create(&versions)?))).unwrap();
        open_data_dir(dir.path(), 0, plugin(false), nothing).unwrap();
        let err = open_data_dir(dir.path(), 0, plugin(true), nothing).unwrap_err().to_string();
        assert!(err.contains("now says the plugin keeps") && err.contains("the host kept them"), "{err}");
        let err = open_data_dir(dir.path(), 0, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("served by the store plugin \"proxy\""), "{err}");
    }

    #[test]
    fn an_accounts_db_from_another_data_dir_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        open_data_dir(a.path(), 1, StorePlugins::default(), nothing).unwrap();
        open_data_dir(b.path(), 1, StorePlugins::default(), nothing).unwrap();
        std::fs::copy(b.path().join(ACCOUNTS_DB), a.path().join(ACCOUNTS_DB)).unwrap();
        let err = open_data_dir(a.path(), 1, StorePlugins::default(), nothing).unwrap_err().to_string();
        assert!(err.contains("belongs to another data dir"), "{err}");
    }
}
