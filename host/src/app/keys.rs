//! Per-account keys: a key's holder reaches its account's notes and nothing
//! else (the API decides what a key may call, `api::auth`). A key is shown
//! once, when created; only its sha256 is kept, and it is compared in
//! constant time.

use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::catalog::sha256_hex;
use crate::coordination::AccountKey;
use super::{Actor, App, AppError};

/// Every key starts with this, then its id, `_`, and its secret.
const PREFIX: &str = "nk_";

impl App {
    /// A new key of `account`: its record and the key itself (shown once).
    pub fn create_key(&self, account: Uuid, label: &str) -> Result<(AccountKey, String), AppError> {
        self.account(account)?;
        if label.len() > self.settings.max_name_bytes || label.chars().any(char::is_control) {
            return Err(AppError::Invalid(format!(
                "a key's label must be at most {} bytes, without control characters",
                self.settings.max_name_bytes
            )));
        }
        let id = Uuid::new_v4().simple().to_string();
        // 244 random bits: a hash of it needs no salt and no slow hashing.
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let token = format!("{PREFIX}{id}_{secret}");
        let key = AccountKey { id, account, label: label.to_owned(), hash: sha256_hex(token.as_bytes()), created_at_ms: self.now_ms(), revoked_at_ms: None };
        self.coordination.create_key(&key)?;
        self.fleet.audit(Actor::Operator.as_str(), "key", &key.id, "", "created", &format!("key of account {account}"));
        Ok((key, token))
    }

    pub fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, AppError> {
        self.account(account)?;
        Ok(self.coordination.keys(account)?)
    }

    pub fn revoke_key(&self, account: Uuid, id: &str) -> Result<(), AppError> {
        self.account(account)?;
        if !self.coordination.revoke_key(account, id, self.now_ms())? {
            return Err(AppError::NotFound(format!("account {account} has no live key {id}")));
        }
        self.fleet.audit(Actor::Operator.as_str(), "key", id, "created", "revoked", &format!("key of account {account}"));
        Ok(())
    }

    /// The account a presented key reaches; `None` if it is not a live key
    /// (malformed, unknown, revoked, or the secret is wrong).
    pub fn key_account(&self, token: &str) -> Result<Option<Uuid>, AppError> {
        let Some((id, _secret)) = token.strip_prefix(PREFIX).and_then(|rest| rest.split_once('_')) else { return Ok(None) };
        let Some(key) = self.coordination.key(id)? else { return Ok(None) };
        let matches: bool = key.hash.as_bytes().ct_eq(sha256_hex(token.as_bytes()).as_bytes()).into();
        Ok((matches && key.revoked_at_ms.is_none()).then_some(key.account))
    }
}
