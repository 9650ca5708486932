//! In memory: accounts and their flags.

use super::*;

impl Accounts for MemoryCoordination {
    fn is_in_process(&self) -> bool {
        true
    }

    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_flag(account.is_migrating, || Ok(state.hosts()))?;
        if state.accounts.contains_key(&account.id) {
            return Err(CoordinationError::AlreadyExists(account.id));
        }
        let was_migrating = account.is_migrating || account.was_migrating;
        state.accounts.insert(account.id, (Account { was_migrating, ..account.clone() }, None));
        Ok(())
    }

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError> {
        Ok(self.read()?.accounts.get(&id).map(|(a, _)| a.clone()))
    }

    fn accounts(&self) -> Result<Vec<Account>, CoordinationError> {
        let mut accounts: Vec<Account> = self.read()?.accounts.values().map(|(a, _)| a.clone()).collect();
        accounts.sort_by_key(|a| (a.created_at_ms, a.id));
        Ok(accounts)
    }

    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError> {
        Ok(self.read()?.accounts.keys().filter(|id| after.is_none_or(|after| **id > after)).min().copied())
    }

    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError> {
        let mut state = self.write()?;
        Ok(state.accounts.get_mut(&id).map(|(a, _)| {
            if let Some(name) = &details.name {
                a.name = name.clone();
            }
            if let Some(shard) = &details.shard {
                a.shard = Some(shard.clone());
            }
            a.updated_at_ms = now_ms;
            a.clone()
        }))
    }

    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError> {
        let state = self.read()?;
        let epoch = state.epochs.get(&id).copied().unwrap_or(0);
        Ok(state.accounts.get(&id).map(|(a, flip)| FlagState { is_migrating: a.is_migrating, epoch, flip: flip.clone() }))
    }

    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.accounts.get_mut(&account) {
            Some((a, None)) if a.updated_at_ms == updated_at_ms => {
                a.verified = Some(verified);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
