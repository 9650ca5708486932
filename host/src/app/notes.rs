//! The note service: read the flag, call the plugin bound to the account;
//! and the operator views of notes, straight from the stores.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use notes_routing::{Error as PluginError, IdList, Note, NoteChange, Store};
use uuid::Uuid;

use crate::clock::Clock;
use crate::coordination::Coordination;
use crate::fleet::Fleet;
use crate::router::{AccountScope, Op, PluginFailure, Routed, Router};
use crate::stores::DataStores;
use super::errors::no_account;
use super::note_turns::NoteTurns;
use super::{AppError, AppSettings, NoteError, PluginService, Served, ServedBy};

/// The note path, given only what it needs: the fleet (the flag, admission),
/// the stores, the plugin service (which router serves, and where its
/// failures go), and one writer at a time per note.
pub struct NoteService {
    fleet: Arc<Fleet>,
    stores: DataStores,
    /// The flag of an account for the operator views (`placement`).
    coordination: Arc<dyn Coordination>,
    plugins: Arc<PluginService>,
    note_turns: NoteTurns,
    settings: AppSettings,
    clock: Arc<dyn Clock>,
    /// The flag and every store answer in microseconds (`note_path_inline`);
    /// fixed once the service is built.
    in_process: bool,
    /// Every store's request-path calls are awaited or answered in
    /// microseconds (`DataStore::serves_requests_async`): a plugin's calls
    /// may run on the request's task.
    stores_async: bool,
}

/// How often an update carrying `updatedAt` re-reads a note that changed
/// under it before giving up (503).
const STALE_CHECK_ATTEMPTS: usize = 8;

/// How far ahead of this host's clock a client's `createdAt` / `updatedAt`
/// may be: Notely's clients stamp writes with their own clock. Five minutes
/// is Kerberos's default skew: far beyond what NTP leaves (milliseconds) or a
/// drifting laptop or phone gathers between syncs (seconds). A time within it
/// but ahead of the host is kept as the host's time (no write can happen
/// later than it arrived); one beyond it is refused.
pub(super) const MAX_CLIENT_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub legacy: bool,
    pub new: bool,
}

impl NoteService {
    pub(super) fn new(
        fleet: Arc<Fleet>,
        stores: DataStores,
        coordination: Arc<dyn Coordination>,
        plugins: Arc<PluginService>,
        settings: AppSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let in_process = coordination.is_in_process() && stores.are_in_process();
        let stores_async = stores.serve_requests_async();
        NoteService { fleet, stores, coordination, plugins, note_turns: NoteTurns::default(), settings, clock, in_process, stores_async }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// `created_at_ms`: the client's creation time, kept if given (Notely's
    /// rule); else now.
    pub async fn create_note(&self, account: Uuid, id: Option<Uuid>, content: String, created_at_ms: Option<i64>) -> Result<Served<Note>, NoteError> {
        valid_content(&content, self.settings.max_content_bytes)?;
        let at_ms = self.client_time("createdAt", created_at_ms)?;
        let change = NoteChange { id: id.unwrap_or_else(Uuid::new_v4).to_string(), content, at_ms };
        // A new id cannot race; a client's id can (a retried create).
        self.route_note(account, id, Op::CreateNote, |r, scope, migrating| async move { r.create_note(scope, change, migrating).await })
            .await
            .and_then(|n| self.checked(account, Op::CreateNote, n))
    }

    pub async fn note(&self, account: Uuid, id: Uuid) -> Result<Served<Note>, NoteError> {
        let id = id.to_string();
        self.route(account, Op::GetNote, |r, scope, migrating| async move { r.get_note(scope, &id, migrating).await })
            .await
            .and_then(|n| self.checked(account, Op::GetNote, n))
    }

    pub async fn note_ids(&self, account: Uuid) -> Result<Served<IdList>, NoteError> {
        self.route(account, Op::ListNotes, |r, scope, migrating| async move { r.list_notes(scope, migrating).await }).await
    }

    /// `expected_version` (`If-Match`) is the strict form: any other version
    /// is refused. Without it, `updated_at_ms` (the client's time of the
    /// write) is Notely's rule: a write older than the stored note leaves it
    /// unchanged and answers the stored note. A stored time ahead of this
    /// host's clock (written before client times were checked, or before the
    /// host's clock was set back) is known to be wrong: any write replaces
    /// it, so it cannot make every later write "older" and freeze the note.
    /// The check and the write are one compare-and-set on the note's version,
    /// retried if another write slips in between.
    pub async fn update_note(
        &self,
        account: Uuid,
        id: Uuid,
        content: String,
        expected_version: Option<u64>,
        updated_at_ms: Option<i64>,
    ) -> Result<Served<Note>, NoteError> {
        valid_content(&content, self.settings.max_content_bytes)?;
        let at_ms = self.client_time("updatedAt", updated_at_ms)?;
        let write = |expected: Option<u64>| {
            let change = NoteChange { id: id.to_string(), content: content.clone(), at_ms };
            async move {
                self.route_note(account, Some(id), Op::UpdateNote, |r, scope, migrating| async move {
                    r.update_note(scope, change, expected, migrating).await
                })
                .await
                .and_then(|n| self.checked(account, Op::UpdateNote, n))
            }
        };
        if updated_at_ms.is_none() || expected_version.is_some() {
            return write(expected_version).await;
        }
        for _ in 0..STALE_CHECK_ATTEMPTS {
            let stored = self.note(account, id).await?;
            let stored_at = stored.value.updated_at_ms;
            if stored_at <= self.now_ms() && at_ms < stored_at {
                return Ok(stored);
            }
            match write(Some(stored.value.version)).await {
                Err(NoteError { error: AppError::VersionMismatch { .. }, .. }) => continue,
                written => return written,
            }
        }
        Err(AppError::Unavailable(format!("note {id} kept changing while this update was checked against it; retry")).into())
    }

    /// A client's time of a write, or now. One too far ahead of this host's
    /// clock is refused (kept, it would outrank every honest write after it);
    /// one a little ahead is taken as now.
    fn client_time(&self, field: &str, client_ms: Option<i64>) -> Result<i64, AppError> {
        let now = self.now_ms();
        match client_ms {
            None => Ok(now),
            Some(at) if at > now && at <= now + MAX_CLIENT_CLOCK_AHEAD_MS => Ok(now),
            Some(at) if at > now + MAX_CLIENT_CLOCK_AHEAD_MS => Err(AppError::Invalid(format!(
                "{field} is {} s ahead of this host's clock; at most {} s of clock skew is accepted (check the client's clock, or leave {field} out)",
                (at - now) / 1000,
                MAX_CLIENT_CLOCK_AHEAD_MS / 1000
            ))),
            Some(at) => Ok(at),
        }
    }

    /// Idempotent, as for Notely's clients: deleting a note that does not
    /// exist succeeds (the plugin's `not-found` is a success here).
    pub async fn delete_note(&self, account: Uuid, id: Uuid) -> Result<Served<()>, NoteError> {
        let note = id.to_string();
        self.route_note(account, Some(id), Op::DeleteNote, |r, scope, migrating| async move {
            match r.delete_note(scope, &note, migrating).await {
                Ok(Err(PluginError::NotFound)) => Ok(Ok(())),
                answer => answer,
            }
        })
        .await
    }

    /// The note's write turn in this host (`note_turns`): held across the
    /// plugin call and its store writes, so this host's writers of one note
    /// never race each other.
    async fn note_turn(&self, account: Uuid, id: Uuid) -> Result<super::note_turns::NoteTurn<'_>, AppError> {
        self.note_turns.take(account, id, self.settings.note_turn_wait).await.ok_or_else(|| {
            AppError::Unavailable(format!(
                "note {id} is being written by other requests and its turn did not come within {:?}; retry",
                self.settings.note_turn_wait
            ))
        })
    }

    /// Whether a note operation may run on the request's own task, on its
    /// async worker, or must run on a blocking thread (`api::note_path`).
    /// A plugin's store imports await (`DataStore::serves_requests_async`),
    /// and a flag read over the network hands the worker's other tasks to
    /// another thread meanwhile (`Fleet::admit_async`), so a plugin's calls
    /// run inline on every backend. The native router calls the stores'
    /// blocking methods: inline only if they answer in microseconds, and a
    /// write waits for its commit without holding the thread.
    pub fn note_path_inline(&self, write: bool) -> bool {
        match self.plugins.native() {
            Some(native) => self.in_process && !(write && native.writes_block()),
            None => self.stores_async && !(write && self.plugins.active().plugin.writes_block()),
        }
    }

    /// Refuses to pass on a note larger than any request could have written.
    fn checked(&self, account: Uuid, op: Op, served: Served<Note>) -> Result<Served<Note>, NoteError> {
        let size = served.value.content.len();
        if size > self.settings.max_note_bytes {
            let message = format!("returned a note of {size} bytes, over the {} byte limit", self.settings.max_note_bytes);
            let error = self.plugins.plugin_fault(account, op, &served.by.plugin, &served.by.digest, message);
            return Err(NoteError { error, served_by: Some(served.by) });
        }
        Ok(served)
    }

    /// Reads the account's flag now, then makes one routing call (the active
    /// plugin, or the native baseline) with the stores bound to that account.
    /// `op` names the operation in the metrics.
    async fn route<T, F: Future<Output = Routed<T>>>(
        &self,
        account: Uuid,
        op: Op,
        call: impl FnOnce(Arc<dyn Router>, AccountScope, bool) -> F,
    ) -> Result<Served<T>, NoteError> {
        self.route_note(account, None, op, call).await
    }

    /// [`NoteService::route`] for a write of the note `note`: once admitted, it
    /// waits for the note's turn (`note_turns`), so this host's writers of
    /// one note run one at a time and never race. Admitted first, so the
    /// waiters count against the account's `--max-requests-per-account`.
    async fn route_note<T, F: Future<Output = Routed<T>>>(
        &self,
        account: Uuid,
        note: Option<Uuid>,
        op: Op,
        call: impl FnOnce(Arc<dyn Router>, AccountScope, bool) -> F,
    ) -> Result<Served<T>, NoteError> {
        // Held to the end of the call: no flip of this account completes
        // anywhere while this request runs under the value it read.
        let admission = self.fleet.admit_async(account).await.map_err(AppError::from)?;
        let _turn = match note {
            Some(id) => Some(self.note_turn(account, id).await?),
            None => None,
        };
        let served = self.route_admitted(account, op, &admission, call).await;
        // A read is as good as the flag it ran under. A host whose lease
        // lapsed meanwhile (stopped, cut off) may have been left behind by a
        // flip and read both stores around a move made under the new value:
        // an answer missing notes. Writes are fenced at the stores; a read
        // is refused here instead (the lease lapses here before the fleet
        // counts this host gone, so a read that ends with it held saw no flip).
        if op.is_read() && served.is_ok() && !admission.lease_held() {
            return Err(AppError::Unavailable(format!(
                "this host's lease lapsed while the request ran; the isMigrating of account {account} may have changed, retry"
            ))
            .into());
        }
        served
    }

    /// [`NoteService::route`] once admitted.
    pub(super) async fn route_admitted<T, F: Future<Output = Routed<T>>>(
        &self,
        account: Uuid,
        op: Op,
        admission: &crate::fleet::Admission<'_>,
        call: impl FnOnce(Arc<dyn Router>, AccountScope, bool) -> F,
    ) -> Result<Served<T>, NoteError> {
        let is_migrating = admission.is_migrating;
        let scope = AccountScope::new(account.to_string(), admission.epoch, self.stores.clone());
        let store_failure = scope.store_failure();
        // A router that failed after a store did passed the store's failure
        // on: the host's 503, naming the store, not the plugin's fault.
        let store_failed = |answer: &Routed<T>| match answer {
            Ok(Ok(_)) => None,
            _ => store_failure.get().map(|why| AppError::Unavailable(format!("{why}; retry"))),
        };
        if let Some(native) = self.plugins.native() {
            let started = Instant::now();
            let answer = call(native.clone(), scope, is_migrating).await;
            observe_call(native.label(), op, &answer, started.elapsed());
            if let Some(failed) = store_failed(&answer) {
                return Err(failed.into());
            }
            return self.served(account, op, native.as_ref(), answer);
        }
        let active = self.plugins.active();
        let plugin = &active.plugin;
        // Why stays with the operators (`GET /plugins`): the reason quotes
        // the plugin's last failure, its internals.
        if active.suspended().is_some() {
            return Err(AppError::Unavailable(format!(
                "plugin {} is suspended by its health watch; an operator must activate a plugin (GET /plugins says why)",
                plugin.label()
            ))
            .into());
        }
        let started = Instant::now();
        let answer = call(plugin.clone(), scope, is_migrating).await;
        observe_call(plugin.label(), op, &answer, started.elapsed());
        if let Some(failed) = store_failed(&answer) {
            tracing::warn!(plugin = plugin.label(), %account, operation = op.as_str(), error = %failed, "a store failed under the plugin's call");
            active.health.record(account, false);
            return Err(failed.into());
        }
        // A full instance pool is the host's state, not the plugin's fault.
        let failed = matches!(&answer, Err(f) if !matches!(f, PluginFailure::Busy { .. }));
        if let Some(tripped) = active.health.record(account, failed) {
            // Writes the catalog (a round trip on PostgreSQL): in place.
            crate::blocking::in_place(|| self.plugins.automatic_rollback(&active, tripped, answer.as_ref().err()));
        }
        self.served(account, op, plugin.as_ref(), answer)
    }

    /// A routing call's answer as the caller gets it: the WIT errors in the
    /// product's words, and a plugin's own failures kept for operators
    /// (`plugin_faults`), the client told only their id.
    fn served<T>(&self, account: Uuid, op: Op, router: &dyn Router, answer: Routed<T>) -> Result<Served<T>, NoteError> {
        let (plugin, digest) = (router.label(), router.digest());
        let served_by = || ServedBy { plugin: plugin.to_owned(), digest: digest.to_owned() };
        let by = |error: AppError| NoteError { error, served_by: Some(served_by()) };
        match answer {
            Ok(Ok(value)) => Ok(Served { value, by: served_by() }),
            Ok(Err(e)) => Err(by(match e {
                PluginError::NotFound => AppError::NotFound("Note not found".into()),
                PluginError::VersionMismatch(current) => AppError::VersionMismatch { current },
                PluginError::Conflict(m) => AppError::Conflict(m),
                PluginError::Invalid(m) => AppError::Invalid(m),
                PluginError::Unavailable(m) => AppError::Unavailable(m),
                PluginError::Internal(m) => self.plugins.plugin_fault(account, op, plugin, digest, m),
            })),
            Err(PluginFailure::Trapped { message, .. } | PluginFailure::OverLimit { message, .. }) => Err(by(self.plugins.plugin_fault(account, op, plugin, digest, message))),
            // The plugin's author needs these as much as a trap (a loop, a
            // slow path): recorded under the request's id, while the client
            // gets the 503 that says it was the plugin's deadline.
            Err(failure @ (PluginFailure::Timeout { .. } | PluginFailure::OutOfFuel { .. })) => {
                let what = match &failure {
                    PluginFailure::Timeout { deadline, .. } => format!("deadline after {} ms in {}", deadline.as_millis(), op.as_str()),
                    PluginFailure::OutOfFuel { fuel, .. } => format!("out of fuel ({fuel} units) in {}", op.as_str()),
                    _ => unreachable!("matched above"),
                };
                self.plugins.record_plugin_fault(account, op, plugin, digest, what, true);
                Err(by(failure.into()))
            }
            Err(failure) => Err(by(failure.into())),
        }
    }

    /// Fail closed: an account that cannot be read fails the request.
    fn flag(&self, account: Uuid) -> Result<bool, AppError> {
        match self.coordination.flag_state(account) {
            Ok(Some(state)) => Ok(state.is_migrating),
            Ok(None) => Err(no_account()),
            Err(e) => Err(AppError::Unavailable(format!("cannot read the isMigrating flag of account {account}: {e}"))),
        }
    }

    // ---- operator views, straight from the stores -------------------------

    pub fn placement(&self, account: Uuid, note: Uuid) -> Result<Placement, AppError> {
        self.flag(account)?;
        let (key, id) = (account.to_string(), note.to_string());
        let is_in = |store| -> Result<bool, AppError> {
            Ok(match self.stores.get(store) {
                Some(s) => s.get(&key, &id)?.is_some(),
                None => false,
            })
        };
        let placement = Placement { legacy: is_in(Store::Legacy)?, new: is_in(Store::New)? };
        if !placement.legacy && !placement.new {
            return Err(AppError::NotFound(format!("note {note} is in no store")));
        }
        Ok(placement)
    }
}

/// One routing call in the metrics: by plugin, operation and outcome.
fn observe_call<T>(plugin: &str, op: Op, answer: &Routed<T>, took: std::time::Duration) {
    let outcome = match answer {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(PluginFailure::Timeout { .. }) => "deadline",
        Err(PluginFailure::OutOfFuel { .. }) => "fuel",
        Err(PluginFailure::Busy { .. }) => "busy",
        Err(PluginFailure::OverLimit { .. }) => "limit",
        Err(PluginFailure::Trapped { .. }) => "trap",
    };
    crate::metrics::plugin_call(plugin, op.as_str(), outcome, took);
}

fn valid_content(content: &str, max_bytes: usize) -> Result<(), AppError> {
    if content.is_empty() {
        return Err(AppError::Invalid("note content is required".into()));
    }
    if content.len() > max_bytes {
        return Err(AppError::TooLong { what: "note content", max_bytes, sent_bytes: content.len() });
    }
    Ok(())
}
