//! `GET /hosts`: the fleet of hosts serving this data dir.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::Errors;
use super::{blocking, notes::rfc3339};
use crate::app::App;
use crate::fleet::HostView;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Host)]
pub(super) struct HostBody {
    id: String,
    name: String,
    address: String,
    pid: u32,
    version: String,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    last_heartbeat: String,
    heartbeat_age_ms: i64,
    /// `live`, or `unresponsive` (heartbeat older than --host-timeout-ms, process still running).
    #[schema(value_type = String)]
    state: &'static str,
    plugin: PluginBody,
    supports_migration: bool,
    /// The host that answered this request.
    #[serde(rename = "self")]
    is_self: bool,
}

/// The plugin a host serves.
#[derive(Serialize, ToSchema)]
#[schema(as = HostPlugin)]
pub(super) struct PluginBody {
    digest: String,
    label: String,
}

#[utoipa::path(get, path = "/hosts", operation_id = "listHosts", tag = "operations", responses((status = 200, description = "Every host of the fleet.", body = Vec<HostBody>), Errors))]
pub(super) async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<HostBody>>, ApiError> {
    let hosts = blocking(&app, |app| app.hosts()).await?;
    let now = app.now_ms();
    Ok(Json(hosts.into_iter().map(|h| body(h, now)).collect()))
}

fn body(HostView { host: h, unresponsive, is_self }: HostView, now: i64) -> HostBody {
    HostBody {
        state: if unresponsive { "unresponsive" } else { "live" },
        heartbeat_age_ms: (now - h.heartbeat_ms).max(0),
        started_at: rfc3339(h.started_at_ms),
        last_heartbeat: rfc3339(h.heartbeat_ms),
        plugin: PluginBody { digest: h.plugin.digest, label: h.plugin.label },
        id: h.id,
        name: h.name,
        address: h.address,
        pid: h.pid,
        version: h.version,
        supports_migration: h.plugin.supports_migration,
        is_self,
    }
}
