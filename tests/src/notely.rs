//! A Notely data proxy for the store-plugin scenarios: the stand-in
//! (`src/bin/notely-proxy-standin.rs`) as a process on loopback, which a
//! scenario stops and starts again on the same port with its notes, and a
//! JSON-RPC client that writes and reads "Notely" directly, as Notely's own
//! API server would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::target_dir;

/// A running stand-in; killed when dropped.
pub struct Proxy {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// `http://127.0.0.1:PORT`: what `--store-allow-http` names.
    pub origin: String,
    db: PathBuf,
    _dir: TempDir,
}

fn binary() -> PathBuf {
    let path = target_dir().join("release/notely-proxy-standin");
    assert!(path.is_file(), "{} is missing: `cargo test --release -p notes-scenarios` builds it", path.display());
    path
}

fn spawn(db: &PathBuf, listen: &str) -> (Child, String) {
    let mut child = Command::new(binary())
        .args(["--db", db.to_str().unwrap(), "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Notely data proxy stand-in");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("its first line");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("the stand-in said {line:?}")).to_owned();
    (child, url)
}

impl Proxy {
    pub fn start() -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("notely.db");
        let (child, url) = spawn(&db, "127.0.0.1:0");
        let origin = url.trim_end_matches('/').to_owned();
        Proxy { child: Some(child), url, origin, db, _dir: dir }
    }

    /// The proxy process is gone (kill -9): its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new process on the same port, with the same notes.
    pub fn restart(&mut self) {
        self.stop();
        let listen = self.origin.trim_start_matches("http://").to_owned();
        let (child, url) = spawn(&self.db, &listen);
        assert_eq!(url, self.url, "the stand-in came back on its port");
        self.child = Some(child);
    }

    /// One JSON-RPC call: its `result`, or its `error` as `Err`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({ "method": method, "params": params, "id": 7 });
        let mut response = match ureq::post(&self.url).config().http_status_as_error(false).build().send_json(&body) {
            Ok(response) => response,
            Err(e) => return Err(e.to_string()),
        };
        let answer: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
        match answer.get("error") {
            Some(error) => Err(error.as_str().unwrap_or_default().to_owned()),
            None => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Creates a note in "Notely" directly, as its API server would.
    pub fn create(&self, account: &str, id: &str, content: &str, at: &str) {
        let note = json!({ "id": id, "creator": account, "createdAt": at, "updatedAt": at, "content": content });
        self.call("CreateNote", json!({ "accountDetails": { "accountId": account, "isMigrating": false }, "note": note })).unwrap();
    }

    /// The note "Notely" holds, if any.
    pub fn note(&self, account: &str, id: &str) -> Option<Value> {
        let note = self.call("GetNote", json!({ "accountDetails": { "accountId": account, "isMigrating": false }, "noteId": id })).unwrap();
        (!note.is_null()).then_some(note)
    }

    /// How many notes "Notely" holds for the account.
    pub fn count(&self, account: &str) -> u64 {
        self.call("CountNotes", json!({ "accountDetails": { "accountId": account, "isMigrating": false } })).unwrap().as_u64().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}
