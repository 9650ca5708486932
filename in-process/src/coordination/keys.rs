//! In memory: account keys.

use super::*;

impl Keys for MemoryCoordination {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError> {
        self.write()?.keys.push(key.clone());
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError> {
        Ok(self.read()?.keys.iter().find(|k| k.id == id).cloned())
    }

    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError> {
        Ok(self.read()?.keys.iter().filter(|k| k.account == account).cloned().collect())
    }

    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.keys.iter_mut().find(|k| k.id == id && k.account == account && k.revoked_at_ms.is_none()) {
            Some(key) => {
                key.revoked_at_ms = Some(now_ms);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
