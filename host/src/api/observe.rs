//! What the API tells an operator's monitoring: every request counted and
//! timed by route template, method and status, and `GET /metrics` in the
//! Prometheus text format (the series are listed in `crate::metrics` and
//! docs/metrics.md).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::blocking;
use super::error::ApiError;
use crate::app::App;
use crate::coordination::{JobKind, JobState};
use crate::metrics::{self, ACCOUNTS, JOB_NOTES_LEFT, JOBS, NOTES, NOTES_TO_MOVE, ROLLOUT_PERCENT};

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// Always `ok` when the host answers.
    status: String,
    /// The host's time (RFC 3339), as Notely's `/healthz` gives it.
    timestamp: String,
}

/// `GET /healthz`: open to anyone, for load balancers and Notely clients.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "operations", security(()), responses((status = 200, description = "The host is serving.", body = Health)))]
pub(super) async fn health(State(app): State<Arc<App>>) -> axum::Json<Health> {
    axum::Json(Health { status: "ok".to_owned(), timestamp: super::notes::rfc3339(app.now_ms()) })
}

/// One request in the metrics (`notes_http_requests_total`, its duration),
/// by route, method and status: started before the route runs, finished
/// with its answer.
pub(super) struct Tracked {
    /// Its template (an `Arc`), `None` for a request no route matched.
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl Tracked {
    pub(super) fn start(req: &Request) -> Self {
        let route = req.extensions().get::<MatchedPath>().cloned();
        // Methods are whatever a client sends: only the ones the API serves are labels.
        let method: &'static str = match req.method().as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            _ => "other",
        };
        Tracked { route, method, started: Instant::now() }
    }

    pub(super) fn finish(self, response: &Response) {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        metrics::http_request(route, self.method, response.status().as_u16(), self.started.elapsed());
    }
}

/// `GET /metrics`: the migration's gauges are computed now, then everything
/// recorded since the start is rendered.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format; every series is described in docs/metrics.md.", body = String, content_type = "text/plain"),
        super::openapi::Errors,
    )
)]
pub(super) async fn render(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let (summary, jobs) = blocking(&app, |app| Ok((app.service_migration(), app.jobs()?))).await?;
    // The notes are counted in the stores; a store that cannot answer now
    // (a store plugin's upstream down) leaves these gauges at their last
    // values, and every other series is still served.
    match summary {
        Ok(summary) => {
            for (state, count) in summary.accounts {
                ::metrics::gauge!(ACCOUNTS, "state" => state).set(count as f64);
            }
            ::metrics::gauge!(NOTES, "store" => "legacy").set(summary.legacy_notes as f64);
            ::metrics::gauge!(NOTES, "store" => "new").set(summary.new_notes as f64);
            ::metrics::gauge!(NOTES_TO_MOVE, "to" => "new").set(summary.notes_to_new as f64);
            ::metrics::gauge!(NOTES_TO_MOVE, "to" => "legacy").set(summary.notes_to_legacy as f64);
            ::metrics::gauge!(ROLLOUT_PERCENT).set(summary.rollout_percent.unwrap_or(0.0));
        }
        Err(e) => tracing::warn!(error = %e, "the migration's gauges were not updated: a store did not answer"),
    }
    for &state in JobState::ALL {
        ::metrics::gauge!(JOBS, "state" => state.as_str()).set(jobs.iter().filter(|j| j.state == state).count() as f64);
    }
    for &kind in JobKind::ALL {
        let left: u64 = jobs.iter().filter(|j| j.state == JobState::Running && j.kind == kind).map(|j| j.total.saturating_sub(j.done)).sum();
        ::metrics::gauge!(JOB_NOTES_LEFT, "kind" => kind.as_str()).set(left as f64);
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::install().render()).into_response())
}
