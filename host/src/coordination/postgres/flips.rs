//! PostgreSQL: flips of an account's flag.

use super::*;

impl Flips for PostgresCoordination {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION_UNSYNCED)?;
        if flip.to
            && let Some(began_at) = rollout
            && stop_generation_in(&mut tx)? != began_at
        {
            return Err(CoordinationError::Stopped(flip.account));
        }
        let account = flip.account.to_string();
        let state = query_opt(&mut tx, FLAG_STATE, &[&account])?
            .map(|r| row_to_flag_state(&r))
            .transpose()?
            .ok_or(CoordinationError::NoAccount(flip.account))?;
        if state.flip.is_some() {
            return Err(CoordinationError::FlipInProgress(flip.account));
        }
        if state.is_migrating == flip.to {
            return Ok(Announced::Unchanged);
        }
        let hosts = hosts_on(&mut tx)?;
        gate.allows_flag(flip.to, || Ok(hosts.clone()))?;
        execute(&mut tx, MARK_FLIP, &[&account, &flip.id, &flip.to, &flip.deadline_ms, &flip.by_host])?;
        tx.commit(true)?;
        Ok(Announced::Pending { hosts, epoch: state.epoch + 1 })
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        gate.allows_flag(flip.to, || hosts_on(&mut tx))?;
        let committed = execute(&mut tx, COMMIT_FLIP, &[&flip.account.to_string(), &flip.id, &flip.to, &now_ms])?;
        execute(&mut tx, DELETE_ACKS_OF_FLIP, &[&flip.id])?;
        if committed > 0 {
            insert_audit(&mut tx, audit)?;
        }
        tx.commit(true)?;
        Ok(committed > 0)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        let aborted = execute(&mut tx, ABORT_FLIP, &[&account.to_string(), &flip_id])?;
        execute(&mut tx, DELETE_ACKS_OF_FLIP, &[&flip_id])?;
        tx.commit(true)?;
        Ok(aborted > 0)
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        let rows = query(&mut *self.conn()?, PENDING_FLIPS, &[])?;
        let flips = rows.iter().map(row_to_flip).collect::<Result<Vec<_>, _>>()?;
        Ok(flips.into_iter().flatten().collect())
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, now_ms: i64) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_UNSYNCED)?;
        let inserted = execute(&mut tx, INSERT_ACK, &[&flip_id, &host, &now_ms])?;
        tx.commit(inserted > 0)?;
        Ok(())
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(query(&mut *self.conn()?, FLIP_ACKS, &[&flip_id])?.iter().map(|r| r.get(0)).collect())
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        // Test only, and meant to skip the gate; but a change of the flag
        // still waits for decisions in progress, so each of those reads one
        // flag from start to end, as with SQLite.
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        let changed = execute(&mut tx, SET_FLAG, &[&account.to_string(), &to, &now_ms])?;
        tx.commit(changed > 0)?;
        Ok(changed > 0)
    }
}
