//! SQLite (accounts.db): migration jobs.

use super::*;

impl Jobs for SqliteCoordination {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        conn.execute(
            &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                job.id,
                job.kind.as_str(),
                job.account.map(|a| a.to_string()),
                job.state.as_str(),
                job.rate,
                job.total as i64,
                job.done as i64,
                job.moved as i64,
                job.problems as i64,
                job.cursor,
                job.owner,
                job.created_at_ms,
                job.updated_at_ms,
                job.detail
            ],
        )?;
        Ok(())
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?;
        Ok(stmt.query_row([id], row_to_job).optional()?)
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at_ms DESC, id"))?;
        Ok(stmt.query_map([], row_to_job)?.collect::<Result<_, _>>()?)
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY created_at_ms DESC, id"))?;
        Ok(stmt.query_map([JobState::Running.as_str()], row_to_job)?.collect::<Result<_, _>>()?)
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let claimed = conn.execute(
            "UPDATE jobs SET owner = ?3, updated_at_ms = ?4 WHERE id = ?1 AND owner IS ?2 AND state = ?5",
            params![id, expected, host, now_ms, JobState::Running.as_str()],
        )?;
        Ok(claimed > 0)
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        let saved = conn.execute(
            "UPDATE jobs SET state = ?3, total = ?4, done = ?5, moved = ?6, problems = ?7, cursor = ?8, updated_at_ms = ?9, detail = ?10
             WHERE id = ?1 AND owner IS ?2 AND state = ?11",
            params![
                job.id,
                job.owner,
                job.state.as_str(),
                job.total as i64,
                job.done as i64,
                job.moved as i64,
                job.problems as i64,
                job.cursor,
                job.updated_at_ms,
                job.detail,
                JobState::Running.as_str()
            ],
        )?;
        Ok(saved > 0)
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let job = tx.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?.query_row([id], row_to_job).optional()?;
        let Some(mut job) = job.filter(|j| from.contains(&j.state)) else { return Ok(None) };
        tx.execute("UPDATE jobs SET state = ?2, updated_at_ms = ?3 WHERE id = ?1", params![id, to.as_str(), now_ms])?;
        tx.commit()?;
        job.state = to;
        job.updated_at_ms = now_ms;
        Ok(Some(job))
    }
}

const JOB_COLUMNS: &str =
    "id, kind, account, state, rate, total, done, moved, problems, cursor, owner, created_at_ms, updated_at_ms, detail";

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let account: Option<String> = r.get(2)?;
    Ok(Job {
        id: r.get(0)?,
        kind: parse_name(r, 1)?,
        account: account.and_then(|a| Uuid::parse_str(&a).ok()),
        state: parse_name(r, 3)?,
        rate: r.get(4)?,
        total: r.get::<_, i64>(5)? as u64,
        done: r.get::<_, i64>(6)? as u64,
        moved: r.get::<_, i64>(7)? as u64,
        problems: r.get::<_, i64>(8)? as u64,
        cursor: r.get(9)?,
        owner: r.get(10)?,
        created_at_ms: r.get(11)?,
        updated_at_ms: r.get(12)?,
        detail: r.get(13)?,
    })
}

/// A job's kind or state, as `notes_api_types` spells it.
fn parse_name<T: std::str::FromStr<Err = notes_api_types::UnknownName>>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let name: String = r.get(i)?;
    name.parse().map_err(|e: notes_api_types::UnknownName| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into()))
}
