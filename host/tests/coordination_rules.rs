//! The rules every coordination backend keeps (`notes_host::coordination`),
//! checked on each: `MemoryCoordination`, `SqliteCoordination` (a temp dir)
//! and `PostgresCoordination` (a fresh database on a throwaway server,
//! `notes_scenarios::postgres`).
//!
//! Each rule is one function over a [`Backend`]; `rules!` makes it a test per
//! backend (`memory::…`, `sqlite::…`, `postgres::…`). Where a rule needs
//! another process, it uses `other`: a second instance opened on the same
//! state (for memory, the same instance). The PostgreSQL-only rules (its
//! notifications, a lost watch connection) are at the end.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use notes_host::coordination::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, ChangeWatch, Coordination, CoordinationError, Hosts, FlagState, Gate, HostRecord,
    Job, JobKind, JobState, PendingFlip, PluginSummary, PostgresCoordination, SqliteCoordination, Verified,
};
use notes_in_process::MemoryCoordination;
use uuid::Uuid;

/// One backend under test.
struct Backend {
    state: Arc<dyn Coordination>,
    /// Another instance on the same state: another host, as far as the
    /// backend can tell. For memory, `state` itself.
    other: Arc<dyn Coordination>,
    /// Whether `other` is a separate instance (its reads do not wait for `state`'s writes).
    separate: bool,
    /// PostgreSQL's URL, for the rules that look underneath.
    url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Backend {
    let state: Arc<dyn Coordination> = Arc::new(MemoryCoordination::new());
    Backend { other: state.clone(), state, separate: false, url: None, _dir: None }
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("accounts.db");
    let state = Arc::new(SqliteCoordination::open(&path).expect("accounts.db opens"));
    let other = Arc::new(SqliteCoordination::open(&path).expect("accounts.db opens a second time"));
    Backend { state, other, separate: true, url: None, _dir: Some(dir) }
}

fn postgres() -> Backend {
    let url = notes_scenarios::postgres::database();
    let state = Arc::new(PostgresCoordination::open(&url).expect("the database opens"));
    let other = Arc::new(PostgresCoordination::open(&url).expect("the database opens a second time"));
    Backend { state, other, separate: true, url: Some(url), _dir: None }
}

macro_rules! rules {
    ($($rule:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $rule() { super::$rule(super::memory()) } )*
        }
        mod sqlite {
            $( #[test] fn $rule() { super::$rule(super::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $rule() { super::$rule(super::postgres()) } )*
        }
    };
}

rules! {
    a_walk_over_every_account_visits_each_once_in_id_order,
    an_account_reads_back_as_created_and_a_change_by_another_host_is_seen_by_the_next_read,
    creating_an_existing_id_is_refused_and_changes_nothing,
    an_account_created_migrating_beside_a_host_that_cannot_migrate_is_refused_and_not_created,
    a_verify_is_recorded_only_if_the_account_did_not_change_meanwhile,
    a_flip_is_pending_until_committed_and_an_aborted_flip_cannot_commit,
    a_committed_flip_sets_the_flag_clears_the_verify_and_is_logged_once,
    a_host_that_cannot_migrate_cannot_register_or_switch_plugin_while_an_account_migrates,
    a_flag_cannot_turn_on_while_a_host_that_cannot_migrate_is_registered,
    a_plugin_change_runs_before_commit_after_the_check_and_before_anyone_sees_it,
    the_two_sides_of_the_gate_never_both_pass_when_they_race,
    a_job_is_claimed_by_exactly_one_of_two_hosts_and_saved_only_by_its_owner_while_running,
    the_audit_log_pages_by_cursor_either_way_and_filters_by_kind_and_time,
    an_operator_action_reads_as_one_audit_entry_with_its_count,
    a_revoked_key_stays_revoked,
    a_removed_host_is_gone_with_its_acknowledgements,
    the_rollout_percent_is_unset_until_set_and_shared,
    once_the_kill_switch_is_pressed_no_rollout_turns_an_account_on_until_one_resumes,
    the_change_watch_reports_a_change_by_another_host_within_a_second_and_is_quiet_otherwise,
}

// ---- helpers ----------------------------------------------------------------

fn account(id: Uuid, name: &str, is_migrating: bool) -> Account {
    Account { id, name: name.into(), is_migrating, shard: None, verified: None, created_at_ms: 1, updated_at_ms: 1, was_migrating: false }
}

fn host(id: &str, supports_migration: bool) -> HostRecord {
    HostRecord {
        id: id.into(),
        name: id.into(),
        address: "-".into(),
        pid: 1,
        version: "0".into(),
        started_at_ms: 1,
        heartbeat_ms: 1,
        plugin: PluginSummary { digest: "d".into(), label: "p@1".into(), supports_migration },
    }
}

fn plugin(supports_migration: bool) -> PluginSummary {
    let label = if supports_migration { "migrate@1" } else { "legacy-only@1" };
    PluginSummary { digest: label.into(), label: label.into(), supports_migration }
}

fn flip(account: Uuid, id: &str, to: bool) -> PendingFlip {
    PendingFlip { account, id: id.into(), to, deadline_ms: 9, by_host: "h".into() }
}

fn job(id: &str, created_at_ms: i64) -> Job {
    Job::new(id.into(), JobKind::Backfill, created_at_ms)
}

fn entry(kind: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        at_ms,
        host: "h1".into(),
        actor: "operator".into(),
        kind: kind.into(),
        subject: format!("s{at_ms}"),
        before: "b".into(),
        after: "a".into(),
        detail: "d".into(),
        ..AuditEntry::default()
    }
}

fn no_before_commit() -> impl FnMut() {
    || {}
}

/// Calls `changed` until it answers false (the watch has caught up).
fn settle(watch: &mut dyn ChangeWatch) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while watch.changed().expect("the watch answers") {
        assert!(Instant::now() < deadline, "the watch keeps reporting changes when nothing changes");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls the watch every millisecond (as the fleet's watcher does) until it
/// reports a change; how long that took, or `None` after `within`.
fn change_seen(watch: &mut dyn ChangeWatch, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if watch.changed().expect("the watch answers") {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

// ---- the rules ----------------------------------------------------------------

fn a_walk_over_every_account_visits_each_once_in_id_order(b: Backend) {
    let mut ids: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        b.state.create_account(&account(*id, "a", false), Gate::Checked).unwrap();
    }
    ids.sort();
    let mut walked = Vec::new();
    let mut at = None;
    while let Some(next) = b.state.next_account_after(at).unwrap() {
        walked.push(next);
        at = Some(next);
    }
    assert_eq!(walked, ids, "the walk is in the UUIDs' order");
    assert_eq!(b.state.next_account_after(Some(ids[10])).unwrap(), Some(ids[11]));
    assert_eq!(b.state.next_account_after(ids.last().copied()).unwrap(), None);
}

fn an_account_reads_back_as_created_and_a_change_by_another_host_is_seen_by_the_next_read(b: Backend) {
    let id = Uuid::new_v4();
    let created = Account { shard: Some("eu-0".into()), created_at_ms: 5, updated_at_ms: 6, ..account(id, "Ada", false) };
    b.state.create_account(&created, Gate::Checked).unwrap();
    assert_eq!(b.state.account(id).unwrap(), Some(created.clone()));
    assert!(!created.was_migrating, "created with the flag off, never on");
    assert_eq!(b.state.flag_state(id).unwrap(), Some(FlagState { is_migrating: false, epoch: 0, flip: None }), "the flag defaults off");
    // Another host changes the flag.
    assert!(b.other.set_flag_unsafely(id, true, 7).unwrap());
    assert!(b.state.flag_state(id).unwrap().unwrap().is_migrating, "the next read sees it");
    let details = AccountDetails { name: Some("Grace".into()), shard: Some("eu-1".into()) };
    let renamed = b.state.update_account(id, &details, 8).unwrap().unwrap();
    assert!(renamed.is_migrating, "a rename keeps the flag");
    assert!(renamed.was_migrating, "the flag was on: the account remembers it");
    assert_eq!((renamed.name.as_str(), renamed.shard.as_deref(), renamed.updated_at_ms), ("Grace", Some("eu-1"), 8));
    assert_eq!(b.other.account(id).unwrap(), Some(renamed));
    assert!(b.other.set_flag_unsafely(id, false, 8).unwrap());
    assert!(b.state.account(id).unwrap().unwrap().was_migrating, "and keeps remembering it once the flag is off");
    assert!(b.other.set_flag_unsafely(id, true, 8).unwrap());
    let renamed = b.state.update_account(id, &AccountDetails { name: Some("Ada".into()), shard: None }, 9).unwrap().unwrap();
    assert_eq!(renamed.shard.as_deref(), Some("eu-1"), "a rename without a shard keeps it");
    let unknown = Uuid::new_v4();
    assert_eq!(b.state.flag_state(unknown).unwrap(), None);
    assert_eq!(b.state.account(unknown).unwrap(), None);
    assert_eq!(b.state.update_account(unknown, &details, 10).unwrap(), None);
    assert!(!b.state.set_flag_unsafely(unknown, true, 10).unwrap());
    // Oldest first.
    let older = Uuid::new_v4();
    b.state.create_account(&Account { created_at_ms: 2, ..account(older, "older", false) }, Gate::Checked).unwrap();
    assert_eq!(b.state.accounts().unwrap().iter().map(|a| a.id).collect::<Vec<_>>(), vec![older, id]);
}

fn creating_an_existing_id_is_refused_and_changes_nothing(b: Backend) {
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    assert!(matches!(b.other.create_account(&account(id, "b", true), Gate::Checked), Err(CoordinationError::AlreadyExists(e)) if e == id));
    assert!(matches!(b.state.create_account(&account(id, "b", true), Gate::Unchecked), Err(CoordinationError::AlreadyExists(_))));
    let stored = b.state.account(id).unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.is_migrating), ("a", false));
    assert_eq!(b.state.accounts().unwrap().len(), 1);
}

fn an_account_created_migrating_beside_a_host_that_cannot_migrate_is_refused_and_not_created(b: Backend) {
    b.state.register_host(&host("old", false), Gate::Checked).unwrap();
    let refused = b.state.create_account(&account(Uuid::new_v4(), "a", true), Gate::Checked);
    assert!(matches!(refused, Err(CoordinationError::HostsCannotMigrate(h)) if h.len() == 1 && h[0].id == "old"));
    assert!(b.state.accounts().unwrap().is_empty());
    // Off is always allowed, and so is on with the gate off (`--unsafe-no-fleet-safety`).
    b.state.create_account(&account(Uuid::new_v4(), "off", false), Gate::Checked).unwrap();
    b.state.create_account(&account(Uuid::new_v4(), "unsafe", true), Gate::Unchecked).unwrap();
    assert_eq!(b.state.accounts().unwrap().len(), 2);
}

fn a_verify_is_recorded_only_if_the_account_did_not_change_meanwhile(b: Backend) {
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    let as_of = b.state.account(id).unwrap().unwrap().updated_at_ms;
    // A flip and its reversal while the verify ran: the flag is the same, the account is not.
    b.other.set_flag_unsafely(id, true, 5).unwrap();
    b.other.set_flag_unsafely(id, false, 6).unwrap();
    assert!(!b.state.record_verify(id, as_of, Verified { at_ms: 7, clean: true }).unwrap());
    assert_eq!(b.state.account(id).unwrap().unwrap().verified, None);
    assert!(b.state.record_verify(id, 6, Verified { at_ms: 8, clean: true }).unwrap());
    assert_eq!(b.other.account(id).unwrap().unwrap().verified, Some(Verified { at_ms: 8, clean: true }));
    // Not while a flip is pending, and not for an unknown account.
    b.state.announce_flip(&flip(id, "f1", true), Gate::Checked, None).unwrap();
    assert!(!b.state.record_verify(id, 6, Verified { at_ms: 9, clean: false }).unwrap());
    assert_eq!(b.state.account(id).unwrap().unwrap().verified, Some(Verified { at_ms: 8, clean: true }));
    assert!(!b.state.record_verify(Uuid::new_v4(), 6, Verified { at_ms: 9, clean: true }).unwrap());
}

fn a_flip_is_pending_until_committed_and_an_aborted_flip_cannot_commit(b: Backend) {
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    let flip = flip(id, "f1", true);
    assert!(matches!(b.state.announce_flip(&flip, Gate::Checked, None).unwrap(), Announced::Pending { .. }));
    assert_eq!(b.other.pending_flips().unwrap(), vec![flip.clone()]);
    assert_eq!(b.other.flag_state(id).unwrap().unwrap().flip, Some(flip.clone()));
    let second = PendingFlip { id: "f2".into(), ..flip.clone() };
    assert!(matches!(b.other.announce_flip(&second, Gate::Checked, None), Err(CoordinationError::FlipInProgress(_))));
    b.other.acknowledge_flip("f1", "h", 5).unwrap();
    b.other.acknowledge_flip("f1", "h", 6).unwrap();
    assert_eq!(b.state.flip_acks("f1").unwrap(), BTreeSet::from(["h".to_owned()]));
    assert!(b.other.abort_flip(id, "f1").unwrap());
    assert!(!b.state.abort_flip(id, "f1").unwrap(), "an abort happens once");
    let audit = AuditEntry { kind: "flag".into(), ..AuditEntry::default() };
    assert!(!b.state.commit_flip(&flip, Gate::Checked, 10, &audit).unwrap(), "aborted first: the commit changes nothing");
    assert!(b.state.audit(&AuditQuery { limit: 10, ..AuditQuery::default() }).unwrap().is_empty(), "and logs nothing");
    let state = b.state.flag_state(id).unwrap().unwrap();
    assert_eq!(state, FlagState { is_migrating: false, epoch: 1, flip: None }, "an abort raises the epoch all the same: stores may be fenced at it");
    assert!(b.state.flip_acks("f1").unwrap().is_empty());
    assert!(b.state.pending_flips().unwrap().is_empty());
    assert!(matches!(b.state.announce_flip(&PendingFlip { account: Uuid::new_v4(), ..flip }, Gate::Checked, None), Err(CoordinationError::NoAccount(_))));
}

fn a_committed_flip_sets_the_flag_clears_the_verify_and_is_logged_once(b: Backend) {
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    assert!(b.state.record_verify(id, 1, Verified { at_ms: 2, clean: true }).unwrap());
    assert_eq!(b.state.announce_flip(&flip(id, "same", false), Gate::Checked, None).unwrap(), Announced::Unchanged, "already off");
    assert!(b.state.pending_flips().unwrap().is_empty(), "an unchanged flip leaves no mark");
    b.state.register_host(&host("h1", true), Gate::Checked).unwrap();
    let on = flip(id, "f1", true);
    let Announced::Pending { hosts, epoch } = b.state.announce_flip(&on, Gate::Checked, None).unwrap() else { panic!("the flip is pending") };
    assert_eq!(epoch, 1, "the epoch the flip's commit sets");
    assert_eq!(hosts.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["h1"], "the hosts to wait for");
    b.other.acknowledge_flip("f1", "h1", 3).unwrap();
    let audit = AuditEntry { at_ms: 11, kind: "flag".into(), subject: id.to_string(), before: "false".into(), after: "true".into(), ..AuditEntry::default() };
    assert!(b.other.commit_flip(&on, Gate::Checked, 11, &audit).unwrap());
    assert!(!b.state.commit_flip(&on, Gate::Checked, 12, &audit).unwrap(), "a commit happens once");
    assert!(!b.state.abort_flip(id, "f1").unwrap(), "committed: nothing to abort");
    let stored = b.state.account(id).unwrap().unwrap();
    assert_eq!((stored.is_migrating, stored.updated_at_ms, stored.verified), (true, 11, None), "a flip clears the verify");
    assert_eq!(b.state.flag_state(id).unwrap().unwrap(), FlagState { is_migrating: true, epoch, flip: None });
    assert!(b.state.flip_acks("f1").unwrap().is_empty());
    let logged = b.state.audit(&AuditQuery { limit: 10, ..AuditQuery::default() }).unwrap();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(AuditEntry { seq: 0, ..logged[0].clone() }, audit);
}

fn a_host_that_cannot_migrate_cannot_register_or_switch_plugin_while_an_account_migrates(b: Backend) {
    let on = Uuid::new_v4();
    b.state.create_account(&account(on, "on", true), Gate::Checked).unwrap();
    let refused = b.other.register_host(&host("old", false), Gate::Checked);
    assert!(matches!(refused, Err(CoordinationError::AccountsMigrating(a)) if a == vec![on]));
    assert!(b.state.hosts().unwrap().is_empty(), "the refused host is not registered");
    b.other.register_host(&host("new", true), Gate::Checked).unwrap();
    let mut called = 0;
    let refused = b.other.change_host_plugin("new", &plugin(false), Gate::Checked, &mut || called += 1);
    assert!(matches!(refused, Err(CoordinationError::AccountsMigrating(a)) if a == vec![on]));
    assert_eq!(called, 0, "a refused change never runs before_commit");
    assert!(b.state.hosts().unwrap()[0].plugin.supports_migration, "the host's record is unchanged");

    // An account being turned on counts as migrating.
    b.state.set_flag_unsafely(on, false, 2).unwrap();
    let turning = Uuid::new_v4();
    b.state.create_account(&account(turning, "turning", false), Gate::Checked).unwrap();
    b.state.announce_flip(&flip(turning, "f1", true), Gate::Checked, None).unwrap();
    let refused = b.other.change_host_plugin("new", &plugin(false), Gate::Checked, &mut no_before_commit());
    assert!(matches!(refused, Err(CoordinationError::AccountsMigrating(a)) if a == vec![turning]));
    assert!(matches!(b.other.register_host(&host("old", false), Gate::Checked), Err(CoordinationError::AccountsMigrating(_))));

    // Once no account migrates, both are allowed; a plugin that can migrate always is.
    assert!(b.state.abort_flip(turning, "f1").unwrap());
    b.other.change_host_plugin("new", &plugin(false), Gate::Checked, &mut no_before_commit()).unwrap();
    b.other.register_host(&host("old", false), Gate::Checked).unwrap();
    b.state.set_flag_unsafely(on, true, 3).unwrap();
    b.other.change_host_plugin("new", &plugin(true), Gate::Checked, &mut no_before_commit()).unwrap();
    b.other.register_host(&host("newer", true), Gate::Checked).unwrap();
    // With the gate off, nothing is refused.
    b.other.register_host(&host("unsafe", false), Gate::Unchecked).unwrap();
    b.other.change_host_plugin("new", &plugin(false), Gate::Unchecked, &mut no_before_commit()).unwrap();
    let hosts = b.state.hosts().unwrap();
    assert_eq!(hosts.iter().map(|h| h.id.as_str()).collect::<BTreeSet<_>>(), BTreeSet::from(["new", "old", "newer", "unsafe"]));
    assert_eq!(hosts.iter().find(|h| h.id == "new").unwrap().plugin, plugin(false));
}

fn a_flag_cannot_turn_on_while_a_host_that_cannot_migrate_is_registered(b: Backend) {
    b.other.register_host(&host("old", false), Gate::Checked).unwrap();
    b.other.register_host(&host("new", true), Gate::Checked).unwrap();
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    let on = flip(id, "f1", true);
    let refused = b.state.announce_flip(&on, Gate::Checked, None);
    assert!(matches!(refused, Err(CoordinationError::HostsCannotMigrate(h)) if h.len() == 1 && h[0].id == "old"));
    assert_eq!(b.state.flag_state(id).unwrap().unwrap(), FlagState { is_migrating: false, epoch: 0, flip: None }, "no mark is left");

    // Announced without the gate, the commit still checks it: nothing changes.
    assert!(matches!(b.state.announce_flip(&on, Gate::Unchecked, None).unwrap(), Announced::Pending { .. }));
    let audit = AuditEntry { kind: "flag".into(), ..AuditEntry::default() };
    assert!(matches!(b.state.commit_flip(&on, Gate::Checked, 5, &audit), Err(CoordinationError::HostsCannotMigrate(_))));
    assert_eq!(b.state.flag_state(id).unwrap().unwrap(), FlagState { is_migrating: false, epoch: 0, flip: Some(on.clone()) }, "still pending, still off");
    assert!(b.state.audit(&AuditQuery { limit: 10, ..AuditQuery::default() }).unwrap().is_empty());

    // Once the host can migrate, the same flip commits.
    b.other.change_host_plugin("old", &plugin(true), Gate::Checked, &mut no_before_commit()).unwrap();
    assert!(b.state.commit_flip(&on, Gate::Checked, 6, &audit).unwrap());
    assert!(b.state.flag_state(id).unwrap().unwrap().is_migrating);

    // Turning off is never refused.
    b.other.change_host_plugin("old", &plugin(false), Gate::Unchecked, &mut no_before_commit()).unwrap();
    let off = flip(id, "f2", false);
    assert!(matches!(b.state.announce_flip(&off, Gate::Checked, None).unwrap(), Announced::Pending { .. }));
    assert!(b.state.commit_flip(&off, Gate::Checked, 7, &audit).unwrap());
    assert!(!b.state.flag_state(id).unwrap().unwrap().is_migrating);
}

fn a_plugin_change_runs_before_commit_after_the_check_and_before_anyone_sees_it(b: Backend) {
    b.state.register_host(&host("h1", true), Gate::Checked).unwrap();
    let mut calls = 0;
    let mut seen_meanwhile = None;
    let other = b.other.clone();
    let separate = b.separate;
    b.state
        .change_host_plugin("h1", &plugin(false), Gate::Checked, &mut || {
            calls += 1;
            // (Memory runs it under its one lock: it cannot be read meanwhile.)
            if separate {
                seen_meanwhile = Some(other.hosts().unwrap()[0].plugin.clone());
            }
        })
        .unwrap();
    assert_eq!(calls, 1);
    if separate {
        assert_eq!(seen_meanwhile, Some(host("h1", true).plugin), "before_commit runs before the change takes effect");
    }
    assert_eq!(b.other.hosts().unwrap()[0].plugin, plugin(false), "and it takes effect after");
}

fn the_two_sides_of_the_gate_never_both_pass_when_they_race(b: Backend) {
    // Two hosts at once: one turns a flag on, one registers a host whose
    // plugin cannot migrate. At most one of them may succeed.
    for round in 0..20 {
        let id = Uuid::new_v4();
        b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
        let on = flip(id, &format!("f{round}"), true);
        let old = host(&format!("old{round}"), false);
        let start = Barrier::new(2);
        let (announced, registered) = std::thread::scope(|s| {
            let announcing = s.spawn(|| {
                start.wait();
                b.state.announce_flip(&on, Gate::Checked, None)
            });
            let registering = s.spawn(|| {
                start.wait();
                b.other.register_host(&old, Gate::Checked)
            });
            (announcing.join().unwrap(), registering.join().unwrap())
        });
        let announced = matches!(announced, Ok(Announced::Pending { .. }));
        assert!(!(announced && registered.is_ok()), "round {round}: a flag turned on while a host that cannot migrate registered");
        assert!(announced || registered.is_ok(), "round {round}: one of them passes ({registered:?})");
        // Back to a quiet state for the next round.
        if announced {
            assert!(b.state.abort_flip(id, &on.id).unwrap());
        } else {
            b.state.remove_host(&old.id).unwrap();
        }
    }
}

fn a_job_is_claimed_by_exactly_one_of_two_hosts_and_saved_only_by_its_owner_while_running(b: Backend) {
    for i in 0..10 {
        b.state.create_job(&job(&format!("j{i}"), i)).unwrap();
        let start = Barrier::new(2);
        let id = format!("j{i}");
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| {
                start.wait();
                b.state.claim_job(&id, None, "h1", 5).unwrap()
            });
            let second = s.spawn(|| {
                start.wait();
                b.other.claim_job(&id, None, "h2", 5).unwrap()
            });
            (first.join().unwrap(), second.join().unwrap())
        });
        assert!(first != second, "job {i}: exactly one claim wins (h1: {first}, h2: {second})");
        let winner = if first { "h1" } else { "h2" };
        assert_eq!(b.state.job(&id).unwrap().unwrap().owner.as_deref(), Some(winner));
    }

    // A claim expects the current owner; a take-over names it.
    let mut j = Job { account: Some(Uuid::new_v4()), rate: 50, ..job("jx", 100) };
    b.state.create_job(&j).unwrap();
    assert_eq!(b.state.job("jx").unwrap(), Some(j.clone()), "a job reads back as created");
    assert!(b.state.claim_job("jx", None, "h1", 101).unwrap());
    assert!(!b.other.claim_job("jx", None, "h2", 102).unwrap(), "the owner changed: a stale claim fails");
    assert!(b.other.claim_job("jx", Some("h1"), "h2", 103).unwrap(), "a take-over from the owner it saw");
    // Saved only by its owner.
    j.owner = Some("h1".into());
    j.done = 7;
    assert!(!b.state.save_job(&j).unwrap(), "h1 no longer owns it");
    j.owner = Some("h2".into());
    j.cursor = "c".into();
    j.updated_at_ms = 104;
    assert!(b.other.save_job(&j).unwrap());
    assert_eq!(b.state.job("jx").unwrap(), Some(j.clone()));
    // An operator's pause wins over the owner's next save.
    let paused = b.state.set_job_state("jx", &[JobState::Running], JobState::Paused, 105).unwrap().unwrap();
    assert_eq!((paused.state.as_str(), paused.updated_at_ms, paused.done), ("paused", 105, 7));
    assert!(!b.other.save_job(&Job { done: 8, ..j.clone() }).unwrap(), "paused: the save is dropped");
    assert!(!b.other.claim_job("jx", Some("h2"), "h1", 106).unwrap(), "a paused job is not claimed");
    assert_eq!(b.state.set_job_state("jx", &[JobState::Running], JobState::Cancelled, 107).unwrap(), None, "not in a state it can leave");
    assert_eq!(b.state.job("jx").unwrap().unwrap().state, JobState::Paused);
    assert_eq!(b.state.set_job_state("jx", &[JobState::Paused, JobState::Running], JobState::Running, 108).unwrap().unwrap().state, JobState::Running);
    assert_eq!(b.state.set_job_state("nope", &[JobState::Running], JobState::Paused, 109).unwrap(), None);
    // Newest first; the running ones only.
    b.state.set_job_state("j3", &[JobState::Running], JobState::Done, 110).unwrap().unwrap();
    let all: Vec<String> = b.state.jobs().unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(all, ["jx", "j9", "j8", "j7", "j6", "j5", "j4", "j3", "j2", "j1", "j0"]);
    let running: Vec<String> = b.other.running_jobs().unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(running, ["jx", "j9", "j8", "j7", "j6", "j5", "j4", "j2", "j1", "j0"]);
    assert_eq!(b.state.job("nope").unwrap(), None);
}

fn the_audit_log_pages_by_cursor_either_way_and_filters_by_kind_and_time(b: Backend) {
    let kinds = ["account", "rollout", "plugin"];
    for i in 0..25 {
        let log = if i % 2 == 0 { &b.state } else { &b.other };
        log.append_audit(&entry(kinds[i as usize % 3], 1000 + i)).unwrap();
    }
    let mut paged: Vec<AuditEntry> = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = b.state.audit(&AuditQuery { after_seq, limit: 10, ..AuditQuery::default() }).unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged.len(), 25, "every entry once");
    assert!(paged.windows(2).all(|w| w[0].seq < w[1].seq), "in order of seq");
    for (i, e) in paged.iter().enumerate() {
        assert_eq!(AuditEntry { seq: 0, ..e.clone() }, entry(kinds[i % 3], 1000 + i as i64), "entries read back as appended, in order");
    }
    let plugins = b.state.audit(&AuditQuery { kind: Some("plugin".into()), limit: 100, ..AuditQuery::default() }).unwrap();
    assert_eq!(plugins.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![1002, 1005, 1008, 1011, 1014, 1017, 1020, 1023]);
    let window = AuditQuery { since_ms: Some(1010), until_ms: Some(1014), limit: 100, ..AuditQuery::default() };
    assert_eq!(b.state.audit(&window).unwrap().iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![1010, 1011, 1012, 1013, 1014]);
    let both = AuditQuery { kind: Some("rollout".into()), since_ms: Some(1010), after_seq: paged[12].seq, limit: 2, ..AuditQuery::default() };
    assert_eq!(b.state.audit(&both).unwrap().iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![1013, 1016]);
    assert!(b.state.audit(&AuditQuery { kind: Some("nothing".into()), limit: 100, ..AuditQuery::default() }).unwrap().is_empty());

    // Newest first, paged by the `before` cursor: the same entries, reversed.
    let mut newest: Vec<AuditEntry> = Vec::new();
    let mut before_seq = None;
    loop {
        let page = b.state.audit(&AuditQuery { before_seq, newest_first: true, limit: 10, ..AuditQuery::default() }).unwrap();
        let Some(last) = page.last() else { break };
        before_seq = Some(last.seq);
        newest.extend(page);
    }
    assert_eq!(newest, paged.iter().rev().cloned().collect::<Vec<_>>(), "newest first: every entry once, in reverse order");
    let last_flags = AuditQuery { kind: Some("plugin".into()), newest_first: true, limit: 2, ..AuditQuery::default() };
    assert_eq!(b.state.audit(&last_flags).unwrap().iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![1023, 1020], "the last two of a kind");
}

fn an_operator_action_reads_as_one_audit_entry_with_its_count(b: Backend) {
    let flag = |action: &str, at_ms: i64| AuditEntry { action: action.into(), ..entry("flag", at_ms) };
    // A rollout's three flips, then its summary; a flip of its own; a kill
    // switch whose host stopped before its summary (two flips, no summary).
    for e in [flag("r", 1), flag("r", 2), flag("r", 3), AuditEntry { action: "r".into(), ..entry("rollout", 4) }, flag("", 5), flag("k", 6), flag("k", 7)] {
        b.state.append_audit(&e).unwrap();
    }
    let read = |q: AuditQuery| b.state.audit(&AuditQuery { limit: if q.limit == 0 { 100 } else { q.limit }, ..q }).unwrap();
    let shown = |entries: &[AuditEntry]| entries.iter().map(|e| (e.kind.clone(), e.at_ms, e.changes)).collect::<Vec<_>>();
    let folded = read(AuditQuery { fold: true, ..AuditQuery::default() });
    assert_eq!(
        shown(&folded),
        vec![("rollout".into(), 4, 3), ("flag".into(), 5, 0), ("flag".into(), 6, 0), ("flag".into(), 7, 0)],
        "the rollout is one entry that counts its 3 flips; a flip of its own and the flips of an action without a summary stay visible"
    );
    assert_eq!(read(AuditQuery::default()).len(), 7, "unfolded, every entry");
    let of_rollout = read(AuditQuery { action: Some("r".into()), ..AuditQuery::default() });
    assert_eq!(shown(&of_rollout), vec![("flag".into(), 1, 0), ("flag".into(), 2, 0), ("flag".into(), 3, 0), ("rollout".into(), 4, 3)], "an action's entries");
    let newest = read(AuditQuery { fold: true, newest_first: true, limit: 2, ..AuditQuery::default() });
    assert_eq!(newest.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![7, 6], "a folded page is still `limit` entries");
    let paged = read(AuditQuery { fold: true, after_seq: folded[0].seq, limit: 1, ..AuditQuery::default() });
    assert_eq!(paged.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![5], "and pages by cursor past the folded entries");
}

fn a_revoked_key_stays_revoked(b: Backend) {
    let account = Uuid::new_v4();
    let key = |id: &str, created_at_ms: i64| AccountKey {
        id: id.into(),
        account,
        label: format!("label {id}"),
        hash: format!("hash {id}"),
        created_at_ms,
        revoked_at_ms: None,
    };
    b.state.create_key(&key("k1", 1)).unwrap();
    b.state.create_key(&key("k2", 2)).unwrap();
    assert_eq!(b.other.key("k1").unwrap(), Some(key("k1", 1)));
    assert!(!b.state.revoke_key(Uuid::new_v4(), "k1", 4).unwrap(), "only through its own account");
    assert!(b.state.revoke_key(account, "k1", 5).unwrap());
    assert!(!b.other.revoke_key(account, "k1", 9).unwrap(), "already revoked");
    assert_eq!(b.state.key("k1").unwrap().unwrap().revoked_at_ms, Some(5), "revoked when it was first revoked");
    assert_eq!(b.state.keys(account).unwrap(), vec![AccountKey { revoked_at_ms: Some(5), ..key("k1", 1) }, key("k2", 2)]);
    assert!(!b.state.revoke_key(account, "nope", 5).unwrap());
    assert_eq!(b.state.key("nope").unwrap(), None);
    assert!(b.state.keys(Uuid::new_v4()).unwrap().is_empty());
}

fn a_removed_host_is_gone_with_its_acknowledgements(b: Backend) {
    b.state.register_host(&HostRecord { started_at_ms: 2, ..host("b", true) }, Gate::Checked).unwrap();
    b.other.register_host(&HostRecord { pid: 4_000_000_000, ..host("a", true) }, Gate::Checked).unwrap();
    let hosts = b.state.hosts().unwrap();
    assert_eq!(hosts.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["a", "b"], "oldest first");
    assert_eq!(hosts[0], HostRecord { pid: 4_000_000_000, ..host("a", true) }, "a host reads back as registered");
    assert!(b.other.heartbeat("a", 50).unwrap());
    assert_eq!(b.state.hosts().unwrap()[0].heartbeat_ms, 50);
    b.state.acknowledge_flip("f1", "a", 1).unwrap();
    b.state.acknowledge_flip("f1", "b", 1).unwrap();
    b.other.remove_host("a").unwrap();
    assert_eq!(b.state.hosts().unwrap().iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    assert_eq!(b.state.flip_acks("f1").unwrap(), BTreeSet::from(["b".to_owned()]));
    assert!(!b.state.heartbeat("a", 60).unwrap(), "its record is gone");
    b.state.remove_host("a").unwrap();
}

fn the_rollout_percent_is_unset_until_set_and_shared(b: Backend) {
    assert_eq!(b.state.rollout_percent().unwrap(), None);
    b.state.set_rollout_percent(12.5).unwrap();
    assert_eq!(b.other.rollout_percent().unwrap(), Some(12.5));
    b.other.set_rollout_percent(100.0).unwrap();
    assert_eq!(b.state.rollout_percent().unwrap(), Some(100.0));
}

fn once_the_kill_switch_is_pressed_no_rollout_turns_an_account_on_until_one_resumes(b: Backend) {
    let id = Uuid::new_v4();
    b.state.create_account(&account(id, "a", false), Gate::Checked).unwrap();
    b.state.set_rollout_percent(100.0).unwrap();
    let began = b.state.begin_rollout(false).unwrap();
    assert_eq!(began, 0, "never pressed");
    // Another host presses the kill switch while this host's rollout runs.
    let pressed = b.other.stop_rollouts().unwrap();
    assert_eq!(pressed, began + 1);
    assert_eq!(b.state.rollout_percent().unwrap(), Some(0.0), "the kill switch sets the rollout to 0%");
    assert!(matches!(b.state.announce_flip(&flip(id, "f1", true), Gate::Checked, Some(began)), Err(CoordinationError::Stopped(_))));
    assert_eq!(b.state.flag_state(id).unwrap().unwrap().flip, None, "nothing was announced");
    // A rollout asked for after it is refused, on any host, until one resumes.
    assert!(b.state.rollout_latched().unwrap());
    assert!(matches!(b.state.begin_rollout(false), Err(CoordinationError::Latched)));
    assert!(matches!(b.other.begin_rollout(false), Err(CoordinationError::Latched)));
    assert_eq!(b.other.begin_rollout(true).unwrap(), pressed, "a resume releases the latch");
    assert_eq!(b.state.begin_rollout(false).unwrap(), pressed);
    assert!(!b.other.rollout_latched().unwrap());
    assert!(matches!(b.state.announce_flip(&flip(id, "f2", true), Gate::Checked, Some(pressed)).unwrap(), Announced::Pending { .. }));
    assert!(b.state.abort_flip(id, "f2").unwrap());
    assert!(matches!(b.state.announce_flip(&flip(id, "f3", true), Gate::Checked, None).unwrap(), Announced::Pending { .. }));
}

fn the_change_watch_reports_a_change_by_another_host_within_a_second_and_is_quiet_otherwise(b: Backend) {
    let mut watch = b.state.change_watch().unwrap();
    assert!(watch.changed().unwrap(), "the first look reports a change");
    let id = Uuid::new_v4();
    let changes: Vec<(&str, Box<dyn Fn(&dyn Coordination) + '_>)> = vec![
        ("create an account", Box::new(move |c: &dyn Coordination| c.create_account(&account(id, "a", false), Gate::Checked).unwrap())),
        ("register a host", Box::new(|c: &dyn Coordination| c.register_host(&host("h1", true), Gate::Checked).unwrap())),
        ("announce a flip", Box::new(move |c: &dyn Coordination| assert!(matches!(c.announce_flip(&flip(id, "f1", true), Gate::Checked, None).unwrap(), Announced::Pending { .. })))),
        ("acknowledge it", Box::new(|c: &dyn Coordination| c.acknowledge_flip("f1", "h1", 2).unwrap())),
        ("abort it", Box::new(move |c: &dyn Coordination| assert!(c.abort_flip(id, "f1").unwrap()))),
        ("announce another", Box::new(move |c: &dyn Coordination| assert!(matches!(c.announce_flip(&flip(id, "f2", true), Gate::Checked, None).unwrap(), Announced::Pending { .. })))),
        ("commit it", Box::new(move |c: &dyn Coordination| assert!(c.commit_flip(&flip(id, "f2", true), Gate::Checked, 3, &AuditEntry::default()).unwrap()))),
        ("change a plugin", Box::new(|c: &dyn Coordination| c.change_host_plugin("h1", &plugin(true), Gate::Checked, &mut no_before_commit()).unwrap())),
        ("set the flag", Box::new(move |c: &dyn Coordination| assert!(c.set_flag_unsafely(id, false, 4).unwrap()))),
        ("set the rollout", Box::new(|c: &dyn Coordination| c.set_rollout_percent(50.0).unwrap())),
        ("create a job", Box::new(|c: &dyn Coordination| c.create_job(&job("j1", 1)).unwrap())),
        ("remove a host", Box::new(|c: &dyn Coordination| c.remove_host("h1").unwrap())),
    ];
    for (what, change) in &changes {
        settle(&mut *watch);
        // Nothing happens: the watch says so (PostgreSQL's safety net may
        // answer true once in a while, but not at every look).
        let quiet_until = Instant::now() + Duration::from_millis(50);
        let mut quiet_looks = 0;
        while Instant::now() < quiet_until {
            quiet_looks += usize::from(!watch.changed().unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(quiet_looks > 0, "before \"{what}\": the watch reports changes when nothing changes");
        change(&*b.other);
        assert!(change_seen(&mut *watch, Duration::from_secs(1)).is_some(), "\"{what}\" by another host is not reported within 1 s");
    }
}

// ---- PostgreSQL only ------------------------------------------------------------

/// A raw connection to the backend's database, listening like a watch.
fn listener(url: &str) -> ::postgres::Client {
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).expect("a raw connection");
    client.batch_execute("LISTEN notes_coordination").unwrap();
    client
}

/// Whether `client` hears a notification within `within`; takes all it heard.
fn heard(client: &mut ::postgres::Client, within: Duration) -> bool {
    use ::postgres::fallible_iterator::FallibleIterator;
    let mut notifications = client.notifications();
    let heard = notifications.timeout_iter(within).next().unwrap().is_some();
    while notifications.iter().next().unwrap().is_some() {}
    heard
}

#[test]
fn postgres_notifies_every_watched_change_as_it_commits_and_nothing_for_a_refusal() {
    let b = postgres();
    let mut raw = listener(b.url.as_deref().unwrap());
    let c = &*b.other;
    let id = Uuid::new_v4();
    let mut j = Job { owner: Some("h1".into()), ..job("j1", 1) };
    let changes: Vec<(&str, Box<dyn FnMut() + '_>)> = vec![
        ("create_account", Box::new(|| c.create_account(&account(id, "a", false), Gate::Checked).unwrap())),
        ("update_account", Box::new(|| assert!(c.update_account(id, &AccountDetails::default(), 1).unwrap().is_some()))),
        ("record_verify", Box::new(|| assert!(c.record_verify(id, 1, Verified { at_ms: 2, clean: true }).unwrap()))),
        ("register_host", Box::new(|| c.register_host(&host("h1", true), Gate::Checked).unwrap())),
        ("announce_flip", Box::new(|| assert!(matches!(c.announce_flip(&flip(id, "f1", true), Gate::Checked, None).unwrap(), Announced::Pending { .. })))),
        ("acknowledge_flip", Box::new(|| c.acknowledge_flip("f1", "h1", 2).unwrap())),
        ("abort_flip", Box::new(|| assert!(c.abort_flip(id, "f1").unwrap()))),
        ("announce_flip again", Box::new(|| assert!(matches!(c.announce_flip(&flip(id, "f2", true), Gate::Checked, None).unwrap(), Announced::Pending { .. })))),
        ("commit_flip", Box::new(|| assert!(c.commit_flip(&flip(id, "f2", true), Gate::Checked, 3, &AuditEntry::default()).unwrap()))),
        ("set_flag_unsafely", Box::new(|| assert!(c.set_flag_unsafely(id, false, 4).unwrap()))),
        ("change_host_plugin", Box::new(|| c.change_host_plugin("h1", &plugin(true), Gate::Checked, &mut no_before_commit()).unwrap())),
        ("set_rollout_percent", Box::new(|| c.set_rollout_percent(5.0).unwrap())),
        ("create_job", Box::new(|| c.create_job(&job("j1", 1)).unwrap())),
        ("claim_job", Box::new(|| assert!(c.claim_job("j1", None, "h1", 2).unwrap()))),
        ("save_job", Box::new(move || {
            j.done = 1;
            assert!(c.save_job(&j).unwrap())
        })),
        ("set_job_state", Box::new(|| assert!(c.set_job_state("j1", &[JobState::Running], JobState::Paused, 3).unwrap().is_some()))),
        ("remove_host", Box::new(|| c.remove_host("h1").unwrap())),
    ];
    for (what, mut change) in changes {
        change();
        assert!(heard(&mut raw, Duration::from_secs(1)), "{what} notified nothing");
    }
    // A decision refused changes nothing, and tells no one.
    assert!(c.create_account(&account(id, "again", false), Gate::Checked).is_err());
    c.register_host(&host("old", false), Gate::Checked).unwrap();
    assert!(heard(&mut raw, Duration::from_secs(1)));
    assert!(c.announce_flip(&flip(id, "f3", true), Gate::Checked, None).is_err());
    assert!(!c.claim_job("j1", None, "h2", 4).unwrap());
    assert!(!heard(&mut raw, Duration::from_millis(200)), "a refusal notified");
}

#[test]
fn postgres_watch_hears_a_change_before_its_safety_net_would_answer() {
    // The safety net answers true every 100 ms whatever happened; a change
    // heard through its notification comes sooner. Right after a true, make a
    // change and time how soon it is reported: under 80 ms it was heard. One
    // quick round in ten is enough (a loaded machine may delay some).
    let b = postgres();
    let mut watch = b.state.change_watch().unwrap();
    let mut took = Vec::new();
    for round in 0..10 {
        settle(&mut *watch);
        assert!(change_seen(&mut *watch, Duration::from_secs(1)).is_some(), "the safety net answers within 100 ms");
        let after_true = Instant::now();
        b.other.set_rollout_percent(f64::from(round)).unwrap();
        change_seen(&mut *watch, Duration::from_secs(1)).expect("the change is reported");
        took.push(after_true.elapsed());
        if after_true.elapsed() < Duration::from_millis(80) {
            return;
        }
    }
    panic!("no change was reported before the safety net: {took:?}");
}

#[test]
fn postgres_watch_looks_without_waiting_for_long() {
    // The fleet's watcher looks every millisecond: a look must stay short
    // when nothing arrives (it waits for the client's runtime to turn once).
    let b = postgres();
    let mut watch = b.state.change_watch().unwrap();
    settle(&mut *watch);
    let start = Instant::now();
    for _ in 0..200 {
        watch.changed().unwrap();
    }
    let each = start.elapsed() / 200;
    eprintln!("a quiet look takes {each:?}");
    assert!(each < Duration::from_millis(10), "a quiet look takes {each:?}");
}

#[test]
fn postgres_watch_reconnects_when_its_connection_is_lost_and_reports_what_changed_meanwhile() {
    let b = postgres();
    let url = b.url.as_deref().unwrap();
    let mut watch = b.state.change_watch().unwrap();
    settle(&mut *watch);
    // The server ends the watch's session (as a restart or an idle timeout would).
    const WATCHES: &str =
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'notes-host-watch'";
    let mut admin = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let before: Vec<i32> = admin.query(WATCHES, &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(before.len(), 1, "one watch connection");
    assert!(admin.query_one("SELECT pg_terminate_backend($1)", &[&before[0]]).unwrap().get::<_, bool>(0));
    // A change while it is down: its notification is lost.
    b.other.create_account(&account(Uuid::new_v4(), "a", false), Gate::Checked).unwrap();
    assert!(change_seen(&mut *watch, Duration::from_secs(1)).is_some(), "the change is reported");
    // It listens again, on a new session.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now: Vec<i32> = admin.query(WATCHES, &[]).unwrap().iter().map(|r| r.get(0)).collect();
        if now.len() == 1 && now != before {
            break;
        }
        assert!(Instant::now() < deadline, "the watch did not reconnect: sessions {now:?}, the ended one {before:?}");
        watch.changed().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    settle(&mut *watch);
    b.other.set_rollout_percent(1.0).unwrap();
    assert!(change_seen(&mut *watch, Duration::from_secs(1)).is_some());
}

/// PostgreSQL only: a lease holds for its length after each renewal, on
/// the database's clock; once lapsed it cannot be renewed (the host must
/// join again), and only a lapsed host is pruned: one that joined again
/// keeps its new row.
#[test]
fn postgres_leases_lapse_stay_lapsed_and_only_a_lapsed_host_is_pruned() {
    let url = notes_scenarios::postgres::database();
    let state = PostgresCoordination::open(&url).unwrap().with_lease(Duration::from_millis(300));
    state.register_host(&host("h", true), Gate::Checked).unwrap();
    assert!(state.expired_hosts().unwrap().is_empty(), "a fresh lease holds");
    assert!(state.heartbeat("h", 2).unwrap(), "a renewal while it holds");
    assert!(!state.prune_host("h").unwrap(), "a live host is not pruned");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(state.expired_hosts().unwrap(), BTreeSet::from(["h".to_owned()]), "lapsed on the database's clock");
    assert!(!state.heartbeat("h", 3).unwrap(), "a lapsed lease is not renewed: the host must join again");
    assert_eq!(state.expired_hosts().unwrap().len(), 1, "and stays lapsed");
    // It joins again before another host's prune of its old row lands.
    state.remove_host("h").unwrap();
    state.register_host(&host("h", true), Gate::Checked).unwrap();
    assert!(!state.prune_host("h").unwrap(), "the prune finds a live lease and keeps the row");
    assert_eq!(state.hosts().unwrap().len(), 1);
    std::thread::sleep(Duration::from_millis(400));
    assert!(state.prune_host("h").unwrap(), "lapsed again: pruned");
    assert!(state.hosts().unwrap().is_empty());
}

/// The audit table as data dirs and databases made before actions were
/// recorded have it.
const AUDIT_BEFORE_ACTIONS: &str = "(at_ms, host, actor, kind, subject, before, after, detail) VALUES (1, 'h', 'operator', 'flag', 's', 'false', 'true', 'by hand')";

/// After an upgrade, an old entry reads as an action of its own and a new
/// rollout folds.
fn reads_old_entries_and_folds_new_ones(state: &dyn Coordination) {
    let rollout = [AuditEntry { action: "r".into(), ..entry("flag", 2) }, AuditEntry { action: "r".into(), ..entry("rollout", 3) }];
    for e in &rollout {
        state.append_audit(e).unwrap();
    }
    let folded = state.audit(&AuditQuery { fold: true, limit: 10, ..AuditQuery::default() }).unwrap();
    let shown: Vec<(&str, &str, u64)> = folded.iter().map(|e| (e.kind.as_str(), e.action.as_str(), e.changes)).collect();
    assert_eq!(shown, [("flag", "", 0), ("rollout", "r", 1)], "the old entry kept, the new rollout folded");
}

#[test]
fn sqlite_an_audit_log_from_before_actions_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(&format!(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, host TEXT NOT NULL, actor TEXT NOT NULL,
             kind TEXT NOT NULL, subject TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL, detail TEXT NOT NULL);
         INSERT INTO audit {AUDIT_BEFORE_ACTIONS};"
    ))
    .unwrap();
    drop(old);
    reads_old_entries_and_folds_new_ones(&SqliteCoordination::open(&path).expect("an old accounts.db opens"));
}

#[test]
fn postgres_an_audit_log_from_before_actions_is_upgraded_in_place() {
    let url = notes_scenarios::postgres::database();
    let mut old = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    old.batch_execute(&format!(
        "CREATE TABLE audit (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at_ms BIGINT NOT NULL, host TEXT NOT NULL, actor TEXT NOT NULL,
             kind TEXT NOT NULL, subject TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL, detail TEXT NOT NULL);
         INSERT INTO audit {AUDIT_BEFORE_ACTIONS};"
    ))
    .unwrap();
    drop(old);
    reads_old_entries_and_folds_new_ones(&PostgresCoordination::open(&url).expect("an old database opens"));
}
