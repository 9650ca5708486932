//! PostgreSQL: account keys.

use super::*;

macro_rules! key_columns {
    () => {
        "id, account, label, hash, created_at_ms, revoked_at_ms"
    };
}

impl Keys for PostgresCoordination {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError> {
        execute(
            &mut *self.conn()?,
            INSERT_KEY,
            &[&key.id, &key.account.to_string(), &key.label, &key.hash, &key.created_at_ms, &key.revoked_at_ms],
        )?;
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError> {
        query_opt(&mut *self.conn()?, KEY, &[&id])?.map(|r| row_to_key(&r)).transpose()
    }

    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError> {
        query(&mut *self.conn()?, KEYS, &[&account.to_string()])?.iter().map(row_to_key).collect()
    }

    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        Ok(execute(&mut *self.conn()?, REVOKE_KEY, &[&id, &account.to_string(), &now_ms])? > 0)
    }
}

const INSERT_KEY: &str = concat!("INSERT INTO account_keys (", key_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6)");

const KEY: &str = concat!("SELECT ", key_columns!(), " FROM account_keys WHERE id = $1");

const KEYS: &str = concat!("SELECT ", key_columns!(), " FROM account_keys WHERE account = $1 ORDER BY created_at_ms, id");

const REVOKE_KEY: &str = "UPDATE account_keys SET revoked_at_ms = $3 WHERE id = $1 AND account = $2 AND revoked_at_ms IS NULL";

fn row_to_key(r: &Row) -> Result<AccountKey, CoordinationError> {
    Ok(AccountKey {
        id: r.get(0),
        account: parse_id(r.get(1))?,
        label: r.get(2),
        hash: r.get(3),
        created_at_ms: r.get(4),
        revoked_at_ms: r.get(5),
    })
}
