//! The store rules as data-driven cases (`host/conformance/store.json`,
//! compiled in): what every store keeps, whatever its backend. The host's
//! own tests run them on every backend (`host/tests/store_rules.rs`), and
//! `notes-host plugin check --profile store FILE.wasm` runs them on a store
//! plugin, so its author knows their backend keeps the contract before an
//! operator serves it.
//!
//! Each case runs under fresh account ids (a store plugin's upstream keeps
//! what earlier runs wrote), through the blocking calls the jobs make.

use serde::Deserialize;

use std::sync::Arc;
use std::time::Duration;

use super::{PluginStore, StoreGrant, StorePlugin};
use crate::plugins::conformance::{CaseResult, Outcome, Report};
use crate::plugins::{PluginLimits, Runtime};
use crate::router::InstanceUsage;
use crate::stores::versions::VersionTable;
use crate::stores::{DataStore, Note, StoreBatch, StoreError};

const CASES: &str = include_str!("../../../conformance/store.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    why: String,
    steps: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Step {
    /// Which of the case's accounts (`a`, the default, or `b`).
    account: Option<String>,
    put: Option<String>,
    delete: Option<String>,
    get: Option<String>,
    recorded: Option<String>,
    list: Option<bool>,
    count: Option<bool>,
    /// `first-ids` after this id, `limit` of them.
    first: Option<String>,
    limit: Option<usize>,
    rows: Option<Vec<String>>,
    batch: Option<Vec<Step>>,
    /// Whether the batch is committed (else dropped).
    commit: Option<bool>,
    version: Option<u64>,
    content: Option<String>,
    updated_at_ms: Option<i64>,
    expect: Option<Expect>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    written: Option<bool>,
    removed: Option<bool>,
    /// The call fails.
    error: Option<bool>,
    /// No note (`get`) or no version recorded (`recorded`).
    none: Option<bool>,
    version: Option<u64>,
    content: Option<String>,
    created_at_ms: Option<i64>,
    updated_at_ms: Option<i64>,
    ids: Option<Vec<String>>,
    count: Option<u64>,
    rows: Option<Vec<Row>>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    version: u64,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    content: String,
}

/// Runs every case on `store`; each case's accounts are new ids.
pub fn check(store: &dyn DataStore) -> Vec<CaseResult> {
    let cases: Vec<Case> = serde_json::from_str(CASES).expect("conformance/store.json is valid (a unit test checks it)");
    cases
        .into_iter()
        .map(|case| {
            let accounts = Accounts { a: uuid::Uuid::new_v4().to_string(), b: uuid::Uuid::new_v4().to_string() };
            let outcome = match case.steps.iter().enumerate().try_for_each(|(i, step)| run(store, &accounts, step).map_err(|e| format!("step {}: {e}", i + 1))) {
                Ok(()) => Outcome::Pass,
                Err(difference) => Outcome::Fail(difference),
            };
            CaseResult { name: case.name, profile: "store".into(), why: case.why, outcome }
        })
        .collect()
}

/// `notes-host plugin check --profile store FILE.wasm`: serves the store
/// plugin as `serve` would (with `grant`, under the default deadline, over
/// a version table in a temporary directory if it keeps content only) and
/// runs every case on it. Blocking; not on an async worker.
pub fn check_plugin(wasm: &[u8], grant: StoreGrant, deadline: Duration) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let limits = PluginLimits { deadline, ..PluginLimits::default() };
    let plugin = {
        // Loading asks the plugin `info()`, under its deadline: a timer of this runtime.
        let _inside = runtime.enter();
        Arc::new(StorePlugin::load(&Runtime::new(limits.clone())?, wasm, grant, limits)?)
    };
    let dir = tempfile::tempdir()?;
    let versions = (!plugin.info().keeps_versions).then(|| VersionTable::open(&dir.path().join("versions.db"))).transpose()?;
    let label = plugin.label().to_owned();
    let store = PluginStore::new(plugin, versions, runtime.handle().clone())?;
    Ok(Report { plugin: label, cases: check(&store), usage: InstanceUsage::default() })
}

struct Accounts {
    a: String,
    b: String,
}

impl Accounts {
    fn of(&self, step: &Step) -> Result<&str, String> {
        match step.account.as_deref() {
            None | Some("a") => Ok(&self.a),
            Some("b") => Ok(&self.b),
            Some(other) => Err(format!("unknown account {other:?} (a or b)")),
        }
    }
}

fn note(account: &str, id: &str, step: &Step) -> Note {
    Note {
        id: id.to_owned(),
        account_id: account.to_owned(),
        content: step.content.clone().unwrap_or_default(),
        created_at_ms: 1,
        updated_at_ms: step.updated_at_ms.unwrap_or(2),
        version: step.version.unwrap_or(1),
    }
}

/// `what` answered `got`; the case expected `want`.
fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: expected {want:?}, got {got:?}")) }
}

fn run(store: &dyn DataStore, accounts: &Accounts, step: &Step) -> Result<(), String> {
    let account = accounts.of(step)?;
    let expect = step.expect.as_ref();
    let wants_error = expect.and_then(|e| e.error).unwrap_or(false);
    let failed = |what: &str, e: StoreError| if wants_error { Ok(()) } else { Err(format!("{what} failed: {e}")) };
    let succeeded = |what: &str| if wants_error { Err(format!("{what} succeeded, but must fail")) } else { Ok(()) };
    if let Some(id) = &step.put {
        return match store.put(&note(account, id, step), 0) {
            Ok(written) => {
                succeeded("put")?;
                expect.and_then(|e| e.written).map_or(Ok(()), |want| same(&format!("put of {id} v{}: written", step.version.unwrap_or(1)), written, want))
            }
            Err(e) => failed("put", e),
        };
    }
    if let Some(id) = &step.delete {
        let version = step.version.ok_or("a delete needs a version")?;
        return match store.delete_if_not_newer(account, id, version, 0) {
            Ok(removed) => {
                succeeded("delete")?;
                expect.and_then(|e| e.removed).map_or(Ok(()), |want| same(&format!("delete of {id} v{version}: removed"), removed, want))
            }
            Err(e) => failed("delete", e),
        };
    }
    if let Some(id) = &step.get {
        let got = store.get(account, id).map_err(|e| format!("get of {id} failed: {e}"))?;
        let Some(expect) = expect else { return Ok(()) };
        return match (got, expect.none == Some(true)) {
            (None, true) => Ok(()),
            (Some(n), true) => Err(format!("get of {id}: expected no note, got version {} ({:?})", n.version, n.content)),
            (None, false) => Err(format!("get of {id}: expected a note, got none")),
            (Some(n), false) => {
                expect.version.map_or(Ok(()), |v| same(&format!("get of {id}: version"), n.version, v))?;
                expect.content.as_ref().map_or(Ok(()), |c| same(&format!("get of {id}: content"), &n.content, c))?;
                expect.created_at_ms.map_or(Ok(()), |t| same(&format!("get of {id}: created at"), n.created_at_ms, t))?;
                expect.updated_at_ms.map_or(Ok(()), |t| same(&format!("get of {id}: updated at"), n.updated_at_ms, t))
            }
        };
    }
    if let Some(id) = &step.recorded {
        return match store.recorded_version(account, id) {
            Ok(got) => {
                succeeded("recorded-version")?;
                let want = match expect {
                    Some(e) if e.none == Some(true) => None,
                    Some(e) => e.version,
                    None => return Ok(()),
                };
                same(&format!("recorded version of {id}"), got, want)
            }
            Err(e) => failed("recorded-version", e),
        };
    }
    if step.list == Some(true) {
        let ids = store.list_ids(account).map_err(|e| format!("list-ids failed: {e}"))?.to_vec();
        return expect.and_then(|e| e.ids.as_ref()).map_or(Ok(()), |want| same("list-ids", &ids, want));
    }
    if step.count == Some(true) {
        let count = store.count(account).map_err(|e| format!("count failed: {e}"))?;
        return expect.and_then(|e| e.count).map_or(Ok(()), |want| same("count", count, want));
    }
    if let Some(after) = &step.first {
        let limit = step.limit.ok_or("first-ids needs a limit")?;
        let ids = store.first_ids(account, after, limit).map_err(|e| format!("first-ids failed: {e}"))?;
        return expect.and_then(|e| e.ids.as_ref()).map_or(Ok(()), |want| same(&format!("first-ids after {after:?}, {limit}"), &ids, want));
    }
    if let Some(ids) = &step.rows {
        let mut rows: Vec<Row> = store
            .rows(account, ids)
            .map_err(|e| format!("rows failed: {e}"))?
            .into_iter()
            .map(|r| Row { id: r.note.id, version: r.note.version, deleted: r.deleted, content: if r.deleted { String::new() } else { r.note.content } })
            .collect();
        rows.sort();
        let Some(want) = expect.and_then(|e| e.rows.as_ref()) else { return Ok(()) };
        let mut want: Vec<&Row> = want.iter().collect();
        want.sort();
        return same("rows", rows.iter().collect::<Vec<_>>(), want);
    }
    if let Some(writes) = &step.batch {
        let batch = store.begin_batch(account, 0).map_err(|e| format!("begin-batch failed: {e}"))?;
        for write in writes {
            add_to(&*batch, account, write)?;
        }
        if step.commit == Some(true) {
            batch.commit().map_err(|e| format!("commit failed: {e}"))?;
        }
        return Ok(());
    }
    Err("a step names no call (put, delete, get, recorded, list, count, first, rows, batch)".into())
}

fn add_to(batch: &dyn StoreBatch, account: &str, write: &Step) -> Result<(), String> {
    if let Some(id) = &write.put {
        return batch.put(&note(account, id, write)).map_err(|e| format!("batch put failed: {e}"));
    }
    if let Some(id) = &write.delete {
        let version = write.version.ok_or("a delete needs a version")?;
        return batch.delete_if_not_newer(account, id, version).map_err(|e| format!("batch delete failed: {e}"));
    }
    Err("a batch holds puts and deletes only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_of_store_json_reads() {
        let cases: Vec<Case> = serde_json::from_str(CASES).unwrap();
        assert!(cases.len() >= 8);
        assert!(cases.iter().all(|c| !c.steps.is_empty() && !c.why.is_empty()));
    }

    #[test]
    fn the_memory_store_keeps_every_rule() {
        let results = check(&crate::stores::MemoryStore::default());
        let failed: Vec<_> = results.iter().filter(|r| r.outcome != Outcome::Pass).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
