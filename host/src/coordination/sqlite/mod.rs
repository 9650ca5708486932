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

mod accounts;
mod flips;
mod hosts;
mod rollouts;
mod jobs;
mod keys;
mod audit;
mod change_watch;

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

fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), CoordinationError> {
    conn.prepare_cached(
        "INSERT INTO audit (at_ms, host, actor, kind, subject, before, after, detail, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![e.at_ms, e.host, e.actor, e.kind, e.subject, e.before, e.after, e.detail, e.action])?;
    Ok(())
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
