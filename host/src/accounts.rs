//! Accounts and their `is_migrating` flag, in `accounts.db`.
//!
//! The flag is read from SQLite for every note request: there is no cache to
//! go stale, and a change committed by any process on the same file is seen
//! by the next request. A failed read is an error, never "not migrating".
//!
//! A change of the flag in progress (the `flip_*` columns) is written and
//! resolved only by `fleet::flip`; this module reads it together with the
//! flag, in the one statement every note request runs.

use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use crate::db::{self, Pool};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id            TEXT    PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    is_migrating  INTEGER NOT NULL DEFAULT 0 CHECK (is_migrating IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
";

/// Columns added after the first release, for data dirs created before them:
/// a flip in progress, i.e. its id, the value it sets, when any host may
/// abort it, and the host running it (see `fleet::flip`).
const UPGRADES: &[(&str, &str)] = &[
    ("flip_id", "ALTER TABLE accounts ADD COLUMN flip_id TEXT"),
    ("flip_to", "ALTER TABLE accounts ADD COLUMN flip_to INTEGER"),
    ("flip_deadline_ms", "ALTER TABLE accounts ADD COLUMN flip_deadline_ms INTEGER"),
    ("flip_by", "ALTER TABLE accounts ADD COLUMN flip_by TEXT"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub is_migrating: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A change to an account; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub name: Option<String>,
    pub is_migrating: Option<bool>,
}

/// What a note request needs to know about its account, read in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    pub is_migrating: bool,
    /// A change of the flag in progress: the request must wait for it.
    pub flip: Option<PendingFlip>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFlip {
    pub id: String,
    pub to: bool,
    /// After this (ms since the epoch) any host may abort the flip.
    pub deadline_ms: i64,
    /// The host running the flip.
    pub by_host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account {0} already exists")]
    AlreadyExists(Uuid),
    /// The accounts database could not be read or written.
    #[error("accounts database unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> Self {
        AccountError::Unavailable(e.to_string())
    }
}

impl From<r2d2::Error> for AccountError {
    fn from(e: r2d2::Error) -> Self {
        AccountError::Unavailable(e.to_string())
    }
}

#[derive(Clone)]
pub struct Accounts {
    pool: Pool,
}

impl Accounts {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let pool = db::open(path, 8, SCHEMA)?;
        let conn = pool.get()?;
        let columns: Vec<String> =
            conn.prepare("SELECT name FROM pragma_table_info('accounts')")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        for (column, sql) in UPGRADES {
            if !columns.iter().any(|c| c == column) {
                conn.execute_batch(sql)?;
            }
        }
        conn.execute_batch("CREATE INDEX IF NOT EXISTS accounts_flipping ON accounts (flip_id) WHERE flip_id IS NOT NULL")?;
        drop(conn);
        Ok(Accounts { pool })
    }

    /// The pool on `accounts.db`, for the fleet tables that share the file
    /// (one file, so one transaction can check hosts and change a flag).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates an account. `gate` runs first inside the same write
    /// transaction: a refusal leaves nothing behind, and no host can change
    /// what the gate checked before the account exists.
    pub fn create<E: From<AccountError>>(
        &self,
        id: Uuid,
        name: &str,
        is_migrating: bool,
        now_ms: i64,
        gate: impl FnOnce(&Transaction<'_>) -> Result<(), E>,
    ) -> Result<Account, E> {
        let mut conn = self.pool.get().map_err(AccountError::from)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(AccountError::from)?;
        gate(&tx)?;
        let inserted = tx
            .execute(
                "INSERT INTO accounts (id, name, is_migrating, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (id) DO NOTHING",
                params![id.to_string(), name, is_migrating, now_ms],
            )
            .map_err(AccountError::from)?;
        if inserted == 0 {
            return Err(AccountError::AlreadyExists(id).into());
        }
        tx.commit().map_err(AccountError::from)?;
        Ok(Account { id, name: name.to_owned(), is_migrating, created_at_ms: now_ms, updated_at_ms: now_ms })
    }

    pub fn get(&self, id: Uuid) -> Result<Option<Account>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, is_migrating, created_at_ms, updated_at_ms FROM accounts WHERE id = ?1",
        )?;
        Ok(stmt.query_row([id.to_string()], row_to_account).optional()?)
    }

    /// The account's flag, read now; `None` if there is no such account.
    pub fn is_migrating(&self, id: Uuid) -> Result<Option<bool>, AccountError> {
        Ok(self.flag_state(id)?.map(|s| s.is_migrating))
    }

    /// The flag and any flip in progress, read now in one statement (one
    /// snapshot); `None` if there is no such account.
    pub fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(FLAG_STATE)?;
        Ok(stmt.query_row([id.to_string()], row_to_flag_state).optional()?)
    }

    pub fn list(&self) -> Result<Vec<Account>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, is_migrating, created_at_ms, updated_at_ms FROM accounts ORDER BY created_at_ms, id",
        )?;
        let accounts = stmt.query_map([], row_to_account)?.collect::<Result<_, _>>()?;
        Ok(accounts)
    }

    /// Renames an account; `None` if there is no such account. The flag is
    /// changed only by `fleet::flip`, which keeps every host in step.
    pub fn rename(&self, id: Uuid, name: &str, now_ms: i64) -> Result<Option<Account>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "UPDATE accounts SET name = ?2, updated_at_ms = ?3 WHERE id = ?1
             RETURNING id, name, is_migrating, created_at_ms, updated_at_ms",
        )?;
        Ok(stmt.query_row(params![id.to_string(), name, now_ms], row_to_account).optional()?)
    }

    /// Ids of the accounts whose flag is on or being turned on, read in `tx`
    /// (the plugin side of the deployment gate).
    pub fn migrating_in(tx: &Transaction<'_>) -> Result<Vec<Uuid>, AccountError> {
        let mut stmt = tx.prepare_cached("SELECT id FROM accounts WHERE is_migrating = 1 OR flip_to = 1 ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
    }

    /// The flag and flip of an account, read in `tx`.
    pub(crate) fn flag_state_in(tx: &Transaction<'_>, id: Uuid) -> Result<Option<FlagState>, AccountError> {
        let mut stmt = tx.prepare_cached(FLAG_STATE)?;
        Ok(stmt.query_row([id.to_string()], row_to_flag_state).optional()?)
    }
}

/// The flag and any flip in progress of one account (`row_to_flag_state`).
const FLAG_STATE: &str = "SELECT is_migrating, flip_id, flip_to, flip_deadline_ms, flip_by FROM accounts WHERE id = ?1";

fn row_to_flag_state(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlagState> {
    let flip = match r.get::<_, Option<String>>(1)? {
        Some(id) => Some(PendingFlip {
            id,
            to: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
            deadline_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            by_host: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(FlagState { is_migrating: r.get(0)?, flip })
}

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let id: String = r.get(0)?;
    Ok(Account {
        id: Uuid::parse_str(&id).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))?,
        name: r.get(1)?,
        is_migrating: r.get(2)?,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_gate(_: &Transaction<'_>) -> Result<(), AccountError> {
        Ok(())
    }

    #[test]
    fn the_flag_defaults_off_and_a_change_by_another_process_is_seen_by_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        let accounts = Accounts::open(&path).unwrap();
        let id = Uuid::new_v4();
        accounts.create(id, "Ada", false, 1, open_gate).unwrap();
        assert_eq!(accounts.is_migrating(id).unwrap(), Some(false));
        // Another process flips the flag on the same file.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute("UPDATE accounts SET is_migrating = 1 WHERE id = ?1", [id.to_string()]).unwrap();
        assert_eq!(accounts.is_migrating(id).unwrap(), Some(true));
        accounts.rename(id, "Grace", 2).unwrap();
        assert_eq!(accounts.get(id).unwrap().unwrap().is_migrating, true, "a rename keeps the flag");
        assert_eq!(accounts.is_migrating(Uuid::new_v4()).unwrap(), None);
    }

    #[test]
    fn creating_an_existing_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.db")).unwrap();
        let id = Uuid::new_v4();
        accounts.create(id, "a", false, 1, open_gate).unwrap();
        assert!(matches!(accounts.create(id, "b", true, 2, open_gate), Err(AccountError::AlreadyExists(_))));
        assert_eq!(accounts.get(id).unwrap().unwrap().name, "a");
    }

    #[test]
    fn a_gate_refusal_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.db")).unwrap();
        let refused = accounts.create(Uuid::new_v4(), "a", true, 1, |_| Err(AccountError::Unavailable("no".into())));
        assert!(refused.is_err());
        assert!(accounts.list().unwrap().is_empty());
    }
}
