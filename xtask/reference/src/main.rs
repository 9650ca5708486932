//! A hand-written notes service: what a competent engineer would write for
//! the note routes with nothing pluggable. axum 0.8 and rusqlite; the
//! account's flag and the note are read inline on the async worker (one
//! SQLite connection per thread, WAL), and the answer is the host's JSON.
//! Writes go to a blocking thread, one connection behind a lock, one fsync
//! each (`synchronous = FULL`, as the host).
//!
//! It exists only as the benchmarks' reference (`cargo xtask bench http`,
//! BENCHMARKS.md, "HTTP"): the host is measured against what serving a
//! note costs here, not against a static file. No auth, no limits, no
//! metrics, no plugin, no migration.
//!
//! Usage: `notes-reference DATA_DIR PORT` (port 0: any); prints
//! `{"url": "http://127.0.0.1:PORT"}` once it listens.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, is_migrating INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (
    account_id TEXT NOT NULL, id TEXT NOT NULL, content TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
";

static DB: OnceLock<PathBuf> = OnceLock::new();
static WRITER: OnceLock<Mutex<Connection>> = OnceLock::new();

thread_local! {
    static READER: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

fn open() -> Connection {
    let conn = Connection::open(DB.get().expect("set in main")).expect("open the database");
    conn.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).expect("WAL");
    conn.execute_batch("PRAGMA synchronous = FULL").expect("synchronous");
    conn
}

fn read<T>(f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    READER.with(|cell| f(cell.borrow_mut().get_or_insert_with(open)))
}

async fn write<T: Send + 'static>(f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(move || f(&WRITER.get().expect("set in main").lock().unwrap()))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
}

fn failed(message: String) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// As the host answers times: milliseconds, always three digits.
fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().and_then(|t| t.format(format).ok()).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoteBody {
    id: String,
    creator: String,
    created_at: String,
    updated_at: String,
    content: String,
    version: i64,
}

fn note_response(status: StatusCode, account: String, id: String, content: String, created: i64, updated: i64, version: i64) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{version}\"")).expect("digits");
    let body = NoteBody { id, creator: account, created_at: rfc3339(created), updated_at: rfc3339(updated), content, version };
    (status, [(header::ETAG, etag)], Json(body)).into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("{what} not found") }))).into_response()
}

/// The account's flag; `None` if there is no such account.
fn flag(conn: &Connection, account: &str) -> rusqlite::Result<Option<bool>> {
    conn.prepare_cached("SELECT is_migrating FROM accounts WHERE id = ?1")?.query_row([account], |r| r.get(0)).optional()
}

async fn get_note(Path((account, id)): Path<(String, String)>) -> Response {
    let found = read(|conn| {
        let Some(_migrating) = flag(conn, &account)? else { return Ok(Err("Account")) };
        let note = conn
            .prepare_cached("SELECT content, created_at_ms, updated_at_ms, version FROM notes WHERE account_id = ?1 AND id = ?2")?
            .query_row(params![account, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        Ok(note.ok_or("Note"))
    });
    match found {
        Ok(Ok((content, created, updated, version))) => note_response(StatusCode::OK, account, id, content, created, updated, version),
        Ok(Err(what)) => not_found(what),
        Err(e) => failed(e.to_string()),
    }
}

async fn list_notes(Path(account): Path<String>) -> Response {
    let listed = read(|conn| {
        let Some(_migrating) = flag(conn, &account)? else { return Ok(None) };
        let mut stmt = conn.prepare_cached("SELECT id FROM notes WHERE account_id = ?1 ORDER BY id")?;
        let ids = stmt.query_map([&account], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(ids))
    });
    match listed {
        Ok(Some(ids)) => Json(ids).into_response(),
        Ok(None) => not_found("Account"),
        Err(e) => failed(e.to_string()),
    }
}

#[derive(Deserialize)]
struct NewNote {
    id: Option<String>,
    content: String,
}

/// A JSON body, whatever its `Content-Type` says (Notely's server reads it so, and wrk sends none).
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

async fn create_note(Path(account): Path<String>, body: axum::body::Bytes) -> Response {
    let body: NewNote = match json(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let id = body.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (account2, id2, content) = (account.clone(), id.clone(), body.content.clone());
    let now = now_ms();
    let created = write(move |conn| {
        if flag(conn, &account2)?.is_none() {
            return Ok(false);
        }
        conn.prepare_cached("INSERT INTO notes VALUES (?1, ?2, ?3, ?4, ?4, 1)")?.execute(params![account2, id2, content, now])?;
        Ok(true)
    })
    .await;
    match created {
        Ok(true) => note_response(StatusCode::CREATED, account, id, body.content, now, now, 1),
        Ok(false) => not_found("Account"),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct NoteEdit {
    content: String,
}

async fn update_note(Path((account, id)): Path<(String, String)>, body: axum::body::Bytes) -> Response {
    let body: NoteEdit = match json(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (account2, id2, content) = (account.clone(), id.clone(), body.content.clone());
    let now = now_ms();
    let updated = write(move |conn| {
        conn.prepare_cached(
            "UPDATE notes SET content = ?3, updated_at_ms = ?4, version = version + 1 WHERE account_id = ?1 AND id = ?2
             RETURNING created_at_ms, version",
        )?
        .query_row(params![account2, id2, content, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
    })
    .await;
    match updated {
        Ok(Some((created, version))) => note_response(StatusCode::OK, account, id, body.content, created, now, version),
        Ok(None) => not_found("Note"),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    id: String,
    name: String,
    #[serde(default)]
    is_migrating: bool,
}

async fn create_account(Json(body): Json<NewAccount>) -> Response {
    let created = write(move |conn| {
        conn.prepare_cached("INSERT INTO accounts VALUES (?1, ?2, ?3)")?.execute(params![body.id, body.name, body.is_migrating])?;
        Ok(Json(serde_json::json!({ "id": body.id, "name": body.name, "isMigrating": body.is_migrating })))
    })
    .await;
    match created {
        Ok(json) => (StatusCode::CREATED, json).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountEdit {
    is_migrating: bool,
}

async fn patch_account(Path(account): Path<String>, Json(body): Json<AccountEdit>) -> Response {
    let changed = write(move |conn| {
        conn.prepare_cached("UPDATE accounts SET is_migrating = ?2 WHERE id = ?1")?.execute(params![account, body.is_migrating])
    })
    .await;
    match changed {
        Ok(1) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => not_found("Account"),
        Err(response) => response,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, port] = args.as_slice() else {
        eprintln!("usage: notes-reference DATA_DIR PORT");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dir).expect("create the data dir");
    DB.set(PathBuf::from(dir).join("notes.db")).expect("once");
    let writer = open();
    writer.execute_batch(SCHEMA).expect("schema");
    WRITER.set(Mutex::new(writer)).ok().expect("once");
    let port: u16 = port.parse().expect("a port number");
    let app = axum::Router::new()
        .route("/accounts", post(create_account))
        .route("/accounts/{account}", patch(patch_account))
        .route("/accounts/{account}/notes", get(list_notes).post(create_note))
        .route("/accounts/{account}/notes/{note}", get(get_note).put(update_note));
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("{}", serde_json::json!({ "url": format!("http://{}", listener.local_addr().expect("address")) }));
        axum::serve(listener, app).await.expect("serve");
    });
}
