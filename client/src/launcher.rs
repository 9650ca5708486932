//! Starts `notes-host serve` and waits for its first stdout line,
//! `listening on http://ADDR`: the contract between the host and whatever
//! runs it (the simulator, the scenario tests, and through
//! `notes-host launch` the benchmark scripts). Written once, here.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to start one host: `EXE serve [--listen 127.0.0.1:0] --data-dir DIR ARGS`.
#[derive(Debug, Clone)]
pub struct Launcher {
    exe: PathBuf,
    data_dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stderr: Stderr,
    timeout: Duration,
}

/// Where the host's stderr (its log) goes.
#[derive(Debug, Clone)]
enum Stderr {
    Inherit,
    File { path: PathBuf, append: bool },
}

/// A signal for a running host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Graceful stop: the host drains its requests.
    Term,
    Kill,
    /// Freezes the process (a host that hangs); `Cont` thaws it.
    Stop,
    Cont,
}

/// Why a host did not start.
#[derive(Debug)]
pub enum StartError {
    Spawn(std::io::Error),
    /// It exited before listening (it refused to start).
    Exited { status: ExitStatus, stderr: String },
    /// It printed something else first, or nothing within the timeout; it was killed.
    NotListening { first_line: String, stderr: String },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "cannot start notes-host serve: {e}"),
            StartError::Exited { status, stderr } => write!(f, "notes-host serve exited ({status}) before listening; stderr:\n{stderr}"),
            StartError::NotListening { first_line, stderr } => {
                write!(f, "notes-host serve did not say `listening on` (first line {first_line:?}); stderr:\n{stderr}")
            }
        }
    }
}

impl std::error::Error for StartError {}

impl Launcher {
    /// `exe serve --data-dir data_dir`, listening on a free loopback port
    /// unless an arg names `--listen`; stderr inherited; 60 s to start.
    pub fn serve(exe: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Launcher {
        Launcher {
            exe: exe.into(),
            data_dir: data_dir.into(),
            args: Vec::new(),
            env: Vec::new(),
            stderr: Stderr::Inherit,
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds an argument to `serve`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launcher {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Launcher {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the host.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launcher {
        self.env.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable the host would inherit.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Launcher {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Writes the host's stderr to a new (truncated) file.
    pub fn stderr_to(mut self, path: impl Into<PathBuf>) -> Launcher {
        self.stderr = Stderr::File { path: path.into(), append: false };
        self
    }

    /// Appends the host's stderr to a file (one log over restarts).
    pub fn stderr_appended_to(mut self, path: impl Into<PathBuf>) -> Launcher {
        self.stderr = Stderr::File { path: path.into(), append: true };
        self
    }

    /// How long the host may take to say `listening on`.
    pub fn timeout(mut self, timeout: Duration) -> Launcher {
        self.timeout = timeout;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn command(&self) -> std::io::Result<Command> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve");
        let names_listen = self.args.iter().any(|a| a == "--listen" || a.to_string_lossy().starts_with("--listen="));
        if !names_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir").arg(&self.data_dir).args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        match &self.stderr {
            Stderr::Inherit => cmd.stderr(Stdio::inherit()),
            Stderr::File { path, append } => {
                let file = if *append { OpenOptions::new().create(true).append(true).open(path)? } else { File::create(path)? };
                cmd.stderr(file)
            }
        };
        Ok(cmd)
    }

    fn stderr_text(&self) -> String {
        match &self.stderr {
            Stderr::Inherit => "(inherited: see above)".into(),
            Stderr::File { path, .. } => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("{}:\n{text}", path.display())
            }
        }
    }

    /// Starts the host and waits until it listens.
    pub fn start(&self) -> Result<RunningHost, StartError> {
        let mut child = self.command().and_then(|mut cmd| cmd.spawn()).map_err(StartError::Spawn)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            // Keep reading for the life of the host: a closed pipe would fail its later writes.
            for _ in lines {}
        });
        let deadline = Instant::now() + self.timeout;
        let first_line = rx.recv_timeout(self.timeout).ok();
        match first_line {
            Some(Some(line)) => match line.trim().strip_prefix("listening on ") {
                Some(url) => Ok(RunningHost { child, url: url.to_owned() }),
                None => {
                    kill(&mut child);
                    Err(StartError::NotListening { first_line: line, stderr: self.stderr_text() })
                }
            },
            // Stdout closed before a line: the host is exiting.
            Some(None) => match wait_until(&mut child, deadline) {
                Some(status) => Err(StartError::Exited { status, stderr: self.stderr_text() }),
                None => {
                    kill(&mut child);
                    Err(StartError::NotListening { first_line: String::new(), stderr: self.stderr_text() })
                }
            },
            None => {
                kill(&mut child);
                Err(StartError::NotListening { first_line: String::new(), stderr: self.stderr_text() })
            }
        }
    }
}

/// A host that said `listening on`; killed when dropped.
#[derive(Debug)]
pub struct RunningHost {
    child: Child,
    url: String,
}

impl RunningHost {
    /// Its base URL, `http://ADDR`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        let number = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        };
        let pid = libc::pid_t::try_from(self.child.id()).map_err(std::io::Error::other)?;
        // SAFETY: kill(2) only reads its two integer arguments.
        if unsafe { libc::kill(pid, number) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Graceful stop: SIGTERM, then up to `grace` for the host to drain
    /// and exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::Term)?;
        match wait_until(&mut self.child, Instant::now() + grace) {
            Some(status) => Ok(status),
            None => self.kill(),
        }
    }

    /// SIGKILL (if still running), and reaps the process.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        let _ = self.child.kill(); // fails only if it already exited
        self.child.wait()
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls until the process exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}
