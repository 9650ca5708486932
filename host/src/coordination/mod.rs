//! Coordination state: the accounts and their `isMigrating` flags, the flips
//! of a flag in progress and who acknowledged them, and the hosts of the
//! fleet. Every host of a data dir shares it, so it is the one state that
//! decides how a note request is routed.
//!
//! One owner: seven small traits, one per concern ([`Accounts`], [`Flips`],
//! [`Hosts`], [`Rollouts`], [`Jobs`], [`Keys`], [`AuditLog`]), with named
//! operations; [`Coordination`] is their sum. `fleet` keeps the protocol
//! (when to announce, wait, commit or abort) and `app` the rules; neither
//! knows how the state is kept. Each backend is a directory with one file
//! per concern:
//! - [`SqliteCoordination`] keeps it in `accounts.db`: the only code that
//!   runs SQL on that file (`sqlite/`).
//! - [`PostgresCoordination`] keeps it in a PostgreSQL database
//!   (`postgres/`, a port of `sqlite/`).
//! - `MemoryCoordination` (crate `notes-in-process`, test support) keeps it
//!   in one process.
//!
//! Each operation that decides something (a gate, a flip) decides it
//! atomically: a SQLite write transaction, a PostgreSQL transaction under
//! one advisory lock, or one lock in memory. That is what makes both halves
//! of the deployment gate safe across processes. The gate's rule itself is
//! written once, in `gate.rs`: a backend only says how to read the hosts or
//! the migrating accounts inside its transaction.
//! `host/tests/coordination_rules.rs` holds every backend to the same rules.

mod gate;
mod postgres;
mod sqlite;

use std::collections::BTreeSet;

use uuid::Uuid;

pub use notes_api_types::{JobKind, JobState};
pub use gate::Gate;
pub use postgres::{PostgresCoordination, PostgresLayout};

/// How long a host's lease lasts on PostgreSQL unless told otherwise
/// (`PostgresCoordination::with_lease`; `serve` uses `--host-timeout-ms`).
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(2);
pub use sqlite::{LayoutRecord, SqliteCoordination};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub is_migrating: bool,
    /// Notely's `shard`: stored and echoed for its clients; it does not
    /// decide where notes live (the new store's sharding does).
    pub shard: Option<String>,
    /// The last verify of the account's notes since its flag last changed.
    pub verified: Option<Verified>,
    /// Its flag has been on at some time (at creation or by a flip): an
    /// account whose flag was never on is `legacy`, never `rolled-back`.
    pub was_migrating: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The outcome of a verify (`app::verify`), kept until the flag changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub at_ms: i64,
    pub clean: bool,
}

/// The kinds of audit entries: what `GET /audit?kind=` may name.
pub const AUDIT_KINDS: &[&str] = &["account", "flag", "rollout", "kill-switch", "plugin", "job", "key"];

/// One entry of the audit log: who changed what, when, from what to what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the log, in order; 0 in an entry to append.
    pub seq: i64,
    pub at_ms: i64,
    /// The host (`--host-name`) that made the change.
    pub host: String,
    /// `operator`, `startup` or `automatic`.
    pub actor: String,
    /// One of [`AUDIT_KINDS`].
    pub kind: String,
    /// What changed: an account id, a plugin digest, `percent`.
    pub subject: String,
    pub before: String,
    pub after: String,
    pub detail: String,
    /// The operator action (a rollout, the kill switch) this entry is part
    /// of: its summary entry and the flag entries of the flips it made share
    /// this id. Empty for an entry of its own.
    pub action: String,
    /// Read only: on an action's summary entry (any kind but `flag`), how
    /// many flag entries share its action; 0 otherwise.
    pub changes: u64,
}

impl AuditEntry {
    /// The entry an operator action writes of itself when it ends (a
    /// rollout's, the kill switch's), as opposed to the flag entries of the
    /// flips it made. What `changes` is counted on and what folding needs.
    pub fn is_action_summary(&self) -> bool {
        !self.action.is_empty() && self.kind != "flag"
    }
}

/// A page of the audit log: the entries between the cursors `after_seq` and
/// `before_seq`, oldest first or newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kind: Option<String>,
    pub after_seq: i64,
    /// Only entries below this sequence number (the cursor of a newest-first page).
    pub before_seq: Option<i64>,
    pub newest_first: bool,
    pub limit: u32,
    /// Only the entries of this operator action.
    pub action: Option<String>,
    /// One operator action, one entry: leave out the flag entries of an
    /// action whose summary entry is written (a rollout's 46 flips read as
    /// its one `rollout` entry, with `changes` 46). The flag entries of an
    /// action without a summary (a rollout still running, or whose host
    /// stopped) are kept, so nothing goes unseen.
    pub fold: bool,
}

/// A migration job: moves (or verifies) the notes of one account, or of
/// every account in the right mode, in batches, on whichever host owns it.
/// Kept in the coordination state so it survives its host (`app::jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// `None`: every account (in the mode the kind works on).
    pub account: Option<Uuid>,
    pub state: JobState,
    /// Notes per second at most; 0: as fast as batches go.
    pub rate: u32,
    /// Notes (verify: accounts) to go through, counted when the job started.
    pub total: u64,
    pub done: u64,
    pub moved: u64,
    /// Verify: accounts whose verify was not clean.
    pub problems: u64,
    /// The last account finished, for jobs over every account.
    pub cursor: String,
    /// The host running it (its fleet id); another host takes it over once
    /// that host's process has ended.
    pub owner: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub detail: String,
}

impl Job {
    /// A new running job, over every account, owned by no host yet.
    pub fn new(id: String, kind: JobKind, now_ms: i64) -> Job {
        Job {
            id,
            kind,
            account: None,
            state: JobState::Running,
            rate: 0,
            total: 0,
            done: 0,
            moved: 0,
            problems: 0,
            cursor: String::new(),
            owner: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            detail: String::new(),
        }
    }
}

/// A key of one account: its holder reaches that account's notes only.
/// The secret itself is never stored: `hash` is its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    pub id: String,
    pub account: Uuid,
    pub label: String,
    pub hash: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// What `update_account` changes; `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDetails {
    pub name: Option<String>,
    pub shard: Option<String>,
}

/// What a note request needs to know about its account, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    pub is_migrating: bool,
    /// The flag's epoch: raised by every commit or abort of a flip. A
    /// request admitted under it writes under it, and a store that was
    /// fenced at a higher epoch refuses the write (`stores::DataStore`).
    pub epoch: i64,
    /// A change of the flag in progress: the request must wait for it.
    pub flip: Option<PendingFlip>,
}

/// A change of one account's flag that hosts are draining for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFlip {
    pub account: Uuid,
    pub id: String,
    pub to: bool,
    /// After this (ms since the epoch) any host may abort the flip.
    pub deadline_ms: i64,
    /// The host running the flip.
    pub by_host: String,
}

/// A host of the fleet, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub pid: u32,
    pub version: String,
    pub started_at_ms: i64,
    pub heartbeat_ms: i64,
    pub plugin: PluginSummary,
}

/// What routes a host's note requests, as the deployment gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    pub digest: String,
    pub label: String,
    pub supports_migration: bool,
}

/// How an announcement of a flip ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// The flag already had the value: nothing was written.
    Unchanged,
    /// The flip is pending; these hosts were registered when it was
    /// announced. Its commit (or abort) sets the flag's epoch to `epoch`.
    Pending { hosts: Vec<HostRecord>, epoch: i64 },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinationError {
    #[error("account {0} already exists")]
    AlreadyExists(Uuid),
    #[error("account {0} not found")]
    NoAccount(Uuid),
    #[error("a change of isMigrating for account {0} is already in progress; retry when it ends")]
    FlipInProgress(Uuid),
    /// A rollout's turn-on, refused: the kill switch was pressed after the rollout began.
    #[error("account {0} was not turned on: the kill switch was pressed while this rollout ran")]
    Stopped(Uuid),
    /// A rollout that would turn accounts on, refused: the kill switch was
    /// pressed, and no rollout released it since.
    #[error("the kill switch was pressed: no rollout turns an account on until one is sent with \"resume\": true")]
    Latched,
    /// The flag side of the gate: these hosts' plugins cannot migrate.
    #[error("{} host(s) run a plugin that does not support migration", .0.len())]
    HostsCannotMigrate(Vec<HostRecord>),
    /// The plugin side of the gate: these accounts migrate (or are being turned on).
    #[error("{} account(s) are migrating", .0.len())]
    AccountsMigrating(Vec<Uuid>),
    /// The state could not be read or written now.
    #[error("accounts database unavailable: {0}")]
    Unavailable(String),
}

/// The shared state of a fleet. Implementations are blocking; every method
/// is one atomic step.
///
/// Each concern is its own trait (no backend method is far from its kin), and
/// `Coordination` is all of them: what `App` and `Fleet` hold.
pub trait Coordination: Accounts + Flips + Hosts + Rollouts + Jobs + Keys + AuditLog {}

impl<T: Accounts + Flips + Hosts + Rollouts + Jobs + Keys + AuditLog + ?Sized> Coordination for T {}

/// Accounts and their flags: what a note request reads, and each account's last verify.
pub trait Accounts: Send + Sync {
    /// Whether a flag read answers in microseconds (a file or memory in this
    /// process), so a request may read it on its async worker; see
    /// [`crate::stores::DataStore::is_in_process`].
    fn is_in_process(&self) -> bool {
        false
    }

    /// Creates `account`. If its flag is on and `gate` is checked, refused
    /// (`HostsCannotMigrate`) unless every registered host can migrate,
    /// decided atomically with the insert.
    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError>;

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError>;

    /// Every account, oldest first.
    fn accounts(&self) -> Result<Vec<Account>, CoordinationError>;

    /// The account with the smallest id above `after` (the first with
    /// `None`): a job over every account walks them one at a time, without
    /// reading them all at every step.
    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError>;

    /// Changes the name and/or shard (`None` keeps it); `None` if there is
    /// no such account. Never changes the flag.
    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError>;

    /// The flag and any flip in progress, read at once: the one read every
    /// note request makes. `None` if there is no such account.
    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError>;

    /// Records a verify of the account's notes that began when the account
    /// was last changed at `updated_at_ms` (under the flag it had then), only
    /// if it has not changed since and no flip is pending: else false (a flip
    /// meanwhile, even one turned back, leaves the verify saying nothing).
    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError>;
}

/// Changes of an account's flag through the fleet's barrier (`fleet::flip` has the protocol).
pub trait Flips: Send + Sync {
    /// Marks `flip` pending on its account unless another flip is pending
    /// (`FlipInProgress`) or the flag already has the value (`Unchanged`).
    /// Turning on with `gate` checked is refused unless every host can migrate.
    /// Turning on for a rollout that began at stop generation `rollout` is
    /// refused (`Stopped`) once the kill switch raised it since: decided in
    /// the same step, so no rollout in flight turns an account on after the
    /// kill switch was pressed.
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError>;

    /// Sets the flag to the flip's value, raises its epoch, clears the mark
    /// and the account's last verify, and appends `audit`, all only if the
    /// flip is still pending (false if it was aborted). With `gate` checked, a flip to on is
    /// refused (nothing changes) unless every host can migrate.
    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError>;

    /// Clears the mark if the flip is still pending; the flag keeps its
    /// value, its epoch is raised all the same (stores may have been fenced
    /// at it already).
    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError>;

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError>;

    /// `host` runs no request of the flip's account under the old value.
    fn acknowledge_flip(&self, flip_id: &str, host: &str, now_ms: i64) -> Result<(), CoordinationError>;

    /// The hosts that acknowledged `flip_id`.
    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError>;

    /// TEST ONLY (`--unsafe-no-fleet-safety`): writes the flag, no flip.
    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError>;
}

/// The hosts of the fleet: who runs which plugin, who is alive, and a watch for changes.
pub trait Hosts: Send + Sync {
    /// Registers `host`. If its plugin cannot migrate and `gate` is checked,
    /// refused (`AccountsMigrating`) while any account migrates or is being
    /// turned on.
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError>;

    /// Records that `host` runs `plugin`, with the same refusal as
    /// `register_host`. `before_commit` runs after the check and the write,
    /// before they take effect: `fleet` uses it to order a plugin swap.
    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError>;

    /// Renews the host's heartbeat (and its lease, where hosts hold one).
    /// False if the host's record is gone or its lease had lapsed: it must
    /// then stop serving and join again.
    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError>;

    /// Hosts whose lease lapsed, on the coordination state's own clock:
    /// they serve nothing, so no flip waits for them. Always empty where
    /// hosts hold no lease (one machine: lock files tell who is gone).
    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError>;

    /// Every registered host, oldest first.
    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError>;

    /// Removes the host and its acknowledgements.
    fn remove_host(&self, host: &str) -> Result<(), CoordinationError>;

    /// Removes a host found gone, only if it still is: with leases, only
    /// while its lease is lapsed (one that renewed or joined again since it
    /// was looked at keeps its row). False if it was kept.
    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError>;

    /// A cheap way to learn that any host changed the state (the fleet's
    /// watcher polls it every millisecond).
    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError>;
}

/// The staged rollout's percent and the kill switch.
pub trait Rollouts: Send + Sync {
    /// The percent of accounts the last rollout turned on (`None`: no rollout yet).
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError>;

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError>;

    /// Begins a rollout that turns accounts on: answers the stop generation
    /// (how many times the kill switch was pressed), which its flips carry.
    /// Refused (`Latched`) once the kill switch was pressed, unless `resume`,
    /// which releases the latch, in the same step.
    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError>;

    /// Whether the kill switch's latch is set (a rollout preview's question).
    fn rollout_latched(&self) -> Result<bool, CoordinationError>;

    /// The kill switch, in the state: the rollout percent becomes 0, the
    /// stop generation is raised and the latch set, in one step; answers the
    /// new generation.
    fn stop_rollouts(&self) -> Result<i64, CoordinationError>;
}

/// Durable migration jobs (`app::jobs`); `claim_job` and `save_job` are compare-and-sets on the owner.
pub trait Jobs: Send + Sync {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError>;

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError>;

    /// Every job, newest first.
    fn jobs(&self) -> Result<Vec<Job>, CoordinationError>;

    /// The running jobs, newest first: what the job runner looks at every
    /// step, however many finished jobs the history holds.
    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError>;

    /// Makes `host` the job's owner if its owner is still `expected` (a
    /// compare-and-set: of two hosts taking over a job, one wins).
    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError>;

    /// Saves a job's progress (counters, cursor, state, detail), only while
    /// `job.owner` still owns it and an operator has not paused or cancelled
    /// it meanwhile (false then: the owner drops the step's bookkeeping).
    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError>;

    /// An operator's change of state (pause, resume, cancel), from one of
    /// `from`; `None` if the job is not in one of them.
    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError>;
}

/// Account keys: a holder reaches one account's notes.
pub trait Keys: Send + Sync {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError>;

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError>;

    /// The account's keys, oldest first, revoked ones included.
    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError>;

    /// False if the account has no such key, or it is already revoked.
    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError>;
}

/// The append-only audit log.
pub trait AuditLog: Send + Sync {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError>;

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError>;
}

/// Tells whether the coordination state changed since the last look.
pub trait ChangeWatch: Send {
    /// True on the first call, and whenever anything may have changed since.
    fn changed(&mut self) -> Result<bool, CoordinationError>;

    /// Waits at most `timeout`, returning early once another process may
    /// have changed the state. A watch that cannot tell sleeps it out.
    fn wait(&mut self, timeout: std::time::Duration) {
        std::thread::sleep(timeout)
    }

    /// True if `wait` returns as soon as another process changes the state,
    /// so a watcher with nothing pending may wait long without missing one.
    fn wakes_on_change(&self) -> bool {
        false
    }
}

