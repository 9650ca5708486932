//! [`Coordination`] in one process's memory: every operation under one lock,
//! so each is as atomic as a SQLite write transaction. For in-process tests,
//! which can also make it fail (`set_unavailable`), as a database can.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, Accounts, AuditLog, ChangeWatch, CoordinationError, Flips, Hosts, Jobs, Keys, Rollouts, FlagState, Gate, HostRecord, Job, JobState, PendingFlip,
    PluginSummary, Verified,
};

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

impl Accounts for MemoryCoordination {
    fn is_in_process(&self) -> bool {
        true
    }

    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_flag(account.is_migrating, || Ok(state.hosts()))?;
        if state.accounts.contains_key(&account.id) {
            return Err(CoordinationError::AlreadyExists(account.id));
        }
        let was_migrating = account.is_migrating || account.was_migrating;
        state.accounts.insert(account.id, (Account { was_migrating, ..account.clone() }, None));
        Ok(())
    }

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError> {
        Ok(self.read()?.accounts.get(&id).map(|(a, _)| a.clone()))
    }

    fn accounts(&self) -> Result<Vec<Account>, CoordinationError> {
        let mut accounts: Vec<Account> = self.read()?.accounts.values().map(|(a, _)| a.clone()).collect();
        accounts.sort_by_key(|a| (a.created_at_ms, a.id));
        Ok(accounts)
    }

    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError> {
        Ok(self.read()?.accounts.keys().filter(|id| after.is_none_or(|after| **id > after)).min().copied())
    }

    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError> {
        let mut state = self.write()?;
        Ok(state.accounts.get_mut(&id).map(|(a, _)| {
            if let Some(name) = &details.name {
                a.name = name.clone();
            }
            if let Some(shard) = &details.shard {
                a.shard = Some(shard.clone());
            }
            a.updated_at_ms = now_ms;
            a.clone()
        }))
    }

    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError> {
        let state = self.read()?;
        let epoch = state.epochs.get(&id).copied().unwrap_or(0);
        Ok(state.accounts.get(&id).map(|(a, flip)| FlagState { is_migrating: a.is_migrating, epoch, flip: flip.clone() }))
    }

    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.accounts.get_mut(&account) {
            Some((a, None)) if a.updated_at_ms == updated_at_ms => {
                a.verified = Some(verified);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl Flips for MemoryCoordination {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        let mut state = self.write()?;
        if flip.to && rollout.is_some_and(|began_at| began_at != state.stop_generation) {
            return Err(CoordinationError::Stopped(flip.account));
        }
        let hosts = state.hosts();
        let (account, pending) = state.accounts.get_mut(&flip.account).ok_or(CoordinationError::NoAccount(flip.account))?;
        if pending.is_some() {
            return Err(CoordinationError::FlipInProgress(flip.account));
        }
        if account.is_migrating == flip.to {
            return Ok(Announced::Unchanged);
        }
        gate.allows_flag(flip.to, || Ok(hosts.clone()))?;
        *pending = Some(flip.clone());
        let epoch = state.epochs.get(&flip.account).copied().unwrap_or(0) + 1;
        Ok(Announced::Pending { hosts, epoch })
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        gate.allows_flag(flip.to, || Ok(state.hosts()))?;
        state.acks.remove(&flip.id);
        let Some((account, pending)) = state.accounts.get_mut(&flip.account) else { return Ok(false) };
        if pending.as_ref().map(|p| &p.id) != Some(&flip.id) {
            return Ok(false);
        }
        *pending = None;
        account.is_migrating = flip.to;
        account.was_migrating |= flip.to;
        account.updated_at_ms = now_ms;
        account.verified = None;
        *state.epochs.entry(flip.account).or_default() += 1;
        state.append_audit(audit);
        Ok(true)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        state.acks.remove(flip_id);
        match state.accounts.get_mut(&account) {
            Some((_, pending)) if pending.as_ref().is_some_and(|p| p.id == flip_id) => {
                *pending = None;
                *state.epochs.entry(account).or_default() += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        Ok(self.read()?.accounts.values().filter_map(|(_, flip)| flip.clone()).collect())
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, _now_ms: i64) -> Result<(), CoordinationError> {
        self.write()?.acks.entry(flip_id.to_owned()).or_default().insert(host.to_owned());
        Ok(())
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(self.read()?.acks.get(flip_id).cloned().unwrap_or_default())
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        let changed = state.accounts.get_mut(&account).map(|(a, _)| {
            a.is_migrating = to;
            a.was_migrating |= to;
            a.updated_at_ms = now_ms;
            a.verified = None;
        }).is_some();
        if changed {
            *state.epochs.entry(account).or_default() += 1;
        }
        Ok(changed)
    }
}

impl Hosts for MemoryCoordination {
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_plugin(&host.plugin, || Ok(state.migrating()))?;
        state.hosts.insert(host.id.clone(), host.clone());
        Ok(())
    }

    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_plugin(plugin, || Ok(state.migrating()))?;
        before_commit();
        if let Some(record) = state.hosts.get_mut(host) {
            record.plugin = plugin.clone();
        }
        Ok(())
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        Ok(self.write()?.hosts.get_mut(host).map(|h| h.heartbeat_ms = now_ms).is_some())
    }

    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        self.remove_host(host).map(|()| true)
    }

    /// Hosts in one process hold no lease.
    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(BTreeSet::new())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        Ok(self.read()?.hosts())
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        state.hosts.remove(host);
        for acked in state.acks.values_mut() {
            acked.remove(host);
        }
        Ok(())
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        Ok(Box::new(VersionWatch { version: self.version.clone(), last: None }))
    }
}

impl Rollouts for MemoryCoordination {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        Ok(self.read()?.rollout_percent)
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        let mut state = self.write()?;
        if state.stopped {
            if !resume {
                return Err(CoordinationError::Latched);
            }
            state.stopped = false;
        }
        Ok(state.stop_generation)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        Ok(self.read()?.stopped)
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        let mut state = self.write()?;
        state.stop_generation += 1;
        state.stopped = true;
        state.rollout_percent = Some(0.0);
        Ok(state.stop_generation)
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        self.write()?.rollout_percent = Some(percent);
        Ok(())
    }
}

impl Jobs for MemoryCoordination {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        self.write()?.jobs.push(job.clone());
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().find(|j| j.id == id).cloned())
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().rev().cloned().collect())
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().rev().filter(|j| j.state == JobState::Running).cloned().collect())
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.jobs.iter_mut().find(|j| j.id == id && j.owner.as_deref() == expected && j.state == JobState::Running) {
            Some(job) => {
                job.owner = Some(host.to_owned());
                job.updated_at_ms = now_ms;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.jobs.iter_mut().find(|j| j.id == job.id && j.owner == job.owner && j.state == JobState::Running) {
            Some(stored) => {
                *stored = job.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        let mut state = self.write()?;
        Ok(state.jobs.iter_mut().find(|j| j.id == id && from.contains(&j.state)).map(|job| {
            job.state = to;
            job.updated_at_ms = now_ms;
            job.clone()
        }))
    }
}

impl Keys for MemoryCoordination {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError> {
        self.write()?.keys.push(key.clone());
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError> {
        Ok(self.read()?.keys.iter().find(|k| k.id == id).cloned())
    }

    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError> {
        Ok(self.read()?.keys.iter().filter(|k| k.account == account).cloned().collect())
    }

    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.keys.iter_mut().find(|k| k.id == id && k.account == account && k.revoked_at_ms.is_none()) {
            Some(key) => {
                key.revoked_at_ms = Some(now_ms);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl AuditLog for MemoryCoordination {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        self.write()?.append_audit(entry);
        Ok(())
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        let state = self.read()?;
        let summarised = |action: &str| state.audit.iter().any(|s| s.action == action && s.is_action_summary());
        let wanted = |e: &&AuditEntry| {
            e.seq > query.after_seq
                && query.before_seq.is_none_or(|b| e.seq < b)
                && query.since_ms.is_none_or(|t| e.at_ms >= t)
                && query.until_ms.is_none_or(|t| e.at_ms <= t)
                && query.kind.as_ref().is_none_or(|k| &e.kind == k)
                && query.action.as_ref().is_none_or(|a| &e.action == a)
                && !(query.fold && e.kind == "flag" && !e.action.is_empty() && summarised(&e.action))
        };
        let with_changes = |e: &AuditEntry| {
            let changes = if e.is_action_summary() {
                state.audit.iter().filter(|f| f.action == e.action && f.kind == "flag").count() as u64
            } else {
                0
            };
            AuditEntry { changes, ..e.clone() }
        };
        let limit = query.limit as usize;
        Ok(if query.newest_first {
            state.audit.iter().rev().filter(wanted).take(limit).map(with_changes).collect()
        } else {
            state.audit.iter().filter(wanted).take(limit).map(with_changes).collect()
        })
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
