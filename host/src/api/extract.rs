//! Request parsing with JSON errors: bodies, query strings, ids in paths,
//! `If-Match` and `If-None-Match`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::http::header::{IF_MATCH, IF_NONE_MATCH};
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa::openapi::path::ParameterIn;
use uuid::Uuid;

use super::error::ApiError;

/// A JSON body, declared JSON or not declared at all (Notely clients do not
/// always send a Content-Type; any other type was refused with 415 before
/// the body was read, `guard::refuse_non_json`); bad JSON is 400, a body over
/// the limit 413.
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::notely(StatusCode::BAD_REQUEST, "Invalid JSON", format!("invalid JSON body: {e}")))
    }
}

/// The query string, read as axum's `Query` reads it; every route's query
/// goes through this one extractor. A value that does not parse is a 400 in
/// this API's words, naming the parameter, what it takes (from the
/// parameter's documented schema) and what was sent, instead of axum's
/// plain-text rejection ("Failed to deserialize query string: …").
pub(super) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Query).map_err(|e| query_error::<T>(query, &e))
    }
}

/// Why a query string did not parse, naming the parameter.
fn query_error<T: IntoParams>(query: &str, error: &serde_path_to_error::Error<serde_urlencoded::de::Error>) -> ApiError {
    let sent: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
    let times = |name: &str| sent.iter().filter(|(n, _)| n == name).count();
    // A parameter given twice fails as a duplicate field, whatever its value.
    if let Some((twice, _)) = sent.iter().find(|(name, _)| times(name) > 1) {
        return ApiError::bad_request(format!("query parameter {twice:?} is given {} times; give it once", times(twice)));
    }
    let name = match error.path().iter().next() {
        Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
        _ => return ApiError::bad_request(format!("the query string cannot be read: {}", error.inner())),
    };
    let value = sent.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str());
    let schema = T::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .find(|p| p.name == name)
        .and_then(|p| p.schema)
        .and_then(|schema| serde_json::to_value(schema).ok());
    match schema.as_ref().and_then(takes) {
        Some(takes) => ApiError::bad_request(format!("query parameter {name:?} must be {takes}, got {value:?}")),
        None => ApiError::bad_request(format!("query parameter {name:?} cannot be {value:?}: {}", error.inner())),
    }
}

/// What a documented parameter takes, in words: "a whole number between 1
/// and 1000", "`true` or `false`"; `None` for a type that has no words here.
fn takes(schema: &Value) -> Option<String> {
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null")?,
        _ => return None,
    };
    let (min, max) = (&schema["minimum"], &schema["maximum"]);
    let range = match (min.is_number(), max.is_number()) {
        (true, true) => format!(" between {min} and {max}"),
        (true, false) => format!(" of at least {min}"),
        (false, true) => format!(" of at most {max}"),
        (false, false) => String::new(),
    };
    match kind {
        "integer" => Some(format!("a whole number{range}")),
        "number" => Some(format!("a number{range}")),
        "boolean" => Some("`true` or `false`".to_owned()),
        _ => None,
    }
}

/// Parses an id from the path; ids are UUIDs, always handled in their
/// canonical (lowercase, hyphenated) form. The error is Notely's text
/// ("Invalid account ID", "Invalid note ID").
pub(super) fn uuid(what: &str, raw: &str) -> Result<Uuid, ApiError> {
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
pub(super) fn client_id(what: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    Ok(raw.map(|raw| uuid(what, raw)).transpose()?.filter(|id| !id.is_nil()))
}

/// A time a client may supply (RFC 3339), in Unix ms. Notely's client sends
/// Go's zero time (`0001-01-01T00:00:00Z`) when its caller left it unset:
/// that, and any time before 1970, means "none".
pub(super) fn client_time(what: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let time = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::bad_request(format!("{what} {raw:?} is not an RFC 3339 time: {e}")))?;
    let ms = time.unix_timestamp_nanos() / 1_000_000;
    Ok((ms > 0).then(|| i64::try_from(ms).unwrap_or(i64::MAX)))
}

/// `If-Match: "<version>"` (quotes optional; `*` matches any version).
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
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

/// `If-None-Match`, taken alone: the `HeaderMap` extractor would copy every
/// header of every GET of a note to read this one.
pub(super) struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(parts.headers.get_all(IF_NONE_MATCH).iter().cloned().collect()))
    }
}

impl IfNoneMatch {
    /// Whether it matches a note at `version` (the note's ETag is
    /// `"<version>"`): `*` matches any note, and a list matches when one of
    /// its tags does, compared weakly (`W/"3"` matches `"3"`), as a GET
    /// compares. A tag that is not a version (another server's) matches nothing.
    pub(super) fn matches(&self, version: u64) -> bool {
        self.0.iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"').parse::<u64>().is_ok_and(|v| v == version)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_star_lists_and_weak_tags() {
        let held = |value: &str| IfNoneMatch(vec![value.parse().unwrap()]);
        for matching in ["\"3\"", "*", "\"1\", \"3\"", "W/\"3\"", "\"abc\",W/\"3\""] {
            assert!(held(matching).matches(3), "{matching}");
        }
        for other in ["\"2\"", "\"1\", \"2\"", "\"33\"", "\"abc\"", ""] {
            assert!(!held(other).matches(3), "{other}");
        }
        assert!(!IfNoneMatch(Vec::new()).matches(3), "no header matches nothing");
        let two = IfNoneMatch(vec!["\"1\"".parse().unwrap(), "\"3\"".parse().unwrap()]);
        assert!(two.matches(3), "a tag in a second If-None-Match line counts");
    }

    #[test]
    fn a_query_parameter_is_described_by_its_documented_type() {
        let takes = |schema: Value| takes(&schema);
        assert_eq!(takes(serde_json::json!({"type": "integer", "minimum": 1, "maximum": 1000})).as_deref(), Some("a whole number between 1 and 1000"));
        assert_eq!(takes(serde_json::json!({"type": ["integer", "null"], "minimum": 0})).as_deref(), Some("a whole number of at least 0"));
        assert_eq!(takes(serde_json::json!({"type": "boolean"})).as_deref(), Some("`true` or `false`"));
        assert_eq!(takes(serde_json::json!({"type": "string"})), None);
    }
}
