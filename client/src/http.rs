//! The one client of the notes-host HTTP API. Every method returns the
//! whole answer, whatever its status: the simulator judges each status, the
//! tests assert on them, the CLI turns a non-2xx into an error. Only a
//! failure to get an answer at all is an `Err`.

use std::io::Read;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use notes_api_types::JobKind;

/// A client of one host: its base URL and, if it has one, its admin token.
/// Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A request body and its content type.
#[derive(Debug, Clone)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn json(value: &impl Serialize) -> Body {
        Body { content_type: "application/json".into(), bytes: serde_json::to_vec(value).expect("a JSON value serializes") }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// `METHOD URL` of the request, for messages.
    pub request: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.body)
    }

    /// The JSON of a 2xx answer; any other status is an error carrying the
    /// host's `error` message.
    pub fn success_json(&self) -> anyhow::Result<Value> {
        // A body that is not JSON is kept as text, for the message.
        let json = self.json().unwrap_or_else(|_| Value::String(self.body.clone()));
        if !self.is_success() {
            let message = json["error"].as_str().map(str::to_owned).unwrap_or_else(|| json.to_string());
            anyhow::bail!("{}: {}: {message}", self.request, self.status);
        }
        Ok(json)
    }
}

/// No answer: the request failed on the way.
#[derive(Debug, Clone)]
pub enum TransportError {
    /// Nothing reached the server (connection refused): certainly not applied.
    Refused { request: String, reason: String },
    /// The server may or may not have acted (connection broke, timeout).
    Broken { request: String, reason: String },
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Refused { request, reason } => write!(f, "{request}: refused: {reason}"),
            TransportError::Broken { request, reason } => write!(f, "{request}: no answer: {reason}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// `POST /accounts`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// The client's choice of id; the host picks one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub is_migrating: bool,
}

/// `PUT` (name required) or `PATCH` (any subset) of `/accounts/{id}`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_migrating: Option<bool>,
}

/// `POST /accounts/{account}/notes`.
#[derive(Debug, Clone, Serialize)]
pub struct NewNote {
    /// The client's choice of id; the host picks one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub content: String,
}

type Answer = Result<Response, TransportError>;

impl Client {
    /// A client of the host at `base` (`http://127.0.0.1:8080`), without a
    /// token, giving up on a request after 30 s.
    pub fn new(base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_owned(), token: None, agent: agent(Duration::from_secs(30)) }
    }

    /// Sends `Authorization: Bearer TOKEN` on every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// Gives up on a request (no answer) after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.agent = agent(timeout);
        self
    }

    /// The same client (token, connection pool) for the host at `base`.
    pub fn at(&self, base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_owned(), ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Any request: `headers` are sent after the token's, as given.
    pub fn request(&self, method: &str, path: &str, body: Option<Body>, headers: &[(&str, &str)]) -> Answer {
        let url = format!("{}{path}", self.base);
        let request = format!("{method} {url}");
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let invalid = |e: ureq::http::Error| TransportError::Refused { request: request.clone(), reason: format!("invalid request: {e}") };
        let result = match body {
            Some(body) => self.agent.run(req.header("content-type", body.content_type).body(body.bytes).map_err(invalid)?),
            None => self.agent.run(req.body(()).map_err(invalid)?),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(TransportError::Refused { request, reason: e.to_string() });
            }
            Err(ureq::Error::ConnectionFailed) => return Err(TransportError::Refused { request, reason: "connection failed".into() }),
            Err(e) => return Err(TransportError::Broken { request, reason: e.to_string() }),
        };
        let headers = response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())).collect();
        let status = response.status().as_u16();
        let mut body = String::new();
        // An answer cut short may or may not have been acted on.
        if let Err(e) = response.body_mut().as_reader().read_to_string(&mut body) {
            return Err(TransportError::Broken { request, reason: format!("{status} with a broken body: {e}") });
        }
        Ok(Response { request, status, headers, body })
    }

    fn send(&self, method: &str, path: &str, body: Option<Body>) -> Answer {
        self.request(method, path, body, &[])
    }

    // ---- health and hosts ---------------------------------------------------

    pub fn healthz(&self) -> Answer {
        self.send("GET", "/healthz", None)
    }

    /// `GET /hosts`: the fleet as this host sees it.
    pub fn hosts(&self) -> Answer {
        self.send("GET", "/hosts", None)
    }

    // ---- accounts -----------------------------------------------------------

    pub fn create_account(&self, account: &NewAccount) -> Answer {
        self.send("POST", "/accounts", Some(Body::json(account)))
    }

    pub fn list_accounts(&self) -> Answer {
        self.send("GET", "/accounts", None)
    }

    pub fn get_account(&self, account: &str) -> Answer {
        self.send("GET", &format!("/accounts/{account}"), None)
    }

    pub fn put_account(&self, account: &str, change: &AccountChange) -> Answer {
        self.send("PUT", &format!("/accounts/{account}"), Some(Body::json(change)))
    }

    pub fn patch_account(&self, account: &str, change: &AccountChange) -> Answer {
        self.send("PATCH", &format!("/accounts/{account}"), Some(Body::json(change)))
    }

    /// `PATCH` of `isMigrating` alone: a flip.
    pub fn set_migrating(&self, account: &str, on: bool) -> Answer {
        self.patch_account(account, &AccountChange { name: None, is_migrating: Some(on) })
    }

    /// `GET /accounts/{account}/migration`: the flag and the notes per store.
    pub fn migration(&self, account: &str) -> Answer {
        self.send("GET", &format!("/accounts/{account}/migration"), None)
    }

    // ---- notes --------------------------------------------------------------

    pub fn create_note(&self, account: &str, note: &NewNote) -> Answer {
        self.send("POST", &format!("/accounts/{account}/notes"), Some(Body::json(note)))
    }

    pub fn list_notes(&self, account: &str) -> Answer {
        self.send("GET", &format!("/accounts/{account}/notes"), None)
    }

    pub fn get_note(&self, account: &str, note: &str) -> Answer {
        self.send("GET", &format!("/accounts/{account}/notes/{note}"), None)
    }

    pub fn update_note(&self, account: &str, note: &str, content: &str) -> Answer {
        self.send("PUT", &format!("/accounts/{account}/notes/{note}"), Some(Body::json(&json!({ "content": content }))))
    }

    pub fn delete_note(&self, account: &str, note: &str) -> Answer {
        self.send("DELETE", &format!("/accounts/{account}/notes/{note}"), None)
    }

    /// `GET …/placement`: which stores hold the note right now.
    pub fn placement(&self, account: &str, note: &str) -> Answer {
        self.send("GET", &format!("/accounts/{account}/notes/{note}/placement"), None)
    }

    // ---- plugins ------------------------------------------------------------

    pub fn list_plugins(&self) -> Answer {
        self.send("GET", "/plugins", None)
    }

    /// `GET /plugins/{digest}/errors`: the plugin's recent failures on that host.
    pub fn plugin_errors(&self, digest: &str) -> Answer {
        self.send("GET", &format!("/plugins/{digest}/errors"), None)
    }

    /// Uploads a component (`POST /plugins`); the host validates and precompiles it.
    pub fn push_plugin(&self, wasm: Vec<u8>) -> Answer {
        self.send("POST", "/plugins", Some(Body { content_type: "application/wasm".into(), bytes: wasm }))
    }

    /// `push_plugin`, the host running the conformance kit's contract cases
    /// first (`?check=true`): a failing plugin is refused (422), not stored.
    pub fn push_plugin_checked(&self, wasm: Vec<u8>) -> Answer {
        self.send("POST", "/plugins?check=true", Some(Body { content_type: "application/wasm".into(), bytes: wasm }))
    }

    pub fn activate_plugin(&self, digest: &str) -> Answer {
        self.send("PUT", "/plugins/active", Some(Body::json(&json!({ "digest": digest }))))
    }

    /// `PUT /plugins/{digest}/instances`: how the plugin's instances are made.
    pub fn set_plugin_instances(&self, digest: &str, instances: &serde_json::Value) -> Answer {
        self.send("PUT", &format!("/plugins/{digest}/instances"), Some(Body::json(instances)))
    }

    pub fn rollback_plugin(&self) -> Answer {
        self.send("POST", "/plugins/rollback", None)
    }

    // ---- migrations ---------------------------------------------------------

    /// `GET /migration`: accounts per state, notes left to move, rollout.
    pub fn service_migration(&self) -> Answer {
        self.send("GET", "/migration", None)
    }

    /// `POST /migration/rollout {"percent"}`.
    /// `resume`: after the kill switch, turn accounts on again.
    pub fn rollout(&self, percent: f64, resume: bool) -> Answer {
        self.send("POST", "/migration/rollout", Some(Body::json(&json!({ "percent": percent, "resume": resume }))))
    }

    pub fn kill_switch(&self) -> Answer {
        self.send("POST", "/migration/kill-switch", None)
    }

    /// `GET /audit`, with a query string such as `kind=flag&limit=20`.
    pub fn audit(&self, query: &str) -> Answer {
        self.send("GET", &format!("/audit?{query}"), None)
    }

    /// `POST /jobs`: `kind` is `backfill`, `rollback` or `verify`; no account: every account.
    pub fn create_job(&self, kind: JobKind, account: Option<&str>, rate: Option<u32>) -> Answer {
        self.send("POST", "/jobs", Some(Body::json(&json!({ "kind": kind, "account": account, "rate": rate }))))
    }

    pub fn jobs(&self) -> Answer {
        self.send("GET", "/jobs", None)
    }

    pub fn job(&self, id: &str) -> Answer {
        self.send("GET", &format!("/jobs/{id}"), None)
    }

    /// `action` is `pause`, `resume` or `cancel`.
    pub fn control_job(&self, id: &str, action: &str) -> Answer {
        self.send("POST", &format!("/jobs/{id}/{action}"), None)
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    // Statuses are answers, not errors: callers judge every one.
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}
