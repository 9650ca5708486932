//! The fleet: every host process serving one data dir.
//!
//! Each host registers itself in the coordination state (`coordination`,
//! `accounts.db` in production), holds a lock file while it runs
//! (`liveness`), heartbeats, and watches the state for flag flips
//! (`watcher`). The protocol is here; the state, and every query on it, is
//! `coordination`'s. A change of `isMigrating` goes through `flip`: it
//! returns only once every host has stopped running requests under the old
//! value, so one account's requests never run under two values at once.
//!
//! The deployment gate is fleet-wide and lives here too: a flag is refused
//! while any host's plugin cannot migrate, and a plugin that cannot migrate
//! is refused while any account migrates. Each side is decided in one
//! atomic step of the coordination state (one SQLite write transaction), so
//! across processes they cannot interleave.
//!
//! See ARCHITECTURE.md, "The fleet", for the protocol and why it is safe.

mod flip;
mod inflight;
pub mod liveness;
mod watcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use uuid::Uuid;

use crate::clock::Clock;
use crate::coordination::{Account, AuditEntry, Coordination, CoordinationError, Gate, HostRecord, PluginSummary};
use liveness::Liveness;

pub use flip::{Admission, FlipCause, FlipOutcome};

/// Timing of the fleet protocol; `serve` fills it from the command line.
#[derive(Debug, Clone, Copy)]
pub struct FleetSettings {
    /// Longest a flip waits for every host to drain before it fails, changing nothing.
    pub flip_timeout: Duration,
    /// Longest a note request waits for a flip of its account to finish (then 503).
    pub flip_wait: Duration,
    /// How often a host writes its heartbeat.
    pub heartbeat_every: Duration,
    /// A host whose heartbeat is older than this is shown as unresponsive.
    pub host_timeout: Duration,
    /// How often the watcher looks for flips (SQLite `data_version`).
    pub poll_every: Duration,
    /// Note requests one account may run at once on this host; more are
    /// refused (429) at once, so one account cannot take every thread.
    pub max_requests_per_account: u32,
    /// TEST ONLY: no fleet gate and no drain barrier; a flip is a plain write.
    /// Exists to reproduce the data loss the two prevent.
    pub unsafe_no_fleet_safety: bool,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            flip_timeout: Duration::from_millis(1000),
            flip_wait: Duration::from_millis(1000),
            heartbeat_every: Duration::from_millis(250),
            host_timeout: Duration::from_millis(2000),
            poll_every: Duration::from_millis(1),
            // Enough for one account's honest concurrency (the benchmarks
            // bulk-load one account from 8 connections); few enough that its
            // looping calls leave most of the CPUs to others (BENCHMARKS.md,
            // "Fairness").
            max_requests_per_account: 8,
            unsafe_no_fleet_safety: false,
        }
    }
}

/// Who this host is, as the fleet sees it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: Uuid,
    pub name: String,
    pub address: String,
}

/// One row of `GET /hosts`: a registered host, as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub host: HostRecord,
    /// Heartbeat older than the host timeout (process still alive).
    pub unresponsive: bool,
    pub is_self: bool,
}

impl HostView {
    /// `name (address, plugin)`, for error messages.
    pub fn describe(&self) -> String {
        format!("{} ({}, plugin {})", self.host.name, self.host.address, self.host.plugin.label)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("account {0} not found")]
    NoAccount(Uuid),
    #[error("account {0} already exists")]
    AccountExists(Uuid),
    /// The gate: hosts whose plugin cannot migrate.
    #[error("hosts lacking migration support")]
    HostsCannotMigrate(Vec<HostView>),
    /// The gate: `plugin` cannot migrate, but these accounts migrate (or are being turned on).
    #[error("accounts migrating")]
    AccountsMigrating { plugin: String, accounts: Vec<Uuid> },
    #[error("a change of isMigrating for account {0} is already in progress; retry when it ends")]
    FlipInProgress(Uuid),
    #[error("{0}")]
    FlipFailed(String),
    /// A rollout's turn-on after the kill switch was pressed.
    #[error("{0}")]
    Stopped(String),
    #[error("{0}")]
    Busy(String),
    /// The account runs its maximum of requests on this host.
    #[error("account {account} already runs {running} requests on this host, its maximum; retry shortly")]
    AccountSaturated { account: Uuid, running: u32 },
    #[error("{0}")]
    Unavailable(String),
}

/// This host's own view of its lease: it holds until a moment on this
/// host's monotonic clock, set from the moment each renewal was *sent*, a
/// heartbeat period short of the lease: so it lapses here before the
/// database (whose clock started later) counts it lapsed, and this host
/// stops admitting requests before any flip stops waiting for it.
///
/// It also counts its lapses: a request that began before one and ends after
/// the host joined again finds the lease held, yet flips may have completed
/// without this host in between (it was stopped past its lease, or cut off).
struct OwnLease {
    /// `None`: no lease (one machine, or one process): always held.
    length: Option<Duration>,
    until: std::sync::Mutex<std::time::Instant>,
    /// Raised each time the fleet may have gone on without this host (the
    /// database refused a renewal: the lease had lapsed there).
    lapses: std::sync::atomic::AtomicU64,
}

impl OwnLease {
    fn new(length: Option<Duration>) -> Self {
        OwnLease { length, until: std::sync::Mutex::new(std::time::Instant::now()), lapses: Default::default() }
    }

    fn lapses(&self) -> u64 {
        self.lapses.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The database counted this host gone: whatever began before now ran
    /// under flags a flip may have changed.
    fn lapsed(&self) {
        self.lapses.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Held now, and never lapsed since `lapses()` answered `since`.
    fn held_since(&self, since: u64) -> bool {
        self.holds() && self.lapses() == since
    }

    fn holds(&self) -> bool {
        self.length.is_none() || std::time::Instant::now() < *self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A renewal sent at `sent` succeeded.
    fn renewed(&self, sent: std::time::Instant) {
        if let Some(length) = self.length {
            *self.until.lock().unwrap_or_else(|e| e.into_inner()) = sent + length;
        }
    }
}

/// This host's membership in the fleet. Dropping it leaves the fleet.
pub struct Fleet {
    shared: Arc<Shared>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// What the request path, the flip and the background threads share.
struct Shared {
    me: Identity,
    /// What this host runs, as its record says: to join again after a lapse.
    plugin: std::sync::Mutex<PluginSummary>,
    coordination: Arc<dyn Coordination>,
    liveness: Liveness,
    /// This host's own view of its lease (always held without leases).
    lease: OwnLease,
    clock: Arc<dyn Clock>,
    inflight: inflight::InFlight,
    settings: FleetSettings,
    stop: AtomicBool,
    /// False if this host's row went missing: it then serves no note request,
    /// because flips would not wait for it.
    registered: AtomicBool,
    /// Set when this host joined again (its acknowledgements went with its
    /// old row): the watcher acknowledges the pending flips again.
    rejoined: AtomicBool,
}

impl Fleet {
    /// Registers this host with `plugin`. Refuses (nothing registered) a
    /// plugin that cannot migrate while any account migrates.
    pub fn join(
        coordination: Arc<dyn Coordination>,
        liveness: Liveness,
        me: Identity,
        plugin: &PluginSummary,
        settings: FleetSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Fleet, FleetError> {
        let lease = OwnLease::new(match liveness {
            Liveness::Lease(length) => Some(length.saturating_sub(settings.heartbeat_every)),
            _ => None,
        });
        let shared = Arc::new(Shared {
            me,
            plugin: std::sync::Mutex::new(plugin.clone()),
            coordination,
            liveness,
            lease,
            clock,
            inflight: inflight::InFlight::default(),
            settings,
            stop: AtomicBool::new(false),
            registered: AtomicBool::new(true),
            rejoined: AtomicBool::new(false),
        });
        shared.prune_gone_hosts();
        let sent = std::time::Instant::now();
        shared.coordination.register_host(&shared.record(), shared.gate()).map_err(|e| shared.refusal(e, plugin))?;
        shared.lease.renewed(sent);
        let threads = watcher::start(&shared).map_err(|e| FleetError::Unavailable(format!("cannot start the fleet threads: {e}")))?;
        tracing::info!(host = %shared.me.id, name = %shared.me.name, address = %shared.me.address, plugin = %plugin.label, "joined the fleet");
        Ok(Fleet { shared, threads: std::sync::Mutex::new(threads) })
    }

    /// Changes this host's plugin. `swap` makes the change in memory; it runs
    /// while this host's record says it cannot migrate whenever it might run
    /// code that cannot (see the ordering below). Refuses a plugin that
    /// cannot migrate while any account migrates or is being turned on.
    pub fn change_plugin<T>(&self, plugin: &PluginSummary, swap: impl FnOnce() -> T) -> Result<T, FleetError> {
        let shared = &self.shared;
        let me = shared.me.id.to_string();
        let mut swap = Some(swap);
        let mut out = None;
        // Held across the change: a host joining again after a lapse
        // registers what it runs, not what it ran.
        let mut recorded = shared.plugin.lock().unwrap_or_else(|e| e.into_inner());
        if plugin.supports_migration {
            // Upgrade: run the new code before claiming it. If the claim
            // fails, the record still says "cannot migrate": only too strict.
            let mut run = || out = swap.take().map(|f| f());
            shared.coordination.change_host_plugin(&me, plugin, shared.gate(), &mut run).map_err(|e| shared.refusal(e, plugin))?;
        } else {
            // Downgrade: the fleet learns first, so no flip can turn a flag
            // on between the claim and the old code running.
            shared.coordination.change_host_plugin(&me, plugin, shared.gate(), &mut || {}).map_err(|e| shared.refusal(e, plugin))?;
            out = swap.take().map(|f| f());
        }
        *recorded = plugin.clone();
        Ok(out.expect("the swap ran once the change was allowed"))
    }

    /// Creates an account. With its flag on, only if every host's plugin can
    /// migrate (the flag side of the gate), decided together with the insert.
    pub fn create_account(&self, account: &Account) -> Result<(), FleetError> {
        if account.is_migrating {
            self.shared.prune_gone_hosts();
        }
        self.shared.coordination.create_account(account, self.shared.gate()).map_err(|e| self.shared.fleet_error(e))
    }

    /// Appends to the audit log, as this host, now. Best effort: a change
    /// already made is not undone because its record could not be written
    /// (flips are recorded atomically, in `flip`).
    pub fn audit(&self, actor: &str, kind: &str, subject: &str, before: &str, after: &str, detail: &str) {
        self.audit_action(actor, kind, subject, before, after, detail, "");
    }

    /// [`Fleet::audit`] of an operator action's summary: the flag entries of
    /// the flips it made carry the same `action` (see `AuditEntry::action`).
    #[allow(clippy::too_many_arguments)]
    pub fn audit_action(&self, actor: &str, kind: &str, subject: &str, before: &str, after: &str, detail: &str, action: &str) {
        let entry = AuditEntry {
            seq: 0,
            at_ms: self.shared.clock.now_ms(),
            host: self.shared.me.name.clone(),
            actor: actor.into(),
            kind: kind.into(),
            subject: subject.into(),
            before: before.into(),
            after: after.into(),
            detail: detail.into(),
            action: action.into(),
            changes: 0,
        };
        if let Err(e) = self.shared.coordination.append_audit(&entry) {
            tracing::error!(error = %e, kind, subject, "cannot write the audit log");
        }
    }

    /// This host's id in the fleet.
    pub fn host_id(&self) -> String {
        self.shared.me.id.to_string()
    }

    /// True only if the host's process has certainly ended (never for this one).
    pub fn host_is_gone(&self, host: &str) -> bool {
        self.shared.is_gone(host)
    }

    /// Every registered host, this one included.
    pub fn hosts(&self) -> Result<Vec<HostView>, FleetError> {
        self.shared.hosts()
    }

    /// Deregisters now (also done on drop).
    pub fn leave(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            // The heartbeat sleeps until its next beat: wake it to leave now.
            thread.thread().unpark();
            let _ = thread.join();
        }
        let id = self.shared.me.id.to_string();
        if let Err(e) = self.shared.coordination.remove_host(&id) {
            tracing::warn!(error = %e, "could not deregister from the fleet; others will drop this host once its process ends");
        }
        self.shared.liveness.forget(&id);
        tracing::info!(host = %id, "left the fleet");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Shared {
    fn gate(&self) -> Gate {
        if self.settings.unsafe_no_fleet_safety { Gate::Unchecked } else { Gate::Checked }
    }

    /// A refusal of the coordination state, in the fleet's words.
    fn refusal(&self, e: CoordinationError, plugin: &PluginSummary) -> FleetError {
        match e {
            CoordinationError::AccountsMigrating(accounts) => FleetError::AccountsMigrating { plugin: plugin.label.clone(), accounts },
            other => self.fleet_error(other),
        }
    }

    fn fleet_error(&self, e: CoordinationError) -> FleetError {
        match e {
            CoordinationError::NoAccount(id) => FleetError::NoAccount(id),
            CoordinationError::FlipInProgress(id) => FleetError::FlipInProgress(id),
            CoordinationError::Stopped(_) | CoordinationError::Latched => FleetError::Stopped(e.to_string()),
            CoordinationError::HostsCannotMigrate(hosts) => FleetError::HostsCannotMigrate(self.views(hosts)),
            CoordinationError::AccountsMigrating(accounts) => FleetError::AccountsMigrating { plugin: "?".into(), accounts },
            CoordinationError::AlreadyExists(id) => FleetError::AccountExists(id),
            CoordinationError::Unavailable(_) => FleetError::Unavailable(e.to_string()),
        }
    }

    fn views(&self, hosts: Vec<HostRecord>) -> Vec<HostView> {
        let now = self.clock.now_ms();
        let timeout = self.settings.host_timeout.as_millis() as i64;
        let me = self.me.id.to_string();
        hosts
            .into_iter()
            .map(|host| HostView { unresponsive: now - host.heartbeat_ms > timeout, is_self: host.id == me, host })
            .collect()
    }

    fn hosts(&self) -> Result<Vec<HostView>, FleetError> {
        let hosts = self.coordination.hosts().map_err(|e| self.fleet_error(e))?;
        Ok(self.views(hosts))
    }

    /// This host's record, as it registers (again).
    fn record(&self) -> HostRecord {
        let now = self.clock.now_ms();
        HostRecord {
            id: self.me.id.to_string(),
            name: self.me.name.clone(),
            address: self.me.address.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: now,
            heartbeat_ms: now,
            plugin: self.plugin.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn is_gone(&self, host: &str) -> bool {
        !self.gone_among(&std::collections::BTreeSet::from([host.to_owned()])).is_empty()
    }

    /// Which of `hosts` are gone: their process ended (lock files), or their
    /// lease lapsed (PostgreSQL). Never this host; when it cannot tell, a
    /// host is alive.
    fn gone_among(&self, hosts: &std::collections::BTreeSet<String>) -> std::collections::BTreeSet<String> {
        let me = self.me.id.to_string();
        let candidates = hosts.iter().filter(|h| **h != me);
        match &self.liveness {
            // Gone: its lease lapsed, or its row is gone already (pruned by
            // another host, or it left).
            Liveness::Lease(_) => match self.coordination.expired_hosts().and_then(|expired| Ok((expired, self.coordination.hosts()?))) {
                Ok((expired, rows)) => {
                    let live: std::collections::BTreeSet<&str> =
                        rows.iter().map(|h| h.id.as_str()).filter(|id| !expired.contains(*id)).collect();
                    candidates.filter(|h| !live.contains(h.as_str())).cloned().collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the fleet's leases; counting every host alive");
                    Default::default()
                }
            },
            liveness => candidates.filter(|h| liveness.is_gone(h)).cloned().collect(),
        }
    }

    /// Drops the records of hosts whose process has ended or whose lease lapsed.
    fn prune_gone_hosts(&self) {
        let pruned = (|| -> Result<Vec<String>, CoordinationError> {
            let mut gone = Vec::new();
            let hosts = self.coordination.hosts()?;
            let ended = self.gone_among(&hosts.iter().map(|h| h.id.clone()).collect());
            for host in hosts.into_iter().filter(|h| ended.contains(&h.id)) {
                if self.coordination.prune_host(&host.id)? {
                    self.liveness.forget(&host.id);
                    gone.push(host.id);
                }
            }
            Ok(gone)
        })();
        match pruned {
            Ok(gone) => {
                for id in gone {
                    tracing::warn!(host = %id, "dropped a host whose process has ended");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check the fleet for ended hosts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OwnLease;
    use std::time::{Duration, Instant};

    #[test]
    fn a_read_that_began_before_the_lease_lapsed_is_not_trusted_after_the_host_joins_again() {
        let lease = OwnLease::new(Some(Duration::from_secs(60)));
        lease.renewed(Instant::now());
        let admitted = lease.lapses();
        assert!(lease.held_since(admitted), "a read that ends with the lease held throughout is served");
        // The host was stopped past its lease; on resuming, the database
        // refused its renewal and it joined the fleet again.
        lease.lapsed();
        lease.renewed(Instant::now());
        assert!(lease.holds(), "the lease holds again for new requests");
        assert!(!lease.held_since(admitted), "but not for the read admitted before the lapse");
        assert!(lease.held_since(lease.lapses()), "a read admitted after joining again is served");
    }

    #[test]
    fn without_leases_every_read_is_served() {
        let lease = OwnLease::new(None);
        assert!(lease.held_since(lease.lapses()));
    }
}
