//! `notes-host migrate …`: the CLI face of the migration API (jobs, the
//! rollout and its kill switch, the service state, the audit log). It talks
//! to a running host over HTTP; jobs run in the fleet, not in this process,
//! so `--watch` only follows one and Ctrl-C leaves it running.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use serde_json::Value;
use notes_api_types::{JobKind, JobState};

use crate::Client;
use crate::cli::{Align, HostArgs, Table, answer, array, cell, print_json, utc_second};

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    host: HostArgs,
    #[command(subcommand)]
    command: MigrateCommand,
}

/// The accounts a job works on: `--account` or `--all`, checked in `run`
/// (clap's own "required arguments were not provided: --account" would not
/// name `--all`).
#[derive(Args)]
struct JobArgs {
    /// One account: its id, or its first 8 or more characters (as `migrate
    /// status`, `migrate jobs` and the console show it).
    #[arg(long, conflicts_with = "all")]
    account: Option<String>,
    /// Every account in the mode the job works on.
    #[arg(long)]
    all: bool,
    /// Notes per second at most (0: as fast as batches go).
    #[arg(long)]
    rate: Option<u32>,
    /// Follow the job with a progress bar until it ends.
    #[arg(long)]
    watch: bool,
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Move notes to the new store (accounts whose isMigrating is on).
    Backfill(JobArgs),
    /// Move notes back to legacy (accounts whose isMigrating is off).
    Rollback(JobArgs),
    /// Check notes are readable and where their mode wants them; a clean
    /// verify makes an account `migrated` / `rolled-back`.
    Verify(JobArgs),
    /// Accounts per state, notes left to move, the rollout, recent changes.
    Status {
        /// Print `GET /migration`'s JSON instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// Every job, newest first.
    Jobs {
        /// Print `GET /jobs`' JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Follow a job with a progress bar.
    Watch {
        /// The job's id, or its first 8 or more characters (as `migrate jobs` shows it).
        job: String,
    },
    /// Pause a running job.
    Pause {
        /// The job's id, or its first 8 or more characters (as `migrate jobs` shows it).
        job: String,
    },
    /// Resume a paused job.
    Resume {
        /// The job's id, or its first 8 or more characters (as `migrate jobs` shows it).
        job: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job's id, or its first 8 or more characters (as `migrate jobs` shows it).
        job: String,
    },
    /// Turn isMigrating on for PERCENT% of accounts (a sticky cohort), off for the rest.
    Rollout {
        /// 0 to 100, with or without `%`: `10`, `10%`, `12.5`.
        #[arg(value_parser = percent)]
        percent: f64,
        /// After the kill switch: start turning accounts on again (without
        /// it, a rollout that would turn an account on is refused).
        #[arg(long)]
        resume: bool,
    },
    /// Stop every rollout in flight, on every host, and turn isMigrating off
    /// for every account, through the barrier. Rollouts stay stopped until
    /// one is sent with --resume.
    KillSwitch,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    // A rollout flips every account through the barrier: allow minutes.
    let client = args.host.client(Duration::from_secs(300))?;
    let answer = |reply| answer(&client, reply);
    let start = |kind: JobKind, job: JobArgs| -> anyhow::Result<()> {
        if job.account.is_none() && !job.all {
            bail!(
                "{kind} needs the accounts to work on: give --account ACCOUNT for one, or --all for every account{}",
                match kind {
                    JobKind::Backfill => " whose isMigrating is on",
                    JobKind::Rollback => " whose isMigrating is off",
                    JobKind::Verify => "",
                }
            );
        }
        let created = answer(client.create_job(kind, job.account.as_deref(), job.rate))?;
        let id = created["id"].as_str().context("the host returned no job id")?.to_owned();
        if job.watch {
            watch(&client, &id)
        } else {
            print_json(&created);
            Ok(())
        }
    };
    match args.command {
        MigrateCommand::Backfill(job) => start(JobKind::Backfill, job)?,
        MigrateCommand::Rollback(job) => start(JobKind::Rollback, job)?,
        MigrateCommand::Verify(job) => start(JobKind::Verify, job)?,
        MigrateCommand::Status { json: true } => print_json(&answer(client.service_migration())?),
        MigrateCommand::Status { json: false } => {
            let service = answer(client.service_migration())?;
            let recent = answer(client.audit(&format!("order=newest&limit={RECENT}")))?;
            print!("{}", status_text(&service, array(&recent["entries"], "audit entries")?));
        }
        MigrateCommand::Jobs { json: true } => print_json(&answer(client.jobs())?),
        MigrateCommand::Jobs { json: false } => print!("{}", jobs_text(array(&answer(client.jobs())?, "jobs")?)),
        MigrateCommand::Watch { job } => watch(&client, &job)?,
        MigrateCommand::Pause { job } => print_json(&answer(client.control_job(&job, "pause"))?),
        MigrateCommand::Resume { job } => print_json(&answer(client.control_job(&job, "resume"))?),
        MigrateCommand::Cancel { job } => print_json(&answer(client.control_job(&job, "cancel"))?),
        MigrateCommand::Rollout { percent, resume } => print_json(&answer(client.rollout(percent, resume))?),
        MigrateCommand::KillSwitch => print_json(&answer(client.kill_switch())?),
    }
    Ok(())
}

/// Audit entries `status` shows.
const RECENT: usize = 10;

/// `rollout`'s PERCENT: a number from 0 to 100, a `%` after it allowed.
fn percent(given: &str) -> Result<f64, String> {
    let number = given.trim().strip_suffix('%').unwrap_or(given.trim()).trim_end();
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{given:?} is not a percentage: give a number from 0 to 100, such as 10 or 10%")),
    }
}

/// The states in the order an account goes through them.
const STATES: [&str; 5] = ["legacy", "migrating", "migrated", "rolling-back", "rolled-back"];

/// `migrate status` for people: accounts per state, notes left to move, the
/// rollout, and the last changes (`entries` newest first).
fn status_text(service: &Value, entries: &[Value]) -> String {
    let mut states = Table::new(&[("STATE", Align::Left), ("ACCOUNTS", Align::Right)]);
    let accounts = service["accounts"].as_object().cloned().unwrap_or_default();
    // Known states in their order, then any state this CLI does not know yet.
    let known = STATES.iter().map(|s| (*s).to_owned());
    let others = accounts.keys().filter(|k| !STATES.contains(&k.as_str())).cloned().collect::<Vec<_>>();
    for state in known.chain(others) {
        states.row(vec![state.clone(), accounts.get(&state).map(cell).unwrap_or_else(|| "0".into())]);
    }
    let mut out = states.render();
    out.push_str(&format!(
        "\nnotes to move: {} to new, {} to legacy\n",
        cell(&service["notesToNew"]),
        cell(&service["notesToLegacy"])
    ));
    out.push_str(&match service["rolloutPercent"].as_f64() {
        Some(p) => format!("rollout: {p}% of accounts\n"),
        None => "rollout: none yet\n".to_owned(),
    });
    if entries.is_empty() {
        out.push_str("\nrecent changes: none\n");
        return out;
    }
    out.push_str("\nrecent changes:\n");
    let mut changes = Table::new(&[
        ("AT", Align::Left),
        ("KIND", Align::Left),
        ("ACTOR", Align::Left),
        ("SUBJECT", Align::Left),
        ("CHANGE", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for e in entries.iter().rev() {
        let (before, after) = (cell(&e["before"]), cell(&e["after"]));
        changes.row(vec![
            utc_second(&cell(&e["at"])),
            cell(&e["kind"]),
            cell(&e["actor"]),
            match e["kind"].as_str() {
                Some("flag" | "account" | "job") => short_id(cell(&e["subject"])),
                _ => short_digest(cell(&e["subject"])),
            },
            match (before.is_empty(), after.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!("→ {after}"),
                _ => format!("{before} → {after}"),
            },
            cell(&e["detail"]),
        ]);
    }
    out.push_str(&changes.render());
    out
}

/// A plugin's sha256 (a plugin entry's subject) as `X-Plugin` shows it, its
/// first 12 hex digits; any other subject as is.
fn short_digest(subject: String) -> String {
    if subject.len() == 64 && subject.bytes().all(|b| b.is_ascii_hexdigit()) { subject[..12].to_owned() } else { subject }
}

/// An account's or a job's id as the console shows it, its first 8
/// characters: what `--account`, `pause` and the API's operator routes take
/// back (a unique prefix).
fn short_id(id: String) -> String {
    if id.len() == 36 && id.is_char_boundary(8) { id[..8].to_owned() } else { id }
}

/// `migrate jobs` for people: one row per job, newest first, each named
/// by the 8 characters the console shows and `pause` / `resume` / `cancel` take.
fn jobs_text(jobs: &[Value]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("ACCOUNT", Align::Left),
        ("PROGRESS", Align::Right),
        ("MOVED", Align::Right),
        ("PROBLEMS", Align::Right),
        ("CREATED", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for j in jobs {
        table.row(vec![
            short_id(cell(&j["id"])),
            cell(&j["kind"]),
            cell(&j["state"]),
            j["account"].as_str().map_or_else(|| "all".to_owned(), |a| short_id(a.to_owned())),
            format!("{}/{}", cell(&j["done"]), cell(&j["total"])),
            cell(&j["moved"]),
            cell(&j["problems"]),
            utc_second(&cell(&j["createdAt"])),
            cell(&j["detail"]),
        ]);
    }
    table.render()
}

/// Follows a job until it ends: done, moved, pace and ETA on a progress bar
/// (stderr); the final job as JSON (stdout). Fails if the job failed.
fn watch(client: &Client, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    loop {
        let job = client.job(id).with_context(|| format!("cannot reach the host at {}", client.base()))?.success_json()?;
        bar.set_length(job["total"].as_u64().unwrap_or(0));
        bar.set_position(job["done"].as_u64().unwrap_or(0));
        bar.set_message(format!("{} {}", job["kind"].as_str().unwrap_or("job"), job["state"].as_str().unwrap_or("")));
        match job["state"].as_str().and_then(|state| state.parse::<JobState>().ok()) {
            Some(JobState::Running | JobState::Paused) => std::thread::sleep(Duration::from_millis(250)),
            Some(JobState::Failed) => {
                bar.abandon();
                print_json(&job);
                bail!("job {id} failed: {}", job["detail"].as_str().unwrap_or(""));
            }
            _ => {
                bar.finish();
                print_json(&job);
                return Ok(());
            }
        }
    }
}
