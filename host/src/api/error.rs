//! Errors as HTTP: a status and a `{"error": "<message>"}` body (plus
//! `plugin` or `currentVersion` where they help).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::app::AppError;
use crate::plugins::PluginFailure;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), extra: Map::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, message),
            AppError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, message),
            AppError::Conflict(_) | AppError::Gate(_) => Self::new(StatusCode::CONFLICT, message),
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
            AppError::Plugin(PluginFailure::Trapped { plugin, .. }) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, message).with("plugin", plugin)
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            // Everything answered 503 or 429 is worth retrying: a flip, a
            // lock, a deadline, an account at its maximum of requests.
            return (self.status, [(axum::http::header::RETRY_AFTER, "1")], Json(Value::Object(body))).into_response();
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}
