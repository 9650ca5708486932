//! SQLite (accounts.db): flips of an account's flag.

use super::*;

impl Flips for SqliteCoordination {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if flip.to
            && let Some(began_at) = rollout
            && stop_generation_in(&tx)? != began_at
        {
            return Err(CoordinationError::Stopped(flip.account));
        }
        let state = tx
            .prepare_cached(FLAG_STATE)?
            .query_row([flip.account.to_string()], row_to_flag_state)
            .optional()?
            .ok_or(CoordinationError::NoAccount(flip.account))?;
        if state.flip.is_some() {
            return Err(CoordinationError::FlipInProgress(flip.account));
        }
        if state.is_migrating == flip.to {
            return Ok(Announced::Unchanged);
        }
        let hosts = hosts_in(&tx)?;
        gate.allows_flag(flip.to, || Ok(hosts.clone()))?;
        tx.execute(
            "UPDATE accounts SET flip_id = ?2, flip_to = ?3, flip_deadline_ms = ?4, flip_by = ?5 WHERE id = ?1",
            params![flip.account.to_string(), flip.id, flip.to, flip.deadline_ms, flip.by_host],
        )?;
        tx.commit()?;
        Ok(Announced::Pending { hosts, epoch: state.epoch + 1 })
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_flag(flip.to, || hosts_in(&tx))?;
        let committed = tx.execute(
            "UPDATE accounts SET is_migrating = ?3, updated_at_ms = ?4, flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL,
                 verified_at_ms = NULL, verified_clean = NULL, flag_epoch = flag_epoch + 1, was_migrating = (was_migrating OR ?3)
             WHERE id = ?1 AND flip_id = ?2",
            params![flip.account.to_string(), flip.id, flip.to, now_ms],
        )?;
        tx.execute("DELETE FROM flip_acks WHERE flip_id = ?1", [&flip.id])?;
        if committed > 0 {
            insert_audit(&tx, audit)?;
        }
        tx.commit()?;
        Ok(committed > 0)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let aborted = tx.execute(
            "UPDATE accounts SET flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL, flag_epoch = flag_epoch + 1
             WHERE id = ?1 AND flip_id = ?2",
            params![account.to_string(), flip_id],
        )?;
        tx.execute("DELETE FROM flip_acks WHERE flip_id = ?1", [flip_id])?;
        tx.commit()?;
        Ok(aborted > 0)
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, flip_id, flip_to, flip_deadline_ms, flip_by FROM accounts WHERE flip_id IS NOT NULL",
        )?;
        let flips = stmt.query_map([], row_to_flip)?.collect::<Result<Vec<_>, _>>()?;
        Ok(flips.into_iter().flatten().collect())
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, now_ms: i64) -> Result<(), CoordinationError> {
        let conn = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute("INSERT OR IGNORE INTO flip_acks (flip_id, host_id, at_ms) VALUES (?1, ?2, ?3)", params![flip_id, host, now_ms])?;
        Ok(())
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT host_id FROM flip_acks WHERE flip_id = ?1")?;
        let acked = stmt.query_map([flip_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(acked)
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let changed = conn.execute(
            "UPDATE accounts SET is_migrating = ?2, updated_at_ms = ?3, verified_at_ms = NULL, verified_clean = NULL, flag_epoch = flag_epoch + 1,
                 was_migrating = (was_migrating OR ?2)
             WHERE id = ?1",
            params![account.to_string(), to, now_ms],
        )?;
        Ok(changed > 0)
    }
}
