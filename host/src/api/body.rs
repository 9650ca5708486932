//! Request bodies, read before any handler runs: within a size limit (413)
//! and within a time limit (408), so a slow client cannot hold a request
//! open. Both answers are JSON like every other error.
//!
//! A client that sent `Expect: 100-continue` with a `Content-Length` over the
//! limit gets its 413 before a byte is read (hyper sends `100 Continue` only
//! once the body is polled). Any other client's body is read up to the limit
//! first, as before: answering while it is still sending would make it see a
//! broken pipe instead of the 413.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub max_body_bytes: usize,
    /// `POST /plugins` carries a component, larger than any note.
    pub max_plugin_bytes: usize,
    /// The whole body must arrive within this.
    pub read_timeout: Duration,
}

/// `POST /plugins` carries a component; every other route takes JSON.
fn is_plugin_upload(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path() == "/plugins"
}

impl BodyLimits {
    fn limit_for(&self, req: &Request) -> usize {
        if is_plugin_upload(req) { self.max_plugin_bytes } else { self.max_body_bytes }
    }
}

/// The request with its body read, or the refusal.
pub(super) async fn read_body(limits: &BodyLimits, req: Request) -> Result<Request, Response> {
    // Nothing to read (a GET, most often): no timer, no collecting.
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return Ok(req);
    }
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes
        && !is_plugin_upload(&req)
        && let Some(refused) = super::guard::refuse_non_json(&req)
    {
        return Err(refused);
    }
    let limit = limits.limit_for(&req);
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes"));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let waits_for_continue = req.headers().get(EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if waits_for_continue && declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large().into_response());
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(limits.read_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large().into_response()),
        Ok(Err(e)) => return Err(ApiError::bad_request(format!("cannot read the request body: {e}")).into_response()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {} ms", limits.read_timeout.as_millis()),
            )
            .into_response());
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
