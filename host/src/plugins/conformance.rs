//! `notes-host plugin check FILE.wasm`: the conformance kit. It runs a
//! plugin in this process, on the host's runtime with `serve`'s default
//! limits, against
//! temporary in-memory stores, through data-driven cases (`host/conformance/
//! *.json`, compiled in: one case per row). Each case starts from empty
//! stores, may seed them (a stale copy, a tombstone left by a delete cut in
//! half), calls the plugin step by step and compares every answer.
//!
//! The `contract` profile is the WIT's duties, whatever the strategy:
//! versions, not-found, version-mismatch, no resurrection, newest wins, list
//! once and sorted, moves keep versions, the request's account, a normal
//! workload within the limits, and (WIT 0.4) that `homes` says where the
//! plugin's writes put each note. The `migrate` profile adds where notes must
//! be in each mode (the design note's placement); a strategy that places
//! notes otherwise passes the contract and fails only that profile.

use notes_routing::{Error as PluginError, IdList, Note, NoteChange, Placement, Store};
use serde::Deserialize;
use pollster::block_on;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::catalog::sha256_hex;
use super::{PluginLimits, Runtime};
use crate::router::{AccountScope, Router};
use crate::stores::DataStores;

const CASES: &[(&str, &str)] = &[
    ("contract.json", include_str!("../../conformance/contract.json")),
    ("migrate.json", include_str!("../../conformance/migrate.json")),
];

/// The account every case runs as.
const ACCOUNT: &str = "11111111-2222-4333-8444-555555555555";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    profile: String,
    /// `migration`: only for a plugin claiming it (two stores); `move`:
    /// that, and `move-notes` (WIT 0.2 and later); `home`: `homes` (WIT
    /// 0.4 and later; an older plugin's placement is the migrate rule).
    #[serde(default)]
    needs: Option<String>,
    /// What the case guards and why it matters, in one sentence: printed
    /// with a failure, so an author learns what their plugin would break.
    why: String,
    steps: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Step {
    create: Option<String>,
    get: Option<String>,
    update: Option<String>,
    delete: Option<String>,
    list: Option<bool>,
    #[serde(rename = "move")]
    move_ids: Option<Vec<String>>,
    seed: Option<Seed>,
    /// `migrating` or `rollback`: the flag for the steps after it.
    mode: Option<String>,
    content: Option<String>,
    expected_version: Option<u64>,
    /// Runs the step this many times, the id suffixed with 0, 1, ….
    repeat: Option<u32>,
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    store: String,
    id: String,
    version: Option<u64>,
    content: Option<String>,
    tombstone: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    /// Success, stated (the default when no `error` is expected).
    #[allow(dead_code)]
    ok: Option<bool>,
    version: Option<u64>,
    content: Option<String>,
    /// A WIT error kind (`not-found`, `version-mismatch`, `conflict`, …) or `any`.
    error: Option<String>,
    current_version: Option<u64>,
    ids: Option<Vec<String>>,
    count: Option<usize>,
    account_of_request: Option<bool>,
    /// Where each note is after the step: `legacy`, `new`, `both` or `none`.
    stores: Option<std::collections::BTreeMap<String, String>>,
    /// Notes that, after the step, are where the plugin's `homes` says
    /// they belong under the step's flag.
    at_home: Option<Vec<String>>,
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// What differed, at which step.
    Fail(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub profile: String,
    /// What the case guards and why (one sentence).
    pub why: String,
    pub outcome: Outcome,
}

/// What a check found: the plugin's `name@version` and every case.
#[derive(Debug)]
pub struct Report {
    pub plugin: String,
    pub cases: Vec<CaseResult>,
    /// What the plugin's instances cost over the cases, as served (a fresh
    /// instance per call).
    pub usage: crate::router::InstanceUsage,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| matches!(c.outcome, Outcome::Fail(_))).count()
    }

    /// What a host that refuses failing uploads says of this one.
    pub fn checked(self) -> crate::catalog::Checked {
        let failed = self
            .cases
            .into_iter()
            .filter_map(|case| match case.outcome {
                Outcome::Fail(difference) => Some(format!("{} ({difference})", case.name)),
                Outcome::Pass | Outcome::Skipped(_) => None,
            })
            .collect();
        crate::catalog::Checked { plugin: self.plugin, failed }
    }
}

/// The profiles a check can run besides `contract` (always run).
pub const PROFILES: &[&str] = &["migrate"];

/// Where a check is, for a progress display: compiling takes seconds (a
/// Python or JavaScript plugin, 12-19 MB, several), then each case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Compiling and loading the component, of this many bytes.
    Compiling { bytes: usize },
    /// About to run case `index` (from 0) of `total`.
    Case { index: usize, total: usize },
}

/// Checks `wasm` against the contract and the `profiles` asked for.
pub fn check(wasm: &[u8], profiles: &[String]) -> anyhow::Result<Report> {
    check_with_progress(wasm, profiles, |_| {})
}

/// [`check`], telling `progress` where it is.
pub fn check_with_progress(wasm: &[u8], profiles: &[String], mut progress: impl FnMut(Progress)) -> anyhow::Result<Report> {
    for profile in profiles {
        if !PROFILES.contains(&profile.as_str()) {
            anyhow::bail!("unknown profile {profile:?}: the profiles are {}", PROFILES.join(", "));
        }
    }
    progress(Progress::Compiling { bytes: wasm.len() });
    let runtime = Runtime::new(PluginLimits::default())?;
    check_on(&runtime, wasm, profiles, progress)
}

/// [`check_with_progress`] on `runtime`: a host checks an upload on its own
/// engine, under its own limits (`plugins::registry`).
pub fn check_on(runtime: &Runtime, wasm: &[u8], profiles: &[String], progress: impl FnMut(Progress)) -> anyhow::Result<Report> {
    let (plugin, _, wit_version) =
        runtime.load_upload(wasm, &sha256_hex(wasm)).map_err(|reason| anyhow::anyhow!("the host would refuse this plugin: {reason}"))?;
    check_router(&plugin, &wit_version, profiles, progress)
}

/// The cases on any router built against WIT `wit_version` (a router
/// compiled into the host says the newest).
pub fn check_router(plugin: &dyn Router, wit_version: &str, profiles: &[String], mut progress: impl FnMut(Progress)) -> anyhow::Result<Report> {
    let mut chosen = Vec::new();
    for (file, json) in CASES {
        let rows: Vec<Case> = serde_json::from_str(json).map_err(|e| anyhow::anyhow!("conformance/{file}: {e}"))?;
        chosen.extend(rows.into_iter().filter(|case| case.profile == "contract" || profiles.contains(&case.profile)));
    }
    let total = chosen.len();
    let mut cases = Vec::new();
    for (index, case) in chosen.into_iter().enumerate() {
        progress(Progress::Case { index, total });
        let outcome = match case.needs.as_deref() {
            Some("migration" | "move") if !plugin.supports_migration() => Outcome::Skipped("the plugin does not claim migration".into()),
            Some("move") if wit_version.starts_with("0.1.") => Outcome::Skipped(format!("WIT {wit_version} has no move-notes")),
            Some("home") if !wit_version.starts_with("0.4.") => Outcome::Skipped(format!(
                "WIT {wit_version} has no homes: the host judges this plugin's notes by the migrate rule (the `migrate` profile checks it)"
            )),
            _ => run(plugin, &case),
        };
        cases.push(CaseResult { name: case.name, profile: case.profile, why: case.why, outcome });
    }
    Ok(Report { plugin: plugin.label().to_owned(), cases, usage: plugin.usage().unwrap_or_default() })
}

fn run(plugin: &dyn Router, case: &Case) -> Outcome {
    let migrating = plugin.supports_migration();
    let stores = DataStores::in_memory(migrating);
    let mut is_migrating = migrating;
    for (i, step) in case.steps.iter().enumerate() {
        if let Some(mode) = &step.mode {
            is_migrating = mode == "migrating";
            continue;
        }
        for round in 0..step.repeat.unwrap_or(1) {
            let suffix = if step.repeat.is_some() { round.to_string() } else { String::new() };
            if let Err(difference) = run_step(plugin, &stores, step, &suffix, is_migrating) {
                return Outcome::Fail(format!("step {}: {difference}", i + 1));
            }
        }
    }
    Outcome::Pass
}

/// What a step got back, in the words its expectations use.
enum Answer {
    Note(Note),
    Ids(Vec<String>),
    Done,
}

/// Each call is driven to its end on the kit's own thread.
fn run_step(plugin: &dyn Router, stores: &DataStores, step: &Step, suffix: &str, is_migrating: bool) -> Result<(), String> {
    let refused_writes = Arc::new(AtomicUsize::new(0));
    let scope = || AccountScope::new(ACCOUNT.into(), 0, stores.clone()).counting_refused_writes(refused_writes.clone());
    let content = || step.content.clone().unwrap_or_default();
    let change = |id: &str| NoteChange { id: format!("{id}{suffix}"), content: content(), at_ms: 1_700_000_000_000 };
    if let Some(seed) = &step.seed {
        return seed_store(stores, seed);
    }
    let (what, routed) = if let Some(id) = &step.create {
        (format!("create {id}{suffix}"), block_on(plugin.create_note(scope(), change(id), is_migrating)).map(|r| r.map(Answer::Note)))
    } else if let Some(id) = &step.get {
        (format!("get {id}"), block_on(plugin.get_note(scope(), id, is_migrating)).map(|r| r.map(Answer::Note)))
    } else if let Some(id) = &step.update {
        let answer = block_on(plugin.update_note(scope(), change(id), step.expected_version, is_migrating));
        (format!("update {id}"), answer.map(|r| r.map(Answer::Note)))
    } else if let Some(id) = &step.delete {
        (format!("delete {id}"), block_on(plugin.delete_note(scope(), id, is_migrating)).map(|r| r.map(|()| Answer::Done)))
    } else if step.list.is_some() {
        let answer = block_on(plugin.list_notes(scope(), is_migrating));
        ("list".to_owned(), answer.map(|r| r.map(|ids| Answer::Ids(ids.iter().map(str::to_owned).collect()))))
    } else if let Some(ids) = &step.move_ids {
        (format!("move {ids:?}"), block_on(plugin.move_notes(scope(), ids, is_migrating)).map(|r| r.map(|_| Answer::Done)))
    } else {
        return Err("a step must create, get, update, delete, list, move, seed or set the mode".into());
    };
    let answer = routed.map_err(|failure| format!("{what}: the plugin failed: {failure}"))?;
    let expect = step.expect.as_ref();
    let wanted_error = expect.and_then(|e| e.error.as_deref());
    let answer = match (answer, wanted_error) {
        (Err(e), Some(wanted)) => {
            let (kind, current) = error_kind(&e);
            if wanted != "any" && wanted != kind {
                return Err(format!("{what}: expected error {wanted}, got {e:?}"));
            }
            if let Some(want) = expect.and_then(|e| e.current_version) {
                if current != Some(want) {
                    return Err(format!("{what}: expected currentVersion {want}, got {e:?}"));
                }
            }
            None
        }
        (Err(e), None) => return Err(format!("{what}: expected success, got error {e:?}")),
        (Ok(_), Some(wanted)) => return Err(format!("{what}: expected error {wanted}, got success")),
        (Ok(answer), None) => Some(answer),
    };
    let Some(expect) = expect else { return Ok(()) };
    match &answer {
        Some(Answer::Note(note)) => {
            if let Some(v) = expect.version.filter(|v| *v != note.version) {
                return Err(format!("{what}: expected version {v}, got {}", note.version));
            }
            if let Some(c) = expect.content.as_ref().filter(|c| **c != note.content) {
                return Err(format!("{what}: expected content {c:?}, got {:?}", note.content));
            }
            if expect.account_of_request == Some(true) && note.account_id != ACCOUNT {
                return Err(format!("{what}: answered a note of account {:?}, not the request's", note.account_id));
            }
            let refused = refused_writes.load(Ordering::Relaxed);
            if expect.account_of_request == Some(true) && refused > 0 {
                return Err(format!("{what}: tried {refused} write(s) of a note of another account (the host refused them)"));
            }
        }
        Some(Answer::Ids(ids)) => {
            if let Some(want) = expect.ids.as_ref().filter(|want| *want != ids) {
                return Err(format!("{what}: expected ids {want:?}, got {ids:?}"));
            }
            if let Some(n) = expect.count.filter(|n| *n != ids.len()) {
                return Err(format!("{what}: expected {n} ids, got {}", ids.len()));
            }
        }
        Some(Answer::Done) | None => {}
    }
    let found_in = |id: &str| {
        let is_in = |store: Store| stores.get(store).is_some_and(|s| s.get(ACCOUNT, id).ok().flatten().is_some());
        match (is_in(Store::Legacy), is_in(Store::New)) {
            (true, true) => "both",
            (true, false) => "legacy",
            (false, true) => "new",
            (false, false) => "none",
        }
    };
    for (id, want) in expect.stores.iter().flatten() {
        let found = found_in(id);
        if found != want {
            return Err(format!("{what}: expected note {id} in {want}, found it in {found}"));
        }
    }
    if let Some(ids) = &expect.at_home {
        let asked: IdList = ids.iter().collect();
        // Asked as the host asks: in a scope whose writes never land.
        let (read_only, _never_committed) = scope().batched(Store::New);
        let homes = match block_on(plugin.homes(read_only, &asked, is_migrating)) {
            Ok(Ok(homes)) => homes,
            Ok(Err(e)) => return Err(format!("homes of {ids:?}: expected an answer, got error {e:?}")),
            Err(failure) => return Err(format!("homes of {ids:?}: the plugin failed: {failure}")),
        };
        for (id, home) in ids.iter().zip(homes) {
            let (said, found) = (placement_word(home), found_in(id));
            if said != found {
                return Err(format!(
                    "{what}: note {id} is in {found}, but the plugin's homes says it belongs in {said}; verify would count it misplaced"
                ));
            }
        }
    }
    Ok(())
}

/// A placement in the words the cases' `stores` use.
fn placement_word(home: Placement) -> &'static str {
    match home {
        Placement::Legacy => "legacy",
        Placement::New => "new",
        Placement::Both => "both",
    }
}

fn error_kind(e: &PluginError) -> (&'static str, Option<u64>) {
    match e {
        PluginError::NotFound => ("not-found", None),
        PluginError::VersionMismatch(current) => ("version-mismatch", Some(*current)),
        PluginError::Conflict(_) => ("conflict", None),
        PluginError::Invalid(_) => ("invalid", None),
        PluginError::Unavailable(_) => ("unavailable", None),
        PluginError::Internal(_) => ("internal", None),
    }
}

/// Writes a note, or a tombstone, straight into a store: the state another
/// writer (or a crash) left behind.
fn seed_store(stores: &DataStores, seed: &Seed) -> Result<(), String> {
    let store = match seed.store.as_str() {
        "legacy" => Store::Legacy,
        "new" => Store::New,
        other => return Err(format!("seed: store must be legacy or new, got {other:?}")),
    };
    let target = stores.get(store).ok_or("seed: the case needs a new store")?;
    let written = match (seed.version, seed.tombstone) {
        (Some(version), None) => {
            let note = Note {
                id: seed.id.clone(),
                account_id: ACCOUNT.into(),
                content: seed.content.clone().unwrap_or_default(),
                created_at_ms: 1_700_000_000_000,
                updated_at_ms: 1_700_000_000_000,
                version,
            };
            target.put(&note, 0).map(drop)
        }
        (None, Some(version)) => target.delete_if_not_newer(ACCOUNT, &seed.id, version, 0).map(drop),
        _ => return Err("seed: give a version (a note) or a tombstone".into()),
    };
    written.map_err(|e| format!("seed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_file_parses_and_names_a_known_profile() {
        for (file, json) in CASES {
            let rows: Vec<Case> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!rows.is_empty(), "{file}");
            for case in rows {
                assert!(case.profile == "contract" || PROFILES.contains(&case.profile.as_str()), "{file}: {}", case.name);
                assert!(matches!(case.needs.as_deref(), None | Some("migration" | "move" | "home")), "{file}: {}", case.name);
                let why = case.why.trim();
                assert!(why.len() > 40 && why.ends_with('.'), "{file}: {:?} says what it guards and why, in a sentence: {why:?}", case.name);
            }
        }
    }
}
