//! Changing `isMigrating` across the fleet, and admitting note requests.
//!
//! A flip of account A to value V:
//! 1. **Announce** (one write transaction): check the gate, note which hosts
//!    are registered, and mark A's row "flip F to V pending". From then on,
//!    every request for A on any host sees the mark when it reads the flag
//!    and waits instead of running.
//! 2. **Drain**: every host's watcher sees the mark, freezes A locally and
//!    acknowledges F once none of its requests for A is running. A request
//!    that read the old value counts as running until its answer is computed.
//! 3. **Commit** (one write transaction, only if F is still pending): set the
//!    flag to V and clear the mark. Waiting requests read V and go on.
//!
//! If a registered host does not acknowledge within the flip timeout, and its
//! process has not ended, the flip is **aborted**: the mark is cleared, the
//! flag keeps its old value, the caller gets an error naming the host. A host
//! whose process has ended runs nothing, so it is not waited for. A flip whose
//! caller dies is aborted by any host once its flipper is gone or its deadline
//! has passed. Commit and abort are both conditional on F still being
//! pending, and each is one atomic step of the coordination state, so
//! exactly one of them happens.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::inflight::{Entered, KnownFlag, NotEntered};
use super::{Fleet, FleetError, Shared};
use crate::coordination::{Announced, AuditEntry, CoordinationError, PendingFlip};

/// A note request admitted to run under `is_migrating`. While it lives, no
/// flip of its account can complete anywhere in the fleet.
pub struct Admission<'a> {
    pub is_migrating: bool,
    /// The flag's epoch it was read at: the request's writes carry it, and
    /// a store fenced by a later flip refuses them.
    pub epoch: i64,
    _entered: Entered<'a>,
    lease: &'a super::OwnLease,
    /// The lease's lapses before admission (`lease_held`).
    lapses: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipOutcome {
    /// The flag already had the value.
    Unchanged,
    /// Changed; every host had drained.
    Flipped { hosts: usize, took: Duration },
}

/// Who changes an account's flag and why: recorded with the flip, in the
/// same commit, as its audit entry.
#[derive(Debug, Clone, Copy)]
pub struct FlipCause<'a> {
    /// `operator` or `automatic`.
    pub actor: &'a str,
    pub reason: &'a str,
    /// The operator action (a rollout, the kill switch) the flip is part of
    /// (`AuditEntry::action`); empty for a flip of its own.
    pub action: &'a str,
    /// A rollout's flip: the stop generation it began at. Once the kill
    /// switch raised it, the flip turns nothing on (`FleetError::Stopped`).
    pub rollout: Option<i64>,
}

/// How often a request's task looks again whether a flip of its account ended.
const THAW_POLL: Duration = Duration::from_micros(500);

fn busy(account: Uuid, started: Instant) -> FleetError {
    FleetError::Busy(format!("isMigrating of account {account} is being changed; waited {} ms, retry", started.elapsed().as_millis()))
}

/// How long after its timeout an unfinished flip may be aborted by any host.
/// The flipper itself aborts at its timeout; this covers a flipper that died.
const ABANDON_GRACE: Duration = Duration::from_millis(1000);

impl Shared {
    /// The account's flag and any flip in progress, from the coordination
    /// state. One reached over the network (PostgreSQL) takes a round trip,
    /// made in place (`blocking::in_place`), so no request waits behind it.
    /// Known flags (`inflight`) make it rare: once per account and flip.
    fn read_flag(&self, account: Uuid) -> Result<Option<crate::coordination::FlagState>, CoordinationError> {
        if self.coordination.is_in_process() {
            return self.coordination.flag_state(account);
        }
        crate::blocking::in_place(|| self.coordination.flag_state(account))
    }
}

impl Admission<'_> {
    /// Whether this host's lease held throughout the request (always,
    /// without leases): held now, and never lapsed since admission. A request
    /// that ends so ran under a flag no flip changed. "Held now" alone is
    /// not enough: a host stopped past its lease (SIGSTOP) and resumed joins
    /// again at its next heartbeat, and a read admitted before the stop would
    /// then end with the lease held, having read both stores around a move
    /// made under the new flag (a note missing from its answer).
    pub fn lease_held(&self) -> bool {
        self.lease.held_since(self.lapses)
    }
}

impl Fleet {
    /// The longest a flip can stay pending: its flipper aborts it at the
    /// flip timeout, and any host aborts one whose flipper died once its
    /// deadline and the grace have passed.
    pub fn longest_pending_flip(&self) -> Duration {
        self.shared.settings.flip_timeout + ABANDON_GRACE + Duration::from_millis(500)
    }

    /// Reads the account's flag for one note request and counts the request
    /// as running under it. Waits (up to the flip wait) while a flip of the
    /// account is in progress. Fails closed: an unreadable flag is an error.
    /// For a thread that may block (a job's batch); a request's task uses
    /// [`Fleet::admit_async`].
    pub fn admit(&self, account: Uuid) -> Result<Admission<'_>, FleetError> {
        let started = Instant::now();
        loop {
            if let Some(admission) = self.try_admit(account)? {
                return Ok(admission);
            }
            self.shared.inflight.wait_for_thaw(account, self.flip_wait_left(account, started)?);
        }
    }

    /// [`Fleet::admit`] on a request's task: while a flip is in progress it
    /// waits on a timer, so its worker serves other requests meanwhile.
    pub async fn admit_async(&self, account: Uuid) -> Result<Admission<'_>, FleetError> {
        let started = Instant::now();
        loop {
            if let Some(admission) = self.try_admit(account)? {
                return Ok(admission);
            }
            // A flip takes milliseconds: polled, as the watcher of a host
            // that has not seen the flip yet polls (`wait_for_thaw`).
            let poll = self.flip_wait_left(account, started)?.min(THAW_POLL);
            match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::time::sleep(poll).await,
                // Driven outside the runtime (a verify's thread): nothing else runs here.
                Err(_) => std::thread::sleep(poll),
            }
        }
    }

    /// The rest of the flip wait of a request that arrived at `started`;
    /// `Busy` once none is left.
    fn flip_wait_left(&self, account: Uuid, started: Instant) -> Result<Duration, FleetError> {
        let left = (started + self.shared.settings.flip_wait).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(busy(account, started));
        }
        Ok(left)
    }

    /// One try at admitting a request: `None`
    /// while a flip of the account is in progress (frozen here, or marked
    /// pending on the flag).
    fn try_admit(&self, account: Uuid) -> Result<Option<Admission<'_>>, FleetError> {
        let shared = &self.shared;
        // Before anything is checked or read: a lapse from here on voids it.
        let lapses = shared.lease.lapses();
        let in_the_fleet = || -> Result<(), FleetError> {
            if !shared.registered.load(std::sync::atomic::Ordering::Acquire) {
                return Err(FleetError::Unavailable("this host is not registered in the fleet; it serves no note request".into()));
            }
            if !shared.lease.holds() {
                return Err(FleetError::Unavailable(
                    "this host's lease in the fleet lapsed (the coordination database was out of reach); it serves no note \
                     request until it joins again"
                        .into(),
                ));
            }
            Ok(())
        };
        in_the_fleet()?;
        // Read before the flag, so a lapse during the read voids what it learnt.
        let generation = shared.inflight.generation();
        let entered = match shared.inflight.enter(account, shared.settings.max_requests_per_account) {
            Ok(entered) => entered,
            Err(NotEntered::Frozen) => return Ok(None),
            Err(NotEntered::Saturated { running }) => return Err(FleetError::AccountSaturated { account, running }),
        };
        let flag = match entered.known {
            // No flip of the account since it was read (`inflight`), and the
            // lease held throughout (checked above, as for a read).
            Some(flag) if !shared.settings.unsafe_no_fleet_safety => flag,
            _ => {
                let state = shared
                    .read_flag(account)
                    .map_err(|e| FleetError::Unavailable(format!("cannot read the isMigrating flag of account {account}: {e}")))?
                    .ok_or(FleetError::NoAccount(account))?;
                // Again once the flag is read: a host stalled before the read
                // may have been counted gone meanwhile, and a flag turned on
                // without it (the gate no longer saw it) must not reach its
                // plugin. A read that ends while the lease still holds ran
                // before any host could count it gone.
                in_the_fleet()?;
                if state.flip.is_some() {
                    return Ok(None);
                }
                let flag = KnownFlag { is_migrating: state.is_migrating, epoch: state.epoch };
                shared.inflight.remember(account, flag, generation);
                flag
            }
        };
        Ok(Some(Admission { is_migrating: flag.is_migrating, epoch: flag.epoch, _entered: entered, lease: &shared.lease, lapses }))
    }

    /// Sets the account's flag to `to` on the whole fleet (see the module doc),
    /// recorded in the audit log with the commit, with its `cause`. Once
    /// every live host drained, `fence(epoch)` makes the stores refuse writes
    /// admitted under an older epoch (a host whose lease lapsed may still
    /// hold one), before the flag changes.
    pub fn flip(&self, account: Uuid, to: bool, cause: FlipCause<'_>, fence: &dyn Fn(i64) -> Result<(), String>) -> Result<FlipOutcome, FleetError> {
        let FlipCause { actor, reason, action, rollout } = cause;
        let shared = &self.shared;
        let now_ms = shared.clock.now_ms();
        let started = Instant::now();
        if shared.settings.unsafe_no_fleet_safety {
            return shared.flip_unsafely(account, to, now_ms);
        }
        shared.prune_gone_hosts();
        let flip = PendingFlip {
            account,
            id: Uuid::new_v4().to_string(),
            to,
            deadline_ms: now_ms + (shared.settings.flip_timeout + ABANDON_GRACE).as_millis() as i64,
            by_host: shared.me.id.to_string(),
        };
        let flip_id = flip.id.as_str();
        let (mut waiting_for, epoch): (BTreeSet<String>, i64) = match shared.coordination.announce_flip(&flip, shared.gate(), rollout) {
            Ok(Announced::Unchanged) => return Ok(FlipOutcome::Unchanged),
            Ok(Announced::Pending { hosts, epoch }) => (hosts.into_iter().map(|h| h.id).collect(), epoch),
            Err(e) => return Err(shared.fleet_error(e)),
        };
        let hosts = waiting_for.len();

        let timeout = started + shared.settings.flip_timeout;
        let mut next_liveness_check = Instant::now() + Duration::from_millis(10);
        while !waiting_for.is_empty() && Instant::now() < timeout {
            std::thread::sleep(Duration::from_micros(300));
            match shared.coordination.flip_acks(flip_id) {
                Ok(acked) => waiting_for.retain(|h| !acked.contains(h)),
                Err(e) => tracing::warn!(error = %e, "cannot read flip acknowledgements"),
            }
            if Instant::now() >= next_liveness_check {
                // A host that ended (or whose lease lapsed) runs no request
                // that can land: nothing to wait for.
                let gone = shared.gone_among(&waiting_for);
                waiting_for.retain(|h| !gone.contains(h));
                next_liveness_check = Instant::now() + Duration::from_millis(10);
            }
        }
        if !waiting_for.is_empty() {
            let names = shared.describe_hosts(&waiting_for)?;
            shared.abort(account, flip_id)?;
            return Err(FleetError::FlipFailed(format!(
                "isMigrating of account {account} was not changed: after {} ms, host(s) {} still ran requests under the old value \
                 or did not answer; nothing changed, retry (a host that stopped is dropped as soon as its process ends)",
                started.elapsed().as_millis(),
                names.join(", ")
            )));
        }

        // Every live host drained; one whose lease lapsed may still hold a
        // request admitted under the old epoch: the stores refuse its writes
        // from now on.
        if let Err(e) = fence(epoch) {
            shared.abort(account, flip_id)?;
            return Err(FleetError::FlipFailed(format!(
                "isMigrating of account {account} was not changed: the stores could not be fenced ({e}); nothing changed, retry"
            )));
        }

        // Turning on is checked against the hosts again. The plugin side of
        // the gate counts a pending "on" as migrating, so no host that cannot
        // migrate joined since the announcement; checked all the same.
        let now = shared.clock.now_ms();
        let audit = AuditEntry {
            seq: 0,
            at_ms: now,
            host: shared.me.name.clone(),
            actor: actor.to_owned(),
            kind: "flag".into(),
            subject: account.to_string(),
            before: (!to).to_string(),
            after: to.to_string(),
            detail: format!("{reason}; {hosts} host(s) drained in {} ms", started.elapsed().as_millis()),
            action: action.to_owned(),
            changes: 0,
        };
        let committed = match shared.coordination.commit_flip(&flip, shared.gate(), now, &audit) {
            Ok(committed) => committed,
            Err(refused @ CoordinationError::HostsCannotMigrate(_)) => {
                shared.abort(account, flip_id)?;
                return Err(shared.fleet_error(refused));
            }
            Err(e) => return Err(shared.fleet_error(e)),
        };
        if !committed {
            return Err(FleetError::FlipFailed(format!(
                "isMigrating of account {account} was not changed: the flip was aborted by another host (it ran past its deadline); retry"
            )));
        }
        Ok(FlipOutcome::Flipped { hosts, took: started.elapsed() })
    }
}

impl Shared {
    /// `name (address, plugin)` of the hosts `ids`.
    fn describe_hosts(&self, ids: &BTreeSet<String>) -> Result<Vec<String>, FleetError> {
        Ok(self.hosts()?.iter().filter(|h| ids.contains(&h.host.id)).map(super::HostView::describe).collect())
    }

    /// Clears flip `flip_id` of `account` if it is still pending; the flag
    /// keeps its value.
    pub(super) fn abort(&self, account: Uuid, flip_id: &str) -> Result<bool, FleetError> {
        let aborted = self.coordination.abort_flip(account, flip_id).map_err(|e| self.fleet_error(e))?;
        if aborted {
            tracing::warn!(%account, flip = flip_id, "flip aborted; isMigrating keeps its value");
        }
        Ok(aborted)
    }

    /// TEST ONLY: the flag is written at once, no gate, no drain.
    fn flip_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<FlipOutcome, FleetError> {
        if !self.coordination.set_flag_unsafely(account, to, now_ms).map_err(|e| self.fleet_error(e))? {
            return Err(FleetError::NoAccount(account));
        }
        tracing::warn!(%account, to, "isMigrating changed WITHOUT the fleet gate and drain barrier (--unsafe-no-fleet-safety)");
        let entry = AuditEntry {
            seq: 0,
            at_ms: now_ms,
            host: self.me.name.clone(),
            actor: "operator".into(),
            kind: "flag".into(),
            subject: account.to_string(),
            before: (!to).to_string(),
            after: to.to_string(),
            detail: "UNSAFE: without the fleet gate and drain barrier (--unsafe-no-fleet-safety)".into(),
            ..AuditEntry::default()
        };
        if let Err(e) = self.coordination.append_audit(&entry) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        Ok(FlipOutcome::Flipped { hosts: 0, took: Duration::ZERO })
    }
}
