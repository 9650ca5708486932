//! In memory: the staged rollout and the kill switch.

use super::*;

impl Rollouts for MemoryCoordination {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        Ok(self.read()?.rollout_percent)
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        let mut state = self.write()?;
        if state.stopped {
            if !resume {
                return Err(CoordinationError::Latched);
            }
            state.stopped = false;
        }
        Ok(state.stop_generation)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        Ok(self.read()?.stopped)
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        let mut state = self.write()?;
        state.stop_generation += 1;
        state.stopped = true;
        state.rollout_percent = Some(0.0);
        Ok(state.stop_generation)
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        self.write()?.rollout_percent = Some(percent);
        Ok(())
    }
}
