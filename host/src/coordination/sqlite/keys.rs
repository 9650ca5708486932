//! SQLite (accounts.db): account keys.

use super::*;

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
