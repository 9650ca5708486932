//! A store backend in another schema: each note is a JSON value under
//! `PREFIX/ACCOUNT/NOTE-ID` in a key-value store with Consul's KV HTTP API
//! (`/v1/kv/`), which many teams already run. Unlike a legacy system, a
//! key-value store with check-and-set can keep the versions itself, so this
//! store says `keeps-versions: true`: the host keeps no table for it, and it
//! keeps the rules of `wit/notes.wit` on its own, a tombstone being a value
//! with `"deleted": true`.
//!
//! Every write reads the key with its `ModifyIndex`, decides by the version
//! rules, and writes with `?cas=INDEX` (`cas=0`: only if absent); a write
//! that lost a race (`false`) is decided again on what won. So two hosts
//! writing one note never lose the newer version, without a lock.
//!
//! Configuration (`--store-config`): `url`, the KV API's address
//! (`http://host:port/`), whose origin the operator must allow; `prefix`
//! (default `notes`).

use base64::Engine as _;
use notes_plugin_sdk::store::{Error, Guest, Note, StoreInfo, config, first_after, http, id_list};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

struct ConsulKv;

/// A note as it is kept: the note, or its tombstone.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    content: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: u64,
    deleted: bool,
}

/// One key as Consul's KV API answers it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    key: String,
    value: Option<String>,
    modify_index: u64,
}

/// Bytes a key segment keeps as they are: the rest is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// How often a write decides again after losing a check-and-set race.
const RACES: usize = 16;

fn base() -> Result<String, Error> {
    let url = config::get("url").ok_or_else(|| Error::Invalid("no `url` configured: serve with --store-config url=http://HOST:PORT/".into()))?;
    let prefix = config::get("prefix").unwrap_or_else(|| "notes".into());
    Ok(format!("{}/v1/kv/{}/", url.trim_end_matches('/'), utf8_percent_encode(&prefix, SEGMENT)))
}

fn account_url(account_id: &str) -> Result<String, Error> {
    Ok(format!("{}{}/", base()?, utf8_percent_encode(account_id, SEGMENT)))
}

fn key_url(account_id: &str, note_id: &str) -> Result<String, Error> {
    Ok(format!("{}{}", account_url(account_id)?, utf8_percent_encode(note_id, SEGMENT)))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("the key-value store did not answer {what}: {e}"))
}

/// The entries at `url` (a key, or a prefix with `?recurse`); none on 404.
fn read(url: &str) -> Result<Vec<Entry>, Error> {
    let response = http::send("GET", url, &[], &[]).map_err(|e| unavailable("a read", e))?;
    match response.status {
        404 => Ok(Vec::new()),
        200 => serde_json::from_slice(&response.body).map_err(|e| Error::Internal(format!("the key-value store answered a read with {e}"))),
        status => Err(unavailable("a read", format!("HTTP {status}"))),
    }
}

fn decode(entry: &Entry) -> Result<Stored, Error> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.value.as_deref().unwrap_or(""))
        .map_err(|e| Error::Internal(format!("key {} holds no base64: {e}", entry.key)))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Internal(format!("key {} holds no note: {e}", entry.key)))
}

/// The note's value and its `ModifyIndex` (0: absent).
fn load(account_id: &str, note_id: &str) -> Result<(Option<Stored>, u64), Error> {
    match read(&key_url(account_id, note_id)?)?.first() {
        Some(entry) => Ok((Some(decode(entry)?), entry.modify_index)),
        None => Ok((None, 0)),
    }
}

/// Writes `value` if the key's `ModifyIndex` is still `index`; false if another write came first.
fn store_if(account_id: &str, note_id: &str, index: u64, value: &Stored) -> Result<bool, Error> {
    let url = format!("{}?cas={index}", key_url(account_id, note_id)?);
    let body = serde_json::to_vec(value).expect("JSON");
    let response = http::send("PUT", &url, &[("content-type", "application/json")], &body).map_err(|e| unavailable("a write", e))?;
    match (response.status, response.body.as_slice()) {
        (200, b"true") => Ok(true),
        (200, b"false") => Ok(false),
        (status, _) => Err(unavailable("a write", format!("HTTP {status}"))),
    }
}

/// Live ids of the account, sorted byte by byte.
fn live_ids(account_id: &str) -> Result<Vec<String>, Error> {
    let prefix = account_url(account_id)?;
    let entries = read(&format!("{prefix}?recurse"))?;
    let mut ids = Vec::new();
    for entry in &entries {
        if decode(entry)?.deleted {
            continue;
        }
        let encoded = entry.key.rsplit('/').next().unwrap_or_default();
        ids.push(percent_decode_str(encoded).decode_utf8().map_err(|e| Error::Internal(format!("key {}: {e}", entry.key)))?.into_owned());
    }
    // Keys sort by their encoding; ids by their bytes.
    ids.sort_unstable();
    Ok(ids)
}

fn in_range(version: u64) -> Result<(), Error> {
    // The host's other stores record versions as SQL integers: refuse what they refuse.
    if version > i64::MAX as u64 { Err(Error::Invalid(format!("version {version} is out of range"))) } else { Ok(()) }
}

impl Guest for ConsulKv {
    fn info() -> StoreInfo {
        StoreInfo { name: "consul-kv".into(), version: "0.1.0".into(), keeps_versions: true }
    }

    fn get(account_id: String, note_id: String) -> Result<Option<Note>, Error> {
        Ok(match load(&account_id, &note_id)?.0 {
            Some(s) if !s.deleted => Some(Note {
                id: note_id,
                account_id,
                content: s.content,
                created_at_ms: s.created_at_ms,
                updated_at_ms: s.updated_at_ms,
                version: s.version,
            }),
            _ => None,
        })
    }

    fn put(n: Note) -> Result<bool, Error> {
        in_range(n.version)?;
        let value = Stored { content: n.content, created_at_ms: n.created_at_ms, updated_at_ms: n.updated_at_ms, version: n.version, deleted: false };
        for _ in 0..RACES {
            let (stored, index) = load(&n.account_id, &n.id)?;
            if stored.is_some_and(|s| s.version >= n.version) {
                return Ok(false);
            }
            if store_if(&n.account_id, &n.id, index, &value)? {
                return Ok(true);
            }
        }
        Err(Error::Unavailable(format!("note {} kept changing under the write; retry", n.id)))
    }

    fn delete_if_not_newer(account_id: String, note_id: String, version: u64) -> Result<bool, Error> {
        in_range(version)?;
        for _ in 0..RACES {
            let (stored, index) = load(&account_id, &note_id)?;
            let live = match &stored {
                Some(s) if s.version > version => return Ok(false),
                // Already a tombstone at this version: nothing to change.
                Some(s) if s.deleted && s.version == version => return Ok(false),
                Some(s) => !s.deleted,
                None => false,
            };
            let tombstone = Stored { content: String::new(), created_at_ms: 0, updated_at_ms: 0, version, deleted: true };
            if store_if(&account_id, &note_id, index, &tombstone)? {
                return Ok(live);
            }
        }
        Err(Error::Unavailable(format!("note {note_id} kept changing under the delete; retry")))
    }

    fn recorded_version(account_id: String, note_id: String) -> Result<Option<u64>, Error> {
        Ok(load(&account_id, &note_id)?.0.map(|s| s.version))
    }

    fn list_ids(account_id: String) -> Result<String, Error> {
        Ok(id_list(live_ids(&account_id)?.iter().map(String::as_str)))
    }

    fn first_ids(account_id: String, after: String, limit: u32) -> Result<Vec<String>, Error> {
        Ok(first_after(&live_ids(&account_id)?, &after, limit))
    }

    fn health() -> Result<(), Error> {
        read(&base()?).map(drop)
    }
}

notes_plugin_sdk::store::export_store_backend!(ConsulKv);
