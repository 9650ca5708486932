//! The hosts a simulation runs against: given URLs, or `notes-host serve`
//! processes it starts itself on one data dir (and may restart).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

use crate::launcher::{Launcher, RunningHost};

/// The base URL of every host slot; `None` while that host restarts.
pub type Targets = Arc<RwLock<Vec<Option<String>>>>;

/// Hosts the simulator started, one per slot; killed when dropped.
pub struct Hosts {
    exe: PathBuf,
    data_dir: PathBuf,
    args: Vec<String>,
    running: Vec<Option<RunningHost>>,
    targets: Targets,
}

impl Hosts {
    /// Starts `count` hosts of `exe` on `data_dir` with `args` added to `serve`.
    pub fn start(exe: &Path, count: usize, data_dir: &Path, args: Vec<String>) -> anyhow::Result<Self> {
        let mut hosts = Hosts {
            exe: exe.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
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
        let host = Launcher::serve(&self.exe, &self.data_dir)
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

    pub fn len(&self) -> usize {
        self.running.len()
    }
}
