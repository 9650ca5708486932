//! `notes-host sim`: a strict-client simulator, modeled on the Notely load
//! generator. N accounts each create, update, read, list and delete notes
//! and remember every acknowledged write (`model`); every read and list is
//! judged against that memory. A chaos mode flips `isMigrating` at random
//! and restarts hosts. It prints ops/s and the anomalies, and fails (exit 1)
//! on any.

mod hosts;
mod model;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use notes_api_types::JobKind;

use crate::{NewAccount, NewNote, Response, TransportError};
use hosts::{Hosts, Targets};
pub use model::Anomalies;
use model::{Expect, Memory};

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Hosts to drive (base URLs). Without any, the simulator starts
    /// `--hosts` host processes itself on one data dir.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Host processes to start (when no --url is given).
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Data dir for the hosts it starts. Default: a new temp dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Plugin for the hosts it starts (default: theirs).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Placement rules to judge besides the contract, as `plugin check
    /// --profile`: `migrate` counts a note left live in both stores as
    /// duplicated. On by default for the hosts' own plugin (migrate); off for
    /// a `--plugin` unless given, since another strategy may keep copies.
    #[arg(long)]
    pub profile: Vec<String>,
    /// Accounts, each driven by its own client thread.
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// Most live notes per account; past it, clients update and delete.
    #[arg(long, default_value_t = 30)]
    pub max_notes: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Flip a random account's isMigrating about this often (ms); 0 = never.
    #[arg(long, default_value_t = 0)]
    pub flip_every_ms: u64,
    /// Restart a random host about this often (ms; alternately SIGKILL and
    /// SIGTERM); 0 = never. Only for hosts the simulator started.
    #[arg(long, default_value_t = 0)]
    pub restart_every_ms: u64,
    /// Shorthand: flips every 200 ms and restarts every 3 s (unless set).
    #[arg(long)]
    pub chaos: bool,
    /// Restarts also stop a host (SIGSTOP) for 3 s, past its lease on
    /// PostgreSQL, then continue it (SIGCONT): KILL, TERM and STOP in turn.
    #[arg(long)]
    pub stop_hosts: bool,
    /// Give each host it starts a data dir of its own (`<data dir>/host-N`):
    /// hosts on PostgreSQL (`--host-arg=--coordination=…`) share nothing else.
    #[arg(long)]
    pub own_data_dirs: bool,
    /// Start a migration job over every account about this often (ms),
    /// alternately a backfill and a bulk rollback, so jobs move notes while
    /// clients read and write, flags flip and hosts restart; 0 = never.
    #[arg(long, default_value_t = 0)]
    pub jobs_every_ms: u64,
    /// Shorthand: a job every second (unless --jobs-every-ms is set).
    #[arg(long)]
    pub backfill: bool,
    /// No client traffic, only the flips: measures the flip protocol alone.
    #[arg(long)]
    pub idle: bool,
    /// Seed of the random choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bearer token for the hosts.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Extra arguments for the hosts it starts (e.g. --host-arg=--flip-timeout-ms=500).
    #[arg(long = "host-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub host_args: Vec<String>,
}

/// A small deterministic generator (SplitMix64): reproducible runs by seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What one HTTP call came to.
enum Answer {
    Status(u16, Value),
    /// Nothing reached the server (connection refused): certainly not applied.
    Refused,
    /// The server may or may not have acted (connection broke, timeout).
    Broken,
}

thread_local! {
    /// The last call of this thread, to describe an anomaly.
    static LAST_CALL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The API client, sent to a random live host on every call.
#[derive(Clone)]
struct Client {
    api: crate::Client,
    targets: Targets,
}

impl Client {
    fn pick(&self, rng: &mut Rng) -> Option<crate::Client> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let up: Vec<&String> = targets.iter().flatten().collect();
        (!up.is_empty()).then(|| self.api.at(up[rng.below(up.len())]))
    }

    fn call(&self, rng: &mut Rng, request: impl FnOnce(&crate::Client) -> Result<Response, TransportError>) -> Answer {
        let Some(host) = self.pick(rng) else { return Answer::Refused };
        let (answer, said) = match request(&host) {
            Ok(r) => (Answer::Status(r.status, r.json().unwrap_or(Value::Null)), format!("{} -> {} {}", r.request, r.status, r.body)),
            Err(e @ TransportError::Refused { .. }) => (Answer::Refused, e.to_string()),
            Err(e @ TransportError::Broken { .. }) => (Answer::Broken, e.to_string()),
        };
        LAST_CALL.with(|l| *l.borrow_mut() = said);
        answer
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct OpCounts {
    pub create: u64,
    pub update: u64,
    pub get: u64,
    pub list: u64,
    pub delete: u64,
}

/// One finished client request, for the latency figures.
#[derive(Debug, Clone, Copy)]
struct Timed {
    account: usize,
    start_us: u64,
    took_us: u64,
}

#[derive(Default)]
struct WorkerResult {
    /// What each anomaly was (the first few).
    events: Vec<String>,
    ops: OpCounts,
    unavailable: u64,
    anomalies: Anomalies,
    timings: Vec<Timed>,
    memory: Memory,
}

/// A flip made by the chaos thread.
#[derive(Debug, Clone, Copy)]
struct FlipRecord {
    account: usize,
    start_us: u64,
    took_us: u64,
    ok: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seed: u64,
    pub seconds: f64,
    pub hosts: usize,
    pub accounts: usize,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub by_op: OpCounts,
    /// Requests answered 503 or not answered (restarts, flips): retried, not anomalies.
    pub unavailable: u64,
    pub anomalies: Anomalies,
    pub flips_ok: u64,
    pub flips_failed: u64,
    pub flip_ms_p50: f64,
    pub flip_ms_p99: f64,
    pub flip_ms_max: f64,
    pub restarts: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// Requests of an account that started while that account was being flipped.
    pub flipped_account_requests: u64,
    pub flipped_account_latency_ms_p50: f64,
    pub flipped_account_latency_ms_p99: f64,
    /// Requests/s per account: of the accounts not being flipped while a
    /// flip ran, and of every account while none ran. Equal = not slowed.
    pub others_ops_per_sec_per_account_during_flips: f64,
    pub ops_per_sec_per_account_outside_flips: f64,
}

pub fn run(mut args: SimArgs) -> anyhow::Result<bool> {
    if let Some(unknown) = args.profile.iter().find(|p| *p != "migrate") {
        bail!("unknown profile {unknown:?}: the only profile is migrate");
    }
    if args.chaos {
        if args.flip_every_ms == 0 {
            args.flip_every_ms = 200;
        }
        if args.restart_every_ms == 0 && args.urls.is_empty() {
            args.restart_every_ms = 3000;
        }
    }
    if args.backfill && args.jobs_every_ms == 0 {
        args.jobs_every_ms = 1000;
    }
    if args.restart_every_ms > 0 && !args.urls.is_empty() {
        bail!("--restart-every-ms needs hosts the simulator starts itself (no --url)");
    }
    if args.accounts == 0 {
        bail!("--accounts must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
    let _tmp;
    let mut started = None;
    let targets: Targets = if args.urls.is_empty() {
        let data_dir = match &args.data_dir {
            Some(dir) => dir.clone(),
            None => {
                _tmp = tempfile::tempdir()?;
                _tmp.path().join("data")
            }
        };
        let mut host_args = args.host_args.clone();
        if let Some(plugin) = &args.plugin {
            host_args.push("--plugin".into());
            host_args.push(plugin.display().to_string());
        }
        // `sim` runs inside the notes-host binary: its hosts are that binary too.
        let exe = std::env::current_exe().context("cannot find the notes-host binary")?;
        let hosts = Hosts::start(&exe, args.hosts.max(1), &data_dir, args.own_data_dirs, host_args)?;
        let targets = hosts.targets();
        started = Some(hosts);
        targets
    } else {
        Arc::new(std::sync::RwLock::new(args.urls.iter().map(|u| Some(u.trim_end_matches('/').to_owned())).collect()))
    };
    let host_count = targets.read().unwrap_or_else(|e| e.into_inner()).len();
    let client = Client {
        // The base URL is replaced by a live host's on every call.
        api: crate::Client::new("http://unset").with_token(args.admin_token.clone()),
        targets: targets.clone(),
    };

    let mut rng = Rng(seed);
    let mut accounts = Vec::new();
    for i in 0..args.accounts {
        let account = NewAccount { id: None, name: format!("sim-{i}"), is_migrating: false };
        match client.call(&mut rng, |c| c.create_account(&account)) {
            Answer::Status(201, v) => accounts.push(v["id"].as_str().context("account id")?.to_owned()),
            Answer::Status(s, v) => bail!("cannot create an account: {s} {v}"),
            _ => bail!("cannot create an account: no answer"),
        }
    }
    let accounts = Arc::new(accounts);

    println!(
        "sim: {} host(s), {} accounts, {:.0} s, flips every {} ms, restarts every {} ms, seed {seed}",
        host_count, args.accounts, args.seconds, args.flip_every_ms, args.restart_every_ms
    );
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs_f64(args.seconds.max(0.1));
    let stop = Arc::new(AtomicBool::new(false));

    let clients = if args.idle { 0 } else { args.accounts };
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let (client, accounts, max_notes) = (client.clone(), accounts.clone(), args.max_notes);
            let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            std::thread::spawn(move || drive(i, &accounts[i], &client, &mut rng, max_notes, epoch, until))
        })
        .collect();

    let flips = Arc::new(Mutex::new(Vec::<FlipRecord>::new()));
    let flipper = (args.flip_every_ms > 0).then(|| {
        let (client, accounts, stop, flips) = (client.clone(), accounts.clone(), stop.clone(), flips.clone());
        let every = args.flip_every_ms;
        let mut rng = Rng(seed ^ 0xF11F);
        std::thread::spawn(move || flip_at_random(&client, &accounts, &mut rng, every, &stop, &flips, epoch))
    });
    let jobs_started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let job_starter = (args.jobs_every_ms > 0).then(|| {
        let (client, stop, started_jobs) = (client.clone(), stop.clone(), jobs_started.clone());
        let every = args.jobs_every_ms;
        let mut rng = Rng(seed ^ 0x70B5);
        std::thread::spawn(move || start_jobs(&client, &mut rng, every, &stop, &started_jobs))
    });
    let mut restarts = 0u64;
    if args.idle {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    if let (Some(p), true) = (started.as_mut(), args.restart_every_ms > 0) {
        let mut rng = Rng(seed ^ 0x5E57);
        let mut next = Instant::now() + jitter(&mut rng, args.restart_every_ms);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            if Instant::now() >= next {
                let slot = rng.below(p.len());
                let faults = if args.stop_hosts { 3 } else { 2 };
                match restarts % faults {
                    0 => p.restart(slot, true),
                    1 => p.restart(slot, false),
                    _ => p.pause(slot, Duration::from_secs(3)),
                }
                .with_context(|| format!("restarting host {slot}"))?;
                restarts += 1;
                next = Instant::now() + jitter(&mut rng, args.restart_every_ms);
            }
        }
    }

    let mut results: Vec<WorkerResult> = workers.into_iter().map(|w| w.join().expect("client thread")).collect();
    stop.store(true, Ordering::Release);
    if let Some(f) = flipper {
        f.join().expect("flip thread");
    }
    let job_starter_ran = job_starter.is_some();
    if let Some(j) = job_starter {
        j.join().expect("job thread");
    }
    let elapsed = epoch.elapsed().as_secs_f64();

    // Final audit, quiet: every account listed, every note read, and (the
    // migrate profile) no note left in both stores once read (a read repairs
    // a move cut in half).
    let placement = args.plugin.is_none() || args.profile.iter().any(|p| p == "migrate");
    if job_starter_ran {
        wait_for_jobs(&client, &mut rng)?;
    }
    let mut audit = Anomalies::default();
    for (i, result) in results.iter_mut().enumerate() {
        final_audit(&accounts[i], &client, &mut rng, &mut result.memory, &mut audit, placement)?;
    }

    for event in results.iter().flat_map(|r| &r.events) {
        println!("sim: anomaly: {event}");
    }
    let report = summarize(seed, host_count, clients, elapsed, &results, audit, &flips.lock().unwrap_or_else(|e| e.into_inner()), restarts);
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(started);
    let mut ok = report.anomalies.total() == 0 && (report.ops > 0 || args.idle);
    if args.flip_every_ms > 0 && report.flips_ok == 0 {
        println!("sim: FAILED: flips were asked for but none succeeded");
        ok = false;
    }
    if args.jobs_every_ms > 0 {
        let started_jobs = jobs_started.load(Ordering::Acquire);
        println!("sim: migration jobs started: {started_jobs}");
        if started_jobs == 0 {
            println!("sim: FAILED: jobs were asked for but none started");
            ok = false;
        }
    }
    Ok(ok)
}

fn jitter(rng: &mut Rng, every_ms: u64) -> Duration {
    Duration::from_millis(every_ms / 2 + rng.next() % every_ms.max(1))
}

/// One account's client: one request at a time until `until`.
fn drive(index: usize, account: &str, client: &Client, rng: &mut Rng, max_notes: usize, epoch: Instant, until: Instant) -> WorkerResult {
    let mut r = WorkerResult::default();
    let mut written = 0u64;
    while Instant::now() < until {
        let anomalies_before = r.anomalies.total();
        let started = Instant::now();
        let present = r.memory.present_ids();
        let unknown = r.memory.unknown_ids();
        let roll = rng.below(100);
        let answered = if let Some(id) = unknown.first() {
            // Settle an unknown outcome before writing to that note again.
            r.ops.get += 1;
            read(client, rng, account, id, &mut r)
        } else if (roll < 20 || present.is_empty()) && r.memory.live_count() < max_notes {
            r.ops.create += 1;
            let id = uuid::Uuid::new_v4().to_string();
            written += 1;
            let content = format!("a{index}-{}-w{written}", &id[..8]);
            let note = NewNote { id: Some(id.clone()), content: content.clone() };
            match client.call(rng, |c| c.create_note(account, &note)) {
                Answer::Status(201, _) => { r.memory.acknowledged(&id, Some(content)); true }
                Answer::Status(409 | 400 | 404, _) => { r.anomalies.unexpected += 1; true }
                Answer::Status(..) | Answer::Broken => { r.memory.uncertain(&id, Some(content)); false }
                Answer::Refused => false,
            }
        } else if roll < 50 && !present.is_empty() {
            r.ops.update += 1;
            let id = &present[rng.below(present.len())];
            written += 1;
            let content = format!("a{index}-{}-w{written}", &id[..8]);
            match client.call(rng, |c| c.update_note(account, id, &content)) {
                Answer::Status(200, _) => { r.memory.acknowledged(id, Some(content)); true }
                Answer::Status(404, _) => { r.anomalies.lost += u64::from(!r.memory.may_vanish(id)); r.memory.acknowledged(id, None); true }
                Answer::Status(409 | 400 | 412, _) => { r.anomalies.unexpected += 1; true }
                Answer::Status(..) | Answer::Broken => { r.memory.uncertain(id, Some(content)); false }
                Answer::Refused => false,
            }
        } else if roll < 72 && !present.is_empty() {
            r.ops.get += 1;
            let id = present[rng.below(present.len())].clone();
            read(client, rng, account, &id, &mut r)
        } else if roll < 87 || present.is_empty() {
            r.ops.list += 1;
            match client.call(rng, |c| c.list_notes(account)) {
                Answer::Status(200, v) => {
                    let ids: Vec<String> = serde_json::from_value(v).unwrap_or_default();
                    r.memory.judge_list(&ids, &mut r.anomalies);
                    true
                }
                _ => false,
            }
        } else {
            r.ops.delete += 1;
            let id = &present[rng.below(present.len())];
            match client.call(rng, |c| c.delete_note(account, id)) {
                Answer::Status(204, _) => { r.memory.acknowledged(id, None); true }
                Answer::Status(404, _) => { r.anomalies.lost += u64::from(!r.memory.may_vanish(id)); r.memory.acknowledged(id, None); true }
                Answer::Status(..) | Answer::Broken => { r.memory.uncertain(id, None); false }
                Answer::Refused => false,
            }
        };
        if r.anomalies.total() != anomalies_before && r.events.len() < 20 {
            r.events.push(LAST_CALL.with(|l| l.borrow().clone()));
        }
        if answered {
            let start_us = started.duration_since(epoch).as_micros() as u64;
            r.timings.push(Timed { account: index, start_us, took_us: started.elapsed().as_micros() as u64 });
        } else {
            r.unavailable += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    r
}

/// GETs one note and judges it; false if there was no usable answer.
fn read(client: &Client, rng: &mut Rng, account: &str, id: &str, r: &mut WorkerResult) -> bool {
    let seen = match client.call(rng, |c| c.get_note(account, id)) {
        Answer::Status(200, v) => Some(v["content"].as_str().unwrap_or_default().to_owned()),
        Answer::Status(404, _) => None,
        _ => return false,
    };
    let before = r.anomalies.total();
    r.memory.judge_read(id, seen.clone(), &mut r.anomalies);
    if r.anomalies.total() != before {
        // Counted once: from now on, expect what was seen.
        r.memory.acknowledged(id, seen);
    }
    true
}

/// Starts a backfill, then a bulk rollback, … over every account, about
/// every `every_ms`; the hosts' runners move notes meanwhile.
fn start_jobs(client: &Client, rng: &mut Rng, every_ms: u64, stop: &AtomicBool, started: &std::sync::atomic::AtomicU64) {
    let mut backfill = true;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(jitter(rng, every_ms));
        let kind = if backfill { JobKind::Backfill } else { JobKind::Rollback };
        if let Answer::Status(201, _) = client.call(rng, |c| c.create_job(kind, None, None)) {
            started.fetch_add(1, Ordering::AcqRel);
            backfill = !backfill;
        }
    }
}

fn flip_at_random(client: &Client, accounts: &[String], rng: &mut Rng, every_ms: u64, stop: &AtomicBool, flips: &Mutex<Vec<FlipRecord>>, epoch: Instant) {
    let mut flags: Vec<Option<bool>> = vec![Some(false); accounts.len()];
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(jitter(rng, every_ms));
        let i = rng.below(accounts.len());
        let current = match flags[i] {
            Some(flag) => flag,
            None => match client.call(rng, |c| c.get_account(&accounts[i])) {
                Answer::Status(200, v) => v["isMigrating"].as_bool().unwrap_or(false),
                _ => continue,
            },
        };
        let started = Instant::now();
        let answer = client.call(rng, |c| c.set_migrating(&accounts[i], !current));
        let record = |ok| FlipRecord {
            account: i,
            start_us: started.duration_since(epoch).as_micros() as u64,
            took_us: started.elapsed().as_micros() as u64,
            ok,
        };
        let record = match answer {
            Answer::Status(200, _) => { flags[i] = Some(!current); record(true) }
            Answer::Status(..) | Answer::Broken => { flags[i] = None; record(false) }
            Answer::Refused => continue,
        };
        flips.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }
}

fn final_audit(account: &str, client: &Client, rng: &mut Rng, memory: &mut Memory, out: &mut Anomalies, placement: bool) -> anyhow::Result<()> {
    let answer = retry(|| client.call(rng, |c| c.list_notes(account)))?;
    let ids: Vec<String> = serde_json::from_value(answer).unwrap_or_default();
    memory.judge_list(&ids, out);
    let ids: Vec<String> = memory.notes.keys().cloned().collect();
    for id in ids {
        let seen = match retry_status(|| client.call(rng, |c| c.get_note(account, &id)))? {
            (200, v) => Some(v["content"].as_str().unwrap_or_default().to_owned()),
            _ => None,
        };
        memory.judge_read(&id, seen.clone(), out);
        if placement && seen.is_some() && !matches!(memory.notes.get(&id), Some(Expect::Deleted)) {
            let (_, placement) = retry_status(|| client.call(rng, |c| c.placement(account, &id)))?;
            if placement["legacy"] == true && placement["new"] == true {
                out.duplicated += 1;
            }
        }
    }
    Ok(())
}

/// Waits until no job runs: the audit is quiet only then. A job still
/// moving a note has written its new home and not yet removed the old one,
/// which the audit would count as a note left in both stores. A host killed
/// mid-job leaves its job to another host once the lease lapses.
fn wait_for_jobs(client: &Client, rng: &mut Rng) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let jobs = retry(|| client.call(rng, |c| c.jobs()))?;
        let running: Vec<&Value> = jobs.as_array().into_iter().flatten().filter(|j| j["state"] == "running").collect();
        if running.is_empty() {
            println!("sim: the audit waited {} ms for the running jobs to end", started.elapsed().as_millis());
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("jobs still running 60 s after the load stopped: {}", Value::from(running.into_iter().cloned().collect::<Vec<_>>()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Retries a read through restarts and flips (up to 30 s); the JSON of a 200.
fn retry(call: impl FnMut() -> Answer) -> anyhow::Result<Value> {
    match retry_status(call)? {
        (200, v) => Ok(v),
        (s, v) => bail!("audit read failed: {s} {v}"),
    }
}

fn retry_status(mut call: impl FnMut() -> Answer) -> anyhow::Result<(u16, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call() {
            Answer::Status(s, v) if s < 500 => return Ok((s, v)),
            _ if Instant::now() > deadline => bail!("the hosts did not answer the audit for 30 s"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
fn summarize(seed: u64, hosts: usize, accounts: usize, seconds: f64, results: &[WorkerResult], audit: Anomalies, flips: &[FlipRecord], restarts: u64) -> Report {
    let mut by_op = OpCounts::default();
    let mut anomalies = audit;
    let mut unavailable = 0;
    let mut timings: Vec<Timed> = Vec::new();
    for r in results {
        by_op.create += r.ops.create;
        by_op.update += r.ops.update;
        by_op.get += r.ops.get;
        by_op.list += r.ops.list;
        by_op.delete += r.ops.delete;
        anomalies.add(&r.anomalies);
        unavailable += r.unavailable;
        timings.extend_from_slice(&r.timings);
    }
    let ok_flips: Vec<&FlipRecord> = flips.iter().filter(|f| f.ok).collect();
    let mut flip_us: Vec<u64> = ok_flips.iter().map(|f| f.took_us).collect();
    flip_us.sort_unstable();
    let mut all: Vec<u64> = timings.iter().map(|t| t.took_us).collect();
    all.sort_unstable();

    // A request "during a flip" started inside a flip's window.
    let during = |t: &Timed| flips.iter().find(|f| t.start_us >= f.start_us && t.start_us < f.start_us + f.took_us);
    let mut flipped: Vec<u64> = Vec::new();
    let (mut others_during, mut outside) = (0u64, 0u64);
    for t in &timings {
        match during(t) {
            Some(f) if f.account == t.account => flipped.push(t.took_us),
            Some(_) => others_during += 1,
            None => outside += 1,
        }
    }
    flipped.sort_unstable();
    let flip_window_s: f64 = flips.iter().map(|f| f.took_us as f64 / 1e6).sum();
    let ops = timings.len() as u64;
    Report {
        seed,
        seconds,
        hosts,
        accounts,
        ops,
        ops_per_sec: ops as f64 / seconds,
        by_op,
        unavailable,
        anomalies,
        flips_ok: ok_flips.len() as u64,
        flips_failed: (flips.len() - ok_flips.len()) as u64,
        flip_ms_p50: percentile(&flip_us, 50.0),
        flip_ms_p99: percentile(&flip_us, 99.0),
        flip_ms_max: flip_us.last().map_or(0.0, |m| *m as f64 / 1000.0),
        restarts,
        latency_ms_p50: percentile(&all, 50.0),
        latency_ms_p99: percentile(&all, 99.0),
        flipped_account_requests: flipped.len() as u64,
        flipped_account_latency_ms_p50: percentile(&flipped, 50.0),
        flipped_account_latency_ms_p99: percentile(&flipped, 99.0),
        others_ops_per_sec_per_account_during_flips: if flip_window_s > 0.0 && accounts > 1 {
            others_during as f64 / flip_window_s / (accounts - 1) as f64
        } else {
            0.0
        },
        ops_per_sec_per_account_outside_flips: outside as f64 / (seconds - flip_window_s).max(1e-9) / accounts.max(1) as f64,
    }
}

fn print_report(r: &Report) {
    let o = &r.by_op;
    println!("sim: {} ops in {:.1} s = {:.0} ops/s (create {} update {} get {} list {} delete {}); unavailable {}", r.ops, r.seconds, r.ops_per_sec, o.create, o.update, o.get, o.list, o.delete, r.unavailable);
    println!("sim: latency p50 {:.2} ms, p99 {:.2} ms", r.latency_ms_p50, r.latency_ms_p99);
    println!(
        "sim: flips {} ok, {} failed; flip p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; restarts {}",
        r.flips_ok, r.flips_failed, r.flip_ms_p50, r.flip_ms_p99, r.flip_ms_max, r.restarts
    );
    println!(
        "sim: during flips: flipped account {} requests, p50 {:.2} ms, p99 {:.2} ms; other accounts {:.0} ops/s each (outside flips {:.0} ops/s each)",
        r.flipped_account_requests, r.flipped_account_latency_ms_p50, r.flipped_account_latency_ms_p99,
        r.others_ops_per_sec_per_account_during_flips, r.ops_per_sec_per_account_outside_flips
    );
    let a = &r.anomalies;
    println!(
        "sim: anomalies: lost {} stale {} duplicated {} resurrected {} unexpected {} -> {}",
        a.lost, a.stale, a.duplicated, a.resurrected, a.unexpected,
        if a.total() == 0 { "OK" } else { "FAILED" }
    );
}
