//! The HTTP API (Notely-compatible): the only module that knows HTTP.
//! Handlers parse and check the request, run one `App` operation on a
//! blocking thread (SQLite and plugin calls block) and shape the response.

mod accounts;
mod auth;
mod body;
mod error;
mod extract;
mod hosts;
mod jobs;
mod keys;
mod migration;
mod notes;
mod observe;
mod plugins;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::{AdminToken, ClientAddr};
use error::ApiError;

use crate::app::App;

/// A request still running after this is answered 503. Plugin calls stop at
/// their own, shorter deadline; this catches everything else (lock waits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    /// Body limit of `POST /plugins` (a component is larger than a note).
    pub max_plugin_bytes: usize,
    /// A request body must arrive within this (else 408).
    pub body_read_timeout: Duration,
    pub admin_token: Option<AdminToken>,
}

pub fn router(app: Arc<App>, config: ApiConfig) -> Router {
    crate::metrics::install();
    let protected = Router::new()
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route("/accounts/{account}", get(accounts::get).put(accounts::put).patch(accounts::patch))
        .route("/accounts/{account}/migration", get(migration::status))
        .route("/accounts/{account}/migration/move", post(migration::move_notes))
        .route("/accounts/{account}/migration/verify", post(migration::verify))
        .route("/migration", get(migration::service))
        .route("/migration/rollout", post(migration::rollout))
        .route("/migration/kill-switch", post(migration::kill_switch))
        .route("/audit", get(migration::audit))
        .route("/jobs", get(jobs::list).post(jobs::create))
        .route("/jobs/{job}", get(jobs::get))
        .route("/jobs/{job}/pause", post(jobs::pause))
        .route("/jobs/{job}/resume", post(jobs::resume))
        .route("/jobs/{job}/cancel", post(jobs::cancel))
        .route("/accounts/{account}/notes", get(notes::list).post(notes::create))
        .route("/accounts/{account}/notes/{note}", get(notes::get).put(notes::update).delete(notes::delete))
        .route("/accounts/{account}/notes/{note}/placement", get(notes::placement))
        .route(
            "/plugins",
            get(plugins::list).post(plugins::push).layer(DefaultBodyLimit::max(config.max_plugin_bytes)),
        )
        .route("/plugins/active", axum::routing::put(plugins::activate))
        .route("/plugins/rollback", axum::routing::post(plugins::rollback))
        .route("/hosts", get(hosts::list))
        .route(
            "/accounts/{account}/keys",
            if config.admin_token.is_some() { get(keys::list).post(keys::create) } else { get(keys::list).post(keys::refuse) },
        )
        .route("/accounts/{account}/keys/{key}", axum::routing::delete(keys::revoke))
        .route("/metrics", get(observe::render))
        // Layers run outside in: the token is checked before a body is read.
        .route_layer(axum::middleware::from_fn_with_state(
            body::BodyLimits {
                max_body_bytes: config.max_body_bytes,
                max_plugin_bytes: config.max_plugin_bytes,
                read_timeout: config.body_read_timeout,
            },
            body::read_body,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            auth::AuthState { token: config.admin_token.clone(), app: app.clone(), failures: Arc::default() },
            auth::authorize,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|State(app): State<Arc<App>>| async move {
                axum::Json(serde_json::json!({ "status": "ok", "timestamp": notes::rfc3339(app.now_ms()) }))
            }),
        )
        .merge(protected)
        .route_layer(axum::middleware::from_fn(observe::track))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        // Inside the request id's layers: the id is on the response when an
        // error body is shaped, and on the span every log line of the request carries.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(app)
}

/// `X-Request-Id`: echoed when a client sends one, else a new UUID; in every
/// response, every error body (`requestId`) and every log line of the request.
pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// The span of one request: its id, method and path (no query, no body).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
}

/// Runs a blocking `App` operation off the async workers, inside the
/// request's span (so what it logs names the request).
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    op: impl FnOnce(&App) -> Result<T, crate::app::AppError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = Arc::clone(app);
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(|| op(&app))).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("request handler failed: {e}"))),
    }
}
