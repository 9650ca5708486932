//! Errors as HTTP: a status and a `{"error": "<message>"}` body (plus
//! `plugin` or `currentVersion` where they help).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::app::AppError;
use crate::router::PluginFailure;

#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    extra: Map<String, Value>,
    /// `X-Plugin`, when a plugin's answer is what failed.
    served_by: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), extra: Map::new(), served_by: None }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Notely's text in `error` (its client shows it to its user), and this
    /// host's more precise one beside it.
    pub(super) fn notely(status: StatusCode, notely_text: &str, detail: impl Into<String>) -> Self {
        Self::new(status, notely_text).with("detail", detail.into())
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// A note operation's error names the plugin whose answer it is (`X-Plugin`).
impl From<crate::app::NoteError> for ApiError {
    fn from(e: crate::app::NoteError) -> Self {
        let mut error = ApiError::from(e.error);
        error.served_by = e.served_by.map(|by| super::x_plugin(by.plugin, &by.digest));
        error
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, message),
            AppError::TooLong { what, max_bytes, sent_bytes } => Self::notely(
                StatusCode::BAD_REQUEST,
                &message,
                format!("the {what} is {sent_bytes} bytes of UTF-8, over the limit of {max_bytes} bytes (the limit counts bytes, not characters)"),
            ),
            AppError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, message),
            AppError::Conflict(_) | AppError::Gate(_) | AppError::Stopped(_) => Self::new(StatusCode::CONFLICT, message),
            AppError::VersionMismatch { current } => {
                Self::new(StatusCode::PRECONDITION_FAILED, message).with("currentVersion", current)
            }
            AppError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, message),
            AppError::TooManyRequests(_) => Self::new(StatusCode::TOO_MANY_REQUESTS, message),
            AppError::Plugin(
                PluginFailure::Timeout { plugin, .. } | PluginFailure::OutOfFuel { plugin, .. } | PluginFailure::Busy { plugin, .. },
            ) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, message).with("plugin", plugin)
            }
            AppError::Plugin(PluginFailure::Trapped { plugin, .. } | PluginFailure::OverLimit { plugin, .. }) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, message).with("plugin", plugin)
            }
            AppError::PluginFault { plugin, error_id, .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, message).with("plugin", plugin).with("errorId", error_id)
            }
            AppError::Rejected(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            AppError::Internal(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        let mut body = self.extra;
        body.insert("error".into(), json!(self.message));
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            // Everything answered 503 or 429 is worth retrying: a flip, a
            // lock, a deadline, an account at its maximum of requests.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if let Some(value) = self.served_by.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(super::X_PLUGIN, value);
        }
        response
    }
}

/// The last layer: every error body is JSON with the request's id. An error
/// answered by something other than our handlers (axum's own extractor
/// rejections, the request timeout) gets the same `{"error": …}` body as
/// every other error, with its text kept as the message.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let request_id = response.headers().get(&super::REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (parts, body) = response.into_parts();
    // Small by construction: error bodies, rejection texts, empty timeout bodies.
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut answer = match serde_json::from_slice::<Map<String, Value>>(&bytes) {
        Ok(mut object) if is_json => {
            if let Some(id) = request_id {
                object.insert("requestId".into(), json!(id));
            }
            (status, Json(Value::Object(object))).into_response()
        }
        _ => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
            let error = ApiError::new(status, message);
            match request_id {
                Some(id) => error.with("requestId", id),
                None => error,
            }
            .into_response()
        }
    };
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `AppError`, with the status README.md's API section documents
    /// for it; a new variant must be added here (the match is exhaustive).
    #[test]
    fn every_app_error_maps_to_its_documented_status() {
        let plugin = || "p@1".to_owned();
        let cases = [
            (AppError::Invalid("x".into()), StatusCode::BAD_REQUEST),
            (AppError::TooLong { what: "note content", max_bytes: 1, sent_bytes: 2 }, StatusCode::BAD_REQUEST),
            (AppError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (AppError::Conflict("x".into()), StatusCode::CONFLICT),
            (AppError::Gate("x".into()), StatusCode::CONFLICT),
            (AppError::VersionMismatch { current: 3 }, StatusCode::PRECONDITION_FAILED),
            (AppError::Unavailable("x".into()), StatusCode::SERVICE_UNAVAILABLE),
            (AppError::TooManyRequests("x".into()), StatusCode::TOO_MANY_REQUESTS),
            (AppError::Plugin(PluginFailure::Timeout { plugin: plugin(), deadline: std::time::Duration::ZERO }), StatusCode::SERVICE_UNAVAILABLE),
            (AppError::Plugin(PluginFailure::OutOfFuel { plugin: plugin(), fuel: 1 }), StatusCode::SERVICE_UNAVAILABLE),
            (AppError::Plugin(PluginFailure::Busy { plugin: plugin(), message: "x".into() }), StatusCode::SERVICE_UNAVAILABLE),
            (AppError::Plugin(PluginFailure::Trapped { plugin: plugin(), message: "x".into() }), StatusCode::INTERNAL_SERVER_ERROR),
            (AppError::Plugin(PluginFailure::OverLimit { plugin: plugin(), message: "x".into() }), StatusCode::INTERNAL_SERVER_ERROR),
            (AppError::PluginFault { plugin: plugin(), digest: "0123456789ab".into(), error_id: "e".into() }, StatusCode::INTERNAL_SERVER_ERROR),
            (AppError::Rejected("x".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (AppError::Stopped("x".into()), StatusCode::CONFLICT),
            (AppError::Internal("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, status) in cases {
            let exhaustive = match &error {
                AppError::Invalid(_)
                | AppError::TooLong { .. }
                | AppError::NotFound(_)
                | AppError::Conflict(_)
                | AppError::Gate(_)
                | AppError::Stopped(_)
                | AppError::VersionMismatch { .. }
                | AppError::Unavailable(_)
                | AppError::TooManyRequests(_)
                | AppError::Plugin(_)
                | AppError::PluginFault { .. }
                | AppError::Rejected(_)
                | AppError::Internal(_) => format!("{error:?}"),
            };
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), status, "{exhaustive}");
            let retry = response.headers().get(axum::http::header::RETRY_AFTER).is_some();
            assert_eq!(retry, status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS, "{exhaustive}: Retry-After");
        }
    }
}
