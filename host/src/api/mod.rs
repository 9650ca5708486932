//! The HTTP API (Notely-compatible): the only module that knows HTTP.
//! Every request passes `frame` (its id and log tag, timeout, and on a matched
//! route its metrics, credentials and body); handlers parse and check it,
//! run one `App` operation (a note operation on the request's own task when
//! nothing it waits for can hold the worker, `note_path`; others on a
//! blocking thread, `blocking`) and shape the response.

mod accounts;
mod auth;
mod body;
mod console;
mod error;
mod extract;
mod frame;
mod guard;
mod hosts;
mod jobs;
mod keys;
mod migration;
mod notes;
mod observe;
mod openapi;
mod plugins;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{AdminToken, ClientAddr, DEFAULT_AUTH_FAILURE_BURST};
pub use console::asset_bytes as console_asset_bytes;
use error::ApiError;

use crate::app::{App, NoteService};

#[derive(Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    /// Body limit of `POST /plugins` (a component is larger than a note).
    pub max_plugin_bytes: usize,
    /// A request body must arrive within this (else 408).
    pub body_read_timeout: Duration,
    pub admin_token: Option<AdminToken>,
    /// Wrong credentials one address may send at once before it gets 429s
    /// (then one a second): [`DEFAULT_AUTH_FAILURE_BURST`].
    pub auth_failure_burst: u32,
}

/// The whole API as one service: [`frame::Frame`] around the router.
/// `server` gives each connection its own copy (`Frame::for_client`).
pub type ApiService = frame::Frame<Router>;

pub fn router(app: Arc<App>, config: ApiConfig) -> ApiService {
    crate::metrics::install();
    let keys_allowed = keys::KeysAllowed(config.admin_token.is_some());
    let (protected, protected_paths) = protected_routes(config.max_plugin_bytes, keys_allowed).split_for_parts();
    let (open, open_paths) = open_routes().split_for_parts();
    let spec = openapi::document(protected_paths.merge_from(open_paths));
    let query_names = Arc::new(guard::QueryNames::of(&spec));
    let document = openapi::Rendered(openapi::render(&spec).into());
    let protected_state = Arc::new(frame::ProtectedState {
        query_names: query_names.clone(),
        auth: auth::AuthState { token: config.admin_token.clone(), app: app.clone(), failures: Arc::new(auth::FailureLimiter::new(config.auth_failure_burst)) },
        limits: body::BodyLimits {
            max_body_bytes: config.max_body_bytes,
            max_plugin_bytes: config.max_plugin_bytes,
            read_timeout: config.body_read_timeout,
        },
    });
    let protected = protected.route_layer(frame::RouteGuard::Protected(protected_state));
    // What only some routes read is given to those routes alone: an
    // extension inserted for every request costs every note request.
    let open = open.merge(console::routes()).layer(Extension(document)).route_layer(frame::RouteGuard::Open(query_names));
    let routes = open
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .with_state(app);
    // Around the router once, not with `Router::layer`: that would wrap each
    // route in each layer, and every request would then clone and box a
    // service per layer (a fifth of a GET's CPU, BENCHMARKS.md "Compare").
    frame::Frame::new(routes, config.admin_token.is_none(), DefaultBodyLimit::max(config.max_body_bytes))
}

/// The OpenAPI document of every route `router` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, protected) = protected_routes(0, keys::KeysAllowed(false)).split_for_parts();
    let (_, open) = open_routes().split_for_parts();
    openapi::document(protected.merge_from(open))
}

pub use openapi::{COMMITTED_PATH as OPENAPI_COMMITTED_PATH, render as render_openapi};

/// Routes anyone may call: health and the API's own document.
fn open_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(observe::health)).routes(routes!(openapi::serve))
}

/// Routes behind the credentials check. Each is registered with its spec:
/// `routes!` takes the path and method from the handler's annotation.
fn protected_routes(max_plugin_bytes: usize, keys_allowed: keys::KeysAllowed) -> OpenApiRouter<Arc<App>> {
    let (schemas, paths, plugins) = routes!(plugins::list, plugins::push);
    let plugins = (schemas, paths, plugins.layer(DefaultBodyLimit::max(max_plugin_bytes)));
    let (schemas, paths, keys) = routes!(keys::list, keys::create);
    let keys = (schemas, paths, keys.layer(Extension(keys_allowed)));
    OpenApiRouter::new()
        .routes(routes!(accounts::list, accounts::create))
        .routes(routes!(accounts::get, accounts::put, accounts::patch))
        .routes(routes!(migration::status))
        .routes(routes!(migration::move_notes))
        .routes(routes!(migration::verify))
        .routes(routes!(migration::service))
        .routes(routes!(migration::rollout))
        .routes(routes!(migration::kill_switch))
        .routes(routes!(migration::audit))
        .routes(routes!(jobs::list, jobs::create))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::pause))
        .routes(routes!(jobs::resume))
        .routes(routes!(jobs::cancel))
        .routes(routes!(notes::list, notes::create))
        .routes(routes!(notes::get, notes::update, notes::delete))
        .routes(routes!(notes::placement))
        .routes(plugins)
        .routes(routes!(plugins::activate))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::errors))
        .routes(routes!(plugins::set_instances))
        .routes(routes!(hosts::list))
        .routes(keys)
        .routes(routes!(keys::revoke))
        .routes(routes!(observe::render))
}

/// `X-Request-Id`: echoed when a client sends one, else a new UUID; in every
/// response, every error body (`requestId`) and every log line of the request.
pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// `X-Plugin`: which plugin gave an answer, on every answer a plugin gave
/// (a note, a list, and their errors).
pub const X_PLUGIN: axum::http::HeaderName = axum::http::HeaderName::from_static("x-plugin");

/// `X-Plugin`'s value: `name@version; digest=<12 hex>`, so two builds that
/// both say `name@version` are told apart (a router compiled in has no digest).
fn x_plugin(plugin: String, digest: &str) -> String {
    match digest {
        "native" => plugin,
        digest => format!("{plugin}; digest={}", crate::catalog::short(digest)),
    }
}

/// Runs a note operation: on the request's own task when the note service
/// says it cannot hold the worker (`NoteService::note_path_inline`), else on
/// a blocking thread, driven there to its end, with the request's tag
/// (`request_id`).
async fn note_path<T, E, F>(notes: &Arc<NoteService>, write: bool, op: impl FnOnce(Arc<NoteService>) -> F + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
    F: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    if notes.note_path_inline(write) {
        return op(Arc::clone(notes)).await.map_err(Into::into);
    }
    let notes = Arc::clone(notes);
    let tag = crate::request_id::of_task();
    // Not tokio's `block_on`: it would enter the runtime on this thread, and
    // the blocking `postgres` client's own runtime then panics.
    let drive = move || pollster::block_on(crate::request_id::on_task(tag, op(notes)));
    match tokio::task::spawn_blocking(drive).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("request handler failed: {e}"))),
    }
}

/// Runs a blocking operation of the app or one of its services off the
/// async workers, with the request's tag (so what it logs names the request).
async fn blocking<S: Send + Sync + 'static, T: Send + 'static>(
    app: &Arc<S>,
    op: impl FnOnce(&S) -> Result<T, crate::app::AppError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = Arc::clone(app);
    let tag = crate::request_id::of_task();
    match tokio::task::spawn_blocking(move || crate::request_id::on_thread(tag, || op(&app))).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("request handler failed: {e}"))),
    }
}
