//! Request parsing with JSON errors: bodies, ids in paths, `If-Match`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::http::header::IF_MATCH;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// A JSON body, declared JSON or not declared at all (Notely clients do not
/// always send a Content-Type; any other type was refused with 415 before
/// the body was read, `guard::refuse_non_json`); bad JSON is 400, a body over
/// the limit 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::notely(StatusCode::BAD_REQUEST, "Invalid JSON", format!("invalid JSON body: {e}")))
    }
}

/// Parses an id from the path; ids are UUIDs, always handled in their
/// canonical (lowercase, hyphenated) form. The error is Notely's text
/// ("Invalid account ID", "Invalid note ID").
pub fn uuid(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        let notely = match what {
            "account" => "Invalid account ID",
            "note" => "Invalid note ID",
            _ => "Invalid ID",
        };
        ApiError::notely(StatusCode::BAD_REQUEST, notely, format!("{what} id {raw:?} is not a UUID"))
    })
}

/// An id a client may supply in a body. Notely's client always sends `"id"`,
/// as the nil UUID when its caller left it unset: that means "generate one".
pub fn client_id(what: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    Ok(raw.map(|raw| uuid(what, raw)).transpose()?.filter(|id| !id.is_nil()))
}

/// A time a client may supply (RFC 3339), in Unix ms. Notely's client sends
/// Go's zero time (`0001-01-01T00:00:00Z`) when its caller left it unset:
/// that, and any time before 1970, means "none".
pub fn client_time(what: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let time = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::bad_request(format!("{what} {raw:?} is not an RFC 3339 time: {e}")))?;
    let ms = time.unix_timestamp_nanos() / 1_000_000;
    Ok((ms > 0).then(|| i64::try_from(ms).unwrap_or(i64::MAX)))
}

/// `If-Match: "<version>"` (quotes optional; `*` matches any version).
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| ApiError::bad_request("If-Match is not text"))?.trim();
    if text == "*" {
        return Ok(None);
    }
    let version = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    version
        .parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("If-Match must be a note version such as \"3\", got {text:?}")))
}
