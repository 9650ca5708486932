//! [`Catalog`] in one process's memory, for in-process tests; the same
//! answers as `plugins.db` gives (see `sqlite.rs` for the rules).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use notes_host::catalog::{Activation, Catalog, Instances, PluginRecord};

/// Cloning gives another host's view of the same catalog ([`MemoryCatalog::for_host`]).
#[derive(Clone, Default)]
pub struct MemoryCatalog {
    state: Arc<Mutex<State>>,
    host: String,
}

#[derive(Default)]
struct State {
    plugins: BTreeMap<String, (PluginRecord, String)>,
    activations: Vec<Activation>,
}

impl MemoryCatalog {
    pub fn new(host: &str) -> Self {
        MemoryCatalog { state: Arc::default(), host: host.to_owned() }
    }

    /// The same catalog, seen by another host.
    pub fn for_host(&self, host: &str) -> Self {
        MemoryCatalog { state: self.state.clone(), host: host.to_owned() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mine(&self) -> Vec<Activation> {
        self.state().activations.iter().filter(|a| a.host == self.host || a.host.is_empty()).cloned().collect()
    }
}

impl Catalog for MemoryCatalog {
    /// `wasm` is not kept: in-process plugins are native routers.
    fn insert(&self, record: &PluginRecord, artifact_sha256: &str, _wasm: &[u8]) -> anyhow::Result<()> {
        let mut state = self.state();
        let entry = state.plugins.entry(record.digest.clone()).or_insert_with(|| (record.clone(), String::new()));
        entry.1 = artifact_sha256.to_owned();
        Ok(())
    }

    fn wasm(&self, _digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn record(&self, digest: &str) -> anyhow::Result<Option<PluginRecord>> {
        Ok(self.state().plugins.get(digest).map(|(r, _)| r.clone()))
    }

    fn records(&self) -> anyhow::Result<Vec<PluginRecord>> {
        let mut records: Vec<PluginRecord> = self.state().plugins.values().map(|(r, _)| r.clone()).collect();
        records.sort_by(|a, b| (a.uploaded_at_ms, &a.digest).cmp(&(b.uploaded_at_ms, &b.digest)));
        Ok(records)
    }

    fn artifact_sha256(&self, digest: &str) -> anyhow::Result<Option<String>> {
        Ok(self.state().plugins.get(digest).map(|(_, sha)| sha.clone()))
    }

    fn set_artifact_sha256(&self, digest: &str, sha256: &str) -> anyhow::Result<()> {
        if let Some((_, sha)) = self.state().plugins.get_mut(digest) {
            *sha = sha256.to_owned();
        }
        Ok(())
    }

    fn history(&self) -> anyhow::Result<Vec<Activation>> {
        Ok(self.state().activations.clone())
    }

    fn active_digest(&self) -> anyhow::Result<Option<String>> {
        Ok(self.mine().last().map(|a| a.digest.clone()))
    }

    fn previous_digest(&self) -> anyhow::Result<Option<String>> {
        let mine = self.mine();
        let Some(active) = mine.last().map(|a| a.digest.clone()) else { return Ok(None) };
        Ok(mine.iter().rev().find(|a| a.digest != active).map(|a| a.digest.clone()))
    }

    fn record_activation(&self, digest: &str, actor: &str, reason: &str, now_ms: i64) -> anyhow::Result<()> {
        let mut state = self.state();
        if !state.plugins.contains_key(digest) {
            anyhow::bail!("no plugin with digest {digest} to activate");
        }
        let seq = state.activations.len() as i64 + 1;
        let host = self.host.clone();
        state.activations.push(Activation { seq, digest: digest.to_owned(), at_ms: now_ms, actor: actor.into(), reason: reason.into(), host });
        Ok(())
    }

    fn set_instances(&self, digest: &str, instances: Instances) -> anyhow::Result<bool> {
        Ok(self.state().plugins.get_mut(digest).map(|(record, _)| record.instances = instances).is_some())
    }
}
