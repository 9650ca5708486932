//! PostgreSQL: accounts and their flags.

use super::*;

impl Accounts for PostgresCoordination {
    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        gate.allows_flag(account.is_migrating, || hosts_on(&mut tx))?;
        let inserted = execute(
            &mut tx,
            INSERT_ACCOUNT,
            &[
                &account.id.to_string(),
                &account.name,
                &account.is_migrating,
                &account.created_at_ms,
                &account.updated_at_ms,
                &account.shard,
                &(account.is_migrating || account.was_migrating),
            ],
        )?;
        if inserted == 0 {
            return Err(CoordinationError::AlreadyExists(account.id));
        }
        tx.commit(true)?;
        Ok(())
    }

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError> {
        query_opt(&mut *self.conn()?, ACCOUNT, &[&id.to_string()])?.map(|r| row_to_account(&r)).transpose()
    }

    fn accounts(&self) -> Result<Vec<Account>, CoordinationError> {
        query(&mut *self.conn()?, ACCOUNTS, &[])?.iter().map(row_to_account).collect()
    }

    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError> {
        // Ids are stored in their canonical form, whose byte order is the UUIDs' order.
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        query_opt(&mut *self.conn()?, NEXT_ACCOUNT, &[&after])?.map(|r| parse_id(r.get(0))).transpose()
    }

    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        let Some(row) = query_opt(&mut tx, UPDATE_ACCOUNT, &[&id.to_string(), &details.name, &details.shard, &now_ms])? else {
            return Ok(None);
        };
        let account = row_to_account(&row)?;
        tx.commit(true)?;
        Ok(Some(account))
    }

    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError> {
        query_opt(&mut *self.conn()?, FLAG_STATE, &[&id.to_string()])?.map(|r| row_to_flag_state(&r)).transpose()
    }

    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError> {
        // One conditional update: a flip committing meanwhile holds the row,
        // and PostgreSQL checks the condition again on the row it left.
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        let changed = execute(&mut tx, RECORD_VERIFY, &[&account.to_string(), &verified.at_ms, &verified.clean, &updated_at_ms])?;
        tx.commit(changed > 0)?;
        Ok(changed > 0)
    }
}
