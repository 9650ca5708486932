//! In memory: migration jobs.

use super::*;

impl Jobs for MemoryCoordination {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        self.write()?.jobs.push(job.clone());
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().find(|j| j.id == id).cloned())
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().rev().cloned().collect())
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        Ok(self.read()?.jobs.iter().rev().filter(|j| j.state == JobState::Running).cloned().collect())
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.jobs.iter_mut().find(|j| j.id == id && j.owner.as_deref() == expected && j.state == JobState::Running) {
            Some(job) => {
                job.owner = Some(host.to_owned());
                job.updated_at_ms = now_ms;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        let mut state = self.write()?;
        match state.jobs.iter_mut().find(|j| j.id == job.id && j.owner == job.owner && j.state == JobState::Running) {
            Some(stored) => {
                *stored = job.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        let mut state = self.write()?;
        Ok(state.jobs.iter_mut().find(|j| j.id == id && from.contains(&j.state)).map(|job| {
            job.state = to;
            job.updated_at_ms = now_ms;
            job.clone()
        }))
    }
}
