//! `/accounts/{id}/keys`: per-account keys (admin only; see `auth`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{JsonBody, uuid};
use super::{blocking, notes::rfc3339};
use crate::app::App;
use crate::coordination::AccountKey;

#[derive(Deserialize, Default)]
pub struct NewKey {
    label: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBody {
    id: String,
    label: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
    /// Only in the answer to its creation: the key itself is never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn body(k: AccountKey, key: Option<String>) -> KeyBody {
    KeyBody { id: k.id, label: k.label, created_at: rfc3339(k.created_at_ms), revoked_at: k.revoked_at_ms.map(rfc3339), key }
}

/// `POST /accounts/{id}/keys` `{"label"?}`: 201 with the key, shown once.
pub async fn create(State(app): State<Arc<App>>, Path(id): Path<String>, JsonBody(new): JsonBody<NewKey>) -> Result<(StatusCode, Json<KeyBody>), ApiError> {
    let account = uuid("account", &id)?;
    let label = new.label.unwrap_or_default();
    let (key, token) = blocking(&app, move |app| app.create_key(account, &label)).await?;
    Ok((StatusCode::CREATED, Json(body(key, Some(token)))))
}

/// Without an admin token, every route is open on loopback: a key would
/// protect nothing, so none can be made.
pub async fn refuse() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "account keys need an admin token: start the host with --admin-token (or NOTES_ADMIN_TOKEN)")
}

pub async fn list(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Vec<KeyBody>>, ApiError> {
    let account = uuid("account", &id)?;
    let keys = blocking(&app, move |app| app.keys(account)).await?;
    Ok(Json(keys.into_iter().map(|k| body(k, None)).collect()))
}

pub async fn revoke(State(app): State<Arc<App>>, Path((id, key)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    let account = uuid("account", &id)?;
    blocking(&app, move |app| app.revoke_key(account, &key)).await?;
    Ok(StatusCode::NO_CONTENT)
}
