//! A stand-in for Notely's **data proxy**: the process behind Notely's API
//! server that keeps its notes, answering JSON-RPC over HTTP exactly as the
//! real one does, with the same rules and the same delay. The store
//! plugin `plugins/examples/notely-data-proxy` is tested and measured
//! against it.
//!
//! `POST /` with `{"method", "params", "id"}`; answered `{"result", "id"}`
//! (`result` left out when empty) or, with HTTP 500, `{"error": "<text>",
//! "id"}`. Every call is serialized by one lock, and holds it 1–5 ms (the
//! real proxy's latency). Notes have no versions and no tombstones: a create
//! of an existing id succeeds and stores nothing; an update lands only if
//! the note exists and its `updatedAt` is newer than the stored one (last
//! writer wins), and succeeds either way.
//!
//! Notes are kept in a SQLite file (`--db`), so the proxy can be killed and
//! started again on the same port with its notes: what a restart of the
//! upstream mid-backfill needs.
//!
//! ```text
//! notely-proxy-standin --db notes.db [--listen 127.0.0.1:0] [--delay-ms 1-5]
//! ```
//! prints `listening on http://ADDR/` once it serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct Proxy {
    /// The one lock every call is serialized by, around the notes.
    db: tokio::sync::Mutex<Connection>,
    delay: (u64, u64),
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut db, mut listen, mut delay) = (None, "127.0.0.1:0".to_owned(), (1, 5));
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--db" => db = Some(value),
            "--listen" => listen = value,
            "--delay-ms" => {
                let (low, high) = value.split_once('-').unwrap_or((&value, &value));
                delay = (low.parse().unwrap_or_else(|_| usage("--delay-ms LOW-HIGH")), high.parse().unwrap_or_else(|_| usage("--delay-ms LOW-HIGH")));
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let db = db.unwrap_or_else(|| usage("--db FILE is required"));
    let conn = Connection::open(&db).unwrap_or_else(|e| usage(&format!("cannot open {db}: {e}")));
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS notes (account_id TEXT NOT NULL, id TEXT NOT NULL, creator TEXT NOT NULL,
             created_at TEXT NOT NULL, updated_at TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (account_id, id));",
    )
    .expect("schema");
    let proxy = Arc::new(Proxy { db: tokio::sync::Mutex::new(conn), delay });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap_or_else(|e| usage(&format!("cannot listen on {listen}: {e}")));
        let addr: SocketAddr = listener.local_addr().expect("address");
        println!("listening on http://{addr}/");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.answer(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

fn usage(problem: &str) -> ! {
    eprintln!("notely-proxy-standin: {problem}\nusage: notely-proxy-standin --db FILE [--listen ADDR] [--delay-ms LOW-HIGH]");
    std::process::exit(2)
}

impl Proxy {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string(), "id": null })),
        };
        let call: Value = match serde_json::from_slice(&body) {
            Ok(call) => call,
            Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": format!("bad request: {e}"), "id": null })),
        };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let method = call.get("method").and_then(Value::as_str).unwrap_or("").to_owned();
        let params = call.get("params").cloned().unwrap_or(Value::Null);
        let db = self.db.lock().await;
        let (low, high) = self.delay;
        let pause = low + (std::process::id() as u64 ^ now_nanos()) % (high - low + 1).max(1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match serve(&db, &method, &params) {
            Ok(Value::Null) => reply(StatusCode::OK, json!({ "id": id })),
            Ok(result) => reply(StatusCode::OK, json!({ "result": result, "id": id })),
            Err(error) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": error, "id": id })),
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64)
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(body.to_string()))).expect("response")
}

fn account(params: &Value) -> Result<String, String> {
    params["accountDetails"]["accountId"].as_str().map(str::to_owned).ok_or_else(|| "accountDetails.accountId is required".to_owned())
}

fn field<'a>(note: &'a Value, name: &str) -> Result<&'a str, String> {
    note[name].as_str().ok_or_else(|| format!("note.{name} is required"))
}

/// A time as the proxy keeps it: milliseconds.
fn millis(text: &str) -> Result<i128, String> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    Ok(at.unix_timestamp_nanos() / 1_000_000)
}

fn serve(db: &Connection, method: &str, params: &Value) -> Result<Value, String> {
    let sql = |e: rusqlite::Error| e.to_string();
    match method {
        "HealthCheck" | "Ready" => Ok(Value::Null),
        "ListNotes" => {
            let account = account(params)?;
            let mut stmt = db.prepare_cached("SELECT id FROM notes WHERE account_id = ?1 ORDER BY id").map_err(sql)?;
            let ids: Vec<String> = stmt.query_map(params![account], |r| r.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?;
            Ok(if ids.is_empty() { Value::Null } else { json!(ids) })
        }
        "CountNotes" => {
            let account = account(params)?;
            let count: i64 = db.query_row("SELECT COUNT(*) FROM notes WHERE account_id = ?1", params![account], |r| r.get(0)).map_err(sql)?;
            Ok(json!(count))
        }
        "GetNote" => {
            let account = account(params)?;
            let note_id = params["noteId"].as_str().ok_or("noteId is required")?;
            let note = db
                .query_row(
                    "SELECT id, creator, created_at, updated_at, content FROM notes WHERE account_id = ?1 AND id = ?2",
                    params![account, note_id],
                    |r| {
                        Ok(json!({ "id": r.get::<_, String>(0)?, "creator": r.get::<_, String>(1)?, "createdAt": r.get::<_, String>(2)?,
                                   "updatedAt": r.get::<_, String>(3)?, "content": r.get::<_, String>(4)? }))
                    },
                )
                .optional()
                .map_err(sql)?;
            Ok(note.unwrap_or(Value::Null))
        }
        "CreateNote" => {
            let account = account(params)?;
            let note = &params["note"];
            millis(field(note, "createdAt")?)?;
            millis(field(note, "updatedAt")?)?;
            db.execute(
                "INSERT INTO notes (account_id, id, creator, created_at, updated_at, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (account_id, id) DO NOTHING",
                params![account, field(note, "id")?, field(note, "creator")?, field(note, "createdAt")?, field(note, "updatedAt")?, field(note, "content")?],
            )
            .map_err(sql)?;
            Ok(Value::Null)
        }
        "UpdateNote" => {
            let account = account(params)?;
            let note = &params["note"];
            let id = field(note, "id")?;
            let updated = millis(field(note, "updatedAt")?)?;
            let stored: Option<String> =
                db.query_row("SELECT updated_at FROM notes WHERE account_id = ?1 AND id = ?2", params![account, id], |r| r.get(0)).optional().map_err(sql)?;
            if let Some(stored) = stored
                && updated > millis(&stored)?
            {
                db.execute(
                    "UPDATE notes SET content = ?3, updated_at = ?4 WHERE account_id = ?1 AND id = ?2",
                    params![account, id, field(note, "content")?, field(note, "updatedAt")?],
                )
                .map_err(sql)?;
            }
            Ok(Value::Null)
        }
        "DeleteNote" => {
            let account = account(params)?;
            db.execute("DELETE FROM notes WHERE account_id = ?1 AND id = ?2", params![account, field(&params["note"], "id")?]).map_err(sql)?;
            Ok(Value::Null)
        }
        other => Err(format!("unknown method {other:?}")),
    }
}
