//! PostgreSQL: the staged rollout and the kill switch.

use super::*;

impl Rollouts for PostgresCoordination {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        let value: Option<String> = query_opt(&mut *self.conn()?, ROLLOUT_PERCENT, &[])?.map(|r| r.get(0));
        Ok(value.and_then(|v| v.parse().ok()))
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        execute(&mut tx, SET_ROLLOUT_PERCENT, &[&percent.to_string()])?;
        tx.commit(true)?;
        Ok(())
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        let latched: Option<String> = query_opt(&mut tx, STOPPED, &[])?.map(|r| r.get(0));
        if latched.as_deref() == Some("true") {
            if !resume {
                return Err(CoordinationError::Latched);
            }
            execute(&mut tx, SET_STATE, &[&"stopped", &"false"])?;
        }
        let generation = stop_generation_in(&mut tx)?;
        tx.commit(true)?;
        Ok(generation)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        let latched: Option<String> = query_opt(&mut *self.conn()?, STOPPED, &[])?.map(|r| r.get(0));
        Ok(latched.as_deref() == Some("true"))
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        let mut conn = self.conn()?;
        // A decision: serialized with every announcement under the advisory lock.
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        let generation = stop_generation_in(&mut tx)? + 1;
        execute(&mut tx, SET_STATE, &[&"stop_generation", &generation.to_string()])?;
        execute(&mut tx, SET_STATE, &[&"stopped", &"true"])?;
        execute(&mut tx, SET_STATE, &[&"rollout_percent", &"0"])?;
        tx.commit(true)?;
        Ok(generation)
    }
}
