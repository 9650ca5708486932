//! The hosts a simulation runs against: given URLs, or `notes-host serve`
//! processes it starts itself, on one data dir or one each (and may
//! restart, kill or stop).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

use crate::launcher::{Launcher, RunningHost, Signal};

/// The base URL of every host slot; `None` while that host restarts.
pub type Targets = Arc<RwLock<Vec<Option<String>>>>;

/// Hosts the simulator started, one per slot; killed when dropped.
pub struct Hosts {
    exe: PathBuf,
    data_dir: PathBuf,
    /// Each host in `<data_dir>/host-<slot>` instead of all in `data_dir`.
    own_data_dirs: bool,
    args: Vec<String>,
    running: Vec<Option<RunningHost>>,
    targets: Targets,
}

impl Hosts {
    /// Starts `count` hosts of `exe` on `data_dir` (with `own_data_dirs`,
    /// one below it each) with `args` added to `serve`.
    pub fn start(exe: &Path, count: usize, data_dir: &Path, own_data_dirs: bool, args: Vec<String>) -> anyhow::Result<Self> {
        let mut hosts = Hosts {
            exe: exe.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            own_data_dirs,
            args,
            running: (0..count).map(|_| None).collect(),
            targets: Arc::new(RwLock::new(vec![None; count])),
        };
        for slot in 0..count {
            hosts.spawn(slot)?;
        }
        Ok(hosts)
    }

    pub fn targets(&self) -> Targets {
        self.targets.clone()
    }

    fn spawn(&mut self, slot: usize) -> anyhow::Result<()> {
        let data_dir = if self.own_data_dirs { self.data_dir.join(format!("host-{slot}")) } else { self.data_dir.clone() };
        let host = Launcher::serve(&self.exe, &data_dir)
            .args(["--host-name", &format!("sim-host-{slot}")])
            .args(&self.args)
            // One log per slot over its restarts, next to the data dir.
            .stderr_appended_to(self.data_dir.with_extension(format!("sim-host-{slot}.log")))
            .start()
            .with_context(|| format!("host {slot} did not start"))?;
        self.targets.write().unwrap_or_else(|e| e.into_inner())[slot] = Some(host.url().to_owned());
        self.running[slot] = Some(host);
        Ok(())
    }

    /// Stops host `slot` (SIGKILL if `hard`, else SIGTERM and a graceful
    /// drain) and starts it again on the same data dir.
    pub fn restart(&mut self, slot: usize, hard: bool) -> anyhow::Result<()> {
        self.targets.write().unwrap_or_else(|e| e.into_inner())[slot] = None;
        if let Some(mut host) = self.running[slot].take() {
            if hard {
                host.kill()?;
            } else {
                host.stop(Duration::from_secs(10))?;
            }
        }
        self.spawn(slot)
    }

    /// Stops host `slot` (SIGSTOP: a hung process, a paused VM) for `pause`,
    /// then continues it. No new request goes to it meanwhile; the ones it
    /// was running wait with it.
    pub fn pause(&mut self, slot: usize, pause: Duration) -> anyhow::Result<()> {
        let Some(host) = &self.running[slot] else { return Ok(()) };
        let url = self.targets.write().unwrap_or_else(|e| e.into_inner())[slot].take();
        host.signal(Signal::Stop)?;
        std::thread::sleep(pause);
        host.signal(Signal::Cont)?;
        self.targets.write().unwrap_or_else(|e| e.into_inner())[slot] = url;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }
}
