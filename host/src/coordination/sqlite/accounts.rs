//! SQLite (accounts.db): accounts and their flags.

use super::*;

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
