//! Migration routes: an account's state, moving and verifying its notes;
//! the whole service's state, the rollout and the kill switch; the audit log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::openapi::{AccountPrefixParam, Errors};
use super::extract::{JsonBody, Query};
use super::{blocking, notes::rfc3339};
use crate::app::{App, MigrationStatus, MoveOutcome, Rollout, RolloutReport, VerifyReport};
use crate::coordination::{AUDIT_KINDS, AuditEntry, AuditQuery};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MigrationStatus)]
pub(super) struct StatusBody {
    is_migrating: bool,
    /// `legacy`, `migrating`, `migrated`, `rolling-back` or `rolled-back`.
    #[schema(value_type = String)]
    state: &'static str,
    legacy_notes: u64,
    new_notes: u64,
    /// When the last verify that counts ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    verified_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    verify_clean: Option<bool>,
}

impl From<MigrationStatus> for StatusBody {
    fn from(s: MigrationStatus) -> Self {
        StatusBody {
            is_migrating: s.is_migrating,
            state: s.state.as_str(),
            legacy_notes: s.legacy_notes,
            new_notes: s.new_notes,
            verified_at: s.verified.map(|v| rfc3339(v.at_ms)),
            verify_clean: s.verified.map(|v| v.clean),
        }
    }
}

/// `GET /accounts/{id}/migration`.
#[utoipa::path(
    get, path = "/accounts/{account}/migration", operation_id = "accountMigration", tag = "migration", params(AccountPrefixParam),
    responses((status = 200, description = "The account's migration state and notes per store.", body = StatusBody), Errors)
)]
pub(super) async fn status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<StatusBody>, ApiError> {
    Ok(Json(blocking(&app, move |app| app.migration_status(app.account_id(&id)?)).await?.into()))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MoveReport)]
pub(super) struct MoveBody {
    /// `isMigrating` (in the state below) says which way notes moved: true
    /// to the new store (a backfill), false back to legacy (a bulk rollback).
    moved: u32,
    in_place: u32,
    missing: u32,
    batches: u32,
    #[serde(flatten)]
    status: StatusBody,
}

/// `POST /accounts/{id}/migration/move`: every note of the account to the
/// store its mode wants, through the plugin, in batches; then its state.
#[utoipa::path(
    post, path = "/accounts/{account}/migration/move", operation_id = "moveNotes", tag = "migration", params(AccountPrefixParam),
    responses((status = 200, description = "What moved, and the account's state after.", body = MoveBody), Errors)
)]
pub(super) async fn move_notes(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<MoveBody>, ApiError> {
    let (MoveOutcome { report, batches, .. }, status) = blocking(&app, move |app| {
        let id = app.account_id(&id)?;
        Ok((app.move_notes(id)?.value, app.migration_status(id)?))
    })
    .await?;
    Ok(Json(MoveBody {
        moved: report.moved,
        in_place: report.in_place,
        missing: report.missing,
        batches,
        status: status.into(),
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VerifyReport)]
pub(super) struct VerifyBody {
    is_migrating: bool,
    clean: bool,
    /// False if the flag changed while the verify ran (nothing recorded).
    recorded: bool,
    notes: u64,
    duplicates: u64,
    unreadable: u64,
    misplaced: u64,
    half_deleted: u64,
    /// The first problems found, with their notes' ids.
    problems: Vec<ProblemBody>,
    /// The account's state after the verify.
    #[schema(value_type = String)]
    state: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub(super) struct ProblemBody {
    note: String,
    problem: String,
}

/// `POST /accounts/{id}/migration/verify`: read-only checks of every note.
#[utoipa::path(
    post, path = "/accounts/{account}/migration/verify", operation_id = "verifyAccount", tag = "migration", params(AccountPrefixParam),
    responses((status = 200, description = "The verify's counts and first problems.", body = VerifyBody), Errors)
)]
pub(super) async fn verify(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<VerifyBody>, ApiError> {
    let (report, status) = blocking(&app, move |app| {
        let id = app.account_id(&id)?;
        Ok((app.verify(id)?, app.migration_status(id)?))
    })
    .await?;
    let VerifyReport { is_migrating, notes, duplicates, unreadable, misplaced, half_deleted, problems, clean, recorded } = report;
    Ok(Json(VerifyBody {
        is_migrating,
        clean,
        recorded,
        notes,
        duplicates,
        unreadable,
        misplaced,
        half_deleted,
        problems: problems.into_iter().map(|(note, problem)| ProblemBody { note, problem }).collect(),
        state: status.state.as_str(),
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ServiceMigration)]
pub(super) struct ServiceBody {
    /// Accounts per state.
    #[schema(value_type = std::collections::HashMap<String, u64>)]
    accounts: serde_json::Map<String, serde_json::Value>,
    notes_to_new: u64,
    notes_to_legacy: u64,
    /// Every account's notes in the legacy store, counted in the same pass
    /// as the figures beside it, so they agree with one another (a page
    /// showing them together never shows more left to move than a store
    /// holds, as two separate reads could).
    legacy_notes: u64,
    /// Every account's notes in the new store (same pass).
    new_notes: u64,
    /// The last percentage rollout, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rollout_percent: Option<f64>,
}

/// `GET /migration`: the whole service.
#[utoipa::path(get, path = "/migration", operation_id = "serviceMigration", tag = "migration", responses((status = 200, description = "Accounts per state and notes left to move.", body = ServiceBody), Errors))]
pub(super) async fn service(State(app): State<Arc<App>>) -> Result<Json<ServiceBody>, ApiError> {
    let summary = blocking(&app, |app| app.service_migration()).await?;
    Ok(Json(ServiceBody {
        accounts: summary.accounts.iter().map(|(state, n)| ((*state).to_owned(), (*n).into())).collect(),
        notes_to_new: summary.notes_to_new,
        notes_to_legacy: summary.notes_to_legacy,
        legacy_notes: summary.legacy_notes,
        new_notes: summary.new_notes,
        rollout_percent: summary.rollout_percent,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RolloutRequest {
    percent: Option<f64>,
    accounts: Option<Vec<String>>,
    is_migrating: Option<bool>,
    #[serde(default)]
    resume: bool,
}

// The shapes `RolloutRequest` accepts, for the spec (the handler reads the
// fields and says which shape it wants when it gets neither).
/// A percentage rollout, or a list of accounts turned on or off.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = RolloutRequest)]
#[allow(dead_code)]
pub(super) enum RolloutShape {
    /// Migration on for the accounts whose stable hash falls under `percent`
    /// (a sticky, nested cohort), off above it.
    #[serde(rename_all = "camelCase")]
    Percent {
        #[schema(minimum = 0.0, maximum = 100.0)]
        percent: f64,
        /// After the kill switch, a rollout that turns accounts on must say
        /// so (409 otherwise): it releases the kill switch's latch.
        #[serde(default)]
        resume: bool,
    },
    /// The listed accounts, on or off.
    #[serde(rename_all = "camelCase")]
    Accounts {
        /// Ids, or unique prefixes of at least 8 characters (as the console
        /// and the CLI show them).
        #[schema(pattern = "^[0-9a-fA-F-]{8,36}$")]
        accounts: Vec<String>,
        is_migrating: bool,
        /// As for a percentage.
        #[serde(default)]
        resume: bool,
    },
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RolloutReport)]
pub(super) struct RolloutBody {
    /// True when nothing was flipped: the counts say what the rollout would do.
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    percent: Option<f64>,
    turned_on: u64,
    turned_off: u64,
    unchanged: u64,
    /// Accounts this rollout left off because the kill switch was pressed while it ran.
    stopped: u64,
    failed: Vec<FailedBody>,
}

/// An account the rollout could not flip, and why.
#[derive(Serialize, ToSchema)]
#[schema(as = FailedFlip)]
pub(super) struct FailedBody {
    #[schema(format = Uuid)]
    account: String,
    error: String,
}

impl RolloutBody {
    fn of(r: RolloutReport, dry_run: bool) -> Self {
        RolloutBody {
            dry_run,
            stopped: r.stopped,
            percent: r.percent,
            turned_on: r.turned_on,
            turned_off: r.turned_off,
            unchanged: r.unchanged,
            failed: r.failed.into_iter().map(|(account, error)| FailedBody { account: account.to_string(), error }).collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(super) struct RolloutParams {
    /// Flip nothing: answer how many accounts the rollout would turn on, turn
    /// off and leave unchanged (a preview).
    #[serde(default)]
    dry_run: bool,
}

/// `POST /migration/rollout` `{"percent"}` or `{"accounts", "isMigrating"}`;
/// with `?dryRun=true`, only the counts it would change.
#[utoipa::path(
    post, path = "/migration/rollout", operation_id = "rollout", tag = "migration", params(RolloutParams),
    request_body = RolloutShape, responses((status = 200, description = "How many accounts were flipped, and any that could not be.", body = RolloutBody), Errors)
)]
pub(super) async fn rollout(
    State(app): State<Arc<App>>,
    Query(RolloutParams { dry_run }): Query<RolloutParams>,
    JsonBody(body): JsonBody<RolloutRequest>,
) -> Result<Json<RolloutBody>, ApiError> {
    let resume = body.resume;
    let (percent, listed) = match body {
        RolloutRequest { percent: Some(p), accounts: None, is_migrating: None, .. } => (Some(p), None),
        RolloutRequest { percent: None, accounts: Some(ids), is_migrating: Some(on), .. } => (None, Some((ids, on))),
        _ => return Err(ApiError::bad_request("give either {\"percent\": P} or {\"accounts\": [ids], \"isMigrating\": bool}")),
    };
    let report = blocking(&app, move |app| {
        let rollout = match (percent, listed) {
            (Some(p), _) => Rollout::Percent(p),
            // Ids or unique prefixes (8+ characters), resolved before anything flips.
            (_, Some((ids, is_migrating))) => {
                Rollout::Accounts { ids: ids.iter().map(|id| app.account_id(id)).collect::<Result<_, _>>()?, is_migrating }
            }
            (None, None) => unreachable!("one of the two shapes"),
        };
        if dry_run { app.rollout_preview(&rollout, resume) } else { app.rollout(rollout, resume) }
    })
    .await?;
    Ok(Json(RolloutBody::of(report, dry_run)))
}

/// `POST /migration/kill-switch`: every rollout in flight stopped, on every
/// host, then migration off for every account, through the barrier.
#[utoipa::path(post, path = "/migration/kill-switch", operation_id = "killSwitch", tag = "migration", responses((status = 200, description = "How many accounts were turned off, and any that could not be (with what to do).", body = RolloutBody), Errors))]
pub(super) async fn kill_switch(State(app): State<Arc<App>>) -> Result<Json<RolloutBody>, ApiError> {
    Ok(Json(RolloutBody::of(blocking(&app, |app| app.kill_switch()).await?, false)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Entries at or after this time (RFC 3339).
    since: Option<String>,
    /// Entries before this time (RFC 3339).
    until: Option<String>,
    /// One kind: `account`, `flag`, `rollout`, `kill-switch`, `plugin`, `job` or `key`.
    kind: Option<String>,
    /// The cursor of an oldest-first page: entries after this sequence number.
    after: Option<i64>,
    /// The cursor of a newest-first page: entries before this sequence number.
    before: Option<i64>,
    /// `oldest` (the default) or `newest` first.
    order: Option<String>,
    /// Entries per page, 1 to 1000 (100 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only the entries of this operator action (its summary entry and the
    /// flag changes it made): what `changes` counts.
    #[param(format = Uuid)]
    action: Option<String>,
    /// `true`: every flag change its own entry. By default an operator
    /// action is one entry (a rollout that turned 46 accounts on is its
    /// `rollout` entry with `changes` 46), unless `kind=flag` or `action` is
    /// asked for.
    expand: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditPage)]
pub(super) struct AuditBody {
    entries: Vec<AuditEntryBody>,
    /// The cursor of the next page, if there is one: `?after=` for
    /// oldest first, `?before=` for newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditEntryBody {
    seq: i64,
    #[schema(format = DateTime)]
    at: String,
    host: String,
    actor: String,
    kind: String,
    subject: String,
    before: String,
    after: String,
    detail: String,
    /// The operator action (a rollout, the kill switch) the entry is part
    /// of; `GET /audit?action=` lists its entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = Uuid)]
    action: Option<String>,
    /// On an action's own entry: how many flag changes it made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    changes: Option<u64>,
}

const AUDIT_PAGE: u32 = 100;
const AUDIT_MAX_PAGE: u32 = 1000;

/// `GET /audit?since=&until=&kind=&after=&before=&order=&limit=&action=&expand=`:
/// oldest first unless `order=newest`; an operator action is one entry
/// unless `expand=true`.
#[utoipa::path(get, path = "/audit", operation_id = "audit", tag = "migration", params(AuditParams), responses((status = 200, description = "A page of audit entries, oldest first unless `order=newest`.", body = AuditBody), Errors))]
pub(super) async fn audit(State(app): State<Arc<App>>, Query(params): Query<AuditParams>) -> Result<Json<AuditBody>, ApiError> {
    let time = |what: &str, raw: Option<String>| -> Result<Option<i64>, ApiError> {
        raw.map(|raw| {
            time::OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|e| ApiError::bad_request(format!("{what} {raw:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
    };
    let limit = params.limit.unwrap_or(AUDIT_PAGE);
    if limit == 0 || limit > AUDIT_MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {AUDIT_MAX_PAGE}")));
    }
    let newest_first = match params.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => return Err(ApiError::bad_request(format!("order must be `oldest` or `newest`, got {other:?}"))),
    };
    if let Some(kind) = params.kind.as_deref().filter(|k| !AUDIT_KINDS.contains(k)) {
        return Err(ApiError::bad_request(format!("kind must be one of {}, got {kind:?}", AUDIT_KINDS.join(", "))));
    }
    if let Some(action) = params.action.as_deref().filter(|a| uuid::Uuid::parse_str(a).is_err()) {
        return Err(ApiError::bad_request(format!("action must be an action's id (a UUID, as in an entry's `action`), got {action:?}")));
    }
    let fold = !params.expand.unwrap_or(false) && params.kind.as_deref() != Some("flag") && params.action.is_none();
    let query = AuditQuery {
        action: params.action,
        fold,
        since_ms: time("since", params.since)?,
        until_ms: time("until", params.until)?,
        kind: params.kind,
        after_seq: params.after.unwrap_or(0),
        before_seq: params.before,
        newest_first,
        // One past the page says whether there is a next one: an exactly
        // full last page gets no cursor.
        limit: limit + 1,
    };
    let mut entries = blocking(&app, move |app| app.audit(&query)).await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next = more.then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(Json(AuditBody {
        entries: entries
            .into_iter()
            .map(|entry| (entry.is_action_summary().then_some(entry.changes), entry))
            .map(|(changes, AuditEntry { seq, at_ms, host, actor, kind, subject, before, after, detail, action, .. })| AuditEntryBody {
                changes,
                action: (!action.is_empty()).then_some(action),
                seq,
                at: rfc3339(at_ms),
                host,
                actor,
                kind,
                subject,
                before,
                after,
                detail,
            })
            .collect(),
        next,
    }))
}
