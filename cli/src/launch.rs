//! `notes-host launch`: the launcher (`notes_client::launcher`) for scripts,
//! so the benchmarks start hosts exactly as the tests and the simulator do.
//!
//! Contract: starts `--count` hosts (`notes-host serve --data-dir D ARGS`,
//! on a free loopback port unless ARGS name `--listen`), one after the
//! other; once all listen, prints one JSON line per host on stdout,
//! `{"url":"http://ADDR","pid":N}` (the host's own pid, for /proc and perf).
//! Then it waits until stdin closes (the script ended) or it gets SIGTERM or
//! SIGINT, and stops its hosts (SIGTERM, SIGKILL after 10 s). The hosts'
//! stderr is its stderr. It exits 1 if a host fails to start or exits on its
//! own.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use notes_client::launcher::{Launcher, RunningHost};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct LaunchArgs {
    /// Data dir of the hosts (one dir for all of them: an embedded fleet).
    #[arg(long)]
    data_dir: PathBuf,
    /// Hosts to start.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Arguments for `serve`, after `--`.
    #[arg(last = true, value_name = "SERVE ARGS")]
    serve_args: Vec<String>,
}

/// How long a host may drain its requests when stopped.
const GRACE: Duration = Duration::from_secs(10);

pub fn run(args: LaunchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the notes-host binary")?;
    let launcher = Launcher::serve(exe, &args.data_dir).args(&args.serve_args);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // Before any host starts: a SIGTERM sent as soon as the pids are
        // known must stop the hosts, not just this process.
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (closed, mut stdin_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        });

        // Dropped on an error: a RunningHost is killed when dropped.
        let mut hosts = Vec::new();
        for i in 0..args.count {
            hosts.push(launcher.start().with_context(|| format!("host {i} did not start"))?);
        }
        let mut stdout = std::io::stdout().lock();
        for host in &hosts {
            writeln!(stdout, "{}", serde_json::json!({ "url": host.url(), "pid": host.pid() }))?;
        }
        stdout.flush()?;
        drop(stdout);

        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let outcome = loop {
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = interrupt.recv() => break Ok(()),
                _ = &mut stdin_closed => break Ok(()),
                _ = poll.tick() => if let Err(e) = all_running(&mut hosts) { break Err(e) },
            }
        };
        for host in &mut hosts {
            host.stop(GRACE)?;
        }
        outcome
    })
}

fn all_running(hosts: &mut [RunningHost]) -> anyhow::Result<()> {
    for host in hosts {
        if let Some(status) = host.try_wait()? {
            bail!("the host at {} (pid {}) exited on its own: {status}", host.url(), host.pid());
        }
    }
    Ok(())
}
