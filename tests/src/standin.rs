//! The upstreams store plugins reach in the scenarios, as processes on
//! loopback: `notely-proxy-standin` (a Notely data proxy) and `kv-standin`
//! (a key-value store with Consul's KV API), built from `src/bin/`. Each
//! keeps its data in a SQLite file, so a scenario can kill it and start it
//! again on the same port with its data, as an upstream restarts.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::target_dir;

/// A running stand-in; killed when dropped.
pub struct Standin {
    binary: &'static str,
    args: Vec<&'static str>,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// `http://127.0.0.1:PORT`: what `--store-allow-http` names.
    pub origin: String,
    db: PathBuf,
    _dir: TempDir,
}

fn spawn(binary: &str, db: &PathBuf, listen: &str, args: &[&'static str]) -> (Child, String) {
    let path = target_dir().join("release").join(binary);
    assert!(path.is_file(), "{} is missing: `cargo test --release -p notes-scenarios` builds it", path.display());
    let mut child = Command::new(path)
        .args(["--db", db.to_str().unwrap(), "--listen", listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("its first line");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{binary} said {line:?}")).to_owned();
    (child, url)
}

impl Standin {
    /// `binary` (of `src/bin/`) on a free port, with a new data file.
    pub fn start(binary: &'static str) -> Standin {
        Standin::start_with(binary, &[])
    }

    /// With more arguments (`--delay-ms 300-300` for a slow Notely proxy).
    pub fn start_with(binary: &'static str, args: &[&'static str]) -> Standin {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("upstream.db");
        let (child, url) = spawn(binary, &db, "127.0.0.1:0", args);
        let origin = url.trim_end_matches('/').to_owned();
        Standin { binary, args: args.to_vec(), child: Some(child), url, origin, db, _dir: dir }
    }

    /// The process is gone (kill -9): its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new process on the same port, with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let listen = self.origin.trim_start_matches("http://").to_owned();
        let (child, url) = spawn(self.binary, &self.db, &listen, &self.args);
        assert_eq!(url, self.url, "the stand-in came back on its port");
        self.child = Some(child);
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.stop();
    }
}
