//! [`Coordination`] in `accounts.db`: the only code that runs SQL on it.
//!
//! Every host of a data dir opens the same file. A decision (a gate, a flip)
//! is one `BEGIN IMMEDIATE` transaction, so SQLite orders the decisions of
//! every process. The flag is read from the file for every note request:
//! there is no cache to go stale, and a change committed by any process is
//! seen by the next request. A failed read is an error, never "not migrating".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use super::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, Accounts, AuditLog, ChangeWatch, CoordinationError, Flips, Hosts, Jobs, Keys, Rollouts, FlagState, Gate, HostRecord,
    Job, JobState, PendingFlip, PluginSummary, Verified,
};
use crate::db::{self, Pool};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id            TEXT    PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    is_migrating  INTEGER NOT NULL DEFAULT 0 CHECK (is_migrating IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    host    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    before  TEXT    NOT NULL,
    after   TEXT    NOT NULL,
    detail  TEXT    NOT NULL,
    -- The operator action (a rollout, the kill switch) the entry is part of.
    action  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT    PRIMARY KEY NOT NULL,
    kind          TEXT    NOT NULL,
    account       TEXT,
    state         TEXT    NOT NULL,
    rate          INTEGER NOT NULL,
    total         INTEGER NOT NULL,
    done          INTEGER NOT NULL,
    moved         INTEGER NOT NULL,
    problems      INTEGER NOT NULL,
    cursor        TEXT    NOT NULL,
    owner         TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    detail        TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS account_keys (
    id            TEXT    PRIMARY KEY NOT NULL,
    account       TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS account_keys_by_account ON account_keys (account);
CREATE TABLE IF NOT EXISTS service_state (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flip_acks (
    flip_id TEXT    NOT NULL,
    host_id TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (flip_id, host_id)
);
";

/// The data dir's identity (`layout`); see `layout.rs`.
const LAYOUT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS layout (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);";

/// Columns added after the first release, for data dirs created before them:
/// a flip in progress, i.e. its id, the value it sets, when any host may
/// abort it, and the host running it.
const UPGRADES: &[(&str, &str)] = &[
    ("flip_id", "ALTER TABLE accounts ADD COLUMN flip_id TEXT"),
    ("flip_to", "ALTER TABLE accounts ADD COLUMN flip_to INTEGER"),
    ("flip_deadline_ms", "ALTER TABLE accounts ADD COLUMN flip_deadline_ms INTEGER"),
    ("flip_by", "ALTER TABLE accounts ADD COLUMN flip_by TEXT"),
    // Notely's `shard`, stored and echoed.
    ("shard", "ALTER TABLE accounts ADD COLUMN shard TEXT"),
    // The last verify since the flag changed (cleared by a flip).
    ("verified_at_ms", "ALTER TABLE accounts ADD COLUMN verified_at_ms INTEGER"),
    ("verified_clean", "ALTER TABLE accounts ADD COLUMN verified_clean INTEGER"),
    // The flag's epoch, raised by every flip's commit or abort.
    ("flag_epoch", "ALTER TABLE accounts ADD COLUMN flag_epoch INTEGER NOT NULL DEFAULT 0"),
    // Whether the flag was ever on. Rows from before it count as such if the
    // flag is on or has changed (an aborted flip to on counts too).
    (
        "was_migrating",
        "ALTER TABLE accounts ADD COLUMN was_migrating INTEGER NOT NULL DEFAULT 0;
         UPDATE accounts SET was_migrating = 1 WHERE is_migrating = 1 OR flag_epoch > 0",
    ),
];
/// The same for the audit log: entries from before actions were recorded
/// are each an action of their own.
const AUDIT_UPGRADES: &[(&str, &str)] = &[("action", "ALTER TABLE audit ADD COLUMN action TEXT NOT NULL DEFAULT ''")];

const ACCOUNT_COLUMNS: &str = "id, name, is_migrating, created_at_ms, updated_at_ms, shard, verified_at_ms, verified_clean, was_migrating";
const JOB_COLUMNS: &str =
    "id, kind, account, state, rate, total, done, moved, problems, cursor, owner, created_at_ms, updated_at_ms, detail";
/// An entry's columns, then `changes`: the flag entries of its action, on
/// its summary entry.
const AUDIT_COLUMNS: &str = "seq, at_ms, host, actor, kind, subject, before, after, detail, action,
    CASE WHEN action != '' AND kind != 'flag' THEN (SELECT count(*) FROM audit f WHERE f.action = audit.action AND f.kind = 'flag') ELSE 0 END";
const HOST_COLUMNS: &str =
    "id, name, address, pid, version, started_at_ms, heartbeat_ms, plugin_digest, plugin_label, supports_migration";
/// The flag and any flip in progress of one account (`row_to_flag_state`).
const FLAG_STATE: &str = "SELECT id, flip_id, flip_to, flip_deadline_ms, flip_by, is_migrating, flag_epoch FROM accounts WHERE id = ?1";

pub struct SqliteCoordination {
    path: PathBuf,
    pool: Pool,
    /// Acknowledgements go through their own connection, without fsync: they
    /// need no durability (after a power loss a flip is aborted again, or
    /// acknowledged again), and a flip waits for them.
    acks: Mutex<Connection>,
}

impl SqliteCoordination {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let pool = db::open(path, 8, &format!("{SCHEMA}{LAYOUT_SCHEMA}"))?;
        let conn = pool.get()?;
        for (table, upgrades) in [("accounts", UPGRADES), ("audit", AUDIT_UPGRADES)] {
            let columns: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for (column, sql) in upgrades {
                if !columns.iter().any(|c| c == column) {
                    conn.execute_batch(sql)?;
                }
            }
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS accounts_flipping ON accounts (flip_id) WHERE flip_id IS NOT NULL;
             CREATE INDEX IF NOT EXISTS audit_action ON audit (action) WHERE action != '';",
        )?;
        drop(conn);
        let acks = Connection::open(path)?;
        acks.busy_timeout(Duration::from_secs(1))?;
        acks.execute_batch("PRAGMA synchronous = NORMAL")?;
        Ok(SqliteCoordination { path: path.to_owned(), pool, acks: Mutex::new(acks) })
    }

    fn write(&self) -> Result<r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>, CoordinationError> {
        Ok(self.pool.get()?)
    }
}

impl Accounts for SqliteCoordination {
    fn is_in_process(&self) -> bool {
        true
    }

    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_flag(account.is_migrating, || hosts_in(&tx))?;
        let inserted = tx.execute(
            "INSERT INTO accounts (id, name, is_migrating, created_at_ms, updated_at_ms, shard, was_migrating)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
            params![
                account.id.to_string(),
                account.name,
                account.is_migrating,
                account.created_at_ms,
                account.updated_at_ms,
                account.shard,
                account.is_migrating || account.was_migrating
            ],
        )?;
        if inserted == 0 {
            return Err(CoordinationError::AlreadyExists(account.id));
        }
        tx.commit()?;
        Ok(())
    }

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"))?;
        Ok(stmt.query_row([id.to_string()], row_to_account).optional()?)
    }

    fn accounts(&self) -> Result<Vec<Account>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at_ms, id"))?;
        let accounts = stmt.query_map([], row_to_account)?.collect::<Result<_, _>>()?;
        Ok(accounts)
    }

    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError> {
        let conn = self.pool.get()?;
        // Ids are stored in their canonical form, whose text order is the UUIDs' order.
        let mut stmt = conn.prepare_cached("SELECT id FROM accounts WHERE id > ?1 ORDER BY id LIMIT 1")?;
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        Ok(stmt.query_row([after], |r| parse_id(r, 0)).optional()?)
    }

    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError> {
        let conn = self.write()?;
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE accounts SET name = coalesce(?2, name), shard = coalesce(?3, shard), updated_at_ms = ?4 WHERE id = ?1
             RETURNING {ACCOUNT_COLUMNS}"
        ))?;
        Ok(stmt.query_row(params![id.to_string(), details.name, details.shard, now_ms], row_to_account).optional()?)
    }

    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(FLAG_STATE)?;
        Ok(stmt.query_row([id.to_string()], row_to_flag_state).optional()?)
    }

    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let changed = conn.execute(
            "UPDATE accounts SET verified_at_ms = ?2, verified_clean = ?3 WHERE id = ?1 AND updated_at_ms = ?4 AND flip_id IS NULL",
            params![account.to_string(), verified.at_ms, verified.clean, updated_at_ms],
        )?;
        Ok(changed > 0)
    }
}

impl Flips for SqliteCoordination {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if flip.to
            && let Some(began_at) = rollout
            && stop_generation_in(&tx)? != began_at
        {
            return Err(CoordinationError::Stopped(flip.account));
        }
        let state = tx
            .prepare_cached(FLAG_STATE)?
            .query_row([flip.account.to_string()], row_to_flag_state)
            .optional()?
            .ok_or(CoordinationError::NoAccount(flip.account))?;
        if state.flip.is_some() {
            return Err(CoordinationError::FlipInProgress(flip.account));
        }
        if state.is_migrating == flip.to {
            return Ok(Announced::Unchanged);
        }
        let hosts = hosts_in(&tx)?;
        gate.allows_flag(flip.to, || Ok(hosts.clone()))?;
        tx.execute(
            "UPDATE accounts SET flip_id = ?2, flip_to = ?3, flip_deadline_ms = ?4, flip_by = ?5 WHERE id = ?1",
            params![flip.account.to_string(), flip.id, flip.to, flip.deadline_ms, flip.by_host],
        )?;
        tx.commit()?;
        Ok(Announced::Pending { hosts, epoch: state.epoch + 1 })
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_flag(flip.to, || hosts_in(&tx))?;
        let committed = tx.execute(
            "UPDATE accounts SET is_migrating = ?3, updated_at_ms = ?4, flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL,
                 verified_at_ms = NULL, verified_clean = NULL, flag_epoch = flag_epoch + 1, was_migrating = (was_migrating OR ?3)
             WHERE id = ?1 AND flip_id = ?2",
            params![flip.account.to_string(), flip.id, flip.to, now_ms],
        )?;
        tx.execute("DELETE FROM flip_acks WHERE flip_id = ?1", [&flip.id])?;
        if committed > 0 {
            insert_audit(&tx, audit)?;
        }
        tx.commit()?;
        Ok(committed > 0)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let aborted = tx.execute(
            "UPDATE accounts SET flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL, flag_epoch = flag_epoch + 1
             WHERE id = ?1 AND flip_id = ?2",
            params![account.to_string(), flip_id],
        )?;
        tx.execute("DELETE FROM flip_acks WHERE flip_id = ?1", [flip_id])?;
        tx.commit()?;
        Ok(aborted > 0)
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, flip_id, flip_to, flip_deadline_ms, flip_by FROM accounts WHERE flip_id IS NOT NULL",
        )?;
        let flips = stmt.query_map([], row_to_flip)?.collect::<Result<Vec<_>, _>>()?;
        Ok(flips.into_iter().flatten().collect())
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, now_ms: i64) -> Result<(), CoordinationError> {
        let conn = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute("INSERT OR IGNORE INTO flip_acks (flip_id, host_id, at_ms) VALUES (?1, ?2, ?3)", params![flip_id, host, now_ms])?;
        Ok(())
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT host_id FROM flip_acks WHERE flip_id = ?1")?;
        let acked = stmt.query_map([flip_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(acked)
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let changed = conn.execute(
            "UPDATE accounts SET is_migrating = ?2, updated_at_ms = ?3, verified_at_ms = NULL, verified_clean = NULL, flag_epoch = flag_epoch + 1,
                 was_migrating = (was_migrating OR ?2)
             WHERE id = ?1",
            params![account.to_string(), to, now_ms],
        )?;
        Ok(changed > 0)
    }
}

impl Hosts for SqliteCoordination {
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_plugin(&host.plugin, || migrating_in(&tx))?;
        tx.execute(
            &format!("INSERT INTO hosts ({HOST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                host.id,
                host.name,
                host.address,
                host.pid,
                host.version,
                host.started_at_ms,
                host.heartbeat_ms,
                host.plugin.digest,
                host.plugin.label,
                host.plugin.supports_migration
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_plugin(plugin, || migrating_in(&tx))?;
        tx.execute(
            "UPDATE hosts SET plugin_digest = ?2, plugin_label = ?3, supports_migration = ?4 WHERE id = ?1",
            params![host, plugin.digest, plugin.label, plugin.supports_migration],
        )?;
        before_commit();
        tx.commit()?;
        Ok(())
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        Ok(conn.execute("UPDATE hosts SET heartbeat_ms = ?2 WHERE id = ?1", params![host, now_ms])? > 0)
    }

    /// Hosts on one data dir hold no lease: lock files tell who is gone.
    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(BTreeSet::new())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        let mut conn = self.pool.get()?;
        hosts_in(&conn.transaction()?)
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM hosts WHERE id = ?1", [host])?;
        tx.execute("DELETE FROM flip_acks WHERE host_id = ?1", [host])?;
        tx.commit()?;
        Ok(())
    }

    /// Lock files told it is gone, and a process that ended does not come back.
    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        self.remove_host(host).map(|()| true)
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        // Its own connection: `data_version` changes when *another*
        // connection commits, and every write here goes through others.
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        Ok(Box::new(DataVersion { conn, last: None }))
    }
}

impl Rollouts for SqliteCoordination {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        let conn = self.pool.get()?;
        let value: Option<String> =
            conn.query_row("SELECT value FROM service_state WHERE key = 'rollout_percent'", [], |r| r.get(0)).optional()?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        conn.execute(
            "INSERT INTO service_state (key, value) VALUES ('rollout_percent', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [percent.to_string()],
        )?;
        Ok(())
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latched: Option<String> = tx.query_row("SELECT value FROM service_state WHERE key = 'stopped'", [], |r| r.get(0)).optional()?;
        if latched.as_deref() == Some("true") {
            if !resume {
                return Err(CoordinationError::Latched);
            }
            tx.execute(SET_SERVICE_STATE, params!["stopped", "false"])?;
        }
        let generation = stop_generation_in(&tx)?;
        tx.commit()?;
        Ok(generation)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        let conn = self.pool.get()?;
        let latched: Option<String> = conn.query_row("SELECT value FROM service_state WHERE key = 'stopped'", [], |r| r.get(0)).optional()?;
        Ok(latched.as_deref() == Some("true"))
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let generation = stop_generation_in(&tx)? + 1;
        tx.execute(SET_SERVICE_STATE, params!["stop_generation", generation.to_string()])?;
        tx.execute(SET_SERVICE_STATE, params!["stopped", "true"])?;
        tx.execute(SET_SERVICE_STATE, params!["rollout_percent", "0"])?;
        tx.commit()?;
        Ok(generation)
    }
}

impl Jobs for SqliteCoordination {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        conn.execute(
            &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                job.id,
                job.kind.as_str(),
                job.account.map(|a| a.to_string()),
                job.state.as_str(),
                job.rate,
                job.total as i64,
                job.done as i64,
                job.moved as i64,
                job.problems as i64,
                job.cursor,
                job.owner,
                job.created_at_ms,
                job.updated_at_ms,
                job.detail
            ],
        )?;
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?;
        Ok(stmt.query_row([id], row_to_job).optional()?)
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at_ms DESC, id"))?;
        Ok(stmt.query_map([], row_to_job)?.collect::<Result<_, _>>()?)
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY created_at_ms DESC, id"))?;
        Ok(stmt.query_map([JobState::Running.as_str()], row_to_job)?.collect::<Result<_, _>>()?)
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let claimed = conn.execute(
            "UPDATE jobs SET owner = ?3, updated_at_ms = ?4 WHERE id = ?1 AND owner IS ?2 AND state = ?5",
            params![id, expected, host, now_ms, JobState::Running.as_str()],
        )?;
        Ok(claimed > 0)
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let saved = conn.execute(
            "UPDATE jobs SET state = ?3, total = ?4, done = ?5, moved = ?6, problems = ?7, cursor = ?8, updated_at_ms = ?9, detail = ?10
             WHERE id = ?1 AND owner IS ?2 AND state = ?11",
            params![
                job.id,
                job.owner,
                job.state.as_str(),
                job.total as i64,
                job.done as i64,
                job.moved as i64,
                job.problems as i64,
                job.cursor,
                job.updated_at_ms,
                job.detail,
                JobState::Running.as_str()
            ],
        )?;
        Ok(saved > 0)
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let job = tx.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?.query_row([id], row_to_job).optional()?;
        let Some(mut job) = job.filter(|j| from.contains(&j.state)) else { return Ok(None) };
        tx.execute("UPDATE jobs SET state = ?2, updated_at_ms = ?3 WHERE id = ?1", params![id, to.as_str(), now_ms])?;
        tx.commit()?;
        job.state = to;
        job.updated_at_ms = now_ms;
        Ok(Some(job))
    }
}

impl Keys for SqliteCoordination {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        conn.execute(
            "INSERT INTO account_keys (id, account, label, hash, created_at_ms, revoked_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.id, key.account.to_string(), key.label, key.hash, key.created_at_ms, key.revoked_at_ms],
        )?;
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM account_keys WHERE id = ?1"))?;
        Ok(stmt.query_row([id], row_to_key).optional()?)
    }

    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM account_keys WHERE account = ?1 ORDER BY created_at_ms, id"))?;
        Ok(stmt.query_map([account.to_string()], row_to_key)?.collect::<Result<_, _>>()?)
    }

    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let revoked = conn.execute(
            "UPDATE account_keys SET revoked_at_ms = ?3 WHERE id = ?1 AND account = ?2 AND revoked_at_ms IS NULL",
            params![id, account.to_string(), now_ms],
        )?;
        Ok(revoked > 0)
    }
}

impl AuditLog for SqliteCoordination {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        insert_audit(&*conn, entry)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE seq > ?1 AND seq < ?6 AND at_ms >= coalesce(?2, at_ms) AND at_ms <= coalesce(?3, at_ms) AND kind = coalesce(?4, kind)
               AND action = coalesce(?7, action)
               AND NOT (?8 AND kind = 'flag' AND action != ''
                        AND EXISTS (SELECT 1 FROM audit s WHERE s.action = audit.action AND s.kind != 'flag'))
             ORDER BY seq {} LIMIT ?5",
            if query.newest_first { "DESC" } else { "ASC" }
        ))?;
        let params = params![
            query.after_seq,
            query.since_ms,
            query.until_ms,
            query.kind,
            query.limit,
            query.before_seq.unwrap_or(i64::MAX),
            query.action,
            query.fold
        ];
        let rows = stmt.query_map(params, |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                host: r.get(2)?,
                actor: r.get(3)?,
                kind: r.get(4)?,
                subject: r.get(5)?,
                before: r.get(6)?,
                after: r.get(7)?,
                detail: r.get(8)?,
                action: r.get(9)?,
                changes: r.get::<_, i64>(10)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const KEY_COLUMNS: &str = "id, account, label, hash, created_at_ms, revoked_at_ms";

fn row_to_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountKey> {
    Ok(AccountKey {
        id: r.get(0)?,
        account: parse_id(r, 1)?,
        label: r.get(2)?,
        hash: r.get(3)?,
        created_at_ms: r.get(4)?,
        revoked_at_ms: r.get(5)?,
    })
}

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let account: Option<String> = r.get(2)?;
    Ok(Job {
        id: r.get(0)?,
        kind: parse_name(r, 1)?,
        account: account.and_then(|a| Uuid::parse_str(&a).ok()),
        state: parse_name(r, 3)?,
        rate: r.get(4)?,
        total: r.get::<_, i64>(5)? as u64,
        done: r.get::<_, i64>(6)? as u64,
        moved: r.get::<_, i64>(7)? as u64,
        problems: r.get::<_, i64>(8)? as u64,
        cursor: r.get(9)?,
        owner: r.get(10)?,
        created_at_ms: r.get(11)?,
        updated_at_ms: r.get(12)?,
        detail: r.get(13)?,
    })
}

fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), CoordinationError> {
    conn.prepare_cached(
        "INSERT INTO audit (at_ms, host, actor, kind, subject, before, after, detail, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![e.at_ms, e.host, e.actor, e.kind, e.subject, e.before, e.after, e.detail, e.action])?;
    Ok(())
}

/// `PRAGMA data_version` on a connection of its own: ≈1.5 µs, no I/O.
struct DataVersion {
    conn: Connection,
    last: Option<i64>,
}

impl ChangeWatch for DataVersion {
    fn changed(&mut self) -> Result<bool, CoordinationError> {
        let now: i64 = self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(self.last.replace(now) != Some(now))
    }
}

fn hosts_in(tx: &Transaction<'_>) -> Result<Vec<HostRecord>, CoordinationError> {
    let mut stmt = tx.prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY started_at_ms, id"))?;
    let hosts = stmt
        .query_map([], |r| {
            Ok(HostRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                address: r.get(2)?,
                pid: r.get(3)?,
                version: r.get(4)?,
                started_at_ms: r.get(5)?,
                heartbeat_ms: r.get(6)?,
                plugin: PluginSummary { digest: r.get(7)?, label: r.get(8)?, supports_migration: r.get(9)? },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(hosts)
}

/// Accounts whose flag is on or being turned on.
fn migrating_in(tx: &Transaction<'_>) -> Result<Vec<Uuid>, CoordinationError> {
    let mut stmt = tx.prepare_cached("SELECT id FROM accounts WHERE is_migrating = 1 OR flip_to = 1 ORDER BY id")?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
}

fn parse_id(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let id: String = r.get(i)?;
    Uuid::parse_str(&id).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into()))
}

/// A job's kind or state, as `notes_api_types` spells it.
fn parse_name<T: std::str::FromStr<Err = notes_api_types::UnknownName>>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let name: String = r.get(i)?;
    name.parse().map_err(|e: notes_api_types::UnknownName| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into()))
}

/// The flip of a row whose columns are account id, flip_id, flip_to,
/// flip_deadline_ms, flip_by; `None` if no flip is pending.
fn row_to_flip(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<PendingFlip>> {
    let Some(id) = r.get::<_, Option<String>>(1)? else { return Ok(None) };
    Ok(Some(PendingFlip {
        account: parse_id(r, 0)?,
        id,
        to: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
        deadline_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
        by_host: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
    }))
}

/// A `FLAG_STATE` row: the flip's columns, then is_migrating and flag_epoch.
fn row_to_flag_state(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlagState> {
    Ok(FlagState { is_migrating: r.get(5)?, epoch: r.get(6)?, flip: row_to_flip(r)? })
}

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: parse_id(r, 0)?,
        name: r.get(1)?,
        is_migrating: r.get(2)?,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
        shard: r.get(5)?,
        verified: match (r.get::<_, Option<i64>>(6)?, r.get::<_, Option<bool>>(7)?) {
            (Some(at_ms), Some(clean)) => Some(Verified { at_ms, clean }),
            _ => None,
        },
        was_migrating: r.get(8)?,
    })
}

impl From<rusqlite::Error> for CoordinationError {
    fn from(e: rusqlite::Error) -> Self {
        CoordinationError::Unavailable(e.to_string())
    }
}

impl From<r2d2::Error> for CoordinationError {
    fn from(e: r2d2::Error) -> Self {
        CoordinationError::Unavailable(e.to_string())
    }
}

/// The data dir's identity as `accounts.db` records it (table `layout`),
/// read and written before the rest of the file is opened: `layout.rs`
/// decides, this only reads and writes.
pub struct LayoutRecord {
    pool: Pool,
}

impl LayoutRecord {
    /// Opens (creating) `accounts.db` at `path` on one connection.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(LayoutRecord { pool: db::open(path, 1, LAYOUT_SCHEMA)? })
    }

    pub fn value(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.pool.get()?.query_row("SELECT value FROM layout WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Writes every pair in one transaction.
    pub fn write(&self, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        for (key, value) in pairs {
            tx.execute("INSERT INTO layout (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, value])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Accounts in the file (0 if its table does not exist yet).
    pub fn count_accounts(&self) -> anyhow::Result<u64> {
        let conn = self.pool.get()?;
        let has_table: bool = conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'accounts'", [], |r| r.get(0))?;
        if !has_table {
            return Ok(0);
        }
        Ok(conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: Uuid, name: &str, is_migrating: bool) -> Account {
        Account { id, name: name.into(), is_migrating, shard: None, verified: None, created_at_ms: 1, updated_at_ms: 1, was_migrating: false }
    }


    #[test]
    fn the_flag_defaults_off_and_a_change_by_another_process_is_seen_by_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        let state = SqliteCoordination::open(&path).unwrap();
        let id = Uuid::new_v4();
        state.create_account(&account(id, "Ada", false), Gate::Checked).unwrap();
        assert_eq!(state.flag_state(id).unwrap().unwrap().is_migrating, false);
        // Another process flips the flag on the same file.
        let other = Connection::open(&path).unwrap();
        other.execute("UPDATE accounts SET is_migrating = 1 WHERE id = ?1", [id.to_string()]).unwrap();
        assert_eq!(state.flag_state(id).unwrap().unwrap().is_migrating, true);
        let details = AccountDetails { name: Some("Grace".into()), shard: Some("eu-1".into()) };
        state.update_account(id, &details, 2).unwrap();
        let renamed = state.account(id).unwrap().unwrap();
        assert!(renamed.is_migrating, "a rename keeps the flag");
        assert_eq!((renamed.name.as_str(), renamed.shard.as_deref()), ("Grace", Some("eu-1")));
        let renamed = state.update_account(id, &AccountDetails { name: Some("Ada".into()), shard: None }, 3).unwrap().unwrap();
        assert_eq!(renamed.shard.as_deref(), Some("eu-1"), "a rename without a shard keeps it");
        assert_eq!(state.flag_state(Uuid::new_v4()).unwrap(), None);
    }
}

const SET_SERVICE_STATE: &str = "INSERT INTO service_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The kill switch's generation (0 before it was first pressed).
fn stop_generation_in(conn: &rusqlite::Connection) -> Result<i64, CoordinationError> {
    let value: Option<String> =
        conn.query_row("SELECT value FROM service_state WHERE key = 'stop_generation'", [], |r| r.get(0)).optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}
