//! `/plugins` routes: upload, list, activate, roll back, a plugin's recent failures.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::Errors;
use super::extract::{JsonBody, Query};
use super::{blocking, notes::rfc3339};
use crate::app::{Actor, App, PluginFault, PluginsView};
use crate::catalog::{Activation, Instances, PluginRecord};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Plugin)]
pub(super) struct PluginBody {
    /// sha256 of the component, 64 lowercase hex digits.
    digest: String,
    name: String,
    version: String,
    supports_migration: bool,
    wit_version: String,
    size_bytes: u64,
    #[schema(format = DateTime)]
    uploaded_at: String,
    /// How its instances are made: `fresh` per request (the default), or kept `per-account`.
    instances: Instances,
}

impl From<PluginRecord> for PluginBody {
    fn from(r: PluginRecord) -> Self {
        PluginBody {
            digest: r.digest,
            name: r.name,
            version: r.version,
            supports_migration: r.supports_migration,
            wit_version: r.wit_version,
            size_bytes: r.size_bytes,
            uploaded_at: rfc3339(r.uploaded_at_ms),
            instances: r.instances,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PushQuery {
    /// Run the conformance kit's contract cases first (`notes-host plugin
    /// check`); a plugin failing any is refused (422) naming the cases.
    #[serde(default)]
    check: bool,
}

/// The body is the `.wasm` itself. 201 for a new plugin, 200 if this exact
/// component is already stored; 422 with the reason if it cannot run here
/// (or, with `check=true`, fails the conformance kit).
#[utoipa::path(
    post, path = "/plugins", operation_id = "uploadPlugin", tag = "plugins",
    params(PushQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component's .wasm bytes."),
    responses(
        (status = 201, description = "A new plugin, compiled and stored.", body = PluginBody),
        (status = 200, description = "This exact component was already stored.", body = PluginBody),
        Errors,
    )
)]
pub(super) async fn push(State(app): State<Arc<App>>, Query(query): Query<PushQuery>, wasm: Bytes) -> Result<(StatusCode, Json<PluginBody>), ApiError> {
    if wasm.is_empty() {
        return Err(ApiError::bad_request("the body must be the plugin's .wasm bytes"));
    }
    // Each upload compiles, and a check instantiates, up to the plugin
    // limits: at most two at once per host, so 32 memory bombs uploaded
    // together cost what two do. The others wait here, holding no thread
    // (the request timeout still applies).
    static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _turn = UPLOADS.acquire().await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("plugin uploads are closed: {e}")))?;
    let (record, new) = blocking(app.plugins(), move |plugins| {
        if query.check {
            plugins.check_plugin(&wasm)?;
        }
        plugins.push_plugin(&wasm)
    })
    .await?;
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(record.into())))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ActivePlugin)]
pub(super) struct ActiveBody {
    digest: String,
    /// `name@version`.
    plugin: String,
    /// `artifact` (a stored precompiled `.cwasm`) or `compiled`.
    #[schema(value_type = String)]
    loaded_from: &'static str,
    load_ms: f64,
    /// Whether it can serve an account whose `isMigrating` is on: while it
    /// cannot, turning migration on is refused (the deployment gate).
    supports_migration: bool,
    /// Why the plugin serves no note request, when a health watch suspended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    suspended: Option<String>,
    /// What its instances cost on this host since it was loaded (a Wasm plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    usage: Option<UsageBody>,
}

/// What a plugin's calls cost on the host that answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = InstanceUsage)]
pub(super) struct UsageBody {
    /// Routing calls made.
    calls: u64,
    /// Mean time of a call, instantiation included.
    mean_call_micros: f64,
    /// Linear memory of a new instance, before any call.
    start_memory_bytes: u64,
    /// Most linear memory an instance held after a call.
    peak_memory_bytes: u64,
    /// Instances waiting for their account's next request (`per-account` instances).
    kept_instances: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Activation)]
pub(super) struct ActivationBody {
    digest: String,
    #[schema(format = DateTime)]
    at: String,
    actor: String,
    reason: String,
    /// The host (`--host-name`) it was activated on.
    host: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PluginRegistry)]
pub(super) struct RegistryBody {
    active: ActiveBody,
    plugins: Vec<PluginBody>,
    /// Oldest first.
    history: Vec<ActivationBody>,
}

#[utoipa::path(get, path = "/plugins", operation_id = "listPlugins", tag = "plugins", responses((status = 200, description = "The active plugin, every stored plugin and the activation history.", body = RegistryBody), Errors))]
pub(super) async fn list(State(app): State<Arc<App>>) -> Result<Json<RegistryBody>, ApiError> {
    let PluginsView { active, plugins, history } = blocking(app.plugins(), |plugins| plugins.view()).await?;
    Ok(Json(RegistryBody {
        active: ActiveBody {
            digest: active.plugin.digest().to_owned(),
            plugin: active.plugin.label().to_owned(),
            loaded_from: if active.load.from_artifact { "artifact" } else { "compiled" },
            load_ms: (active.load.millis * 100.0).round() / 100.0,
            supports_migration: active.plugin.supports_migration(),
            suspended: active.suspended().map(str::to_owned),
            usage: active.plugin.usage().map(|u| UsageBody {
                calls: u.calls,
                mean_call_micros: (u.mean_call_micros * 10.0).round() / 10.0,
                start_memory_bytes: u.start_memory_bytes as u64,
                peak_memory_bytes: u.peak_memory_bytes as u64,
                kept_instances: u.kept_instances as u64,
            }),
        },
        plugins: plugins.into_iter().map(Into::into).collect(),
        history: history
            .into_iter()
            .map(|Activation { digest, at_ms, actor, reason, host, .. }| ActivationBody { digest, at: rfc3339(at_ms), actor, reason, host })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct Activate {
    /// A stored plugin's sha256, or a unique prefix of at least 12 hex
    /// digits of it (as `X-Plugin` and the console show it).
    #[schema(value_type = String, required = true, pattern = "^[0-9a-f]{12,64}$")]
    digest: Option<String>,
}

/// Every host of the fleet switches before the answer. `digest` is a
/// unique prefix of at least 12 hex digits, or the whole sha256: an
/// ambiguous prefix is a 400 saying how many plugins it matches, an unknown
/// one a 404.
#[utoipa::path(
    put, path = "/plugins/active", operation_id = "activatePlugin", tag = "plugins",
    request_body = Activate, responses((status = 200, description = "The plugin now active.", body = PluginBody), Errors)
)]
pub(super) async fn activate(State(app): State<Arc<App>>, JsonBody(body): JsonBody<Activate>) -> Result<Json<PluginBody>, ApiError> {
    let digest = body.digest.ok_or_else(|| ApiError::bad_request("digest is required"))?;
    let record = blocking(app.plugins(), move |plugins| plugins.activate_plugin(&digest, Actor::Operator, "activated by an operator")).await?;
    Ok(Json(record.into()))
}

/// The previously active plugin again.
#[utoipa::path(post, path = "/plugins/rollback", operation_id = "rollbackPlugin", tag = "plugins", responses((status = 200, description = "The plugin now active.", body = PluginBody), Errors))]
pub(super) async fn rollback(State(app): State<Arc<App>>) -> Result<Json<PluginBody>, ApiError> {
    Ok(Json(blocking(app.plugins(), |plugins| plugins.rollback_plugin()).await?.into()))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PluginFaults)]
pub(super) struct FaultsBody {
    /// The plugin's full sha256.
    digest: String,
    /// This host's most recent failures of the plugin, newest first.
    errors: Vec<FaultBody>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PluginFault)]
pub(super) struct FaultBody {
    /// The `errorId` the client was answered with.
    id: String,
    #[schema(format = DateTime)]
    at: String,
    /// `name@version`.
    plugin: String,
    account: String,
    /// The operation called: `create_note`, `get_note`, `list_notes`, `update_note`, `delete_note`, `move_notes`.
    operation: String,
    /// The failed request's `X-Request-Id`, to find its log lines.
    request_id: Option<String>,
    /// The full message: a trap with the plugin's stderr (a panic, a traceback), or the `internal` error it returned.
    message: String,
}

impl From<PluginFault> for FaultBody {
    fn from(f: PluginFault) -> Self {
        FaultBody {
            id: f.id,
            at: rfc3339(f.at_ms),
            plugin: f.plugin,
            account: f.account.to_string(),
            operation: f.operation.as_str().to_owned(),
            request_id: f.request_id,
            message: f.message,
        }
    }
}

/// A plugin's own failures on this host (its last 100): what clients were
/// answered only with an `errorId` for. `digest` is the sha256 or its first
/// 12 or more hex digits, as `X-Plugin` shows it.
#[utoipa::path(
    get, path = "/plugins/{digest}/errors", operation_id = "pluginErrors", tag = "plugins",
    params(("digest" = String, Path, description = "The plugin's sha256, or a unique prefix of at least 12 hex digits of it (400 if ambiguous).")),
    responses((status = 200, description = "The plugin's recent failures on this host, newest first.", body = FaultsBody), Errors)
)]
pub(super) async fn errors(State(app): State<Arc<App>>, Path(digest): Path<String>) -> Result<Json<FaultsBody>, ApiError> {
    let (digest, faults) = blocking(app.plugins(), move |plugins| plugins.plugin_faults(&digest)).await?;
    Ok(Json(FaultsBody { digest, errors: faults.into_iter().map(Into::into).collect() }))
}

/// How a stored plugin's instances are made. `{"mode": "fresh"}` (the
/// default): a fresh instance per request. `{"mode": "per-account",
/// "maxRequests": N, "maxSeconds": T}`: an instance is kept after a call and
/// serves later requests of the same account only, at most N requests and
/// for T seconds, and is dropped after any trap or limit; for plugins costly
/// to make (Python, JavaScript). This host's active plugin follows at its
/// next call; other hosts of a fleet when they next load the plugin.
#[utoipa::path(
    put, path = "/plugins/{digest}/instances", operation_id = "setPluginInstances", tag = "plugins",
    params(("digest" = String, Path, description = "The plugin's sha256, or a unique prefix of at least 12 hex digits of it (400 if ambiguous).")),
    request_body = Instances,
    responses((status = 200, description = "The plugin, with its instances' mode.", body = PluginBody), Errors)
)]
pub(super) async fn set_instances(
    State(app): State<Arc<App>>,
    Path(digest): Path<String>,
    JsonBody(instances): JsonBody<Instances>,
) -> Result<Json<PluginBody>, ApiError> {
    Ok(Json(blocking(app.plugins(), move |plugins| plugins.set_plugin_instances(&digest, instances)).await?.into()))
}
