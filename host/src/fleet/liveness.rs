//! Is a host process still alive?
//!
//! On a data dir, each host holds an exclusive lock on
//! `<data dir>/hosts/<host id>.lock` for as long as it runs; the kernel drops
//! the lock when the process ends, however it ends (exit, crash, SIGKILL).
//! This is a perfect failure detector for one machine, which is the fleet
//! this host supports (SQLite in WAL mode needs one machine anyway). A host
//! that is alive but stalled (stopped, swapping) keeps its lock, so it is
//! never mistaken for gone: it may still finish a request it started.
//!
//! On PostgreSQL, hosts share no file: each holds a **lease** in the
//! coordination state, renewed with its heartbeat and timed on the
//! database's clock (`Lease`). A host whose lease lapsed counts as gone
//! even if its process lives (stopped, cut off): flips stop waiting for it,
//! and the stores refuse its writes from before the flip (fencing; see
//! ARCHITECTURE.md, "Beyond one machine").
//!
//! In one process (`InProcess`, in-process tests) every host is alive.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub enum Liveness {
    /// Lock files in `dir`; `_held` is this host's, locked while it lives.
    LockFiles { dir: PathBuf, _held: File },
    /// Leases of this length in the coordination state (`Coordination::expired_hosts`).
    Lease(std::time::Duration),
    InProcess,
}

impl Liveness {
    /// Creates and locks this host's lock file in `dir`.
    pub fn lock_files(dir: &Path, host: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = lock_path(dir, host);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.try_lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Liveness::LockFiles { dir: dir.to_owned(), _held: file })
    }

    /// True only if the host's process has certainly ended.
    pub(crate) fn is_gone(&self, host: &str) -> bool {
        let Liveness::LockFiles { dir, .. } = self else { return false };
        match File::open(lock_path(dir, host)) {
            Err(e) => e.kind() == ErrorKind::NotFound,
            Ok(file) => match file.try_lock() {
                Ok(()) => true, // nobody holds it; dropping `file` releases it again
                Err(TryLockError::WouldBlock) => false,
                Err(TryLockError::Error(_)) => false, // cannot tell: assume alive
            },
        }
    }

    /// Removes a gone (or leaving) host's lock file, best effort.
    pub(crate) fn forget(&self, host: &str) {
        if let Liveness::LockFiles { dir, .. } = self {
            let _ = std::fs::remove_file(lock_path(dir, host));
        }
    }
}

fn lock_path(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_gone_once_its_lock_is_released_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let held = Liveness::lock_files(dir.path(), "a").unwrap();
        let observer = Liveness::lock_files(dir.path(), "b").unwrap();
        assert!(!observer.is_gone("a"), "held, even when checked from the same process");
        drop(held);
        assert!(observer.is_gone("a"));
        assert!(observer.is_gone("never-started"));
    }
}
