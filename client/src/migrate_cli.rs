//! `notes-host migrate …`: the CLI face of the migration API (jobs, the
//! rollout and its kill switch, the service state, the audit log). It talks
//! to a running host over HTTP; jobs run in the fleet, not in this process,
//! so `--watch` only follows one and Ctrl-C leaves it running.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Client;
use crate::cli::{HostArgs, answer, print_json};

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    host: HostArgs,
    #[command(subcommand)]
    command: MigrateCommand,
}

#[derive(Args)]
struct JobArgs {
    /// One account.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
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
    Status,
    /// Every job, newest first.
    Jobs,
    /// Follow a job with a progress bar.
    Watch { job: String },
    /// Pause a running job.
    Pause { job: String },
    /// Resume a paused job.
    Resume { job: String },
    /// Cancel a job.
    Cancel { job: String },
    /// Turn isMigrating on for PERCENT% of accounts (a sticky cohort), off for the rest.
    Rollout {
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
    let client = args.host.client(Duration::from_secs(300));
    let answer = |reply| answer(&client, reply);
    let start = |kind: &str, job: JobArgs| -> anyhow::Result<()> {
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
        MigrateCommand::Backfill(job) => start("backfill", job)?,
        MigrateCommand::Rollback(job) => start("rollback", job)?,
        MigrateCommand::Verify(job) => start("verify", job)?,
        MigrateCommand::Status => {
            print_json(&answer(client.service_migration())?);
            let recent = answer(client.audit("limit=1000"))?;
            let entries = recent["entries"].as_array().cloned().unwrap_or_default();
            println!("recent changes:");
            for e in entries.iter().rev().take(10).rev() {
                println!(
                    "  {} {:8} {:10} {} {} → {} ({})",
                    e["at"].as_str().unwrap_or(""),
                    e["kind"].as_str().unwrap_or(""),
                    e["actor"].as_str().unwrap_or(""),
                    e["subject"].as_str().unwrap_or(""),
                    e["before"].as_str().unwrap_or(""),
                    e["after"].as_str().unwrap_or(""),
                    e["detail"].as_str().unwrap_or("")
                );
            }
        }
        MigrateCommand::Jobs => print_json(&answer(client.jobs())?),
        MigrateCommand::Watch { job } => watch(&client, &job)?,
        MigrateCommand::Pause { job } => print_json(&answer(client.control_job(&job, "pause"))?),
        MigrateCommand::Resume { job } => print_json(&answer(client.control_job(&job, "resume"))?),
        MigrateCommand::Cancel { job } => print_json(&answer(client.control_job(&job, "cancel"))?),
        MigrateCommand::Rollout { percent, resume } => print_json(&answer(client.rollout(percent, resume))?),
        MigrateCommand::KillSwitch => print_json(&answer(client.kill_switch())?),
    }
    Ok(())
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
        match job["state"].as_str() {
            Some("running" | "paused") => std::thread::sleep(Duration::from_millis(250)),
            Some("failed") => {
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
