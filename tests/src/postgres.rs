//! Throwaway PostgreSQL servers for tests: a real server, started from
//! Debian's binaries in a temp dir on a loopback port, never a shared one.
//!
//! - [`database`]: a new, empty database on the test binary's one shared
//!   server (started at the first call, stopped when the process exits).
//!   Tests that only need "a PostgreSQL" use this: a database is ~0.2 s, a
//!   server ~1.2 s.
//! - [`Server::start`]: a server of the test's own, for tests that stop and
//!   restart it (an outage must not hit other tests).
//!
//! The binaries are found in `NOTES_POSTGRES_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (`cargo xtask test` installs the `postgresql`
//! package when none is there). `initdb` refuses to run as root, so under
//! root every server command runs as the `postgres` user the package creates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser of every test server (trust authentication on loopback).
const USER: &str = "notes";

pub struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    /// Creates a cluster in a new temp dir and starts it.
    pub fn start() -> Server {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("notes-pg-").tempdir().expect("temp dir for PostgreSQL");
        if running_as_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(status.success(), "cannot give {} to the postgres user", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = server_command(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .expect("initdb");
        check(&out, "initdb");
        let server = Server { bin, dir, port: 0 };
        server.start_on_free_port()
    }

    fn start_on_free_port(mut self) -> Server {
        for _ in 0..5 {
            self.port = free_port();
            if self.pg_ctl_start().is_ok() {
                return self;
            }
        }
        panic!("PostgreSQL did not start; see {}", self.log().display());
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        // Tests want speed, not durability against power loss: no fsync. A
        // stop with `-m immediate` still keeps every committed transaction
        // (the WAL is in the OS's cache), which is what a restart test needs.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='{}' -c fsync=off -c full_page_writes=off \
             -c max_connections=400 -c shared_buffers=32MB",
            self.port,
            self.dir.path().display()
        );
        let out = server_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.log())
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .output()
            .expect("pg_ctl start");
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// A URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new empty database; its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, &name])
            .output()
            .expect("createdb");
        check(&out, "createdb");
        self.url(&name)
    }

    /// Stops the server at once (`-m immediate`: like a crash, as far as
    /// clients can tell).
    pub fn stop(&self) {
        let out = server_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl stop");
        check(&out, "pg_ctl stop");
    }

    /// Starts it again on the same port after [`Server::stop`].
    pub fn restart(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port may linger a moment after a stop.
        while let Err(e) = self.pg_ctl_start() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start again: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = server_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

static SHARED: OnceLock<Server> = OnceLock::new();

/// A new, empty database on the shared test server; its URL.
pub fn database() -> String {
    SHARED
        .get_or_init(|| {
            let server = Server::start();
            // Statics are never dropped: stop the server when the process exits.
            extern "C" fn stop_shared() {
                if let Some(server) = SHARED.get() {
                    let _ = server_command(&server.bin, "pg_ctl")
                        .arg("-D")
                        .arg(server.dir.path().join("data"))
                        .args(["-m", "immediate", "-w", "stop"])
                        .output();
                    let _ = std::fs::remove_dir_all(server.dir.path());
                }
            }
            // SAFETY: registers a plain function, called once at exit.
            unsafe { libc::atexit(stop_shared) };
            server
        })
        .create_database()
}

/// Makes `schemas` in the database at `url`, as an operator does before
/// giving the host store URLs naming them (`?schema=`). Returns `url`.
pub fn with_schemas(url: String, schemas: &[&str]) -> String {
    let sql: String = schemas.iter().map(|s| format!("CREATE SCHEMA {s};")).collect();
    let out = Command::new(bin_dir().join("psql")).arg(&url).args(["-qc", &sql]).output().expect("psql");
    check(&out, "psql CREATE SCHEMA");
    url
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `initdb` and `pg_ctl` refuse root: run them as `postgres` then.
fn server_command(bin: &Path, program: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin.join(program));
        cmd
    } else {
        Command::new(bin.join(program))
    }
}

/// Where PostgreSQL's server binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NOTES_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run the tests through `cargo xtask test`, \
             which installs Debian's postgresql package, or set NOTES_POSTGRES_BIN"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
