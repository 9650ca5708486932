//! PostgreSQL: migration jobs.

use super::*;

macro_rules! job_columns {
    () => {
        "id, kind, account, state, rate, total, done, moved, problems, cursor, owner, created_at_ms, updated_at_ms, detail"
    };
}

impl Jobs for PostgresCoordination {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        execute(
            &mut tx,
            INSERT_JOB,
            &[
                &job.id,
                &job.kind.as_str(),
                &job.account.map(|a| a.to_string()),
                &job.state.as_str(),
                &i64::from(job.rate),
                &(job.total as i64),
                &(job.done as i64),
                &(job.moved as i64),
                &(job.problems as i64),
                &job.cursor,
                &job.owner,
                &job.created_at_ms,
                &job.updated_at_ms,
                &job.detail,
            ],
        )?;
        tx.commit(true)?;
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        query_opt(&mut *self.conn()?, JOB, &[&id])?.map(|r| row_to_job(&r)).transpose()
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        query(&mut *self.conn()?, JOBS, &[])?.iter().map(row_to_job).collect()
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        query(&mut *self.conn()?, RUNNING_JOBS, &[&JobState::Running.as_str()])?.iter().map(row_to_job).collect()
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        // A compare-and-set in one statement: of two claimers, the second
        // waits for the first's row lock, then finds the owner changed.
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        let claimed = execute(&mut tx, CLAIM_JOB, &[&id, &expected, &host, &now_ms, &JobState::Running.as_str()])?;
        tx.commit(claimed > 0)?;
        Ok(claimed > 0)
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN)?;
        let saved = execute(
            &mut tx,
            SAVE_JOB,
            &[
                &job.id,
                &job.owner,
                &job.state.as_str(),
                &(job.total as i64),
                &(job.done as i64),
                &(job.moved as i64),
                &(job.problems as i64),
                &job.cursor,
                &job.updated_at_ms,
                &job.detail,
                &JobState::Running.as_str(),
            ],
        )?;
        tx.commit(saved > 0)?;
        Ok(saved > 0)
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        // `FOR UPDATE`: the decision lock orders decisions, not `save_job`;
        // the row lock keeps an owner's save from landing between this read
        // and the write (the save then finds the job no longer running).
        let job = query_opt(&mut tx, JOB_FOR_UPDATE, &[&id])?.map(|r| row_to_job(&r)).transpose()?;
        let Some(mut job) = job.filter(|j| from.contains(&j.state)) else { return Ok(None) };
        execute(&mut tx, SET_JOB_STATE, &[&id, &to.as_str(), &now_ms])?;
        tx.commit(true)?;
        job.state = to;
        job.updated_at_ms = now_ms;
        Ok(Some(job))
    }
}

const INSERT_JOB: &str =
    concat!("INSERT INTO jobs (", job_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)");

const JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");

const JOBS: &str = concat!("SELECT ", job_columns!(), " FROM jobs ORDER BY created_at_ms DESC, id");

const RUNNING_JOBS: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE state = $1 ORDER BY created_at_ms DESC, id");

/// `IS NOT DISTINCT FROM`: SQLite's `IS`, an equality where NULL equals NULL.
const CLAIM_JOB: &str =
    "UPDATE jobs SET owner = $3, updated_at_ms = $4 WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND state = $5";

const SAVE_JOB: &str = "UPDATE jobs SET state = $3, total = $4, done = $5, moved = $6, problems = $7, cursor = $8, updated_at_ms = $9, detail = $10
     WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND state = $11";

const JOB_FOR_UPDATE: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1 FOR UPDATE");

const SET_JOB_STATE: &str = "UPDATE jobs SET state = $2, updated_at_ms = $3 WHERE id = $1";

fn row_to_job(r: &Row) -> Result<Job, CoordinationError> {
    let account: Option<&str> = r.get(2);
    let name = |i: usize| -> &str { r.get(i) };
    let damaged = |e: notes_api_types::UnknownName| CoordinationError::Unavailable(format!("the coordination database holds a damaged job: {e}"));
    Ok(Job {
        id: r.get(0),
        kind: name(1).parse().map_err(damaged)?,
        account: account.and_then(|a| Uuid::parse_str(a).ok()),
        state: name(3).parse().map_err(damaged)?,
        rate: u32::try_from(r.get::<_, i64>(4)).unwrap_or(u32::MAX),
        total: r.get::<_, i64>(5) as u64,
        done: r.get::<_, i64>(6) as u64,
        moved: r.get::<_, i64>(7) as u64,
        problems: r.get::<_, i64>(8) as u64,
        cursor: r.get(9),
        owner: r.get(10),
        created_at_ms: r.get(11),
        updated_at_ms: r.get(12),
        detail: r.get(13),
    })
}
