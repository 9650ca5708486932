//! `/accounts` routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{JsonBody, client_id, uuid};
use super::{blocking, notes::rfc3339};
use crate::app::AccountChange;
use crate::coordination::Account;
use crate::app::App;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountBody {
    id: String,
    name: String,
    is_migrating: bool,
    /// Notely's `shard`, echoed when one was given; it does not decide placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Account> for AccountBody {
    fn from(a: Account) -> Self {
        AccountBody {
            id: a.id.to_string(),
            name: a.name,
            is_migrating: a.is_migrating,
            shard: a.shard,
            created_at: rfc3339(a.created_at_ms),
            updated_at: rfc3339(a.updated_at_ms),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    name: Option<String>,
    #[serde(default)]
    is_migrating: bool,
    id: Option<String>,
    shard: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountPatch {
    name: Option<String>,
    is_migrating: Option<bool>,
    shard: Option<String>,
}

pub async fn create(State(app): State<Arc<App>>, JsonBody(body): JsonBody<NewAccount>) -> Result<(StatusCode, Json<AccountBody>), ApiError> {
    let name = body.name.ok_or_else(|| ApiError::bad_request("account name is required"))?;
    let id = client_id("account", body.id.as_deref())?;
    let account = blocking(&app, move |app| app.create_account(id, &name, body.is_migrating, body.shard)).await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

pub async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<AccountBody>>, ApiError> {
    let accounts = blocking(&app, |app| app.accounts()).await?;
    Ok(Json(accounts.into_iter().map(Into::into).collect()))
}

pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<AccountBody>, ApiError> {
    let id = uuid("account", &id)?;
    Ok(Json(blocking(&app, move |app| app.account(id)).await?.into()))
}

/// PUT: `name` is required; `isMigrating` is optional so Notely clients,
/// which do not know the flag, keep working (it is left unchanged).
pub async fn put(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AccountPatch>,
) -> Result<Json<AccountBody>, ApiError> {
    if body.name.is_none() {
        return Err(ApiError::bad_request("account name is required (use PATCH to change only isMigrating)"));
    }
    update(app, id, body).await
}

/// PATCH: any subset of `name`, `shard` and `isMigrating`.
pub async fn patch(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AccountPatch>,
) -> Result<Json<AccountBody>, ApiError> {
    if body.name.is_none() && body.is_migrating.is_none() && body.shard.is_none() {
        return Err(ApiError::bad_request("nothing to change: give name, shard and/or isMigrating"));
    }
    update(app, id, body).await
}

async fn update(app: Arc<App>, id: String, body: AccountPatch) -> Result<Json<AccountBody>, ApiError> {
    let id = uuid("account", &id)?;
    let change = AccountChange { name: body.name, is_migrating: body.is_migrating, shard: body.shard };
    Ok(Json(blocking(&app, move |app| app.update_account(id, change)).await?.into()))
}
