//! The plugin registry: every uploaded `.wasm`, stored by its sha256 in
//! `<data dir>/plugins/` beside its precompiled artifact (`.cwasm`), and the
//! history of activations in `plugins.db`. The newest activation is the
//! active plugin, so it survives a restart, and a restart loads the artifact
//! instead of recompiling.
//!
//! Upload → validate (compiles; WIT version compatible; imports and exports
//! type-check; `info()` answers) → store (wasm + artifact) → activate.
//!
//! Safe under racing uploads, in one process and across the processes of a
//! fleet: one upload per digest at a time here, every file written to its own
//! temp file and renamed into place, and both files checked against their
//! recorded sha256 when loaded. An artifact that fails the check, or no longer
//! loads, is compiled again from the `.wasm`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Plugin, Runtime, WIT_PACKAGE, WIT_VERSION, short, wit_compatible};
use crate::db::{self, Pool};
use crate::files;

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

/// Columns added after the first release, each with the statement that adds
/// it to an older `plugins.db`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // Which host (by `--host-name`) activated: each host restores and rolls
    // back its own.
    ("activations", "host", "ALTER TABLE activations ADD COLUMN host TEXT NOT NULL DEFAULT ''"),
    // sha256 of the `.cwasm`, checked when it is loaded ('' = not recorded:
    // the artifact is compiled again and its digest recorded).
    ("plugins", "artifact_sha256", "ALTER TABLE plugins ADD COLUMN artifact_sha256 TEXT NOT NULL DEFAULT ''"),
];

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
    /// One upload per digest at a time: the second waits, then finds it stored.
    uploads: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Registry {
    pub fn open(data_dir: &Path, runtime: Runtime, host: &str) -> anyhow::Result<Self> {
        let dir = data_dir.join("plugins");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pool = db::open(&data_dir.join("plugins.db"), 4, SCHEMA)?;
        {
            let conn = pool.get()?;
            for (table, column, add) in ADDED_COLUMNS {
                let present: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )?;
                if !present {
                    // Two hosts opening an old file at once may both try.
                    if let Err(e) = conn.execute_batch(add) {
                        if !e.to_string().contains("duplicate column") {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Ok(Registry {
            dir,
            pool,
            runtime,
            loaded: Mutex::new(HashMap::new()),
            host: host.to_owned(),
            uploads: Mutex::new(HashMap::new()),
        })
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
        let upload = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).entry(digest.clone()).or_default().clone();
        let pushed = {
            let _one_at_a_time = upload.lock().unwrap_or_else(|e| e.into_inner());
            self.push_alone(wasm, digest.clone(), now_ms)
        };
        // The last uploader of this digest removes its lock.
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&upload) == 2 {
            uploads.remove(&digest);
        }
        pushed
    }

    /// `push`, with no other upload of this digest running in this process.
    fn push_alone(&self, wasm: &[u8], digest: String, now_ms: i64) -> Result<(PluginRecord, bool), RegistryError> {
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
        let artifact_sha256 = sha256_hex(&artifact);
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
            "INSERT INTO plugins (digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms, artifact_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (digest) DO UPDATE SET artifact_sha256 = excluded.artifact_sha256",
            params![
                record.digest,
                record.name,
                record.version,
                record.supports_migration,
                record.wit_version,
                record.size_bytes as i64,
                record.uploaded_at_ms,
                artifact_sha256
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
        // One read says both that the plugin exists and what its artifact must hash to.
        let recorded_artifact: Option<String> = self
            .pool
            .get()
            .context("plugins.db")?
            .query_row("SELECT artifact_sha256 FROM plugins WHERE digest = ?1", [digest], |r| r.get(0))
            .optional()
            .context("plugins.db")?;
        let Some(recorded_artifact) = recorded_artifact else { return Err(RegistryError::Unknown(digest.to_owned())) };
        let started = Instant::now();
        let (component, from_artifact) = match self.load_artifact(digest, &recorded_artifact) {
            Ok(component) => (component, true),
            Err(e) => {
                tracing::warn!(digest = short(digest), error = %format!("{e:#}"), "precompiled artifact unusable; compiling again from the .wasm");
                (self.recompile(digest)?, false)
            }
        };
        let plugin = Arc::new(self.runtime.instantiate(&component, digest)?);
        let load = LoadReport { from_artifact, millis: started.elapsed().as_secs_f64() * 1e3 };
        tracing::info!(plugin = plugin.label(), digest = short(digest), from_artifact, millis = load.millis, "plugin loaded");
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.to_owned(), (plugin.clone(), load));
        Ok((plugin, load))
    }

    /// The stored artifact, if it matches `recorded` (its sha256 in
    /// plugins.db) and this engine can load it.
    fn load_artifact(&self, digest: &str, recorded: &str) -> anyhow::Result<wasmtime::component::Component> {
        let bytes = std::fs::read(self.artifact_path(digest)).with_context(|| format!("cannot read {}", file_name(digest, "cwasm")))?;
        let actual = sha256_hex(&bytes);
        if actual != recorded {
            anyhow::bail!("{} does not match its recorded sha256 (recorded {:?}, found {})", file_name(digest, "cwasm"), short(&recorded), short(&actual));
        }
        self.runtime.load_artifact(&bytes)
    }

    /// Compiles the stored `.wasm` again, checking it against its digest, and
    /// replaces the artifact and its recorded sha256.
    fn recompile(&self, digest: &str) -> Result<wasmtime::component::Component, RegistryError> {
        let wasm = std::fs::read(self.wasm_path(digest)).with_context(|| format!("cannot read {}", file_name(digest, "wasm")))?;
        if sha256_hex(&wasm) != digest {
            return Err(RegistryError::Failed(anyhow::anyhow!(
                "the stored plugin {} is damaged: {} does not match its digest; upload it again",
                short(digest),
                file_name(digest, "wasm")
            )));
        }
        let (component, artifact) = self.runtime.compile(&wasm)?;
        write_atomically(&self.artifact_path(digest), &artifact)?;
        let conn = self.pool.get().context("plugins.db")?;
        conn.execute("UPDATE plugins SET artifact_sha256 = ?2 WHERE digest = ?1", params![digest, sha256_hex(&artifact)])
            .context("cannot record the artifact's digest")?;
        Ok(component)
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

/// `plugins/<digest>.<ext>`: how files are named in messages. Never the
/// absolute path, which would tell a client where the data dir is.
fn file_name(digest: &str, ext: &str) -> String {
    format!("plugins/{}….{ext}", short(digest))
}

/// [`files::write_atomically`], naming the file as clients may see it.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    files::write_atomically(path, bytes).with_context(|| format!("cannot write plugins/{name}"))
}
