//! `/accounts` routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::openapi::{AccountParam, AccountPrefixParam, Errors};
use super::extract::{JsonBody, Query, client_id, uuid};
use super::{blocking, notes::rfc3339};
use crate::app::AccountChange;
use crate::coordination::Account;
use crate::app::App;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Account)]
pub(super) struct AccountBody {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    /// The flag that routes every note request: on, migration mode; off, rollback mode.
    is_migrating: bool,
    /// Notely's `shard`, echoed when one was given; it does not decide placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    shard: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewAccount {
    /// At most 100 bytes (configurable), not blank, no control characters.
    #[schema(value_type = String, required = true, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    name: Option<String>,
    #[serde(default)]
    is_migrating: bool,
    /// Absent or the nil UUID (Notely's client sends it when unset): the host makes one.
    #[schema(format = Uuid)]
    id: Option<String>,
    /// Stored and echoed (Notely's field); it does not decide placement.
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    shard: Option<String>,
}

/// PATCH: any subset of the fields.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountPatch {
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    name: Option<String>,
    /// A change goes through the flip barrier: every host acknowledges it
    /// before the answer, and no request runs under the old value after.
    /// Notely's client always sends it, so a rename through it sets the flag too.
    is_migrating: Option<bool>,
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    shard: Option<String>,
}

/// PUT: `name` is required, the rest optional (left unchanged when absent).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountReplace {
    #[schema(value_type = String, required = true, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    name: Option<String>,
    is_migrating: Option<bool>,
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    shard: Option<String>,
}

#[utoipa::path(
    post, path = "/accounts", operation_id = "createAccount", tag = "accounts",
    request_body = NewAccount,
    responses(
        (status = 201, description = "The new account.", body = AccountBody,
            headers(("Location" = String, description = "The new account's path, `/accounts/{account}`.")), links(
            ("GetAccount" = (operation_id = "getAccount", parameters(("account" = "$response.body#/id")))),
            ("ReplaceAccount" = (operation_id = "replaceAccount", parameters(("account" = "$response.body#/id")))),
            ("UpdateAccount" = (operation_id = "updateAccount", parameters(("account" = "$response.body#/id")))),
            ("AccountMigration" = (operation_id = "accountMigration", parameters(("account" = "$response.body#/id")))),
            ("MoveNotes" = (operation_id = "moveNotes", parameters(("account" = "$response.body#/id")))),
            ("VerifyAccount" = (operation_id = "verifyAccount", parameters(("account" = "$response.body#/id")))),
            ("CreateKey" = (operation_id = "createKey", parameters(("account" = "$response.body#/id")))),
            ("ListKeys" = (operation_id = "listKeys", parameters(("account" = "$response.body#/id")))),
            ("CreateNote" = (operation_id = "createNote", parameters(("account" = "$response.body#/id")))),
            ("ListNotes" = (operation_id = "listNotes", parameters(("account" = "$response.body#/id")))),
        )),
        Errors,
    )
)]
pub(super) async fn create(State(app): State<Arc<App>>, JsonBody(body): JsonBody<NewAccount>) -> Result<impl IntoResponse, ApiError> {
    let name = body.name.ok_or_else(|| ApiError::bad_request("account name is required"))?;
    let id = client_id("account", body.id.as_deref())?;
    let account = blocking(&app, move |app| app.create_account(id, &name, body.is_migrating, body.shard)).await?;
    Ok((StatusCode::CREATED, [(LOCATION, format!("/accounts/{}", account.id))], Json(AccountBody::from(account))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only accounts whose name contains this (any case), or, from 8
    /// characters on, whose id starts with it.
    q: Option<String>,
    /// Accounts to skip, after the search (0 by default).
    offset: Option<usize>,
    /// Accounts in the answer, 1 to 1000; absent: all of them.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

const MAX_PAGE: usize = 1000;
/// A shorter search is a name only: ids are hex, so `q=a` would otherwise
/// match one account in sixteen by its id.
const MIN_ID_PREFIX: usize = 8;

/// `X-Total-Count`: how many accounts the search matched, before `offset` and `limit`.
const TOTAL_COUNT: &str = "x-total-count";

#[utoipa::path(
    get, path = "/accounts", operation_id = "listAccounts", tag = "accounts", params(ListParams),
    responses((status = 200, description = "The accounts, oldest first: every one, or a page of a search.", body = Vec<AccountBody>,
        headers(("x-total-count" = u64, description = "Accounts the search matched, before `offset` and `limit`."))), Errors)
)]
pub(super) async fn list(State(app): State<Arc<App>>, Query(params): Query<ListParams>) -> Result<impl IntoResponse, ApiError> {
    if params.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let needle = params.q.map(|q| q.trim().to_lowercase()).filter(|q| !q.is_empty());
    let accounts = blocking(&app, |app| app.accounts()).await?;
    let matching: Vec<Account> = accounts
        .into_iter()
        .filter(|a| needle.as_ref().is_none_or(|q| a.name.to_lowercase().contains(q) || (q.len() >= MIN_ID_PREFIX && a.id.to_string().starts_with(q))))
        .collect();
    let total = matching.len();
    let page: Vec<AccountBody> =
        matching.into_iter().skip(params.offset.unwrap_or(0)).take(params.limit.unwrap_or(usize::MAX)).map(Into::into).collect();
    Ok(([(TOTAL_COUNT, total.to_string())], Json(page)))
}

#[utoipa::path(
    get, path = "/accounts/{account}", operation_id = "getAccount", tag = "accounts", params(AccountParam),
    responses((status = 200, description = "The account.", body = AccountBody), Errors)
)]
pub(super) async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<AccountBody>, ApiError> {
    let id = uuid("account", &id)?;
    Ok(Json(blocking(&app, move |app| app.account(id)).await?.into()))
}

/// PUT: `name` is required; `isMigrating` is optional so Notely clients,
/// which do not know the flag, keep working (it is left unchanged).
#[utoipa::path(
    put, path = "/accounts/{account}", operation_id = "replaceAccount", tag = "accounts", params(AccountParam),
    request_body = AccountReplace, responses((status = 200, description = "The account.", body = AccountBody), Errors)
)]
pub(super) async fn put(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(AccountReplace { name, is_migrating, shard }): JsonBody<AccountReplace>,
) -> Result<Json<AccountBody>, ApiError> {
    if name.is_none() {
        return Err(ApiError::notely(
            StatusCode::BAD_REQUEST,
            "account name is required",
            "PUT replaces the name; use PATCH to change only isMigrating or shard",
        ));
    }
    // Notely's route: a whole UUID, refused in Notely's words otherwise.
    let id = uuid("account", &id)?.to_string();
    update(app, id, AccountPatch { name, is_migrating, shard }).await
}

/// PATCH: any subset of `name`, `shard` and `isMigrating`. The operator's
/// flip, so `{account}` may be a unique prefix of 8+ characters of the id.
#[utoipa::path(
    patch, path = "/accounts/{account}", operation_id = "updateAccount", tag = "accounts", params(AccountPrefixParam),
    request_body = AccountPatch, responses((status = 200, description = "The account.", body = AccountBody), Errors)
)]
pub(super) async fn patch(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AccountPatch>,
) -> Result<Json<AccountBody>, ApiError> {
    if body.name.is_none() && body.is_migrating.is_none() && body.shard.is_none() {
        return Err(ApiError::bad_request("nothing to change: give name, shard and/or isMigrating"));
    }
    update(app, id, body).await
}

/// `id`: a whole UUID (no lookup) or, from PATCH, a unique prefix.
async fn update(app: Arc<App>, id: String, body: AccountPatch) -> Result<Json<AccountBody>, ApiError> {
    let change = AccountChange { name: body.name, is_migrating: body.is_migrating, shard: body.shard };
    Ok(Json(blocking(&app, move |app| app.update_account(app.account_id(&id)?, change)).await?.into()))
}
