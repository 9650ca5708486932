//! Migrations as an operator runs them: the state of each account and of the
//! whole service, verify, the staged rollout and its kill switch, and the
//! audit log they all write to.

use std::collections::BTreeSet;

use notes_routing::{IdList, Placement, Store};
use uuid::Uuid;

use crate::coordination::{Account, AuditEntry, AuditQuery, Verified};
use crate::fleet::{FlipCause, FlipOutcome};
use super::{Actor, App, AppError};
use super::away_memo::Seen;

/// Where an account stands, from its flag, whether its notes are where the
/// serving plugin says they belong (`homes`), and its last verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    /// Flag off, nothing in the new store, not verified since.
    Legacy,
    /// Flag on, notes left away from their home (or not verified yet).
    Migrating,
    /// Flag on, every note where the plugin says it belongs, and the last verify was clean.
    Migrated,
    /// Flag off, notes left away from their home (for the migrate rule: in the new store).
    RollingBack,
    /// Flag off after it was on, every note home, and the last verify was clean.
    RolledBack,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Legacy => "legacy",
            MigrationState::Migrating => "migrating",
            MigrationState::Migrated => "migrated",
            MigrationState::RollingBack => "rolling-back",
            MigrationState::RolledBack => "rolled-back",
        }
    }

    /// `was_migrating`: the flag was on at some time. An account that never
    /// had it on stays `legacy` whatever a verify found: nothing was rolled back.
    /// `away`: notes with a copy where they do not belong, or missing one
    /// where they do ([`away_from_home`]); asked only when it decides.
    fn of(
        is_migrating: bool,
        was_migrating: bool,
        verified: Option<Verified>,
        mut away: impl FnMut() -> Result<u64, AppError>,
    ) -> Result<Self, AppError> {
        let clean = verified.is_some_and(|v| v.clean);
        Ok(match is_migrating {
            true if !clean => MigrationState::Migrating,
            true if away()? == 0 => MigrationState::Migrated,
            true => MigrationState::Migrating,
            false if away()? > 0 => MigrationState::RollingBack,
            false if clean && was_migrating => MigrationState::RolledBack,
            false => MigrationState::Legacy,
        })
    }
}

/// Whether a note found live in legacy (`in_legacy`) and new (`in_new`) is
/// away from `home`: a copy in a store it does not belong in, or, belonging
/// in both, a copy missing from one. A note that belongs in one store and
/// has an older copy in the other too is away (the next read removes it).
fn away_from_home(home: Placement, in_legacy: bool, in_new: bool) -> bool {
    home.holds(Store::Legacy) != in_legacy || home.holds(Store::New) != in_new
}

/// Ids one `homes` call asks about: a verify of an account of 100k notes is
/// 25 calls, each well under the plugin's deadline even in Python.
const HOMES_PER_CALL: usize = 4096;

fn placement_words(home: Placement) -> &'static str {
    match home {
        Placement::Legacy => "in legacy",
        Placement::New => "in new",
        Placement::Both => "in both stores",
    }
}

/// `GET /accounts/{id}/migration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    pub is_migrating: bool,
    pub state: MigrationState,
    pub legacy_notes: u64,
    pub new_notes: u64,
    pub verified: Option<Verified>,
}

/// `GET /migration`: the whole service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceMigration {
    /// Accounts per state, in `MigrationState` order.
    pub accounts: [(&'static str, u64); 5],
    /// Notes in legacy of accounts whose flag is on: what a backfill moves.
    pub notes_to_new: u64,
    /// Notes in new of accounts whose flag is off: what a bulk rollback moves.
    pub notes_to_legacy: u64,
    /// Every account's notes, per store.
    pub legacy_notes: u64,
    pub new_notes: u64,
    pub rollout_percent: Option<f64>,
}

/// Problems a verify reports by note, at most this many.
pub const VERIFY_PROBLEMS_SHOWN: usize = 20;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub is_migrating: bool,
    pub notes: u64,
    /// In both stores: an older (or equal) copy the next read removes; not a problem.
    pub duplicates: u64,
    pub unreadable: u64,
    /// In the store the account's mode drains, not its home store.
    pub misplaced: u64,
    /// Live in one store below a tombstone in the other: a delete cut short.
    pub half_deleted: u64,
    /// The first [`VERIFY_PROBLEMS_SHOWN`] problems: (note id, what).
    pub problems: Vec<(String, String)>,
    pub clean: bool,
    /// False if the account changed while the verify ran (a flip, even one
    /// turned back): nothing was recorded.
    pub recorded: bool,
}

/// The outcome of a rollout or the kill switch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutReport {
    pub percent: Option<f64>,
    pub turned_on: u64,
    pub turned_off: u64,
    pub unchanged: u64,
    /// Accounts a rollout left off because the kill switch was pressed while it ran.
    pub stopped: u64,
    /// Accounts whose flag could not be changed, with the reason.
    pub failed: Vec<(Uuid, String)>,
}

impl RolloutReport {
    fn count(&mut self, id: Uuid, on: bool, outcome: Result<FlipOutcome, AppError>) {
        match outcome {
            Ok(FlipOutcome::Unchanged) => self.unchanged += 1,
            Ok(FlipOutcome::Flipped { .. }) if on => self.turned_on += 1,
            Ok(FlipOutcome::Flipped { .. }) => self.turned_off += 1,
            Err(AppError::Stopped(_)) => self.stopped += 1,
            Err(e) => self.failed.push((id, e.to_string())),
        }
    }

    /// The audit entry's detail.
    fn summary(&self) -> String {
        let stopped = if self.stopped > 0 { format!(", {} left off by the kill switch", self.stopped) } else { String::new() };
        format!(
            "{} turned on, {} turned off, {} unchanged{stopped}, {} failed",
            self.turned_on,
            self.turned_off,
            self.unchanged,
            self.failed.len()
        )
    }
}

/// Which accounts a rollout targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollout {
    /// Every account whose cohort falls under this percent on, the others off.
    Percent(f64),
    /// These accounts to this value.
    Accounts { ids: Vec<Uuid>, is_migrating: bool },
}

/// Flips a rollout runs at once; flips of different accounts are independent.
const ROLLOUT_PARALLELISM: usize = 4;

/// An account's rollout cohort, in [0, 10 000): sticky (a hash of its id, salted
/// so it is independent of its shard) and nested (the accounts under 10% are
/// under 20% too).
pub fn cohort(account: Uuid) -> u64 {
    crate::stable_hash::fnv1a(b"rollout:".iter().copied().chain(account.to_string().into_bytes())) % 10_000
}

fn in_cohort(account: Uuid, percent: f64) -> bool {
    (cohort(account) as f64) < percent * 100.0
}

impl App {
    pub fn migration_status(&self, account: Uuid) -> Result<MigrationStatus, AppError> {
        self.status_of(&self.account(account)?)
    }

    /// The status of an account already read: its notes counted now, and
    /// judged by where the serving plugin says they belong. A plugin built
    /// before WIT 0.4.0 follows the migrate rule, so its notes are only
    /// counted; a 0.4 plugin is asked (`homes`, one call per 4096 notes),
    /// only when the state depends on it: an account with notes whose flag
    /// is off, or is on with a clean verify; and only once while the plugin,
    /// the flag and the note ids stay the same (`away_memo`).
    fn status_of(&self, account: &Account) -> Result<MigrationStatus, AppError> {
        let Account { is_migrating, was_migrating, verified, .. } = *account;
        let key = account.id.to_string();
        let legacy_notes = self.stores.legacy.count(&key)?;
        let new_notes = match &self.stores.new {
            Some(new) => new.count(&key)?,
            None => 0,
        };
        let away = || -> Result<u64, AppError> {
            // Nothing to ask: an account whose flag was never on and with
            // nothing in new is `legacy` whatever the plugin would say, and
            // a scrape of /metrics must not make plugin calls for it.
            if legacy_notes + new_notes == 0 || (!is_migrating && !was_migrating && new_notes == 0) {
                return Ok(0);
            }
            let by_rule = match Placement::by_migrate_rule(self.stores.new.is_some(), is_migrating) {
                Placement::New => legacy_notes,
                _ => new_notes,
            };
            let router = self.plugins.serving();
            if router.homes_by_migrate_rule() {
                return Ok(by_rule);
            }
            let (legacy, new) = self.note_ids_per_store(&key)?;
            let seen = Seen::new(router.digest(), is_migrating, &legacy, &new);
            if let Some(away) = self.away_memo.get(account.id, &seen) {
                return Ok(away);
            }
            let all = legacy.clone().union(new.clone());
            // A plugin that cannot answer (a trap, suspended) must not take
            // the overview and the metrics down with it: its accounts are
            // judged by the migrate rule meanwhile. Its failure is in its
            // faults; a verify, which needs the answer, fails instead.
            let homes = match self.homes(account.id, &all, is_migrating) {
                Ok(homes) => homes,
                Err(e) => {
                    tracing::warn!(account = %account.id, error = %e, "the plugin could not say where notes belong; the account's state follows the migrate rule");
                    return Ok(by_rule);
                }
            };
            let (in_legacy, in_new): (BTreeSet<&str>, BTreeSet<&str>) = (legacy.iter().collect(), new.iter().collect());
            let away = all.iter().zip(homes).filter(|(id, home)| away_from_home(*home, in_legacy.contains(id), in_new.contains(id))).count() as u64;
            self.away_memo.keep(account.id, seen, away);
            Ok(away)
        };
        let state = MigrationState::of(is_migrating, was_migrating, verified, away)?;
        Ok(MigrationStatus { is_migrating, state, legacy_notes, new_notes, verified })
    }

    /// The account's live note ids in legacy and in new (empty without one).
    fn note_ids_per_store(&self, key: &str) -> Result<(IdList, IdList), AppError> {
        let ids = |store: Store| -> Result<IdList, AppError> {
            Ok(match self.stores.get(store) {
                Some(s) => s.list_ids(key)?,
                None => IdList::default(),
            })
        };
        Ok((ids(Store::Legacy)?, ids(Store::New)?))
    }

    /// Where each of `ids` belongs under `is_migrating`, one per id in their
    /// order: the migrate rule for a router that follows it unasked (a
    /// plugin built before WIT 0.4.0), else the serving router's `homes`, in
    /// calls of [`HOMES_PER_CALL`] ids, each admitted like a request. The
    /// plugin reads the stores through a batched scope never committed:
    /// nothing it writes while asked lands.
    fn homes(&self, account: Uuid, ids: &IdList, is_migrating: bool) -> Result<Vec<Placement>, AppError> {
        if self.plugins.serving().homes_by_migrate_rule() {
            return Ok(vec![Placement::by_migrate_rule(self.stores.new.is_some(), is_migrating); ids.len()]);
        }
        let all: Vec<&str> = ids.iter().collect();
        let mut homes = Vec::with_capacity(all.len());
        for chunk in all.chunks(HOMES_PER_CALL) {
            let chunk: IdList = chunk.iter().collect();
            let admission = self.fleet.admit(account)?;
            // On a blocking thread (a verify, a status): driven to its end here.
            let served = pollster::block_on(self.notes.route_admitted(account, crate::router::Op::Homes, &admission, |router, scope, _| async move {
                let (read_only, _never_committed) = scope.batched(Store::New);
                router.homes(read_only, &chunk, is_migrating).await
            }))
            .map_err(|e| e.error)?;
            homes.extend(served.value);
        }
        Ok(homes)
    }

    pub fn service_migration(&self) -> Result<ServiceMigration, AppError> {
        let states = [
            MigrationState::Legacy,
            MigrationState::Migrating,
            MigrationState::Migrated,
            MigrationState::RollingBack,
            MigrationState::RolledBack,
        ];
        let mut summary = ServiceMigration {
            accounts: states.map(|s| (s.as_str(), 0)),
            rollout_percent: self.coordination.rollout_percent()?,
            ..ServiceMigration::default()
        };
        for account in self.accounts()? {
            let status = self.status_of(&account)?;
            let i = states.iter().position(|s| *s == status.state).expect("every state is listed");
            summary.accounts[i].1 += 1;
            summary.legacy_notes += status.legacy_notes;
            summary.new_notes += status.new_notes;
            if status.is_migrating {
                summary.notes_to_new += status.legacy_notes;
            } else {
                summary.notes_to_legacy += status.new_notes;
            }
        }
        Ok(summary)
    }

    /// Checks, without changing anything but what reads repair, that every
    /// note of the account is readable through the plugin, sits where the
    /// plugin says it belongs (`homes`; for a plugin built before WIT 0.4.0
    /// the migrate rule: new with the flag on, legacy with it off), and has
    /// no live copy below a tombstone. A clean verify, recorded with the flag
    /// it ran under, is what makes an account `migrated` or `rolled-back`.
    pub fn verify(&self, account: Uuid) -> Result<VerifyReport, AppError> {
        let Account { is_migrating, updated_at_ms: as_of, .. } = self.account(account)?;
        let key = account.to_string();
        let (legacy_ids, new_ids) = self.note_ids_per_store(&key)?;
        let all = legacy_ids.clone().union(new_ids.clone());
        let homes = self.homes(account, &all, is_migrating)?;
        let (legacy, new): (BTreeSet<String>, BTreeSet<String>) = (legacy_ids.to_vec().into_iter().collect(), new_ids.to_vec().into_iter().collect());
        let mut report = VerifyReport { is_migrating, ..VerifyReport::default() };
        let problem = |report: &mut VerifyReport, id: &str, what: String| {
            if report.problems.len() < VERIFY_PROBLEMS_SHOWN {
                report.problems.push((id.to_owned(), what));
            }
        };
        for (id, home) in all.iter().zip(homes) {
            report.notes += 1;
            let (in_legacy, in_new) = (legacy.contains(id), new.contains(id));
            if in_legacy && in_new && home != Placement::Both {
                // An older copy the next read removes: not a problem.
                report.duplicates += 1;
            } else if away_from_home(home, in_legacy, in_new) {
                report.misplaced += 1;
                let at = if in_new { "only in the new store" } else { "only in the legacy store" };
                problem(&mut report, id, format!("{at}, but the plugin places it {}", placement_words(home)));
            }
            for (live_in, other) in [(Store::Legacy, Store::New), (Store::New, Store::Legacy)] {
                let (Some(live), Some(other_store)) = (self.stores.get(live_in), self.stores.get(other)) else { continue };
                let Some(note) = live.get(&key, id)? else { continue };
                if let Some(tombstone) = other_store.recorded_version(&key, id)?.filter(|v| *v > note.version) {
                    if other_store.get(&key, id)?.is_none() {
                        report.half_deleted += 1;
                        problem(&mut report, id, format!("live at version {} but deleted at {tombstone} in the other store", note.version));
                    }
                }
            }
            let read = match id.parse::<Uuid>() {
                // On the verify's blocking thread: driven to its end here.
                Ok(note) => pollster::block_on(self.notes.note(account, note)).map(drop).map_err(|e| e.error),
                Err(e) => Err(AppError::Invalid(e.to_string())),
            };
            match read {
                Ok(()) => {}
                // A busy account or host says nothing about the note: the
                // verify stops, and is run again later.
                Err(e @ (AppError::Unavailable(_) | AppError::TooManyRequests(_))) => return Err(e),
                Err(AppError::Plugin(f @ crate::router::PluginFailure::Busy { .. })) => return Err(AppError::Plugin(f)),
                Err(e) => {
                    report.unreadable += 1;
                    problem(&mut report, id, format!("not readable through the plugin: {e}"));
                }
            }
        }
        report.clean = report.unreadable == 0 && report.misplaced == 0 && report.half_deleted == 0;
        let verified = Verified { at_ms: self.now_ms(), clean: report.clean };
        report.recorded = self.coordination.record_verify(account, as_of, verified)?;
        Ok(report)
    }

    /// Turns `isMigrating` on or off for many accounts, each through the flip
    /// protocol (so each waits for every host to drain), a few at a time.
    /// Turning on is refused up front while any host cannot migrate. A
    /// percent rollout is recorded as the service's rollout percent. Once the
    /// kill switch is pressed, on any host, this rollout turns no more
    /// accounts on (each is counted in `stopped`).
    ///
    /// After the kill switch, a rollout that would turn an account on is
    /// refused (409) unless it is sent with `resume`: an operator raising the
    /// percentage again, not a request that was already on its way.
    pub fn rollout(&self, rollout: Rollout, resume: bool) -> Result<RolloutReport, AppError> {
        let targets: Vec<(Uuid, bool)> = self.rollout_targets(&rollout)?.into_iter().map(|(id, _, on)| (id, on)).collect();
        self.rollout_may_turn_on(&targets)?;
        let began_at = if targets.iter().any(|(_, on)| *on) { Some(self.coordination.begin_rollout(resume)?) } else { None };
        let reason = match &rollout {
            Rollout::Percent(p) => format!("rollout to {p}%"),
            Rollout::Accounts { .. } => "rollout of listed accounts".to_owned(),
        };
        let previous = self.coordination.rollout_percent()?;
        let mut report = RolloutReport::default();
        let action = Uuid::new_v4().to_string();
        for (id, on, outcome) in self.flip_many(&targets, &reason, &action, began_at) {
            report.count(id, on, outcome);
        }
        // A rollout the kill switch stopped does not record its percent: the
        // kill switch's 0% stands until an operator raises it again.
        if let Rollout::Percent(p) = rollout {
            report.percent = Some(p);
            if report.stopped == 0 {
                self.coordination.set_rollout_percent(p)?;
            }
        }
        let before = previous.map(|p| format!("{p}%")).unwrap_or_default();
        let after = report.percent.map(|p| format!("{p}%")).unwrap_or_else(|| "listed accounts".into());
        self.fleet.audit_action(Actor::Operator.as_str(), "rollout", "percent", &before, &after, &report.summary(), &action);
        Ok(report)
    }

    /// The kill switch: migration off for every account, and it stays off.
    /// First every rollout in flight, on any host, is stopped (the stop
    /// generation is raised, so none of them turns another account on); then
    /// every account is turned off, each through the flip barrier, waiting
    /// out a flip already in progress on it. A second round does the same
    /// for what a rollout begun while the first round ran turned on. Only an
    /// account whose flip cannot complete (a host that does not drain) is
    /// reported failed, with what to do.
    pub fn kill_switch(&self) -> Result<RolloutReport, AppError> {
        let previous = self.coordination.rollout_percent()?;
        let mut report = RolloutReport { percent: Some(0.0), ..RolloutReport::default() };
        let action = Uuid::new_v4().to_string();
        for round in 0..2 {
            self.coordination.stop_rollouts()?;
            let accounts = self.accounts()?;
            // Accounts off and settled are left alone in the second round:
            // they were counted in the first.
            let targets: Vec<(Uuid, bool)> = accounts
                .iter()
                .filter(|a| round == 0 || a.is_migrating || self.flip_pending(a.id))
                .map(|a| (a.id, false))
                .collect();
            for (id, on, outcome) in self.flip_many(&targets, "kill switch", &action, None) {
                if round == 1 && matches!(outcome, Ok(FlipOutcome::Unchanged)) {
                    continue;
                }
                report.count(id, on, outcome);
            }
        }
        for (_, error) in &mut report.failed {
            error.push_str("; the account may still migrate: press the kill switch again once that host answers or has stopped");
        }
        let before = previous.map(|p| format!("{p}%")).unwrap_or_default();
        self.fleet.audit_action(Actor::Operator.as_str(), "kill-switch", "percent", &before, "0%", &report.summary(), &action);
        Ok(report)
    }

    /// Whether a flip of `account` is in progress now.
    fn flip_pending(&self, account: Uuid) -> bool {
        self.coordination.flag_state(account).ok().flatten().is_some_and(|state| state.flip.is_some())
    }

    /// Flips each of `targets` (account, wanted flag) a few at a time, as
    /// part of the operator action `action`. A flip already in progress on
    /// an account is waited out (at most as long as a flip can stay
    /// pending), then this one is made. A refusal whose flip has already
    /// ended when it is looked at (it ended between the two) is tried once
    /// more: only a refusal that holds is an answer.
    fn flip_many(&self, targets: &[(Uuid, bool)], reason: &str, action: &str, rollout: Option<i64>) -> Vec<(Uuid, bool, Result<FlipOutcome, AppError>)> {
        let cause = FlipCause { actor: Actor::Operator.as_str(), reason, action, rollout };
        let chunk = targets.len().div_ceil(ROLLOUT_PARALLELISM).max(1);
        let flip = |id: Uuid, on: bool| {
            let deadline = std::time::Instant::now() + self.fleet.longest_pending_flip();
            let mut tried_once_settled = false;
            loop {
                let outcome = self.set_flag(id, on, cause);
                if !matches!(outcome, Err(AppError::Conflict(_))) || std::time::Instant::now() >= deadline {
                    return outcome;
                }
                if self.flip_pending(id) {
                    tried_once_settled = false;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                } else if tried_once_settled {
                    return outcome;
                } else {
                    tried_once_settled = true;
                }
            }
        };
        std::thread::scope(|scope| {
            let workers: Vec<_> = targets
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().map(|&(id, on)| (id, on, flip(id, on))).collect::<Vec<_>>()))
                .collect();
            workers.into_iter().flat_map(|w| w.join().expect("a rollout worker panicked")).collect()
        })
    }

    /// What `rollout` would do now, without flipping anything: how many
    /// accounts it would turn on, turn off, or leave as they are.
    /// The same refusals as the rollout itself (the deployment gate, the
    /// kill switch's latch), and it releases nothing.
    pub fn rollout_preview(&self, rollout: &Rollout, resume: bool) -> Result<RolloutReport, AppError> {
        let targets = self.rollout_targets(rollout)?;
        self.rollout_may_turn_on(&targets.iter().map(|(id, _, on)| (*id, *on)).collect::<Vec<_>>())?;
        if !resume && targets.iter().any(|(_, now, to)| *to && !*now) && self.coordination.rollout_latched()? {
            return Err(crate::coordination::CoordinationError::Latched.into());
        }
        let mut report = RolloutReport { percent: match rollout { Rollout::Percent(p) => Some(*p), Rollout::Accounts { .. } => None }, ..RolloutReport::default() };
        for (_, now, to) in targets {
            match (now, to) {
                (false, true) => report.turned_on += 1,
                (true, false) => report.turned_off += 1,
                _ => report.unchanged += 1,
            }
        }
        Ok(report)
    }

    /// Each account `rollout` targets, once: (id, its flag now, the flag it wants).
    fn rollout_targets(&self, rollout: &Rollout) -> Result<Vec<(Uuid, bool, bool)>, AppError> {
        Ok(match rollout {
            Rollout::Percent(p) if !(0.0..=100.0).contains(p) => {
                return Err(AppError::Invalid(format!("percent must be between 0 and 100, got {p}")));
            }
            Rollout::Percent(p) => self.accounts()?.into_iter().map(|a| (a.id, a.is_migrating, in_cohort(a.id, *p))).collect(),
            Rollout::Accounts { ids, is_migrating } => {
                let unique: std::collections::BTreeSet<Uuid> = ids.iter().copied().collect();
                unique.into_iter().map(|id| Ok((id, self.account(id)?.is_migrating, *is_migrating))).collect::<Result<_, AppError>>()?
            }
        })
    }

    /// Turning any account on is refused up front while the gate is closed
    /// or any host cannot migrate.
    fn rollout_may_turn_on(&self, targets: &[(Uuid, bool)]) -> Result<(), AppError> {
        if targets.iter().any(|(_, on)| *on) {
            self.migration_gate()?;
            if let Some(host) = self.hosts()?.into_iter().find(|h| !h.host.plugin.supports_migration) {
                return Err(AppError::Gate(format!(
                    "cannot turn isMigrating on: host {} runs a plugin that does not support migration; upgrade it first",
                    host.describe()
                )));
            }
        }
        Ok(())
    }

    /// The audit log, oldest first, after the cursor `query.after_seq`.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.coordination.audit(query)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_away_when_a_copy_is_where_it_does_not_belong_or_missing_where_it_does() {
        // (home, in legacy, in new) -> away
        for (home, in_legacy, in_new, away) in [
            (Placement::Legacy, true, false, false),
            (Placement::Legacy, false, true, true),
            (Placement::Legacy, true, true, true),
            (Placement::New, false, true, false),
            (Placement::New, true, false, true),
            (Placement::Both, true, true, false),
            (Placement::Both, true, false, true),
            (Placement::Both, false, true, true),
        ] {
            assert_eq!(away_from_home(home, in_legacy, in_new), away, "{home:?} in legacy {in_legacy}, in new {in_new}");
        }
    }

    #[test]
    fn the_state_asks_where_notes_belong_only_when_it_decides() {
        let clean = Some(Verified { at_ms: 1, clean: true });
        let never = || -> Result<u64, AppError> { panic!("not asked: unverified with the flag on is migrating") };
        assert_eq!(MigrationState::of(true, true, None, never).unwrap(), MigrationState::Migrating);
        assert_eq!(MigrationState::of(true, true, clean, || Ok(0)).unwrap(), MigrationState::Migrated);
        assert_eq!(MigrationState::of(true, true, clean, || Ok(2)).unwrap(), MigrationState::Migrating);
        assert_eq!(MigrationState::of(false, true, None, || Ok(2)).unwrap(), MigrationState::RollingBack);
        assert_eq!(MigrationState::of(false, true, clean, || Ok(0)).unwrap(), MigrationState::RolledBack);
        assert_eq!(MigrationState::of(false, false, clean, || Ok(0)).unwrap(), MigrationState::Legacy, "never migrated");
        assert_eq!(MigrationState::of(false, true, None, || Ok(0)).unwrap(), MigrationState::Legacy, "not verified since the flip");
    }
}
