//! The fleet watcher's view of `accounts.db`: has any process committed to
//! it since the last look, and a wait that ends as soon as one does.
//!
//! `PRAGMA data_version` answers the first. For the second, the watch
//! follows writes to the database's WAL with inotify: every commit of every
//! process appends to `accounts.db-wal`, so a wait ends on the commit itself
//! instead of on the next of 1,000 polls a second (an idle host spent 1.7%
//! of a core on them). The inotify event is only a hint to look again: what
//! changed is always decided by `data_version`, and the watcher still looks
//! on its own at least every idle wait, so a missed event costs time, never
//! a change.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;

use crate::coordination::{ChangeWatch, CoordinationError};

/// `PRAGMA data_version` on a connection of its own (≈1.5 µs, no I/O): it
/// changes when *another* connection commits, and every write of this host
/// goes through others.
pub(super) struct DataVersion {
    conn: Connection,
    last: Option<i64>,
    /// None where inotify cannot watch the WAL: the watcher then polls.
    wal: Option<WalWrites>,
}

impl DataVersion {
    pub(super) fn open(path: &Path) -> Result<Self, CoordinationError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        // A first read creates the WAL if no process had yet, so it can be watched.
        conn.query_row("PRAGMA data_version", [], |_| Ok(()))?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = match WalWrites::watch(PathBuf::from(wal_path)) {
            Ok(wal) => Some(wal),
            Err(e) => {
                tracing::info!(error = %e, "cannot follow the coordination database's writes with inotify; the fleet watcher polls every millisecond");
                None
            }
        };
        Ok(DataVersion { conn, last: None, wal })
    }
}

impl ChangeWatch for DataVersion {
    fn changed(&mut self) -> Result<bool, CoordinationError> {
        let now: i64 = self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(self.last.replace(now) != Some(now))
    }

    fn wait(&mut self, timeout: Duration) {
        let Some(wal) = &mut self.wal else { return std::thread::sleep(timeout) };
        if let Err(e) = wal.wait(timeout) {
            tracing::warn!(error = %e, "lost the inotify watch of the coordination database's writes; the fleet watcher polls every millisecond from now on");
            self.wal = None;
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }

    fn wakes_on_change(&self) -> bool {
        self.wal.as_ref().is_some_and(|wal| wal.watching)
    }
}

/// An inotify watch of one file's writes.
struct WalWrites {
    fd: OwnedFd,
    path: PathBuf,
    /// False after the file went away, until it is back and watched again.
    watching: bool,
    buf: Vec<MaybeUninit<u8>>,
}

impl WalWrites {
    fn watch(path: PathBuf) -> rustix::io::Result<Self> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, &path, Self::flags())?;
        Ok(WalWrites { fd, path, watching: true, buf: vec![MaybeUninit::uninit(); 4096] })
    }

    /// A write or truncation (a checkpoint's restart), and the file going
    /// away (its watch is then dropped by the kernel: `IGNORED`).
    fn flags() -> inotify::WatchFlags {
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::DELETE_SELF | inotify::WatchFlags::MOVE_SELF
    }

    /// Waits until the file is written or `timeout` passes; drains every
    /// event queued. An error means inotify itself failed.
    fn wait(&mut self, timeout: Duration) -> rustix::io::Result<()> {
        if !self.watching {
            // The WAL was removed (every process closed the database, or a
            // restore), and the next `data_version` read makes a new one:
            // poll until it is there to watch.
            match inotify::add_watch(&self.fd, &self.path, Self::flags()) {
                Ok(_) => self.watching = true,
                Err(rustix::io::Errno::NOENT) => {
                    std::thread::sleep(timeout.min(Duration::from_millis(1)));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let timeout = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        let mut events = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            match events.next() {
                Ok(event) if event.events().contains(inotify::ReadFlags::IGNORED) => self.watching = false,
                Ok(_) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn another_connections_commit_ends_the_wait_at_once_and_reads_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);").unwrap();
        let mut watch = DataVersion::open(&path).unwrap();
        assert!(watch.wakes_on_change(), "inotify follows the WAL");
        assert!(watch.changed().unwrap(), "the first look is a change");
        assert!(!watch.changed().unwrap());

        let started = Instant::now();
        watch.wait(Duration::from_millis(100));
        assert!(started.elapsed() >= Duration::from_millis(90), "nothing written: the wait lasts its timeout");
        assert!(!watch.changed().unwrap());

        let commit = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        });
        let started = Instant::now();
        watch.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10), "the commit woke the wait, not its timeout");
        commit.join().unwrap();
        assert!(watch.changed().unwrap(), "and reads as a change");
    }
}
