//! In memory: flips of an account's flag.

use super::*;

impl Flips for MemoryCoordination {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        let mut state = self.write()?;
        if flip.to && rollout.is_some_and(|began_at| began_at != state.stop_generation) {
            return Err(CoordinationError::Stopped(flip.account));
        }
        let hosts = state.hosts();
        let (account, pending) = state.accounts.get_mut(&flip.account).ok_or(CoordinationError::NoAccount(flip.account))?;
        if pending.is_some() {
            return Err(CoordinationError::FlipInProgress(flip.account));
        }
        if account.is_migrating == flip.to {
            return Ok(Announced::Unchanged);
        }
        gate.allows_flag(flip.to, || Ok(hosts.clone()))?;
        *pending = Some(flip.clone());
        let epoch = state.epochs.get(&flip.account).copied().unwrap_or(0) + 1;
        Ok(Announced::Pending { hosts, epoch })
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        gate.allows_flag(flip.to, || Ok(state.hosts()))?;
        state.acks.remove(&flip.id);
        let Some((account, pending)) = state.accounts.get_mut(&flip.account) else { return Ok(false) };
        if pending.as_ref().map(|p| &p.id) != Some(&flip.id) {
            return Ok(false);
        }
        *pending = None;
        account.is_migrating = flip.to;
        account.was_migrating |= flip.to;
        account.updated_at_ms = now_ms;
        account.verified = None;
        *state.epochs.entry(flip.account).or_default() += 1;
        state.append_audit(audit);
        Ok(true)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        state.acks.remove(flip_id);
        match state.accounts.get_mut(&account) {
            Some((_, pending)) if pending.as_ref().is_some_and(|p| p.id == flip_id) => {
                *pending = None;
                *state.epochs.entry(account).or_default() += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        Ok(self.read()?.accounts.values().filter_map(|(_, flip)| flip.clone()).collect())
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, _now_ms: i64) -> Result<(), CoordinationError> {
        self.write()?.acks.entry(flip_id.to_owned()).or_default().insert(host.to_owned());
        Ok(())
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(self.read()?.acks.get(flip_id).cloned().unwrap_or_default())
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        let changed = state.accounts.get_mut(&account).map(|(a, _)| {
            a.is_migrating = to;
            a.was_migrating |= to;
            a.updated_at_ms = now_ms;
            a.verified = None;
        }).is_some();
        if changed {
            *state.epochs.entry(account).or_default() += 1;
        }
        Ok(changed)
    }
}
