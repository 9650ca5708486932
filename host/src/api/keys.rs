//! `/accounts/{id}/keys`: per-account keys (admin only; see `auth`).

use std::sync::Arc;

use axum::{Extension, Json};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::{AccountParam, Errors, KeyParams};
use super::extract::{JsonBody, uuid};
use super::{blocking, notes::rfc3339};
use crate::app::App;
use crate::coordination::AccountKey;

#[derive(Deserialize, Default, ToSchema)]
pub(super) struct NewKey {
    /// A name for people (who holds the key).
    label: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AccountKey)]
pub(super) struct KeyBody {
    id: String,
    label: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    revoked_at: Option<String>,
    /// Only in the answer to its creation: the key itself is never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<String>,
}

/// Whether keys can be made: only with an admin token (without one, every
/// route is open on loopback and a key would protect nothing).
#[derive(Clone, Copy)]
pub(super) struct KeysAllowed(pub bool);

fn body(k: AccountKey, key: Option<String>) -> KeyBody {
    KeyBody { id: k.id, label: k.label, created_at: rfc3339(k.created_at_ms), revoked_at: k.revoked_at_ms.map(rfc3339), key }
}

/// `POST /accounts/{id}/keys` `{"label"?}`: 201 with the key, shown once.
#[utoipa::path(
    post, path = "/accounts/{account}/keys", operation_id = "createKey", tag = "keys", params(AccountParam),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key, shown this once.", body = KeyBody,
            headers(("Location" = String, description = "The key's path, `/accounts/{account}/keys/{key}` (DELETE revokes it).")), links(
            ("RevokeKey" = (operation_id = "revokeKey", parameters(("account" = "$request.path.account"), ("key" = "$response.body#/id")))),
        )),
        Errors,
    )
)]
pub(super) async fn create(
    State(app): State<Arc<App>>,
    Extension(KeysAllowed(allowed)): Extension<KeysAllowed>,
    Path(id): Path<String>,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    if !allowed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "account keys need an admin token: start the host with --admin-token (or NOTES_ADMIN_TOKEN)",
        ));
    }
    let account = uuid("account", &id)?;
    let label = new.label.unwrap_or_default();
    let (key, token) = blocking(&app, move |app| app.create_key(account, &label)).await?;
    Ok((StatusCode::CREATED, [(LOCATION, format!("/accounts/{account}/keys/{}", key.id))], Json(body(key, Some(token)))))
}

/// The account's keys, revoked ones included, without secrets.
#[utoipa::path(
    get, path = "/accounts/{account}/keys", operation_id = "listKeys", tag = "keys", params(AccountParam),
    responses((status = 200, description = "The account's keys.", body = Vec<KeyBody>), Errors)
)]
pub(super) async fn list(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Vec<KeyBody>>, ApiError> {
    let account = uuid("account", &id)?;
    let keys = blocking(&app, move |app| app.keys(account)).await?;
    Ok(Json(keys.into_iter().map(|k| body(k, None)).collect()))
}

#[utoipa::path(
    delete, path = "/accounts/{account}/keys/{key}", operation_id = "revokeKey", tag = "keys", params(KeyParams),
    responses((status = 204, description = "The key no longer authenticates."), Errors)
)]
pub(super) async fn revoke(State(app): State<Arc<App>>, Path((id, key)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    let account = uuid("account", &id)?;
    blocking(&app, move |app| app.revoke_key(account, &key)).await?;
    Ok(StatusCode::NO_CONTENT)
}
