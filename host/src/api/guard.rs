//! What a web page must not be able to do to a host, and what a request
//! must name correctly before any handler sees it.
//!
//! - **Protected mode** (no admin token: loopback only, no credentials) is
//!   reachable by every page the operator's browser opens. Two checks close
//!   it, as Redis's protected mode, Jupyter and Vite's dev server do: a
//!   `Host` that is not a loopback name is refused (a DNS-rebinding page
//!   names its own domain), and a write whose `Origin` is not the host's own
//!   is refused (a page's `fetch(…, {mode: "no-cors"})` sends its origin).
//!   With an admin token neither is needed: a page cannot attach the token.
//! - **JSON routes take JSON.** A body declared `text/plain` or as a form is
//!   the kind a page can send cross-origin without a preflight: 415. A body
//!   without a `Content-Type` stays accepted, as Notely's server accepts it.
//! - **Query parameters are the documented ones.** A misspelled one
//!   (`?dryrun=true`) is a 400 that names it, never silently ignored: the
//!   allowed names come from the OpenAPI document, so they cannot drift from
//!   what the handlers read.
//! - **Request ids are short and plain**, so one can be echoed and logged:
//!   a client's `X-Request-Id` that is not is replaced by a new one.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::REQUEST_ID;
use super::error::ApiError;

/// Refuses, in protected mode only, a non-loopback `Host` (403) and a
/// write from another origin (403): the answer, or `None` to go on.
pub(super) fn protected_mode_refusal(protected: bool, req: &Request) -> Option<Response> {
    if !protected {
        return None;
    }
    let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !is_loopback_host(host)
    {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this host has no admin token, so it answers only requests addressed to a loopback name (localhost, 127.0.0.1, [::1]), \
                     not {host:?}; give it --admin-token to serve other names"
                ),
            )
            .into_response(),
        );
    }
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && let Some(origin) = req.headers().get(ORIGIN) {
        let own = host.map(|h| format!("http://{h}"));
        if origin.to_str().ok() != own.as_deref() {
            return Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a write from the web page at {} is refused: this host has no admin token, so only its own pages (/ui) may write to it",
                        origin.to_str().unwrap_or("(unreadable origin)")
                    ),
                )
                .into_response(),
            );
        }
    }
    None
}

/// `localhost` (or a name under it), an IPv4 loopback address or `[::1]`,
/// with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if rest.is_empty() || valid_port(rest) => return addr.parse::<std::net::Ipv6Addr>().is_ok_and(|a| a.is_loopback()),
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

fn valid_port(rest: &str) -> bool {
    rest.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The media type of a `Content-Type`, lowercased, without parameters.
fn media_type(value: &HeaderValue) -> String {
    value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// A body that claims another type than JSON on a JSON route: 415. `None`
/// when the request may go on.
pub(super) fn refuse_non_json(req: &Request) -> Option<Response> {
    let declared = req.headers().get(CONTENT_TYPE)?;
    let media = media_type(declared);
    let json = media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"));
    (!json).then(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "this route takes JSON: send Content-Type: application/json (curl: --json '…'), or no Content-Type; got {:?}",
                declared.to_str().unwrap_or("(unreadable)")
            ),
        )
        .into_response()
    })
}

/// The query parameters each route (template, method) documents.
#[derive(Default)]
pub(super) struct QueryNames(HashMap<(String, Method), BTreeSet<String>>);

impl QueryNames {
    pub(super) fn of(document: &utoipa::openapi::OpenApi) -> Self {
        use utoipa::openapi::path::ParameterIn;
        let mut names = HashMap::new();
        for (path, item) in &document.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let query: BTreeSet<String> = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        utoipa::openapi::RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => Some(p.name.clone()),
                        _ => None,
                    })
                    .collect();
                names.insert((path.clone(), method), query);
            }
        }
        QueryNames(names)
    }
}

/// A query parameter the route does not document: 400 naming it, or `None`
/// to go on.
pub(super) fn unknown_query_refusal(names: &QueryNames, req: &Request) -> Option<Response> {
    if let (Some(query), Some(route)) = (req.uri().query(), req.extensions().get::<MatchedPath>()) {
        let method = if req.method() == Method::HEAD { Method::GET } else { req.method().clone() };
        if let Some(allowed) = names.0.get(&(route.as_str().to_owned(), method)) {
            for name in query_names(query) {
                if !allowed.contains(&name) {
                    let known = if allowed.is_empty() {
                        "it takes no query parameters".to_owned()
                    } else {
                        format!("it takes {}", allowed.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
                    };
                    return Some(
                        ApiError::bad_request(format!("unknown query parameter {name:?} on {} {}: {known}", req.method(), route.as_str()))
                            .into_response(),
                    );
                }
            }
        }
    }
    None
}

/// The names of `a=1&b&c=2`, decoded as axum's `Query` decodes them.
fn query_names(query: &str) -> Vec<String> {
    // Undecodable input is the handler's to refuse; its names are unknown.
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default().into_iter().map(|(name, _)| name).collect()
}

/// Longest `X-Request-Id` kept from a client.
const MAX_REQUEST_ID: usize = 128;

/// The request's id, set on it: a client's `X-Request-Id` is kept if it is
/// 1–128 letters, digits and `-_.:`; otherwise it is dropped, and the
/// request gets a new UUID (a 64 KB
/// id echoed and logged, or one with spaces and `=` that forges fields in a
/// text log line, is no id).
pub(super) fn plain_request_id(req: &mut Request) -> HeaderValue {
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    match req.headers().get(&REQUEST_ID).filter(|v| plain(v)) {
        Some(id) => id.clone(),
        None => {
            // Written straight into the header's bytes: no `String`, no formatter.
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = HeaderValue::from_bytes(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text).as_bytes())
                .expect("a UUID is a header value");
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_are_told_from_any_other() {
        for ok in ["localhost", "localhost:8080", "LOCALHOST.", "ui.localhost:1", "127.0.0.1", "127.0.0.1:8090", "127.9.9.9:1", "[::1]", "[::1]:8080"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for no in ["rebind.evil.example:8090", "evil.example", "10.0.0.1:80", "[::2]:80", "localhost.evil.example", "127.0.0.1:80:80", "127.0.0.1:", "0.0.0.0:8080", "[::1]x"] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn query_names_are_percent_decoded() {
        assert_eq!(query_names("dry%52un=true&&limit=5&q"), ["dryRun", "limit", "q"]);
    }
}
