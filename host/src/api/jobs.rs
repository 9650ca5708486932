//! `/jobs`: durable migration jobs (backfill, bulk rollback, verify), their
//! progress, and pause, resume and cancel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{JsonBody, uuid};
use super::{blocking, notes::rfc3339};
use crate::app::{App, JobControl, JobKind};
use crate::coordination::Job;

#[derive(Deserialize)]
pub struct NewJob {
    kind: Option<String>,
    /// One account; absent: every account in the mode the kind works on.
    account: Option<String>,
    /// Notes per second at most; absent or 0: as fast as batches go.
    rate: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobBody {
    id: String,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    state: String,
    rate: u32,
    total: u64,
    done: u64,
    moved: u64,
    problems: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    created_at: String,
    updated_at: String,
    /// Notes (verify: accounts) per second since the job started.
    per_second: f64,
    /// At that pace, until `done` reaches `total`; absent when unknown or finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_seconds: Option<f64>,
    detail: String,
}

impl From<Job> for JobBody {
    fn from(j: Job) -> Self {
        let seconds = (j.updated_at_ms - j.created_at_ms).max(1) as f64 / 1000.0;
        let per_second = j.done as f64 / seconds;
        let eta_seconds = (j.state == "running" && per_second > 0.0 && j.total > j.done)
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

pub async fn create(State(app): State<Arc<App>>, JsonBody(body): JsonBody<NewJob>) -> Result<(StatusCode, Json<JobBody>), ApiError> {
    let kind = body.kind.ok_or_else(|| ApiError::bad_request("kind is required: backfill, rollback or verify"))?;
    let kind = JobKind::parse(&kind).map_err(ApiError::from)?;
    let account = body.account.as_deref().map(|a| uuid("account", a)).transpose()?;
    let job = blocking(&app, move |app| app.create_job(kind, account, body.rate.unwrap_or(0))).await?;
    Ok((StatusCode::CREATED, Json(job.into())))
}

pub async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<JobBody>>, ApiError> {
    Ok(Json(blocking(&app, |app| app.jobs()).await?.into_iter().map(Into::into).collect()))
}

pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<JobBody>, ApiError> {
    Ok(Json(blocking(&app, move |app| app.job(&id)).await?.into()))
}

pub async fn pause(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Pause).await
}

pub async fn resume(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Resume).await
}

pub async fn cancel(state: State<Arc<App>>, id: Path<String>) -> Result<Json<JobBody>, ApiError> {
    control(state, id, JobControl::Cancel).await
}

async fn control(State(app): State<Arc<App>>, Path(id): Path<String>, control: JobControl) -> Result<Json<JobBody>, ApiError> {
    Ok(Json(blocking(&app, move |app| app.control_job(&id, control)).await?.into()))
}
