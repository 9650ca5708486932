//! The hosts a simulation runs against: given URLs, or `notes-host serve`
//! processes it starts itself on one data dir (and may restart).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};

/// The base URL of every host slot; `None` while that host restarts.
pub type Targets = Arc<RwLock<Vec<Option<String>>>>;

pub struct Processes {
    exe: PathBuf,
    data_dir: PathBuf,
    args: Vec<String>,
    children: Vec<Option<Child>>,
    targets: Targets,
}

impl Processes {
    /// Starts `count` hosts on `data_dir` with `args` added to `serve`.
    pub fn start(count: usize, data_dir: &Path, args: Vec<String>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the notes-host binary")?;
        let mut processes = Processes {
            exe,
            data_dir: data_dir.to_path_buf(),
            args,
            children: (0..count).map(|_| None).collect(),
            targets: Arc::new(RwLock::new(vec![None; count])),
        };
        for slot in 0..count {
            processes.spawn(slot)?;
        }
        Ok(processes)
    }

    pub fn targets(&self) -> Targets {
        self.targets.clone()
    }

    fn log_path(&self, slot: usize) -> PathBuf {
        self.data_dir.with_extension(format!("sim-host-{slot}.log"))
    }

    fn spawn(&mut self, slot: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(slot))?;
        let mut child = Command::new(&self.exe)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--host-name", &format!("sim-host-{slot}")])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start notes-host serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            for _ in lines {} // keep the pipe open for the life of the host
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("host {slot} did not start (first line {line:?}); see {}", self.log_path(slot).display());
        };
        self.targets.write().unwrap_or_else(|e| e.into_inner())[slot] = Some(url.to_owned());
        self.children[slot] = Some(child);
        Ok(())
    }

    /// Stops host `slot` (SIGKILL if `hard`, else SIGTERM and a graceful
    /// drain) and starts it again on the same data dir.
    pub fn restart(&mut self, slot: usize, hard: bool) -> anyhow::Result<()> {
        self.targets.write().unwrap_or_else(|e| e.into_inner())[slot] = None;
        if let Some(mut child) = self.children[slot].take() {
            if hard {
                let _ = child.kill();
            } else {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while child.try_wait()?.is_none() {
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let _ = child.wait();
        }
        self.spawn(slot)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
