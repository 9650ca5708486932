//! A stand-in for a key-value store's HTTP API in the shape of Consul's KV
//! (`/v1/kv/`), the subset a store plugin needs: read a key, read every key
//! under a prefix (`?recurse`), and write or delete with check-and-set on a
//! key's `ModifyIndex` (`?cas=N`; 0: only if absent). The store plugin
//! `plugins/examples/consul-kv` keeps notes in it, with their versions and
//! tombstones, and is tested against it.
//!
//! Answers as Consul does: a read is a JSON array of
//! `{"Key", "Value" (base64), "CreateIndex", "ModifyIndex", "Flags", "LockIndex"}`,
//! sorted by key, or 404 when no key matches; a write or a delete answers
//! `true` or `false` (its check-and-set failed). Keys are kept in a SQLite
//! file (`--db`), so the store can be restarted with its keys.
//!
//! ```text
//! kv-standin --db kv.db [--listen 127.0.0.1:0]
//! ```
//! prints `listening on http://ADDR/` once it serves.

use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut db, mut listen) = (None, "127.0.0.1:0".to_owned());
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--db" => db = Some(value),
            "--listen" => listen = value,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let db = db.unwrap_or_else(|| usage("--db FILE is required"));
    let conn = Connection::open(&db).unwrap_or_else(|e| usage(&format!("cannot open {db}: {e}")));
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS last_index (one INTEGER PRIMARY KEY CHECK (one = 1), value INTEGER NOT NULL);
         INSERT OR IGNORE INTO last_index VALUES (1, 0);",
    )
    .expect("schema");
    let store = Arc::new(tokio::sync::Mutex::new(conn));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap_or_else(|e| usage(&format!("cannot listen on {listen}: {e}")));
        println!("listening on http://{}/", listener.local_addr().expect("address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let store = store.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&store, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

fn usage(problem: &str) -> ! {
    eprintln!("kv-standin: {problem}\nusage: kv-standin --db FILE [--listen ADDR]");
    std::process::exit(2)
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(body))).expect("response")
}

async fn answer(store: &tokio::sync::Mutex<Connection>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(raw_key) = request.uri().path().strip_prefix("/v1/kv/") else { return reply(StatusCode::NOT_FOUND, "no such route".into()) };
    let key = match percent_decode_str(raw_key).decode_utf8() {
        Ok(key) => key.into_owned(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "the key is not UTF-8".into()),
    };
    let query = request.uri().query().unwrap_or("").to_owned();
    let recurse = query.split('&').any(|p| p == "recurse" || p.starts_with("recurse="));
    let cas = query.split('&').find_map(|p| p.strip_prefix("cas=")).map(|n| n.parse::<i64>());
    let cas = match cas.transpose() {
        Ok(cas) => cas,
        Err(_) => return reply(StatusCode::BAD_REQUEST, "cas must be a number".into()),
    };
    let method = request.method().clone();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let db = store.lock().await;
    let result = match method {
        Method::GET => read(&db, &key, recurse),
        Method::PUT => write(&db, &key, cas, Some(&body)),
        Method::DELETE => write(&db, &key, cas, None),
        _ => return reply(StatusCode::METHOD_NOT_ALLOWED, "GET, PUT or DELETE".into()),
    };
    match result {
        Ok(answer) => answer,
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn read(db: &Connection, key: &str, recurse: bool) -> rusqlite::Result<Response<Full<Bytes>>> {
    let row = |r: &rusqlite::Row| -> rusqlite::Result<serde_json::Value> {
        let value: Vec<u8> = r.get(1)?;
        Ok(json!({ "Key": r.get::<_, String>(0)?, "Value": base64::engine::general_purpose::STANDARD.encode(value),
                   "CreateIndex": r.get::<_, i64>(2)?, "ModifyIndex": r.get::<_, i64>(3)?, "Flags": 0, "LockIndex": 0 }))
    };
    let rows: Vec<serde_json::Value> = if recurse {
        // Keys under the prefix: from it up to (not including) the prefix with its last byte + 1.
        let mut stmt = db.prepare_cached("SELECT key, value, create_index, modify_index FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")?;
        stmt.query_map(params![key], row)?.collect::<rusqlite::Result<_>>()?
    } else {
        db.query_row("SELECT key, value, create_index, modify_index FROM kv WHERE key = ?1", params![key], row).optional()?.into_iter().collect()
    };
    Ok(if rows.is_empty() { reply(StatusCode::NOT_FOUND, String::new()) } else { reply(StatusCode::OK, serde_json::Value::Array(rows).to_string()) })
}

/// A put (`value`) or a delete (`None`), under `cas` if given.
fn write(db: &Connection, key: &str, cas: Option<i64>, value: Option<&[u8]>) -> rusqlite::Result<Response<Full<Bytes>>> {
    let current: Option<i64> = db.query_row("SELECT modify_index FROM kv WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
    let allowed = match (cas, current) {
        (None, _) => true,
        (Some(0), None) => true,
        (Some(0), Some(_)) => false,
        (Some(n), Some(m)) => n == m,
        // Consul: a delete with cas of a missing key fails; a put with cas=N of one does too.
        (Some(_), None) => false,
    };
    if !allowed {
        return Ok(reply(StatusCode::OK, "false".into()));
    }
    // Grows with every write, deletes included, as Consul's raft index: an
    // index once seen never names another value of the key.
    let index: i64 = db.query_row("UPDATE last_index SET value = value + 1 RETURNING value", [], |r| r.get(0))?;
    match value {
        Some(value) => db.execute(
            "INSERT INTO kv (key, value, create_index, modify_index) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, modify_index = excluded.modify_index",
            params![key, value, index],
        )?,
        None => db.execute("DELETE FROM kv WHERE key = ?1", params![key])?,
    };
    Ok(reply(StatusCode::OK, "true".into()))
}
