//! SQLite (accounts.db): the staged rollout and the kill switch.

use super::*;

impl Rollouts for SqliteCoordination {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        let conn = self.pool.get()?;
        let value: Option<String> =
            conn.query_row("SELECT value FROM service_state WHERE key = 'rollout_percent'", [], |r| r.get(0)).optional()?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        conn.execute(
            "INSERT INTO service_state (key, value) VALUES ('rollout_percent', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [percent.to_string()],
        )?;
        Ok(())
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latched: Option<String> = tx.query_row("SELECT value FROM service_state WHERE key = 'stopped'", [], |r| r.get(0)).optional()?;
        if latched.as_deref() == Some("true") {
            if !resume {
                return Err(CoordinationError::Latched);
            }
            tx.execute(SET_SERVICE_STATE, params!["stopped", "false"])?;
        }
        let generation = stop_generation_in(&tx)?;
        tx.commit()?;
        Ok(generation)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        let conn = self.pool.get()?;
        let latched: Option<String> = conn.query_row("SELECT value FROM service_state WHERE key = 'stopped'", [], |r| r.get(0)).optional()?;
        Ok(latched.as_deref() == Some("true"))
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let generation = stop_generation_in(&tx)? + 1;
        tx.execute(SET_SERVICE_STATE, params!["stop_generation", generation.to_string()])?;
        tx.execute(SET_SERVICE_STATE, params!["stopped", "true"])?;
        tx.execute(SET_SERVICE_STATE, params!["rollout_percent", "0"])?;
        tx.commit()?;
        Ok(generation)
    }
}
