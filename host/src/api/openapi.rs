//! The API as a published contract: the OpenAPI 3.1 document, generated
//! from the handlers' own `#[utoipa::path]` annotations as `router` registers
//! them (so a route cannot exist without its spec), served at
//! `GET /openapi.json` and committed as `docs/openapi.json`.

use std::collections::BTreeMap;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{self, OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The committed copy; a test fails when it differs from the generated one
/// (`notes-host openapi > docs/openapi.json` rewrites it).
pub const COMMITTED_PATH: &str = "docs/openapi.json";

/// Every error body: the message, the request's id, and the fields that
/// help with some errors.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Error)]
pub(super) struct ErrorBody {
    /// What went wrong, in words a person can act on.
    error: String,
    /// The request's `X-Request-Id`, also in the host's log lines and in
    /// the record of a plugin's failure.
    request_id: Option<String>,
    /// On Notely's routes, where `error` is Notely's text: this host's more precise one.
    detail: Option<String>,
    /// The plugin (`name@version`) that failed, when one did.
    plugin: Option<String>,
    /// On 412: the note's current version.
    current_version: Option<u64>,
}

/// The error answers every route may give: 4XX for a request to change
/// (bad input or an unknown query parameter 400, no credentials 401, another
/// account's key or, without an admin token, another name or origin 403, not
/// found 404, conflict 409, body too slow 408 or too large 413, stale
/// `If-Match` 412, a body that is not JSON 415, plugin refusal 422, throttled
/// 429) and 5XX for a retry later (a
/// plugin's deadline or a flip in progress 503, with `Retry-After`).
pub(super) struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", openapi::ContentBuilder::new().schema(Some(openapi::Ref::from_schema_name(ErrorBody::name()))).build())
                .build()
                .into()
        };
        BTreeMap::from([
            ("4XX".to_owned(), error("The request cannot be served as sent; the body says why.")),
            ("5XX".to_owned(), error("The host or a plugin failed; 503 carries Retry-After.")),
        ])
    }
}

/// `{account}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the spec only; handlers take `Path`.
pub(super) struct AccountParam {
    /// The account's id.
    account: uuid::Uuid,
}

/// `{account}` on an operator route, where a short id will do.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct AccountPrefixParam {
    /// The account's id, or a unique prefix of at least 8 characters of it,
    /// as the console and the CLI show it (400 if shorter or ambiguous, 404
    /// if no account has it).
    #[param(pattern = "^[0-9a-fA-F-]{8,36}$")]
    account: String,
}

/// `{account}` and `{note}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct NoteParams {
    /// The account's id.
    account: uuid::Uuid,
    /// The note's id.
    note: uuid::Uuid,
}

/// `{job}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct JobParam {
    /// The job's id, or a unique prefix of at least 8 characters of it, as
    /// the console shows it (400 if shorter or ambiguous).
    job: String,
}

/// `{account}` and `{key}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct KeyParams {
    /// The account's id.
    account: uuid::Uuid,
    /// The key's id (not the key).
    key: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "notes host",
        description = "A WebAssembly-pluggable notes host, compatible with the Notely REST API. \
            Every note request is routed by the account's isMigrating flag through the active plugin.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Credentials),
    security(("bearer" = [])),
    tags(
        (name = "accounts", description = "Accounts and their isMigrating flag (Notely's routes)."),
        (name = "notes", description = "Notes, routed through the active plugin (Notely's routes)."),
        (name = "migration", description = "Migration state, moves, verify, rollout, kill switch and audit log."),
        (name = "jobs", description = "Durable backfill, bulk rollback and verify jobs."),
        (name = "keys", description = "Per-account keys."),
        (name = "plugins", description = "The plugin registry: upload, activate, roll back."),
        (name = "operations", description = "Health, hosts, metrics and this document."),
    ),
)]
struct ApiDoc;

/// `Authorization: Bearer <admin token or account key>`; the scheme name is
/// matched case-insensitively.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (every route) or an account key `nk_…` (that account's notes). \
                         Without a token configured, a host on loopback serves every route without one.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document for `paths`, with the host's version.
pub(super) fn document(paths: Document) -> Document {
    let mut doc = ApiDoc::openapi().merge_from(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as committed: pretty JSON with a final newline.
pub fn render(doc: &Document) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("an OpenAPI document serializes");
    text.push('\n');
    text
}

/// `GET /openapi.json`: this document, without credentials.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "operations", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = serde_json::Value))
)]
pub(super) async fn serve(Extension(Rendered(text)): Extension<Rendered>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], text)
}

/// The document, rendered once when the router is built.
#[derive(Clone)]
pub(super) struct Rendered(pub axum::body::Bytes);
