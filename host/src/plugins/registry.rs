//! The plugin registry: every uploaded `.wasm`, stored by its sha256 in
//! `<data dir>/plugins/` beside its precompiled artifact (`.cwasm`), recorded
//! in the [`Catalog`] (`plugins.db`). A restart loads the artifact instead of
//! recompiling. The [`PluginLoader`] of a host that runs Wasm plugins.
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

use super::{Plugin, Runtime};
use crate::catalog::{Catalog, Checked, Instances, LoadReport, PluginLoader, PluginRecord, RegistryError, sha256_hex, short};
use crate::files;
use crate::router::Router;

pub struct Registry {
    dir: PathBuf,
    catalog: Arc<dyn Catalog>,
    runtime: Runtime,
    /// Plugins in memory, by digest, with how they were loaded. Swapping
    /// back and forth reuses them (and their warm instances).
    loaded: Mutex<HashMap<String, (Arc<Plugin>, LoadReport)>>,
    /// One upload per digest at a time: the second waits, then finds it stored.
    uploads: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Registry {
    /// Stores plugin files in `dir` (a data dir's `plugins/`), records in `catalog`.
    pub fn open(dir: &Path, runtime: Runtime, catalog: Arc<dyn Catalog>) -> anyhow::Result<Self> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Registry { dir, catalog, runtime, loaded: Mutex::new(HashMap::new()), uploads: Mutex::new(HashMap::new()) })
    }

    fn wasm_path(&self, digest: &str) -> PathBuf {
        Self::wasm_file(&self.dir, digest)
    }

    /// Where a registry in `dir` keeps the plugin with this digest.
    pub fn wasm_file(dir: &Path, digest: &str) -> PathBuf {
        dir.join(format!("{digest}.wasm"))
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// `push`: one upload per digest at a time in this process.
    fn push_one_per_digest(&self, wasm: &[u8], now_ms: i64) -> Result<(PluginRecord, bool), RegistryError> {
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
        if let Some(record) = self.catalog.record(&digest)? {
            return Ok((record, false));
        }
        let started = Instant::now();
        let (plugin, artifact, wit_version) = self.runtime.load_upload(wasm, &digest).map_err(RegistryError::Rejected)?;
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
            instances: Instances::Fresh,
        };
        self.catalog.insert(&record, &artifact_sha256, wasm)?;
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, (Arc::new(plugin), load));
        Ok((record, true))
    }

    /// The plugin with this digest, in memory: from the cache, else from its
    /// precompiled artifact, else (artifact unusable, e.g. after a wasmtime
    /// upgrade) compiled again from the stored `.wasm`.
    fn load_plugin(&self, digest: &str) -> Result<(Arc<Plugin>, LoadReport), RegistryError> {
        let hit = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(digest).cloned();
        if let Some((plugin, load)) = hit {
            // A copy loaded earlier follows the mode set since (`set_instances`).
            if let Some(record) = self.catalog.record(digest)? {
                plugin.set_instances(record.instances);
            }
            return Ok((plugin, load));
        }
        // One read says both that the plugin exists and what its artifact must hash to.
        let recorded_artifact = self.catalog.artifact_sha256(digest)?;
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
        if let Some(record) = self.catalog.record(digest)? {
            plugin.set_instances(record.instances);
        }
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
        let wasm = self.stored_wasm(digest)?;
        if sha256_hex(&wasm) != digest {
            return Err(RegistryError::Failed(anyhow::anyhow!(
                "the stored plugin {} is damaged: {} does not match its digest; upload it again",
                short(digest),
                file_name(digest, "wasm")
            )));
        }
        let (component, artifact) = self.runtime.compile(&wasm)?;
        write_atomically(&self.artifact_path(digest), &artifact)?;
        self.catalog.set_artifact_sha256(digest, &sha256_hex(&artifact))?;
        Ok(component)
    }

    /// The plugin's bytes: the data dir's `.wasm`, else (a host that shares
    /// only the database with the fleet, meeting this plugin for the first
    /// time) the catalog's copy, kept as the `.wasm` from then on.
    fn stored_wasm(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.wasm_path(digest);
        match std::fs::read(&path) {
            Ok(wasm) => Ok(wasm),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(wasm) = self.catalog.wasm(digest)? else {
                    return Err(e).with_context(|| format!("cannot read {}", file_name(digest, "wasm")));
                };
                if sha256_hex(&wasm) == digest {
                    write_atomically(&path, &wasm)?;
                    tracing::info!(digest = short(digest), "plugin fetched from the catalog");
                }
                Ok(wasm)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", file_name(digest, "wasm"))),
        }
    }
}

impl PluginLoader for Registry {
    fn push(&self, wasm: &[u8], now_ms: i64) -> Result<(PluginRecord, bool), RegistryError> {
        self.push_one_per_digest(wasm, now_ms)
    }

    fn load(&self, digest: &str) -> Result<(Arc<dyn Router>, LoadReport), RegistryError> {
        let (plugin, load) = self.load_plugin(digest)?;
        Ok((plugin, load))
    }

    /// On this host's runtime: its engine, its pool and its limits, not a
    /// second engine with the defaults.
    fn check(&self, wasm: &[u8]) -> Result<Checked, RegistryError> {
        let report = super::conformance::check_on(&self.runtime, wasm, &[], |_| {}).map_err(|e| RegistryError::Rejected(format!("{e:#}")))?;
        Ok(report.checked())
    }
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
