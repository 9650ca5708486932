//! Moving notes between the stores in batches, through the plugin's
//! `move-notes`: the operator's `POST …/migration/move`, and the jobs' runs
//! of batches (a job step: batches for up to its time budget).
//!
//! A batch is admitted like a note request and runs under the flag it read;
//! its admission is held until its writes have landed, so a flip of the
//! account waits for them, wherever they land from. Its writes are kept in
//! memory while the plugin runs and land after it returned (`router::batch`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use notes_routing::{MoveReport, Store};
use uuid::Uuid;

use crate::fleet::Admission;
use crate::router::ScopeBatch;
use super::{App, AppError, Served, ServedBy};

/// What one move batch found (or a run of them moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Batch {
    Moved { is_migrating: bool, report: MoveReport },
    /// Nothing left in the store the account's mode drains.
    NothingLeft { is_migrating: bool },
    /// The flag is not the one the caller moves for.
    OtherMode { is_migrating: bool },
}

/// What moving an account's notes did, over all its batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveOutcome {
    /// The flag the last batch ran under: true moved toward the new store.
    pub is_migrating: bool,
    pub report: MoveReport,
    pub batches: u32,
}

/// How much one run of batches ([`App::move_run`]) may do before it hands
/// back to the job runner, which saves progress and looks at pauses.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunBudget {
    pub time: Duration,
    pub notes: u64,
}

/// A batch whose plugin call succeeded and whose writes have not landed:
/// it still holds the account's admission, so no flip completes before they
/// land (or are dropped, landing nothing).
struct Landing<'a> {
    admission: Admission<'a>,
    writes: Arc<ScopeBatch>,
    report: MoveReport,
    notes: usize,
    /// The batch's greatest id: the next batch starts after it.
    last_id: String,
    started: Instant,
}

enum Prepared<'a> {
    Ready(Landing<'a>),
    Ended(Batch),
}

/// Why a batch did not reach the plugin: nothing to do, or the host's own
/// stores failed (the host's fault, not the plugin's: it must not count
/// against the plugin's health or be filed as its failure).
enum NotCalled {
    Ended(Batch),
    Store(crate::stores::StoreError),
}

impl Landing<'_> {
    fn land(self, app: &App) -> Result<MoveReport, AppError> {
        self.writes.commit()?;
        app.batch_size.record(self.notes, self.started.elapsed());
        Ok(self.report)
    }
}

fn add(total: &mut MoveReport, report: MoveReport) {
    total.moved += report.moved;
    total.in_place += report.in_place;
    total.missing += report.missing;
}

impl App {
    /// Moves every note of the account to the store its mode wants, through
    /// the plugin's `move-notes`, in batches (`batch_size`): a backfill
    /// with the flag on, a bulk rollback with it off. Each batch reads the
    /// flag again, so after a flip the next batch moves the other way; a
    /// batch never runs under a stale flag. Stops when a batch finds nothing
    /// left in the other store, or moves nothing.
    pub fn move_notes(&self, account: Uuid) -> Result<Served<MoveOutcome>, AppError> {
        // Refused whether or not there is anything to move: an operator
        // learns it now, not at the first note left in the wrong store.
        let router = self.plugins.serving();
        if !router.supports_migration() {
            return Err(AppError::Conflict(format!(
                "the active plugin {} does not move notes (it does not support migration): activate one that does \
                 (`notes-host plugin list`, then `notes-host plugin activate <digest>`, or `notes-host plugin rollback`)",
                router.label()
            )));
        }
        let mut outcome = MoveOutcome::default();
        let mut last_left = u64::MAX;
        loop {
            let Served { value: batch, by } = self.move_batch(account)?;
            let report = match batch {
                Batch::Moved { is_migrating, report } => {
                    outcome.is_migrating = is_migrating;
                    report
                }
                Batch::NothingLeft { is_migrating } | Batch::OtherMode { is_migrating } => {
                    outcome.is_migrating = is_migrating;
                    return Ok(Served { value: outcome, by });
                }
            };
            outcome.batches += 1;
            add(&mut outcome.report, report);
            if report.moved == 0 {
                return Ok(Served { value: outcome, by });
            }
            // A plugin that says it moved notes but leaves them where they
            // were would keep this loop going forever.
            let left = self.notes_left(account, outcome.is_migrating)?;
            if left >= last_left {
                return Err(AppError::Internal(format!(
                    "plugin {} reported moving notes of account {account}, but {left} are still to move; stopped",
                    by.plugin
                )));
            }
            last_left = left;
        }
    }

    /// Notes of the account in the store its mode drains.
    pub(super) fn notes_left(&self, account: Uuid, is_migrating: bool) -> Result<u64, AppError> {
        let from = if is_migrating { Store::Legacy } else { Store::New };
        Ok(match self.stores.get(from) {
            Some(store) => store.count(&account.to_string())?,
            None => 0,
        })
    }

    /// One batch from the first note left, landed before it returns.
    fn move_batch(&self, account: Uuid) -> Result<Served<Batch>, AppError> {
        let (prepared, plugin, digest) = self.prepare_move(account, None, "")?;
        let value = match prepared {
            Prepared::Ready(landing) => {
                let is_migrating = landing.admission.is_migrating;
                Batch::Moved { is_migrating, report: landing.land(self)? }
            }
            Prepared::Ended(batch) => batch,
        };
        Ok(Served { value, by: ServedBy { plugin, digest } })
    }

    /// Batches of the account's notes, from the first left, while `budget`
    /// lasts, each landed before the next is read (each after the one
    /// before, by id). With `toward_new`, only while the flag says that way:
    /// a job never moves the wrong way after a flip. `Moved` if any batch
    /// landed (an error after that ends the run, logged; the next run meets
    /// it again), else what the first batch found, or its error.
    pub(super) fn move_run(&self, account: Uuid, toward_new: bool, budget: RunBudget) -> Result<Batch, AppError> {
        let started = Instant::now();
        let mut landed: Option<(bool, MoveReport)> = None;
        let mut after = String::new();
        let ended = loop {
            let ready = match self.prepare_move(account, Some(toward_new), &after) {
                Ok((Prepared::Ready(ready), ..)) => ready,
                Ok((Prepared::Ended(batch), ..)) => break Ok(batch),
                Err(e) => break Err(e),
            };
            after.clone_from(&ready.last_id);
            let is_migrating = ready.admission.is_migrating;
            let report = match ready.land(self) {
                Ok(report) => report,
                Err(e) => break Err(e),
            };
            let total = &mut landed.get_or_insert((is_migrating, MoveReport::default())).1;
            add(total, report);
            if started.elapsed() >= budget.time || u64::from(total.moved + total.in_place + total.missing) >= budget.notes {
                // The budget is spent; what ends the loop once a batch landed is not returned.
                break Ok(Batch::NothingLeft { is_migrating });
            }
        };
        match (landed, ended) {
            (Some((is_migrating, report)), end) => {
                if let Err(e) = end {
                    tracing::warn!(%account, error = %e, "a move run ended early; its next step retries");
                }
                Ok(Batch::Moved { is_migrating, report })
            }
            (None, end) => end,
        }
    }

    /// One batch: admitted like a note request, up to `batch_size` notes
    /// after `after` from the store the account's mode drains, through the
    /// plugin. Its writes are not landed yet. With `toward_new`, only if the
    /// flag read for this batch says that way.
    fn prepare_move(&self, account: Uuid, toward_new: Option<bool>, after: &str) -> Result<(Prepared<'_>, String, String), AppError> {
        let admission = self.fleet.admit(account)?;
        // A batch runs on a job's thread: its plugin call is driven to its
        // end right here (`route_admitted` is the request path's, async).
        let served = pollster::block_on(self.notes.route_admitted(account, crate::router::Op::MoveNotes, &admission, |router, scope, migrating| async move {
            if toward_new.is_some_and(|want| want != migrating) {
                return Ok(Ok(Err(NotCalled::Ended(Batch::OtherMode { is_migrating: migrating }))));
            }
            let from = if migrating { Store::Legacy } else { Store::New };
            let ids = match self.stores.get(from) {
                Some(store) => match store.first_ids(&account.to_string(), after, self.batch_size.next()) {
                    Ok(ids) => ids,
                    Err(e) => return Ok(Ok(Err(NotCalled::Store(e)))),
                },
                // Plain mode: no new store, nothing to move.
                None => Vec::new(),
            };
            if ids.is_empty() {
                return Ok(Ok(Err(NotCalled::Ended(Batch::NothingLeft { is_migrating: migrating }))));
            }
            // One transaction per store for the whole batch, the store notes
            // move to first; landed only once the plugin's move succeeded,
            // and none open while it runs (`router::ScopeBatch`).
            let started = Instant::now();
            let (batched, writes) = scope.batched(if migrating { Store::New } else { Store::Legacy });
            let ids = match writes.read_ahead(&ids) {
                Ok(fit) => &ids[..fit],
                Err(e) => return Ok(Ok(Err(NotCalled::Store(e)))),
            };
            let report = match router.move_notes(batched, ids, migrating).await? {
                Ok(report) => report,
                Err(e) => return Ok(Err(e)),
            };
            let last_id = ids.last().cloned().unwrap_or_default();
            Ok(Ok(Ok((writes, report, ids.len(), last_id, started))))
        }));
        let Served { value, by } = served.map_err(|e| match e.error {
            // The plugin cannot move (an older WIT version, old code): a
            // state of the host, not a bad request.
            AppError::Invalid(m) => AppError::Conflict(m),
            other => other,
        })?;
        let prepared = match value {
            Ok((writes, report, notes, last_id, started)) => {
                Prepared::Ready(Landing { admission, writes, report, notes, last_id, started })
            }
            Err(NotCalled::Ended(batch)) => Prepared::Ended(batch),
            Err(NotCalled::Store(e)) => return Err(e.into()),
        };
        Ok((prepared, by.plugin, by.digest))
    }
}
