//! [`Coordination`] in one process's memory: every operation under one lock,
//! so each is as atomic as a SQLite write transaction. For in-process tests,
//! which can also make it fail (`set_unavailable`), as a database can.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use notes_host::coordination::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, Accounts, AuditLog, ChangeWatch, CoordinationError, Flips, Hosts, Jobs, Keys, Rollouts, FlagState, Gate, HostRecord, Job, JobState, PendingFlip,
    PluginSummary, Verified,
};

mod accounts;
mod flips;
mod hosts;
mod rollouts;
mod jobs;
mod keys;
mod audit;

#[derive(Default)]
pub struct MemoryCoordination {
    state: Mutex<State>,
    /// Bumped by every write: what `change_watch` looks at.
    version: Arc<AtomicU64>,
    unavailable: AtomicBool,
}

#[derive(Default)]
struct State {
    accounts: BTreeMap<Uuid, (Account, Option<PendingFlip>)>,
    /// Each account's flag epoch (absent: 0).
    epochs: HashMap<Uuid, i64>,
    acks: HashMap<String, BTreeSet<String>>,
    hosts: BTreeMap<String, HostRecord>,
    audit: Vec<AuditEntry>,
    rollout_percent: Option<f64>,
    stop_generation: i64,
    /// The kill switch's latch.
    stopped: bool,
    jobs: Vec<Job>,
    keys: Vec<AccountKey>,
}

impl State {
    fn append_audit(&mut self, entry: &AuditEntry) {
        let seq = self.audit.len() as i64 + 1;
        self.audit.push(AuditEntry { seq, changes: 0, ..entry.clone() });
    }
}

impl State {
    fn hosts(&self) -> Vec<HostRecord> {
        let mut hosts: Vec<HostRecord> = self.hosts.values().cloned().collect();
        hosts.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        hosts
    }

    fn migrating(&self) -> Vec<Uuid> {
        let on = |(a, f): &(Account, Option<PendingFlip>)| a.is_migrating || f.as_ref().is_some_and(|f| f.to);
        self.accounts.values().filter(|row| on(row)).map(|(a, _)| a.id).collect()
    }
}

impl MemoryCoordination {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every operation fail as an unreachable database does, until
    /// called again with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn read(&self) -> Result<MutexGuard<'_, State>, CoordinationError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(CoordinationError::Unavailable("the coordination state is unavailable (made so by a test)".into()));
        }
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn write(&self) -> Result<MutexGuard<'_, State>, CoordinationError> {
        let state = self.read()?;
        self.version.fetch_add(1, Ordering::SeqCst);
        Ok(state)
    }
}

struct VersionWatch {
    version: Arc<AtomicU64>,
    last: Option<u64>,
}

impl ChangeWatch for VersionWatch {
    fn changed(&mut self) -> Result<bool, CoordinationError> {
        let now = self.version.load(Ordering::SeqCst);
        Ok(self.last.replace(now) != Some(now))
    }
}
