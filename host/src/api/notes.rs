//! `/accounts/{account}/notes` routes. Every response a plugin served carries
//! `X-Plugin: name@version`; a note carries `ETag: "<version>"`, and a GET
//! whose `If-None-Match` holds it is answered 304 without the note.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{ETAG, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::{X_PLUGIN, blocking, note_path, x_plugin};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::openapi::{AccountParam, Errors, NoteParams};
use super::extract::{IfNoneMatch, JsonBody, Query, client_id, client_time, if_match, uuid};
use crate::app::{App, Placement, Served};
use crate::stores::Note;


#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Note)]
pub(super) struct NoteBody {
    #[schema(format = Uuid)]
    id: String,
    /// The account's id.
    #[schema(format = Uuid)]
    creator: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    content: String,
    /// Starts at 1 and grows by one per write; also the `ETag`.
    version: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewNote {
    /// At most 10,000 bytes (configurable).
    #[schema(value_type = String, required = true, max_length = 10000)]
    content: Option<String>,
    /// Absent or the nil UUID: the host makes one. A deleted note's id may be used again.
    #[schema(format = Uuid)]
    id: Option<String>,
    /// Kept when a client supplies one (Notely's rule); Go's zero time means none.
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NoteEdit {
    /// At most 10,000 bytes (configurable).
    #[schema(value_type = String, required = true, max_length = 10000)]
    content: Option<String>,
    /// A write older than the stored note is not applied, and the stored
    /// note is the answer (Notely's rule); `If-Match` is the strict form.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
}

/// RFC 3339 in UTC with milliseconds, always three digits
/// (`2026-12-06T19:05:57.120Z`), so every time in an answer has the same
/// width: `time`'s `Rfc3339` drops trailing zeros (`…57.12Z`, `…57Z`).
/// Notely's Go client reads any fraction (`time.Time` parses RFC 3339).
const MILLISECONDS_UTC: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A time in an answer (every `createdAt`, `updatedAt`, `at`…): see [`MILLISECONDS_UTC`].
pub(super) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(MILLISECONDS_UTC).ok())
        .unwrap_or_default()
}

fn served<T>(status: StatusCode, served: Served<T>, body: impl FnOnce(T) -> Response) -> Response {
    let mut response = body(served.value);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&x_plugin(served.by.plugin, &served.by.digest)) {
        response.headers_mut().insert(X_PLUGIN, value);
    }
    response
}


fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits")
}

fn note_response(note: Note) -> Response {
    let etag = etag(note.version);
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
    content.ok_or_else(|| ApiError::bad_request("note content is required"))
}

#[utoipa::path(
    post, path = "/accounts/{account}/notes", operation_id = "createNote", tag = "notes", params(AccountParam),
    request_body = NewNote,
    responses(
        (status = 201, description = "The new note.", body = NoteBody, headers(
            ("ETag" = String, description = "The note's version, quoted."),
            ("Location" = String, description = "The new note's path, `/accounts/{account}/notes/{note}`."),
        ), links(
            ("GetNote" = (operation_id = "getNote", parameters(("account" = "$request.path.account"), ("note" = "$response.body#/id")))),
            ("UpdateNote" = (operation_id = "updateNote", parameters(("account" = "$request.path.account"), ("note" = "$response.body#/id")))),
            ("DeleteNote" = (operation_id = "deleteNote", parameters(("account" = "$request.path.account"), ("note" = "$response.body#/id")))),
        )),
        Errors,
    )
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    Path(account): Path<String>,
    JsonBody(body): JsonBody<NewNote>,
) -> Result<Response, ApiError> {
    let account = uuid("account", &account)?;
    let content = content(body.content)?;
    let id = client_id("note", body.id.as_deref())?;
    let created_at = client_time("createdAt", body.created_at.as_deref())?;
    let note = note_path(app.notes(), true, move |notes| async move { notes.create_note(account, id, content, created_at).await }).await?;
    Ok(served(StatusCode::CREATED, note, |note| {
        let location = HeaderValue::from_str(&format!("/accounts/{}/notes/{}", note.account_id, note.id));
        let mut response = note_response(note);
        if let Ok(location) = location {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }))
}

/// An extension of Notely's list: pages. Without either, every id (Notely's shape).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// At most this many ids, 1 to 10,000. A page with ids after it carries a `Link` to the next one.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Only the ids after this one, in the list's order (the last id of the previous page).
    #[param(format = Uuid)]
    after: Option<String>,
}

const MAX_PAGE: u32 = 10_000;

/// The ids of the account's notes, from every store its mode reads, in
/// byte order.
#[utoipa::path(
    get, path = "/accounts/{account}/notes", operation_id = "listNotes", tag = "notes", params(AccountParam, ListParams),
    responses((status = 200, description = "The ids of the account's notes.", body = Vec<uuid::Uuid>,
        headers(("Link" = String, description = "With `limit`, when more ids follow this page: the next page, `rel=\"next\"`."))), Errors)
)]
pub(super) async fn list(State(app): State<Arc<App>>, Path(account): Path<String>, Query(page): Query<ListParams>) -> Result<Response, ApiError> {
    let account = uuid("account", &account)?;
    if page.limit.is_some_and(|limit| limit == 0 || limit > MAX_PAGE) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = page.after.map(|after| uuid("after", &after).map(|id| id.to_string())).transpose()?;
    let ids = note_path(app.notes(), false, move |notes| async move { notes.note_ids(account).await }).await?;
    // The ids as the store and plugin passed them, without a String each.
    Ok(served(StatusCode::OK, ids, |ids| {
        let listed = ids.iter().filter(|id| after.as_deref().is_none_or(|after| *id > after));
        let Some(limit) = page.limit else { return Json(listed.collect::<Vec<&str>>()).into_response() };
        // One id more than the page: a page exactly full but the last one
        // links nowhere, so a client does not ask for an empty page.
        let mut shown: Vec<&str> = listed.take(limit as usize + 1).collect();
        let more = shown.len() > limit as usize;
        shown.truncate(limit as usize);
        let next = more.then(|| shown.last().copied()).flatten().map(|last| {
            format!("</accounts/{account}/notes?limit={limit}&after={last}>; rel=\"next\"")
        });
        let mut response = Json(shown).into_response();
        if let Some(link) = next.and_then(|link| HeaderValue::from_str(&link).ok()) {
            response.headers_mut().insert(LINK, link);
        }
        response
    }))
}

/// The note; with `If-None-Match` holding its ETag (or `*`), 304 and no body.
#[utoipa::path(
    get, path = "/accounts/{account}/notes/{note}", operation_id = "getNote", tag = "notes",
    params(NoteParams, ("If-None-Match" = Option<String>, Header, description = "ETags the client holds (`\"3\"`, a list, or `*`): if the note's is one of them, 304 without the note.")),
    responses(
        (status = 200, description = "The note.", body = NoteBody, headers(("ETag" = String, description = "The note's version, quoted."))),
        (status = 304, description = "The note is at a version `If-None-Match` names: the client's copy is current. No body.",
            headers(("ETag" = String, description = "The note's version, quoted."))),
        Errors,
    )
)]
pub(super) async fn get(
    State(app): State<Arc<App>>,
    Path((account, note)): Path<(String, String)>,
    held: IfNoneMatch,
) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let note = note_path(app.notes(), false, move |notes| async move { notes.note(account, note).await }).await?;
    if held.matches(note.value.version) {
        return Ok(served(StatusCode::NOT_MODIFIED, note, |note| ([(ETAG, etag(note.version))]).into_response()));
    }
    Ok(served(StatusCode::OK, note, note_response))
}

#[utoipa::path(
    put, path = "/accounts/{account}/notes/{note}", operation_id = "updateNote", tag = "notes",
    params(NoteParams, ("If-Match" = Option<String>, Header, description = "Apply only at this version (`\"3\"`); 412 otherwise.")),
    request_body = NoteEdit,
    responses((status = 200, description = "The note.", body = NoteBody, headers(("ETag" = String, description = "The note's version, quoted."))), Errors)
)]
pub(super) async fn update(
    State(app): State<Arc<App>>,
    Path((account, note)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NoteEdit>,
) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let expected = if_match(&headers)?;
    let content = content(body.content)?;
    let updated_at = client_time("updatedAt", body.updated_at.as_deref())?;
    let note = note_path(app.notes(), true, move |notes| async move { notes.update_note(account, note, content, expected, updated_at).await }).await?;
    Ok(served(StatusCode::OK, note, note_response))
}

/// Idempotent, as in Notely: deleting a missing note is 204 too.
#[utoipa::path(
    delete, path = "/accounts/{account}/notes/{note}", operation_id = "deleteNote", tag = "notes", params(NoteParams),
    responses((status = 204, description = "The note is gone from every store."), Errors)
)]
pub(super) async fn delete(State(app): State<Arc<App>>, Path((account, note)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let done = note_path(app.notes(), true, move |notes| async move { notes.delete_note(account, note).await }).await?;
    Ok(served(StatusCode::NO_CONTENT, done, |()| ().into_response()))
}

/// Which stores hold a copy of the note (a duplicate is in both).
#[derive(Serialize, ToSchema)]
#[schema(as = Placement)]
pub(super) struct PlacementBody {
    legacy: bool,
    new: bool,
}

#[utoipa::path(
    get, path = "/accounts/{account}/notes/{note}/placement", operation_id = "notePlacement", tag = "notes", params(NoteParams),
    responses((status = 200, description = "The stores holding a copy.", body = PlacementBody), Errors)
)]
pub(super) async fn placement(
    State(app): State<Arc<App>>,
    Path((account, note)): Path<(String, String)>,
) -> Result<Json<PlacementBody>, ApiError> {
    let (account, note) = (uuid("account", &account)?, uuid("note", &note)?);
    let Placement { legacy, new } = blocking(app.notes(), move |notes| notes.placement(account, note)).await?;
    Ok(Json(PlacementBody { legacy, new }))
}
