//! Migration jobs: a backfill (notes to the new store), a bulk rollback
//! (back to legacy) or a verify, for one account or for every account in the
//! mode the job works on. A job lives in the coordination state, so it
//! survives its host: any host's runner steps running jobs it owns, and takes
//! over one whose owner's process has ended.
//!
//! A step is a run of move batches of one account, up to [`STEP_TIME`] (one
//! account, for a verify; `moves`). A batch is admitted like a note request and
//! moves only if the flag it read is the one the job moves for: after a
//! flip, a backfill skips the account (its notes stay put, and the account's
//! own mode now decides), it never moves a note the wrong way. Progress is
//! saved after every step, so a job killed midway resumes from its last
//! saved step; a step redone after a crash is a no-op.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::coordination::{Job, JobKind, JobState};
use super::moves::{Batch, RunBudget};
use super::{Actor, App, AppError};

/// The fewest characters of a job's id that name it (`GET /jobs/{job}`,
/// pause, resume, cancel): the console shows 8.
pub(super) const JOB_PREFIX_MIN: usize = 8;

/// How long the runner sleeps when no job has work.
const IDLE: Duration = Duration::from_millis(100);
/// How long one step of a move job runs batches before the runner saves
/// its progress and looks at pauses and other jobs again.
const STEP_TIME: Duration = Duration::from_millis(250);
/// Accounts a step of an all-accounts job may skip (nothing to move, other
/// mode) before it yields.
const SKIPS_PER_STEP: usize = 64;

/// An operator's change of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobControl {
    Pause,
    Resume,
    Cancel,
}

/// In-memory pacing of this host's runner, per job: when it may step again
/// (its rate, or a back-off after a deferred step), and when it last did (the
/// runner steps the job that waited longest, so none starves another).
#[derive(Default)]
pub(super) struct JobPacing(Mutex<HashMap<String, Pace>>);

#[derive(Clone, Copy)]
struct Pace {
    next_at: Instant,
    last_step: Instant,
}

impl JobPacing {
    fn get(&self, job: &str) -> Option<Pace> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(job).copied()
    }

    fn stepped(&self, job: &str, wait: Duration) {
        let now = Instant::now();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(job.to_owned(), Pace { next_at: now + wait, last_step: now });
    }
}

/// How long a job waits after a step that could not run (the account or the
/// host busy, the plugin suspended or at its deadline).
const DEFERRED_WAIT: Duration = Duration::from_secs(1);

impl App {
    /// Starts a job. Its total is counted now: notes in legacy of the
    /// accounts with the flag on (backfill), in new of those with it off
    /// (rollback), or accounts (verify).
    pub fn create_job(&self, kind: JobKind, account: Option<Uuid>, rate: u32) -> Result<Job, AppError> {
        let accounts = match account {
            Some(id) => vec![self.account(id)?],
            None => self.accounts()?,
        };
        let mut total = 0;
        for a in &accounts {
            total += match toward_new(kind) {
                None => 1,
                Some(true) if a.is_migrating => self.stores.legacy.count(&a.id.to_string())?,
                Some(false) if !a.is_migrating => match &self.stores.new {
                    Some(new) => new.count(&a.id.to_string())?,
                    None => 0,
                },
                Some(_) => 0,
            };
        }
        let now = self.now_ms();
        let job = Job { account, rate, total, ..Job::new(Uuid::new_v4().to_string(), kind, now) };
        self.coordination.create_job(&job)?;
        let scope = account.map_or("every account".to_owned(), |a| a.to_string());
        self.fleet.audit(Actor::Operator.as_str(), "job", &job.id, "", JobState::Running.as_str(), &format!("{} of {scope}, {total} to go", job.kind));
        Ok(job)
    }

    pub fn jobs(&self) -> Result<Vec<Job>, AppError> {
        Ok(self.coordination.jobs()?)
    }

    /// The job whose id is `id` or starts with it: at least
    /// [`JOB_PREFIX_MIN`] characters, as the console shows it.
    pub fn job(&self, id: &str) -> Result<Job, AppError> {
        if let Some(job) = self.coordination.job(id)? {
            return Ok(job);
        }
        if id.len() < JOB_PREFIX_MIN {
            return Err(AppError::Invalid(format!("job id {id:?} is too short: give the id or its first {JOB_PREFIX_MIN} or more characters")));
        }
        let jobs = self.coordination.jobs()?;
        super::one_by_prefix(jobs.into_iter().filter(|j| j.id.starts_with(id)), id, "jobs have an id", || format!("job {id} not found"))
    }

    /// `id` as in [`App::job`].
    pub fn control_job(&self, id: &str, control: JobControl) -> Result<Job, AppError> {
        let id = self.job(id)?.id;
        let id = id.as_str();
        let (from, to): (&[JobState], JobState) = match control {
            JobControl::Pause => (&[JobState::Running], JobState::Paused),
            JobControl::Resume => (&[JobState::Paused], JobState::Running),
            JobControl::Cancel => (&[JobState::Running, JobState::Paused], JobState::Cancelled),
        };
        match self.coordination.set_job_state(id, from, to, self.now_ms())? {
            Some(job) => {
                let before = from.iter().map(|state| state.as_str()).collect::<Vec<_>>().join("|");
                self.fleet.audit(Actor::Operator.as_str(), "job", id, &before, to.as_str(), job.kind.as_str());
                Ok(job)
            }
            None => {
                let job = self.job(id)?;
                Err(AppError::Conflict(format!("job {id} is {}; it cannot be moved to {to}", job.state)))
            }
        }
    }

    /// Runs one step of one job this host owns or may take over; false if
    /// no job had work now (all paced, paused or finished).
    pub fn run_job_step(&self) -> Result<bool, AppError> {
        let me = self.fleet.host_id();
        let now = Instant::now();
        let mut candidates: Vec<(Option<Instant>, Job)> = self
            .coordination
            .running_jobs()?
            .into_iter()
            .filter(|j| j.owner.as_deref().is_none_or(|owner| owner == me || self.fleet.host_is_gone(owner)))
            .filter_map(|j| match self.job_pacing.get(&j.id) {
                Some(pace) if now < pace.next_at => None,
                pace => Some((pace.map(|p| p.last_step), j)),
            })
            .collect();
        // The job that waited longest first (never stepped here: first of all).
        candidates.sort_by_key(|(last_step, _)| *last_step);
        for (_, mut job) in candidates {
            if job.owner.as_deref() != Some(me.as_str()) {
                if !self.coordination.claim_job(&job.id, job.owner.as_deref(), &me, self.now_ms())? {
                    continue;
                }
                tracing::info!(job = %job.id, previous = ?job.owner, "took over a migration job");
                job.owner = Some(me.clone());
            }
            let Some(worked) = self.step(&mut job)? else {
                self.job_pacing.stepped(&job.id, DEFERRED_WAIT);
                return Ok(true);
            };
            job.updated_at_ms = self.now_ms();
            if self.coordination.save_job(&job)? && job.state != JobState::Running {
                self.fleet.audit(Actor::Automatic.as_str(), "job", &job.id, JobState::Running.as_str(), job.state.as_str(), &job.detail);
            }
            let wait = if job.rate > 0 { Duration::from_secs_f64(worked as f64 / f64::from(job.rate)) } else { Duration::ZERO };
            self.job_pacing.stepped(&job.id, wait);
            return Ok(true);
        }
        Ok(false)
    }

    /// One step of `job`, recorded in it; the notes (or accounts) it went
    /// through, for pacing; `None` if it could not run now (retried later).
    /// It picks the account (the job's own, or the next one in id order),
    /// and the kind's own step works on it.
    fn step(&self, job: &mut Job) -> Result<Option<u64>, AppError> {
        let mut skipped = 0;
        loop {
            let account = match job.account {
                Some(id) => id,
                None => {
                    // The cursor is the last account finished, in id order.
                    let after = Uuid::parse_str(&job.cursor).ok();
                    match self.coordination.next_account_after(after)? {
                        Some(id) => id,
                        None => return Ok(Some(finish(job, JobState::Done, format!("every account done; {} moved", job.moved)))),
                    }
                }
            };
            let outcome = match toward_new(job.kind) {
                None => self.verify_step(job, account),
                Some(toward_new) => self.move_step(job, account, toward_new),
            };
            match outcome {
                Stepped::Went(went) => return Ok(went),
                // An account of an all-accounts job with nothing to move.
                Stepped::Skipped => {
                    job.cursor = account.to_string();
                    skipped += 1;
                    if skipped >= SKIPS_PER_STEP {
                        return Ok(Some(0));
                    }
                }
            }
        }
    }

    /// A verify's step: one account, checked and counted.
    fn verify_step(&self, job: &mut Job, account: Uuid) -> Stepped {
        let report = match self.verify(account) {
            Ok(report) => report,
            Err(e) if deferrable(&e) => return Stepped::Went(None),
            Err(e) => return Stepped::Went(Some(finish(job, JobState::Failed, format!("account {account}: {e}")))),
        };
        job.done += 1;
        if !report.clean {
            job.problems += 1;
        }
        job.cursor = account.to_string();
        if job.account.is_some() {
            finish(job, JobState::Done, if report.clean { "clean".into() } else { format!("{} problem(s)", report.problems.len()) });
        }
        Stepped::Went(Some(1))
    }

    /// A backfill's or bulk rollback's step: move batches of one account,
    /// toward the new store or back to legacy, for up to the step's budget.
    fn move_step(&self, job: &mut Job, account: Uuid, toward_new: bool) -> Stepped {
        let batch = match self.move_run(account, toward_new, run_budget(job.rate)) {
            Ok(batch) => batch,
            Err(e) if deferrable(&e) => {
                tracing::warn!(job = %job.id, %account, error = %e, "job step deferred");
                return Stepped::Went(None);
            }
            Err(e) => return Stepped::Went(Some(finish(job, JobState::Failed, format!("account {account}: {e}")))),
        };
        match batch {
            Batch::Moved { report, .. } => {
                let went = u64::from(report.moved + report.in_place + report.missing);
                job.done += went;
                job.moved += u64::from(report.moved);
                Stepped::Went(Some(went))
            }
            Batch::NothingLeft { .. } | Batch::OtherMode { .. } if job.account.is_some() => {
                let detail = match batch {
                    Batch::OtherMode { is_migrating } => {
                        format!("the account's isMigrating is {is_migrating}: a {} moves nothing; {} moved before", job.kind, job.moved)
                    }
                    _ => format!("{} moved", job.moved),
                };
                Stepped::Went(Some(finish(job, JobState::Done, detail)))
            }
            Batch::NothingLeft { .. } | Batch::OtherMode { .. } => Stepped::Skipped,
        }
    }
}

/// What a kind's step did with its account.
enum Stepped {
    /// The step is over: what it went through (`None`: retry later).
    Went(Option<u64>),
    /// Nothing to do for this account: the job goes on to the next one.
    Skipped,
}

/// Ends `job` in `state` with its `detail`; a step that ends a job went
/// through nothing more.
fn finish(job: &mut Job, state: JobState, detail: String) -> u64 {
    job.state = state;
    job.detail = detail;
    0
}

/// The flag value of the accounts a job of `kind` moves: on for a backfill;
/// `None`: it moves nothing (a verify).
fn toward_new(kind: JobKind) -> Option<bool> {
    match kind {
        JobKind::Backfill => Some(true),
        JobKind::Rollback => Some(false),
        JobKind::Verify => None,
    }
}

/// What one step of a move job may do: batches for up to [`STEP_TIME`],
/// or a quarter second's worth of notes at the job's rate.
fn run_budget(rate: u32) -> RunBudget {
    RunBudget { time: STEP_TIME, notes: if rate > 0 { u64::from(rate / 4).max(1) } else { u64::MAX } }
}

/// Errors a later step may not meet: a busy account or host, a suspended
/// plugin, a plugin call past its deadline or out of instances.
fn deferrable(e: &AppError) -> bool {
    use crate::router::PluginFailure;
    matches!(
        e,
        AppError::Unavailable(_)
            | AppError::TooManyRequests(_)
            | AppError::Plugin(PluginFailure::Busy { .. } | PluginFailure::Timeout { .. })
    )
}

/// Runs this host's share of the jobs on an OS thread (batches block on
/// SQLite and the plugin) until `stop` is set.
pub fn spawn_job_runner(app: Arc<App>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("job-runner".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match app.run_job_step() {
                Ok(true) => {}
                Ok(false) => std::thread::sleep(IDLE),
                Err(e) => {
                    tracing::warn!(error = %e, "job runner step failed; retrying");
                    std::thread::sleep(IDLE * 5);
                }
            }
        }
    })
}
