//! A store backend whose notes live in a running **Notely data proxy**: the
//! process behind Notely's API server that keeps its notes and answers
//! JSON-RPC over HTTP (`POST /` with `{"method", "params", "id"}`).
//!
//! The proxy keeps no versions and no tombstones, and its writes do not say
//! whether they changed anything, so this store says `keeps-versions: false`
//! (the host keeps both, and makes every write conditional on its own
//! table) and learns what a write did by reading the note back:
//! - a create whose id exists stores nothing, and an update lands only if
//!   the note exists and its `updatedAt` is newer than the stored one (last
//!   writer wins). A write is made as a create or an update after reading
//!   the note, with `updatedAt` raised to 1 ms past the stored one if it is
//!   not newer, and read back: if the proxy does not hold what was written
//!   (another writer got there), the write fails as `unavailable`, and the
//!   host records nothing.
//!
//! Configuration (`--store-config`): `url`, the proxy's address
//! (`http://host:port/`), whose origin the operator must also allow
//! (`--store-allow-http`).

use notes_plugin_sdk::store::{Error, Guest, Note, StoreInfo, config, first_after, http, id_list};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct NotelyDataProxy;

/// A note as the proxy keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ProxyNote {
    id: String,
    creator: String,
    created_at: String,
    updated_at: String,
    content: String,
}

fn proxy_url() -> Result<String, Error> {
    config::get("url").ok_or_else(|| Error::Invalid("no `url` configured: serve with --store-config url=http://HOST:PORT/".into()))
}

/// One JSON-RPC call: its `result` (`null` when left out).
fn call(method: &str, params: Value) -> Result<Value, Error> {
    let url = proxy_url()?;
    let body = serde_json::to_vec(&json!({ "method": method, "params": params, "id": 1 })).expect("JSON");
    let response = http::send("POST", &url, &[("content-type", "application/json")], &body)
        .map_err(|e| Error::Unavailable(format!("the Notely data proxy at {url} did not answer {method}: {e}")))?;
    let answer: Value = serde_json::from_slice(&response.body).map_err(|e| {
        Error::Unavailable(format!("the Notely data proxy answered {method} with HTTP {} and no JSON-RPC answer: {e}", response.status))
    })?;
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        let text = error.as_str().map_or_else(|| error.to_string(), str::to_owned);
        return Err(Error::Unavailable(format!("the Notely data proxy refused {method}: {text}")));
    }
    if response.status != 200 {
        return Err(Error::Unavailable(format!("the Notely data proxy answered {method} with HTTP {}", response.status)));
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

fn account(account_id: &str) -> Value {
    // The host routes by the flag itself; to the proxy this is its legacy store.
    json!({ "accountId": account_id, "isMigrating": false })
}

fn rfc3339(ms: i64) -> Result<String, Error> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| Error::Invalid(format!("time {ms} ms: {e}")))?;
    at.format(&Rfc3339).map_err(|e| Error::Internal(e.to_string()))
}

fn unix_ms(text: &str) -> Result<i64, Error> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| Error::Internal(format!("the proxy's time {text:?} is not RFC 3339: {e}")))?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn get_note(account_id: &str, note_id: &str) -> Result<Option<ProxyNote>, Error> {
    let result = call("GetNote", json!({ "accountDetails": account(account_id), "noteId": note_id }))?;
    if result.is_null() {
        return Ok(None);
    }
    serde_json::from_value(result).map(Some).map_err(|e| Error::Internal(format!("the proxy's note {note_id} is malformed: {e}")))
}

fn list(account_id: &str) -> Result<Vec<String>, Error> {
    let result = call("ListNotes", json!({ "accountDetails": account(account_id) }))?;
    let mut ids: Vec<String> = if result.is_null() {
        Vec::new()
    } else {
        serde_json::from_value(result).map_err(|e| Error::Internal(format!("ListNotes answered no list of ids: {e}")))?
    };
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Guest for NotelyDataProxy {
    fn info() -> StoreInfo {
        StoreInfo { name: "notely-data-proxy".into(), version: "0.1.0".into(), keeps_versions: false }
    }

    fn get(account_id: String, note_id: String) -> Result<Option<Note>, Error> {
        let Some(n) = get_note(&account_id, &note_id)? else { return Ok(None) };
        if n.creator != account_id {
            return Ok(None);
        }
        Ok(Some(Note {
            id: n.id,
            account_id,
            content: n.content,
            created_at_ms: unix_ms(&n.created_at)?,
            updated_at_ms: unix_ms(&n.updated_at)?,
            version: 0,
        }))
    }

    fn put(n: Note) -> Result<bool, Error> {
        let stored = get_note(&n.account_id, &n.id)?;
        let mut updated_at_ms = n.updated_at_ms;
        let method = match &stored {
            None => "CreateNote",
            Some(s) => {
                // Last writer wins by `updatedAt` in the proxy: a write must be newer to land.
                updated_at_ms = updated_at_ms.max(unix_ms(&s.updated_at)? + 1);
                "UpdateNote"
            }
        };
        let note = ProxyNote {
            id: n.id.clone(),
            creator: n.account_id.clone(),
            created_at: stored.as_ref().map_or_else(|| rfc3339(n.created_at_ms), |s| Ok(s.created_at.clone()))?,
            updated_at: rfc3339(updated_at_ms)?,
            content: n.content,
        };
        call(method, json!({ "accountDetails": account(&n.account_id), "note": note }))?;
        // The proxy's answer says nothing of what it did: read it back.
        match get_note(&n.account_id, &n.id)? {
            Some(now) if now.content == note.content && unix_ms(&now.updated_at)? == updated_at_ms => Ok(true),
            _ => Err(Error::Unavailable(format!("the Notely data proxy did not keep the write of note {} (another writer changed it meanwhile)", n.id))),
        }
    }

    fn delete_if_not_newer(account_id: String, note_id: String, _version: u64) -> Result<bool, Error> {
        let Some(stored) = get_note(&account_id, &note_id)? else { return Ok(false) };
        call("DeleteNote", json!({ "accountDetails": account(&account_id), "note": stored }))?;
        match get_note(&account_id, &note_id)? {
            None => Ok(true),
            Some(_) => Err(Error::Unavailable(format!("the Notely data proxy still holds note {note_id} after deleting it"))),
        }
    }

    fn recorded_version(_account_id: String, _note_id: String) -> Result<Option<u64>, Error> {
        Err(Error::Internal("this store keeps no versions: the host keeps them".into()))
    }

    fn list_ids(account_id: String) -> Result<String, Error> {
        let ids = list(&account_id)?;
        Ok(id_list(ids.iter().map(String::as_str)))
    }

    fn first_ids(account_id: String, after: String, limit: u32) -> Result<Vec<String>, Error> {
        Ok(first_after(&list(&account_id)?, &after, limit))
    }

    fn health() -> Result<(), Error> {
        call("HealthCheck", Value::Null).map(|_| ())
    }
}

notes_plugin_sdk::store::export_store_backend!(NotelyDataProxy);
