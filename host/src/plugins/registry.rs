//! The plugin registry: every uploaded `.wasm`, stored by its sha256 in
//! `<data dir>/plugins/` beside its precompiled artifact (`.cwasm`), and the
//! history of activations in `plugins.db`. The newest activation is the
//! active plugin, so it survives a restart, and a restart loads the artifact
//! instead of recompiling.
//!
//! Upload → validate (compiles; WIT version compatible; imports and exports
//! type-check; `info()` answers) → store (wasm + artifact) → activate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Plugin, Runtime, WIT_PACKAGE, WIT_VERSION, short, wit_compatible};
use crate::db::{self, Pool};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS plugins (
    digest             TEXT    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL,
    version            TEXT    NOT NULL,
    supports_migration INTEGER NOT NULL,
    wit_version        TEXT    NOT NULL,
    size_bytes         INTEGER NOT NULL,
    uploaded_at_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    digest  TEXT    NOT NULL REFERENCES plugins (digest),
    at_ms   INTEGER NOT NULL,
    -- who: 'operator', 'startup' or 'automatic'
    actor   TEXT    NOT NULL,
    reason  TEXT    NOT NULL
);
";

/// Added when several hosts began sharing a data dir: which host (by
/// `--host-name`) activated. Each host restores and rolls back its own.
const ADD_HOST_COLUMN: &str = "ALTER TABLE activations ADD COLUMN host TEXT NOT NULL DEFAULT ''";

/// What the registry knows of a stored plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRecord {
    pub digest: String,
    pub name: String,
    pub version: String,
    pub supports_migration: bool,
    pub wit_version: String,
    pub size_bytes: u64,
    pub uploaded_at_ms: i64,
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

pub struct Registry {
    dir: PathBuf,
    pool: Pool,
    runtime: Runtime,
    /// Plugins in memory, by digest, with how they were loaded. Swapping
    /// back and forth reuses them (and their warm instances).
    loaded: Mutex<HashMap<String, (Arc<Plugin>, LoadReport)>>,
    /// This host's name: activations are recorded and read per host.
    host: String,
}

impl Registry {
    pub fn open(data_dir: &Path, runtime: Runtime, host: &str) -> anyhow::Result<Self> {
        let dir = data_dir.join("plugins");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pool = db::open(&data_dir.join("plugins.db"), 4, SCHEMA)?;
        {
            let conn = pool.get()?;
            let has_host: bool = conn.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('activations') WHERE name = 'host'",
                [],
                |r| r.get(0),
            )?;
            if !has_host {
                conn.execute_batch(ADD_HOST_COLUMN)?;
            }
        }
        Ok(Registry { dir, pool, runtime, loaded: Mutex::new(HashMap::new()), host: host.to_owned() })
    }

    fn wasm_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// Validates and stores an uploaded component. Returns its record and
    /// whether it is new (an identical upload is not stored twice).
    pub fn push(&self, wasm: &[u8], now_ms: i64) -> Result<(PluginRecord, bool), RegistryError> {
        let digest = sha256_hex(wasm);
        if let Some(record) = self.record(&digest)? {
            return Ok((record, false));
        }
        let started = Instant::now();
        let (component, artifact) = self.runtime.compile(wasm).map_err(|e| RegistryError::Rejected(format!("{e:#}")))?;
        let wit_version = self.runtime.wit_version(&component).ok_or_else(|| {
            RegistryError::Rejected(format!(
                "the component does not export {WIT_PACKAGE}/note-store: it is not a notes plugin"
            ))
        })?;
        if !wit_compatible(&wit_version, WIT_VERSION) {
            return Err(RegistryError::Rejected(format!(
                "the plugin was built against {WIT_PACKAGE}@{wit_version}, but this host serves {WIT_PACKAGE}@{WIT_VERSION}; \
                 rebuild it against {WIT_VERSION}"
            )));
        }
        let plugin = self.runtime.instantiate(&component, &digest).map_err(|e| RegistryError::Rejected(format!("{e:#}")))?;
        let load = LoadReport { from_artifact: false, millis: started.elapsed().as_secs_f64() * 1e3 };

        write_atomically(&self.wasm_path(&digest), wasm)?;
        write_atomically(&self.artifact_path(&digest), &artifact)?;
        let info = plugin.info().clone();
        let record = PluginRecord {
            digest: digest.clone(),
            name: info.name,
            version: info.version,
            supports_migration: info.supports_migration,
            wit_version,
            size_bytes: wasm.len() as u64,
            uploaded_at_ms: now_ms,
        };
        let conn = self.pool.get().context("plugins.db")?;
        conn.execute(
            "INSERT INTO plugins (digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (digest) DO NOTHING",
            params![
                record.digest,
                record.name,
                record.version,
                record.supports_migration,
                record.wit_version,
                record.size_bytes as i64,
                record.uploaded_at_ms
            ],
        )
        .context("cannot record the plugin")?;
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, (Arc::new(plugin), load));
        Ok((record, true))
    }

    /// The plugin with this digest, in memory: from the cache, else from its
    /// precompiled artifact, else (artifact unusable, e.g. after a wasmtime
    /// upgrade) compiled again from the stored `.wasm`.
    pub fn load(&self, digest: &str) -> Result<(Arc<Plugin>, LoadReport), RegistryError> {
        if let Some(hit) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            return Ok(hit.clone());
        }
        if self.record(digest)?.is_none() {
            return Err(RegistryError::Unknown(digest.to_owned()));
        }
        let started = Instant::now();
        let (component, from_artifact) = match self.runtime.load_artifact(&self.artifact_path(digest)) {
            Ok(component) => (component, true),
            Err(e) => {
                tracing::warn!(digest = short(digest), error = %format!("{e:#}"), "precompiled artifact unusable; compiling again");
                let wasm = std::fs::read(self.wasm_path(digest)).context("cannot read the stored plugin")?;
                let (component, artifact) = self.runtime.compile(&wasm)?;
                write_atomically(&self.artifact_path(digest), &artifact)?;
                (component, false)
            }
        };
        let plugin = Arc::new(self.runtime.instantiate(&component, digest)?);
        let load = LoadReport { from_artifact, millis: started.elapsed().as_secs_f64() * 1e3 };
        tracing::info!(plugin = plugin.label(), digest = short(digest), from_artifact, millis = load.millis, "plugin loaded");
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.to_owned(), (plugin.clone(), load));
        Ok((plugin, load))
    }

    pub fn record(&self, digest: &str) -> anyhow::Result<Option<PluginRecord>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms FROM plugins WHERE digest = ?1",
        )?;
        Ok(stmt.query_row([digest], row_to_record).optional()?)
    }

    pub fn records(&self) -> anyhow::Result<Vec<PluginRecord>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms FROM plugins ORDER BY uploaded_at_ms, digest",
        )?;
        let records = stmt.query_map([], row_to_record)?.collect::<Result<_, _>>()?;
        Ok(records)
    }

    /// Every activation, oldest first.
    pub fn history(&self) -> anyhow::Result<Vec<Activation>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT seq, digest, at_ms, actor, reason, host FROM activations ORDER BY seq")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Activation {
                    seq: r.get(0)?,
                    digest: r.get(1)?,
                    at_ms: r.get(2)?,
                    actor: r.get(3)?,
                    reason: r.get(4)?,
                    host: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The digest of this host's newest activation (rows from before hosts
    /// were named, `host = ''`, count as this host's).
    pub fn active_digest(&self) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get()?;
        Ok(conn
            .query_row(
                "SELECT digest FROM activations WHERE host IN (?1, '') ORDER BY seq DESC LIMIT 1",
                [&self.host],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The plugin this host had active before the current one.
    pub fn previous_digest(&self) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get()?;
        Ok(conn
            .query_row(
                "SELECT digest FROM activations
                 WHERE host IN (?1, '')
                   AND digest <> (SELECT digest FROM activations WHERE host IN (?1, '') ORDER BY seq DESC LIMIT 1)
                 ORDER BY seq DESC LIMIT 1",
                [&self.host],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn record_activation(&self, digest: &str, actor: &str, reason: &str, now_ms: i64) -> anyhow::Result<()> {
        let conn = self.pool.get()?;
        conn.execute(
            "INSERT INTO activations (digest, at_ms, actor, reason, host) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![digest, now_ms, actor, reason, self.host],
        )?;
        Ok(())
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginRecord> {
    Ok(PluginRecord {
        digest: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        supports_migration: r.get(3)?,
        wit_version: r.get(4)?,
        size_bytes: r.get::<_, i64>(5)? as u64,
        uploaded_at_ms: r.get(6)?,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Write to a temp file, then rename: a crash never leaves half an artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
