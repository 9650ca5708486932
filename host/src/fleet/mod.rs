//! The fleet: every host process serving one data dir.
//!
//! Each host registers itself in `accounts.db` (table `hosts`), holds a lock
//! file while it runs (`liveness`), heartbeats, and watches the file for flag
//! flips (`watcher`). A change of `isMigrating` goes through `flip`: it
//! returns only once every host has stopped running requests under the old
//! value, so one account's requests never run under two values at once.
//!
//! The deployment gate is fleet-wide and lives here too: a flag is refused
//! while any host's plugin cannot migrate, and a plugin that cannot migrate
//! is refused while any account migrates. Both sides decide inside one
//! SQLite write transaction on `accounts.db`, so across processes they
//! cannot interleave.
//!
//! See ARCHITECTURE.md, "The fleet", for the protocol and why it is safe.

mod flip;
mod inflight;
mod liveness;
mod watcher;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Transaction, TransactionBehavior, params};
use uuid::Uuid;

use crate::accounts::{AccountError, Accounts};
use crate::db::Pool;

pub use flip::{Admission, FlipOutcome};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hosts (
    id                 TEXT    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL,
    address            TEXT    NOT NULL,
    pid                INTEGER NOT NULL,
    version            TEXT    NOT NULL,
    started_at_ms      INTEGER NOT NULL,
    heartbeat_ms       INTEGER NOT NULL,
    plugin_digest      TEXT    NOT NULL,
    plugin_label       TEXT    NOT NULL,
    supports_migration INTEGER NOT NULL CHECK (supports_migration IN (0, 1))
);
CREATE TABLE IF NOT EXISTS flip_acks (
    flip_id TEXT    NOT NULL,
    host_id TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (flip_id, host_id)
);
";

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

/// What routes this host's note requests, as the gate sees it.
#[derive(Debug, Clone)]
pub struct PluginSummary {
    pub digest: String,
    pub label: String,
    pub supports_migration: bool,
}

/// One row of `GET /hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub id: String,
    pub name: String,
    pub address: String,
    pub pid: u32,
    pub version: String,
    pub started_at_ms: i64,
    pub heartbeat_ms: i64,
    pub plugin_digest: String,
    pub plugin_label: String,
    pub supports_migration: bool,
    /// Heartbeat older than the host timeout (process still alive).
    pub unresponsive: bool,
    pub is_self: bool,
}

impl HostView {
    /// `name (address, plugin)`, for error messages.
    pub fn describe(&self) -> String {
        format!("{} ({}, plugin {})", self.name, self.address, self.plugin_label)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("account {0} not found")]
    NoAccount(Uuid),
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
    #[error("{0}")]
    Busy(String),
    /// The account runs its maximum of requests on this host.
    #[error("account {account} already runs {running} requests on this host, its maximum; retry shortly")]
    AccountSaturated { account: Uuid, running: u32 },
    #[error("{0}")]
    Unavailable(String),
}

impl From<AccountError> for FleetError {
    fn from(e: AccountError) -> Self {
        FleetError::Unavailable(e.to_string())
    }
}

impl From<rusqlite::Error> for FleetError {
    fn from(e: rusqlite::Error) -> Self {
        FleetError::Unavailable(format!("accounts database: {e}"))
    }
}

impl From<r2d2::Error> for FleetError {
    fn from(e: r2d2::Error) -> Self {
        FleetError::Unavailable(format!("accounts database: {e}"))
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
    accounts: Accounts,
    pool: Pool,
    locks_dir: PathBuf,
    inflight: inflight::InFlight,
    settings: FleetSettings,
    stop: AtomicBool,
    /// False if this host's row went missing: it then serves no note request,
    /// because flips would not wait for it.
    registered: AtomicBool,
    /// Held for the life of the process: the liveness lock.
    _lock: std::fs::File,
}

impl Fleet {
    /// Registers this host with `plugin`. Refuses (nothing registered) a
    /// plugin that cannot migrate while any account migrates.
    pub fn join(
        accounts: &Accounts,
        data_dir: &Path,
        me: Identity,
        plugin: &PluginSummary,
        settings: FleetSettings,
        now_ms: i64,
    ) -> Result<Fleet, FleetError> {
        let pool = accounts.pool().clone();
        pool.get()?.execute_batch(SCHEMA)?;
        let locks_dir = data_dir.join("hosts");
        let lock = liveness::hold(&locks_dir, &me.id.to_string()).map_err(|e| FleetError::Unavailable(format!("{e:#}")))?;
        let shared = Arc::new(Shared {
            me,
            accounts: accounts.clone(),
            pool,
            locks_dir,
            inflight: inflight::InFlight::default(),
            settings,
            stop: AtomicBool::new(false),
            registered: AtomicBool::new(true),
            _lock: lock,
        });
        shared.prune_gone_hosts();
        {
            let mut conn = shared.pool.get()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            shared.plugin_gate(&tx, plugin)?;
            tx.execute(
                "INSERT INTO hosts (id, name, address, pid, version, started_at_ms, heartbeat_ms, plugin_digest, plugin_label, supports_migration)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
                params![
                    shared.me.id.to_string(),
                    shared.me.name,
                    shared.me.address,
                    std::process::id(),
                    env!("CARGO_PKG_VERSION"),
                    now_ms,
                    plugin.digest,
                    plugin.label,
                    plugin.supports_migration
                ],
            )?;
            tx.commit()?;
        }
        let threads = watcher::start(&shared).map_err(|e| FleetError::Unavailable(format!("cannot start the fleet threads: {e}")))?;
        tracing::info!(host = %shared.me.id, name = %shared.me.name, address = %shared.me.address, plugin = %plugin.label, "joined the fleet");
        Ok(Fleet { shared, threads: std::sync::Mutex::new(threads) })
    }

    /// Changes this host's plugin. `swap` makes the change in memory; it runs
    /// while this host's row says it cannot migrate whenever it might run
    /// code that cannot (see the ordering below). Refuses a plugin that
    /// cannot migrate while any account migrates or is being turned on.
    pub fn change_plugin<T>(&self, plugin: &PluginSummary, swap: impl FnOnce() -> T) -> Result<T, FleetError> {
        let mut conn = self.shared.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.shared.plugin_gate(&tx, plugin)?;
        tx.execute(
            "UPDATE hosts SET plugin_digest = ?2, plugin_label = ?3, supports_migration = ?4 WHERE id = ?1",
            params![self.shared.me.id.to_string(), plugin.digest, plugin.label, plugin.supports_migration],
        )?;
        if plugin.supports_migration {
            // Upgrade: run the new code before claiming it. If the commit
            // fails, the row still says "cannot migrate": only too strict.
            let out = swap();
            tx.commit()?;
            Ok(out)
        } else {
            // Downgrade: the fleet learns first, so no flip can turn a flag
            // on between the claim and the old code running.
            tx.commit()?;
            Ok(swap())
        }
    }

    /// The flag side of the gate, for a new account created with the flag on:
    /// runs inside the account's insert transaction.
    pub fn migration_gate(&self, tx: &Transaction<'_>) -> Result<(), FleetError> {
        if self.shared.settings.unsafe_no_fleet_safety {
            return Ok(());
        }
        self.shared.prune_gone_hosts();
        all_can_migrate(&self.shared.hosts_in(tx)?)
    }

    /// Every registered host, this one included.
    pub fn hosts(&self) -> Result<Vec<HostView>, FleetError> {
        let mut conn = self.shared.pool.get()?;
        let tx = conn.transaction()?;
        self.shared.hosts_in(&tx)
    }

    /// Deregisters now (also done on drop).
    pub fn leave(&self) {
        if self.shared.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        let id = self.shared.me.id.to_string();
        let removed = self.shared.pool.get().map_err(FleetError::from).and_then(|c| {
            c.execute("DELETE FROM hosts WHERE id = ?1", [&id])?;
            c.execute("DELETE FROM flip_acks WHERE host_id = ?1", [&id])?;
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not deregister from the fleet; others will drop this host once its process ends");
        }
        liveness::remove(&self.shared.locks_dir, &id);
        tracing::info!(host = %id, "left the fleet");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Shared {
    fn plugin_gate(&self, tx: &Transaction<'_>, plugin: &PluginSummary) -> Result<(), FleetError> {
        if plugin.supports_migration || self.settings.unsafe_no_fleet_safety {
            return Ok(());
        }
        let accounts = Accounts::migrating_in(tx)?;
        if accounts.is_empty() { Ok(()) } else { Err(FleetError::AccountsMigrating { plugin: plugin.label.clone(), accounts }) }
    }

    fn hosts_in(&self, tx: &Transaction<'_>) -> Result<Vec<HostView>, FleetError> {
        let now = crate::clock::now_ms();
        let timeout = self.settings.host_timeout.as_millis() as i64;
        let me = self.me.id.to_string();
        let mut stmt = tx.prepare_cached(
            "SELECT id, name, address, pid, version, started_at_ms, heartbeat_ms, plugin_digest, plugin_label, supports_migration
             FROM hosts ORDER BY started_at_ms, id",
        )?;
        let hosts = stmt
            .query_map([], |r| {
                let id: String = r.get(0)?;
                let heartbeat_ms: i64 = r.get(6)?;
                Ok(HostView {
                    is_self: id == me,
                    id,
                    name: r.get(1)?,
                    address: r.get(2)?,
                    pid: r.get(3)?,
                    version: r.get(4)?,
                    started_at_ms: r.get(5)?,
                    heartbeat_ms,
                    plugin_digest: r.get(7)?,
                    plugin_label: r.get(8)?,
                    supports_migration: r.get(9)?,
                    unresponsive: now - heartbeat_ms > timeout,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(hosts)
    }

    fn is_gone(&self, host: &str) -> bool {
        host != self.me.id.to_string() && liveness::is_gone(&self.locks_dir, host)
    }

    /// Drops the rows of hosts whose process has ended (their lock is free).
    fn prune_gone_hosts(&self) {
        let pruned = (|| -> Result<Vec<String>, FleetError> {
            let conn = self.pool.get()?;
            let ids: Vec<String> = conn.prepare_cached("SELECT id FROM hosts")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            let mut gone = Vec::new();
            for id in ids.into_iter().filter(|id| self.is_gone(id)) {
                conn.execute("DELETE FROM hosts WHERE id = ?1", [&id])?;
                conn.execute("DELETE FROM flip_acks WHERE host_id = ?1", [&id])?;
                liveness::remove(&self.locks_dir, &id);
                gone.push(id);
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

/// The flag side of the gate: every host's plugin must support migration.
fn all_can_migrate(hosts: &[HostView]) -> Result<(), FleetError> {
    let lacking: Vec<HostView> = hosts.iter().filter(|h| !h.supports_migration).cloned().collect();
    if lacking.is_empty() { Ok(()) } else { Err(FleetError::HostsCannotMigrate(lacking)) }
}
