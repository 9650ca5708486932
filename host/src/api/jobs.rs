//! `/jobs`: durable migration jobs (backfill, bulk rollback, verify), their
//! progress, and pause, resume and cancel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::{Errors, JobParam};
use super::extract::JsonBody;
use super::{blocking, notes::rfc3339};
use crate::app::{App, AppError, JobControl};
use crate::coordination::{Job, JobKind, JobState};
use notes_api_types::UnknownName;

#[derive(Deserialize, ToSchema)]
pub(super) struct NewJob {
    // Read as text, so that an unknown kind is refused naming every kind.
    #[schema(value_type = JobKind, required = true)]
    kind: Option<String>,
    /// One account, by its id or a unique prefix of at least 8 characters
    /// of it (400 if shorter or ambiguous, 404 if none); absent: every
    /// account in the mode the kind works on.
    #[schema(pattern = "^[0-9a-fA-F-]{8,36}$")]
    account: Option<String>,
    /// Notes per second at most; absent or 0: as fast as batches go.
    rate: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Job)]
pub(super) struct JobBody {
    id: String,
    kind: JobKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid, nullable = false)]
    account: Option<String>,
    state: JobState,
    rate: u32,
    total: u64,
    done: u64,
    moved: u64,
    problems: u64,
    /// The host running it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    owner: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Notes (verify: accounts) per second since the job started.
    per_second: f64,
    /// At that pace, until `done` reaches `total`; absent when unknown or finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    eta_seconds: Option<f64>,
    detail: String,
}

impl From<Job> for JobBody {
    fn from(j: Job) -> Self {
        let seconds = (j.updated_at_ms - j.created_at_ms).max(1) as f64 / 1000.0;
        let per_second = j.done as f64 / seconds;
        let eta_seconds = (j.state == JobState::Running && per_second > 0.0 && j.total > j.done)
            .then(|| ((j.total - j.done) as f64 / per_second * 10.0).round() / 10.0);
        JobBody {
            id: j.id,
            kind: j.kind,
            account: j.account.map(|a| a.to_string()),
            state: j.state,
            rate: j.rate,
            total: j.total,
            done: j.done,
            moved: j.moved,
            problems: j.problems,
            owner: j.owner,
            created_at: rfc3339(j.created_at_ms),
            updated_at: rfc3339(j.updated_at_ms),
            per_second: (per_second * 10.0).round() / 10.0,
            eta_seconds,
            detail: j.detail,
        }
    }
}

#[utoipa::path(
    post, path = "/jobs", operation_id = "createJob", tag = "jobs", request_body = NewJob,
    responses(
        (status = 201, description = "The new job, already running.", body = JobBody,
            headers(("Location" = String, description = "The new job's path, `/jobs/{job}`.")), links(
            ("GetJob" = (operation_id = "getJob", parameters(("job" = "$response.body#/id")))),
            ("PauseJob" = (operation_id = "pauseJob", parameters(("job" = "$response.body#/id")))),
            ("ResumeJob" = (operation_id = "resumeJob", parameters(("job" = "$response.body#/id")))),
            ("CancelJob" = (operation_id = "cancelJob", parameters(("job" = "$response.body#/id")))),
        )),
        Errors,
    )
)]
pub(super) async fn create(State(app): State<Arc<App>>, JsonBody(body): JsonBody<NewJob>) -> Result<impl IntoResponse, ApiError> {
    let kind = body.kind.ok_or_else(|| ApiError::bad_request(format!("kind is required: {}", notes_api_types::any_of(JobKind::NAMES))))?;
    let kind: JobKind = kind.parse().map_err(|e: UnknownName| ApiError::from(AppError::Invalid(e.to_string())))?;
    let job = blocking(&app, move |app| {
        // Its id, or a unique prefix of 8+ characters (as the CLI's --account takes it).
        let account = body.account.as_deref().map(|a| app.account_id(a)).transpose()?;
        app.create_job(kind, account, body.rate.unwrap_or(0))
    })
    .await?;
    Ok((StatusCode::CREATED, [(LOCATION, format!("/jobs/{}", job.id))], Json(JobBody::from(job))))
}

#[utoipa::path(get, path = "/jobs", operation_id = "listJobs", tag = "jobs", responses((status = 200, description = "Every job, newest first.", body = Vec<JobBody>), Errors))]
pub(super) async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<JobBody>>, ApiError> {
    Ok(Json(blocking(&app, |app| app.jobs()).await?.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/jobs/{job}", operation_id = "getJob", tag = "jobs", params(JobParam), responses((status = 200, description = "The job and its progress.", body = JobBody), Errors))]
pub(super) async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<JobBody>, ApiError> {
    Ok(Json(blocking(&app, move |app| app.job(&id)).await?.into()))
}

#[utoipa::path(post, path = "/jobs/{job}/pause", operation_id = "pauseJob", tag = "jobs", params(JobParam), responses((status = 200, description = "The job and its progress.", body = JobBody), Errors))]
pub(super) async fn pause(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Pause).await
}

#[utoipa::path(post, path = "/jobs/{job}/resume", operation_id = "resumeJob", tag = "jobs", params(JobParam), responses((status = 200, description = "The job and its progress.", body = JobBody), Errors))]
pub(super) async fn resume(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Resume).await
}

#[utoipa::path(post, path = "/jobs/{job}/cancel", operation_id = "cancelJob", tag = "jobs", params(JobParam), responses((status = 200, description = "The job and its progress.", body = JobBody), Errors))]
pub(super) async fn cancel(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Cancel).await
}

async fn control(State(app): State<Arc<App>>, Path(id): Path<String>, control: JobControl) -> Result<Json<JobBody>, ApiError> {
    Ok(Json(blocking(&app, move |app| app.control_job(&id, control)).await?.into()))
}
