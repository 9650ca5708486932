//! `/accounts/{account}/notes` routes. Every response a plugin served carries
//! `X-Plugin: name@version`; a note carries `ETag: "<version>"`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::blocking;
use super::error::ApiError;
use super::extract::{JsonBody, client_id, client_time, if_match, uuid};
use crate::app::{App, Placement, Served};
use crate::stores::Note;

pub const X_PLUGIN: HeaderName = HeaderName::from_static("x-plugin");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoteBody {
    id: String,
    creator: String,
    created_at: String,
    updated_at: String,
    content: String,
    version: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewNote {
    content: Option<String>,
    id: Option<String>,
    /// Kept when a client supplies one (Notely's rule).
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteEdit {
    content: Option<String>,
    /// A write older than the stored note is not applied (Notely's rule).
    updated_at: Option<String>,
}

pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn served<T>(status: StatusCode, served: Served<T>, body: impl FnOnce(T) -> Response) -> Response {
    let mut response = body(served.value);
    *response.status_mut() = status;
    if let Ok(label) = HeaderValue::from_str(&served.plugin) {
        response.headers_mut().insert(X_PLUGIN, label);
    }
    response
}

fn note_response(note: Note) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", note.version)).expect("digits");
    let body = NoteBody {
        id: note.id,
        creator: note.account_id,
        created_at: rfc3339(note.created_at_ms),
        updated_at: rfc3339(note.updated_at_ms),
        content: note.content,
        version: note.version,
    };
    ([(ETAG, etag)], Json(body)).into_response()
}

fn content(content: Option<String>) -> Result<String, ApiError> {
    content.ok_or_else(|| ApiError::bad_request("content is required"))
}

pub async fn create(
    State(app): State<Arc<App>>,
    Path(account): Path<String>,
    JsonBody(body): JsonBody<NewNote>,
) -> Result<Response, ApiError> {
    let account = uuid("account", &account)?;
    let content = content(body.content)?;
    let id = client_id("note", body.id.as_deref())?;
    let created_at = client_time("createdAt", body.created_at.as_deref())?;
    let note = blocking(&app, move |app| app.create_note(account, id, content, created_at)).await?;
    Ok(served(StatusCode::CREATED, note, note_response))
}

pub async fn list(State(app): State<Arc<App>>, Path(account): Path<String>) -> Result<Response, ApiError> {
    let account = uuid("account", &account)?;
    let ids = blocking(&app, move |app| app.note_ids(account)).await?;
    Ok(served(StatusCode::OK, ids, |ids| Json(ids).into_response()))
}

pub async fn get(State(app): State<Arc<App>>, Path((account, note)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let note = blocking(&app, move |app| app.note(account, note)).await?;
    Ok(served(StatusCode::OK, note, note_response))
}

pub async fn update(
    State(app): State<Arc<App>>,
    Path((account, note)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NoteEdit>,
) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let expected = if_match(&headers)?;
    let content = content(body.content)?;
    let updated_at = client_time("updatedAt", body.updated_at.as_deref())?;
    let note = blocking(&app, move |app| app.update_note(account, note, content, expected, updated_at)).await?;
    Ok(served(StatusCode::OK, note, note_response))
}

pub async fn delete(State(app): State<Arc<App>>, Path((account, note)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let done = blocking(&app, move |app| app.delete_note(account, note)).await?;
    Ok(served(StatusCode::NO_CONTENT, done, |()| ().into_response()))
}

#[derive(Serialize)]
struct PlacementBody {
    legacy: bool,
    new: bool,
}

pub async fn placement(
    State(app): State<Arc<App>>,
    Path((account, note)): Path<(String, String)>,
) -> Result<Json<impl Serialize>, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let Placement { legacy, new } = blocking(&app, move |app| app.placement(account, note)).await?;
    Ok(Json(PlacementBody { legacy, new }))
}
