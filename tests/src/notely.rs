//! A Notely data proxy for the store-plugin scenarios: the stand-in
//! (`src/bin/notely-proxy-standin.rs`) as a process on loopback ([`Standin`]:
//! stopped and started again on the same port with its notes), and a
//! JSON-RPC client that writes and reads "Notely" directly, as Notely's own
//! API server would.

use serde_json::{Value, json};

use super::standin::Standin;

/// A running Notely data proxy stand-in; killed when dropped.
pub struct Proxy(Standin);

impl std::ops::Deref for Proxy {
    type Target = Standin;
    fn deref(&self) -> &Standin {
        &self.0
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Standin {
        &mut self.0
    }
}

impl Proxy {
    pub fn start() -> Proxy {
        Proxy(Standin::start("notely-proxy-standin"))
    }

    /// A proxy whose every call takes `delay` (`"300-300"`: 300 ms).
    pub fn slow(delay: &'static str) -> Proxy {
        Proxy(Standin::start_with("notely-proxy-standin", &["--delay-ms", delay]))
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
