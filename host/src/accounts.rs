//! Accounts and their `is_migrating` flag, in `accounts.db`.
//!
//! The flag is read from SQLite for every note request: there is no cache to
//! go stale, and a change committed by any process on the same file is seen
//! by the next request. A failed read is an error, never "not migrating".

use std::path::Path;

use rusqlite::{OptionalExtension, params};
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

pub struct Accounts {
    pool: Pool,
}

impl Accounts {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Accounts { pool: db::open(path, 8, SCHEMA)? })
    }

    pub fn create(&self, id: Uuid, name: &str, is_migrating: bool, now_ms: i64) -> Result<Account, AccountError> {
        let conn = self.pool.get()?;
        let inserted = conn.execute(
            "INSERT INTO accounts (id, name, is_migrating, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (id) DO NOTHING",
            params![id.to_string(), name, is_migrating, now_ms],
        )?;
        if inserted == 0 {
            return Err(AccountError::AlreadyExists(id));
        }
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
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT is_migrating FROM accounts WHERE id = ?1")?;
        Ok(stmt.query_row([id.to_string()], |r| r.get(0)).optional()?)
    }

    pub fn list(&self) -> Result<Vec<Account>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, is_migrating, created_at_ms, updated_at_ms FROM accounts ORDER BY created_at_ms, id",
        )?;
        let accounts = stmt.query_map([], row_to_account)?.collect::<Result<_, _>>()?;
        Ok(accounts)
    }

    /// Applies `change`; `None` if there is no such account.
    pub fn update(&self, id: Uuid, change: &AccountChange, now_ms: i64) -> Result<Option<Account>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "UPDATE accounts SET name = coalesce(?2, name), is_migrating = coalesce(?3, is_migrating), updated_at_ms = ?4
             WHERE id = ?1
             RETURNING id, name, is_migrating, created_at_ms, updated_at_ms",
        )?;
        let account = stmt
            .query_row(params![id.to_string(), change.name, change.is_migrating, now_ms], row_to_account)
            .optional()?;
        Ok(account)
    }

    /// Ids of the accounts whose flag is on.
    pub fn migrating(&self) -> Result<Vec<Uuid>, AccountError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT id FROM accounts WHERE is_migrating = 1 ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
    }
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

    #[test]
    fn the_flag_defaults_off_and_a_change_is_seen_by_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        let accounts = Accounts::open(&path).unwrap();
        let id = Uuid::new_v4();
        accounts.create(id, "Ada", false, 1).unwrap();
        assert_eq!(accounts.is_migrating(id).unwrap(), Some(false));
        // Another process flips the flag on the same file.
        let other = Accounts::open(&path).unwrap();
        other.update(id, &AccountChange { is_migrating: Some(true), ..Default::default() }, 2).unwrap();
        assert_eq!(accounts.is_migrating(id).unwrap(), Some(true));
        assert_eq!(accounts.get(id).unwrap().unwrap().name, "Ada", "a flag change keeps the name");
        assert_eq!(accounts.migrating().unwrap(), [id]);
        assert_eq!(accounts.is_migrating(Uuid::new_v4()).unwrap(), None);
    }

    #[test]
    fn creating_an_existing_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.db")).unwrap();
        let id = Uuid::new_v4();
        accounts.create(id, "a", false, 1).unwrap();
        assert!(matches!(accounts.create(id, "b", true, 2), Err(AccountError::AlreadyExists(_))));
        assert_eq!(accounts.get(id).unwrap().unwrap().name, "a");
    }
}
