//! In-process tests: the axum router driven with `oneshot`, on an `App`
//! built without wasmtime or files (`notes_host::in_process`). They check
//! the host's rules (routing by the flag, both sides of the deployment gate,
//! probation and rollback, activation order, fail-closed flag reads) in
//! milliseconds. What only processes show (the real plugins, crashes, a
//! fleet of processes) stays in the scenario tests (`tests/`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notes_host::api::ApiService;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use notes_host::api::{self, ApiConfig};
use notes_host::app::{App, AppError, AppSettings};
use notes_host::catalog::{Catalog, sha256_hex};
use notes_host::coordination::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, Accounts, AuditLog, ChangeWatch, Coordination, CoordinationError, Flips, Hosts, Jobs, Keys, Rollouts, FlagState, Gate, HostRecord,
    Job, JobKind, JobState, PendingFlip, PluginSummary, Verified,
};
use notes_in_process::InProcess;

const MIGRATE: &str = "native:migrate";
const LEGACY: &str = "native:legacy-only";
const FAILING: &str = "native:failing";

fn start(fleet: &InProcess, host: &str, plugin: &str) -> Arc<App> {
    Arc::new(fleet.start(host, plugin.as_bytes(), AppSettings::default()).expect("the host starts"))
}

fn http(app: &Arc<App>) -> ApiService {
    api::router(
        app.clone(),
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_plugin_bytes: 1 << 20,
            body_read_timeout: Duration::from_secs(5),
            admin_token: None,
            auth_failure_burst: api::DEFAULT_AUTH_FAILURE_BURST,
        },
    )
}

/// One request through the whole router; the answer's status and JSON body.
async fn call(router: &ApiService, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_with(router, method, path, body, &[]).await
}

async fn call_with(router: &ApiService, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

async fn new_account(router: &ApiService, migrating: bool) -> String {
    let (status, body) = call(router, "POST", "/accounts", Some(json!({ "name": "Ada", "isMigrating": migrating }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn new_note(router: &ApiService, account: &str) -> String {
    let (status, body) = call(router, "POST", &format!("/accounts/{account}/notes"), Some(json!({ "content": "hello" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn placement(router: &ApiService, account: &str, note: &str) -> Value {
    let (status, body) = call(router, "GET", &format!("/accounts/{account}/notes/{note}/placement"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn set_migrating(router: &ApiService, account: &str, on: bool) -> (StatusCode, Value) {
    call(router, "PATCH", &format!("/accounts/{account}"), Some(json!({ "isMigrating": on }))).await
}

async fn active_plugin(router: &ApiService) -> Value {
    call(router, "GET", "/plugins", None).await.1
}

fn digest(plugin: &str) -> String {
    sha256_hex(plugin.as_bytes())
}

// ---- routing by the flag -----------------------------------------------------

#[tokio::test]
async fn in_migration_mode_a_new_note_goes_to_the_new_store_only() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, true).await;
    let note = new_note(&router, &account).await;
    assert_eq!(placement(&router, &account, &note).await, json!({ "legacy": false, "new": true }));
}

#[tokio::test]
async fn update_moves_the_note_to_the_new_store_and_rollback_moves_it_back() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let note = new_note(&router, &account).await;
    assert_eq!(placement(&router, &account, &note).await, json!({ "legacy": true, "new": false }));

    assert_eq!(set_migrating(&router, &account, true).await.0, StatusCode::OK);
    let path = format!("/accounts/{account}/notes/{note}");
    assert_eq!(call(&router, "PUT", &path, Some(json!({ "content": "moved" }))).await.0, StatusCode::OK);
    assert_eq!(placement(&router, &account, &note).await, json!({ "legacy": false, "new": true }));

    assert_eq!(set_migrating(&router, &account, false).await.0, StatusCode::OK);
    assert_eq!(call(&router, "PUT", &path, Some(json!({ "content": "back" }))).await.0, StatusCode::OK);
    assert_eq!(placement(&router, &account, &note).await, json!({ "legacy": true, "new": false }));
    assert_eq!(call(&router, "GET", &path, None).await.1["content"], "back");
}

#[tokio::test]
async fn the_clock_the_app_is_built_with_dates_notes_and_the_health_check() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let note = new_note(&router, &account).await;
    fleet.clock.advance(60_000);
    let (_, updated) = call(&router, "PUT", &format!("/accounts/{account}/notes/{note}"), Some(json!({ "content": "later" }))).await;
    assert_eq!(updated["createdAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(updated["updatedAt"], "2023-11-14T22:14:20.000Z", "a minute later, by the app's clock");
    assert_eq!(call(&router, "GET", "/healthz", None).await.1["timestamp"], "2023-11-14T22:14:20.000Z");
}

// ---- the deployment gate -------------------------------------------------------

#[tokio::test]
async fn turning_migration_on_is_refused_while_this_hosts_plugin_cannot_migrate() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", LEGACY));
    let account = new_account(&router, false).await;
    let (status, body) = set_migrating(&router, &account, true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("does not support migration"), "{body}");
    assert_eq!(call(&router, "GET", &format!("/accounts/{account}"), None).await.1["isMigrating"], false);
    let (status, _) = call(&router, "POST", "/accounts", Some(json!({ "name": "Bo", "isMigrating": true }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "creating an account with the flag on is the same change");
}

#[tokio::test]
async fn turning_migration_on_is_refused_while_another_host_runs_old_code() {
    let fleet = InProcess::default();
    let _old = start(&fleet, "old-host", LEGACY);
    let router = http(&start(&fleet, "new-host", MIGRATE));
    let account = new_account(&router, false).await;
    let (status, body) = set_migrating(&router, &account, true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("old-host"), "the refusal names the host: {body}");
    let (status, _) = call(&router, "POST", "/accounts", Some(json!({ "name": "Bo", "isMigrating": true }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, accounts) = call(&router, "GET", "/accounts", None).await;
    assert_eq!(accounts.as_array().unwrap().len(), 1, "the refused account was not created");
}

#[tokio::test]
async fn a_plugin_that_cannot_migrate_is_refused_while_an_account_migrates() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, true).await;
    fleet.start("b", LEGACY.as_bytes(), AppSettings::default()).err().expect("a host with old code cannot join");

    let app = start(&fleet, "c", MIGRATE);
    app.plugins().push_plugin(LEGACY.as_bytes()).unwrap();
    let (status, body) = call(&router, "PUT", "/plugins/active", Some(json!({ "digest": digest(LEGACY) }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains(&account), "the refusal names the account: {body}");
    assert_eq!(active_plugin(&router).await["active"]["digest"], digest(MIGRATE));
}

#[tokio::test]
async fn without_a_new_store_migration_cannot_be_turned_on() {
    let fleet = InProcess::new(false);
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let (status, body) = set_migrating(&router, &account, true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("no new store"), "{body}");
}

// ---- the flag is read for every request (or known since its last flip), and fails closed

#[tokio::test]
async fn a_failed_flag_read_fails_the_request_and_never_calls_the_plugin() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", FAILING));
    let accounts = [new_account(&router, false).await, new_account(&router, false).await, new_account(&router, false).await];
    fleet.coordination.set_unavailable(true);
    for i in 0..30 {
        let (status, body) = call(&router, "POST", &format!("/accounts/{}/notes", accounts[i % 3]), Some(json!({ "content": "x" }))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].as_str().unwrap().contains("isMigrating"), "{body}");
    }
    fleet.coordination.set_unavailable(false);
    // Had the failing plugin been called 30 times, probation would have
    // taken it out: it is still active, with no automatic entry.
    let plugins = active_plugin(&router).await;
    assert_eq!(plugins["active"]["digest"], digest(FAILING));
    assert!(plugins["active"].get("suspended").is_none(), "{plugins}");
    assert!(plugins["history"].as_array().unwrap().iter().all(|a| a["actor"] != "automatic"), "{plugins}");
    assert_eq!(fleet.stores.legacy.count(&accounts[0]).unwrap(), 0);
}

#[tokio::test]
async fn a_flip_changes_the_flag_on_every_host_of_the_fleet() {
    let fleet = InProcess::default();
    let a = start(&fleet, "a", MIGRATE);
    let b = http(&start(&fleet, "b", MIGRATE));
    let account = new_account(&b, false).await;
    let account_id: Uuid = account.parse().unwrap();
    let before = new_note(&b, &account).await;
    assert_eq!(placement(&b, &account, &before).await, json!({ "legacy": true, "new": false }), "host b knows the flag off");
    let flipped = tokio::task::spawn_blocking(move || {
        a.update_account(account_id, notes_host::app::AccountChange { is_migrating: Some(true), ..Default::default() })
    });
    assert!(flipped.await.unwrap().unwrap().is_migrating);
    let note = new_note(&b, &account).await;
    assert_eq!(placement(&b, &account, &note).await, json!({ "legacy": false, "new": true }), "host b routes under the new value");
}

#[tokio::test]
async fn a_rollout_is_one_audit_entry_with_its_count_and_its_accounts_one_query_away() {
    let fleet = InProcess::default();
    let host = http(&start(&fleet, "a", MIGRATE));
    let mut accounts = BTreeSet::new();
    for _ in 0..5 {
        accounts.insert(new_account(&host, false).await);
    }
    let (status, body) = call(&host, "POST", "/migration/rollout", Some(json!({ "percent": 100 }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&host, "POST", "/migration/kill-switch", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, log) = call(&host, "GET", "/audit?order=newest", None).await;
    let entries = log["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "flag").count(), 0, "the flips read as their actions: {log}");
    let (killed, rollout) = (&entries[0], &entries[1]);
    assert_eq!((killed["kind"].as_str(), killed["changes"].as_u64()), (Some("kill-switch"), Some(5)), "{killed}");
    assert_eq!((rollout["kind"].as_str(), rollout["changes"].as_u64()), (Some("rollout"), Some(5)), "{rollout}");
    assert!(rollout["detail"].as_str().unwrap().starts_with("5 turned on"), "{rollout}");

    let (_, of_rollout) = call(&host, "GET", &format!("/audit?action={}", rollout["action"].as_str().unwrap()), None).await;
    let flipped: BTreeSet<String> = of_rollout["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "flag" && e["after"] == "true")
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(flipped, accounts, "the rollout's entries name each account it turned on");
    let (_, expanded) = call(&host, "GET", "/audit?expand=true&kind=flag", None).await;
    assert_eq!(expanded["entries"].as_array().unwrap().len(), 10, "each flip is still there, expanded: {expanded}");
    let (status, body) = call(&host, "GET", "/audit?action=rollout-1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn an_upload_checked_by_the_host_is_refused_naming_the_cases_it_fails_and_not_stored() {
    let fleet = InProcess::default();
    let host = http(&start(&fleet, "a", MIGRATE));
    let upload = |bytes: &'static str| {
        let request = Request::builder().method("POST").uri("/plugins?check=true").body(Body::from(bytes)).unwrap();
        let host = host.clone();
        async move {
            let response = host.oneshot(request).await.unwrap();
            let status = response.status();
            (status, serde_json::from_slice::<Value>(&response.into_body().collect().await.unwrap().to_bytes()).unwrap())
        }
    };
    let (status, refused) = upload(FAILING).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("fails 13 case(s) of the conformance kit"), "{refused}");
    assert_eq!(active_plugin(&host).await["plugins"].as_array().unwrap().len(), 1, "nothing stored");
    let (status, stored) = upload(LEGACY).await;
    assert_eq!(status, StatusCode::CREATED, "the legacy-only router passes the contract: {stored}");
}

// ---- probation, rollback, suspension -----------------------------------------

#[tokio::test]
async fn a_new_plugin_that_fails_probation_is_rolled_back_to_the_previous_one() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let accounts = [new_account(&router, false).await, new_account(&router, false).await, new_account(&router, false).await];
    app.plugins().push_plugin(FAILING.as_bytes()).unwrap();
    assert_eq!(call(&router, "PUT", "/plugins/active", Some(json!({ "digest": digest(FAILING) }))).await.0, StatusCode::OK);
    let (mut failures, mut last_failed) = (0, None);
    for i in 0..20 {
        let id = format!("probe-{i}");
        let (status, body) = call_with(&router, "GET", &format!("/accounts/{}/notes", accounts[i % 3]), None, &[("x-request-id", &id)]).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(body["requestId"], id.as_str(), "the error names its request");
            failures += 1;
            last_failed = Some(id);
        }
    }
    assert!((1..20).contains(&failures), "it failed until probation took it out, then the old plugin served ({failures} failures)");
    let plugins = active_plugin(&router).await;
    assert_eq!(plugins["active"]["digest"], digest(MIGRATE));
    let last = plugins["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "automatic");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("automatic rollback"), "{last}");
    let last_failed = last_failed.unwrap();
    assert!(reason.contains(&format!("(request {last_failed})")), "the record names the request that failed last: {reason}");
}

#[tokio::test]
async fn a_failing_plugin_with_nothing_to_roll_back_to_is_suspended_until_an_operator_acts() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", FAILING);
    let router = http(&app);
    let accounts = [new_account(&router, false).await, new_account(&router, false).await, new_account(&router, false).await];
    for i in 0..20 {
        call(&router, "GET", &format!("/accounts/{}/notes", accounts[i % 3]), None).await;
    }
    let (status, body) = call(&router, "GET", &format!("/accounts/{}/notes", accounts[0]), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("suspended"), "{body}");
    assert!(active_plugin(&router).await["active"]["suspended"].is_string());

    app.plugins().push_plugin(MIGRATE.as_bytes()).unwrap();
    assert_eq!(call(&router, "PUT", "/plugins/active", Some(json!({ "digest": digest(MIGRATE) }))).await.0, StatusCode::OK);
    assert_eq!(call(&router, "GET", &format!("/accounts/{}/notes", accounts[0]), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn automatic_rollback_never_returns_to_a_plugin_a_watch_took_out() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", FAILING);
    let router = http(&app);
    let accounts = [new_account(&router, false).await, new_account(&router, false).await, new_account(&router, false).await];
    let other_failing = "native:failing#2";
    app.plugins().push_plugin(other_failing.as_bytes()).unwrap();
    // The first failing plugin is taken out (suspended: nothing before it);
    // an operator activates the second, which fails as well.
    for i in 0..20 {
        call(&router, "GET", &format!("/accounts/{}/notes", accounts[i % 3]), None).await;
    }
    assert_eq!(call(&router, "PUT", "/plugins/active", Some(json!({ "digest": digest(other_failing) }))).await.0, StatusCode::OK);
    for i in 0..20 {
        call(&router, "GET", &format!("/accounts/{}/notes", accounts[i % 3]), None).await;
    }
    let plugins = active_plugin(&router).await;
    assert_eq!(plugins["active"]["digest"], digest(other_failing), "not rolled back to the plugin already taken out");
    assert!(plugins["active"]["suspended"].as_str().unwrap().contains("taken out by a health watch"), "{plugins}");
}

// ---- activation order ---------------------------------------------------------

/// The memory coordination state, recording for each change of this host's
/// plugin which plugin the catalog had active when the change took effect.
struct Recording {
    inner: Arc<dyn Coordination>,
    catalog: Box<dyn Catalog>,
    at_commit: Mutex<Vec<(bool, Option<String>)>>,
}

#[tokio::test]
async fn an_upgrade_runs_the_new_code_before_the_fleet_learns_and_a_downgrade_after() {
    let fleet = InProcess::default();
    let recording = Arc::new(Recording {
        inner: fleet.coordination.clone(),
        catalog: Box::new(fleet.catalog.for_host("a")),
        at_commit: Mutex::default(),
    });
    let app = fleet.start_with("a", LEGACY.as_bytes(), AppSettings::default(), recording.clone()).unwrap();
    app.plugins().push_plugin(MIGRATE.as_bytes()).unwrap();
    app.plugins().activate_plugin(&digest(MIGRATE), notes_host::app::Actor::Operator, "upgrade").unwrap();
    app.plugins().activate_plugin(&digest(LEGACY), notes_host::app::Actor::Operator, "downgrade").unwrap();
    let at_commit = recording.at_commit.lock().unwrap().clone();
    assert_eq!(
        at_commit,
        vec![
            // Upgrade: the new code was already serving when the fleet was told it can migrate.
            (true, Some(digest(MIGRATE))),
            // Downgrade: the fleet was told "cannot migrate" while the old code was not yet serving.
            (false, Some(digest(MIGRATE))),
        ]
    );
}

impl Accounts for Recording {
    fn create_account(&self, account: &Account, gate: Gate) -> Result<(), CoordinationError> {
        self.inner.create_account(account, gate)
    }

    fn account(&self, id: Uuid) -> Result<Option<Account>, CoordinationError> {
        self.inner.account(id)
    }

    fn accounts(&self) -> Result<Vec<Account>, CoordinationError> {
        self.inner.accounts()
    }

    fn next_account_after(&self, after: Option<Uuid>) -> Result<Option<Uuid>, CoordinationError> {
        self.inner.next_account_after(after)
    }

    fn update_account(&self, id: Uuid, details: &AccountDetails, now_ms: i64) -> Result<Option<Account>, CoordinationError> {
        self.inner.update_account(id, details, now_ms)
    }

    fn flag_state(&self, id: Uuid) -> Result<Option<FlagState>, CoordinationError> {
        self.inner.flag_state(id)
    }

    fn record_verify(&self, account: Uuid, updated_at_ms: i64, verified: Verified) -> Result<bool, CoordinationError> {
        self.inner.record_verify(account, updated_at_ms, verified)
    }
}

impl Flips for Recording {
    fn announce_flip(&self, flip: &PendingFlip, gate: Gate, rollout: Option<i64>) -> Result<Announced, CoordinationError> {
        self.inner.announce_flip(flip, gate, rollout)
    }

    fn commit_flip(&self, flip: &PendingFlip, gate: Gate, now_ms: i64, audit: &AuditEntry) -> Result<bool, CoordinationError> {
        self.inner.commit_flip(flip, gate, now_ms, audit)
    }

    fn abort_flip(&self, account: Uuid, flip_id: &str) -> Result<bool, CoordinationError> {
        self.inner.abort_flip(account, flip_id)
    }

    fn pending_flips(&self) -> Result<Vec<PendingFlip>, CoordinationError> {
        self.inner.pending_flips()
    }

    fn acknowledge_flip(&self, flip_id: &str, host: &str, now_ms: i64) -> Result<(), CoordinationError> {
        self.inner.acknowledge_flip(flip_id, host, now_ms)
    }

    fn flip_acks(&self, flip_id: &str) -> Result<BTreeSet<String>, CoordinationError> {
        self.inner.flip_acks(flip_id)
    }

    fn set_flag_unsafely(&self, account: Uuid, to: bool, now_ms: i64) -> Result<bool, CoordinationError> {
        self.inner.set_flag_unsafely(account, to, now_ms)
    }
}

impl Hosts for Recording {
    fn change_host_plugin(&self, host: &str, plugin: &PluginSummary, gate: Gate, before_commit: &mut dyn FnMut()) -> Result<(), CoordinationError> {
        self.inner.change_host_plugin(host, plugin, gate, before_commit)?;
        self.at_commit.lock().unwrap().push((plugin.supports_migration, self.catalog.active_digest().unwrap()));
        Ok(())
    }

    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        self.inner.register_host(host, gate)
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        self.inner.heartbeat(host, now_ms)
    }

    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        self.inner.expired_hosts()
    }

    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        self.inner.prune_host(host)
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        self.inner.hosts()
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        self.inner.remove_host(host)
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        self.inner.change_watch()
    }
}

impl Rollouts for Recording {
    fn rollout_percent(&self) -> Result<Option<f64>, CoordinationError> {
        self.inner.rollout_percent()
    }

    fn set_rollout_percent(&self, percent: f64) -> Result<(), CoordinationError> {
        self.inner.set_rollout_percent(percent)
    }

    fn begin_rollout(&self, resume: bool) -> Result<i64, CoordinationError> {
        self.inner.begin_rollout(resume)
    }

    fn rollout_latched(&self) -> Result<bool, CoordinationError> {
        self.inner.rollout_latched()
    }

    fn stop_rollouts(&self) -> Result<i64, CoordinationError> {
        self.inner.stop_rollouts()
    }
}

impl Jobs for Recording {
    fn create_job(&self, job: &Job) -> Result<(), CoordinationError> {
        self.inner.create_job(job)
    }

    fn job(&self, id: &str) -> Result<Option<Job>, CoordinationError> {
        self.inner.job(id)
    }

    fn jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        self.inner.jobs()
    }

    fn running_jobs(&self) -> Result<Vec<Job>, CoordinationError> {
        self.inner.running_jobs()
    }

    fn claim_job(&self, id: &str, expected: Option<&str>, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        self.inner.claim_job(id, expected, host, now_ms)
    }

    fn save_job(&self, job: &Job) -> Result<bool, CoordinationError> {
        self.inner.save_job(job)
    }

    fn set_job_state(&self, id: &str, from: &[JobState], to: JobState, now_ms: i64) -> Result<Option<Job>, CoordinationError> {
        self.inner.set_job_state(id, from, to, now_ms)
    }
}

impl Keys for Recording {
    fn create_key(&self, key: &AccountKey) -> Result<(), CoordinationError> {
        self.inner.create_key(key)
    }

    fn key(&self, id: &str) -> Result<Option<AccountKey>, CoordinationError> {
        self.inner.key(id)
    }

    fn keys(&self, account: Uuid) -> Result<Vec<AccountKey>, CoordinationError> {
        self.inner.keys(account)
    }

    fn revoke_key(&self, account: Uuid, id: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        self.inner.revoke_key(account, id, now_ms)
    }
}

impl AuditLog for Recording {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        self.inner.append_audit(entry)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        self.inner.audit(query)
    }
}

// ---- errors as the API documents them ------------------------------------------

#[tokio::test]
async fn errors_are_json_with_the_documented_status() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let missing = Uuid::new_v4();
    let cases = [
        ("POST", "/accounts".to_owned(), Some(json!({ "name": "  " })), StatusCode::BAD_REQUEST),
        ("GET", format!("/accounts/{missing}"), None, StatusCode::NOT_FOUND),
        ("POST", "/accounts".to_owned(), Some(json!({ "id": account, "name": "again" })), StatusCode::CONFLICT),
        ("GET", format!("/accounts/{account}/notes/{missing}"), None, StatusCode::NOT_FOUND),
        ("PUT", "/plugins/active".to_owned(), Some(json!({ "digest": "0".repeat(64) })), StatusCode::NOT_FOUND),
        ("GET", "/no/such/route".to_owned(), None, StatusCode::NOT_FOUND),
        ("DELETE", "/accounts".to_owned(), None, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = call(&router, method, &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    // A rejected upload: not a plugin this host can run.
    let app = start(&fleet, "b", MIGRATE);
    assert!(matches!(app.plugins().push_plugin(b"not a plugin"), Err(AppError::Rejected(_))));
    // Deleting a note that does not exist succeeds, as Notely's clients expect.
    let (status, _) = call(&router, "DELETE", &format!("/accounts/{account}/notes/{missing}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_stale_update_is_refused_with_the_current_version() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let note = new_note(&router, &account).await;
    let path = format!("/accounts/{account}/notes/{note}");
    let (status, body) = call_with(&router, "PUT", &path, Some(json!({ "content": "v2" })), &[("if-match", "\"7\"")]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["currentVersion"], 1);
    assert_eq!(call(&router, "GET", &path, None).await.1["content"], "hello", "nothing changed");
}

// ---- what an API client sees: limits, Location, If-None-Match, pages, times ------

/// One request's whole answer: status, headers and the body's bytes.
async fn exchange(router: &ApiService, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_content_or_a_name_over_its_limit_says_in_detail_that_the_limit_counts_bytes_and_how_many_were_sent() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    // 51 two-byte characters: 102 bytes, over the 100 a name may have.
    let (status, body) = call(&router, "POST", "/accounts", Some(json!({ "name": "é".repeat(51) }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "account name too long (max 100 characters)", "Notely's text, which its clients may match");
    assert_eq!(body["detail"], "the account name is 102 bytes of UTF-8, over the limit of 100 bytes (the limit counts bytes, not characters)");
    let account = new_account(&router, false).await;
    let (_, body) = call(&router, "PATCH", &format!("/accounts/{account}"), Some(json!({ "name": "x".repeat(101) }))).await;
    assert_eq!(body["detail"], "the account name is 101 bytes of UTF-8, over the limit of 100 bytes (the limit counts bytes, not characters)");

    let notes = format!("/accounts/{account}/notes");
    let (status, body) = call(&router, "POST", &notes, Some(json!({ "content": "é".repeat(5_001) }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "note content too long (max 10000 characters)", "Notely's text, which its clients may match");
    assert_eq!(body["detail"], "the note content is 10002 bytes of UTF-8, over the limit of 10000 bytes (the limit counts bytes, not characters)");
    let note = new_note(&router, &account).await;
    let (status, body) = call(&router, "PUT", &format!("{notes}/{note}"), Some(json!({ "content": "x".repeat(10_001) }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["detail"], "the note content is 10001 bytes of UTF-8, over the limit of 10000 bytes (the limit counts bytes, not characters)");
}

#[tokio::test]
async fn a_201_carries_location_with_the_new_resources_path_and_a_get_of_it_answers_the_same_resource() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let (status, headers, body) = exchange(&router, "POST", "/accounts", Some(json!({ "name": "Ada" })), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let account: Value = serde_json::from_slice(&body).unwrap();
    let location = header(&headers, "location").expect("a created account says where it is").to_owned();
    assert_eq!(location, format!("/accounts/{}", account["id"].as_str().unwrap()));
    assert_eq!(call(&router, "GET", &location, None).await, (StatusCode::OK, account.clone()));

    let notes = format!("{location}/notes");
    let (status, headers, body) = exchange(&router, "POST", &notes, Some(json!({ "content": "hello" })), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let note: Value = serde_json::from_slice(&body).unwrap();
    let location = header(&headers, "location").expect("a created note says where it is").to_owned();
    assert_eq!(location, format!("{notes}/{}", note["id"].as_str().unwrap()));
    assert_eq!(call(&router, "GET", &location, None).await, (StatusCode::OK, note));

    let (status, headers, body) = exchange(&router, "POST", "/jobs", Some(json!({ "kind": "verify" })), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let job: Value = serde_json::from_slice(&body).unwrap();
    let location = header(&headers, "location").expect("a created job says where it is").to_owned();
    assert_eq!(location, format!("/jobs/{}", job["id"].as_str().unwrap()));
    let (status, got) = call(&router, "GET", &location, None).await;
    assert_eq!((status, &got["id"]), (StatusCode::OK, &job["id"]));
}

#[tokio::test]
async fn a_get_with_the_notes_etag_in_if_none_match_answers_304_with_its_etag_and_plugin_and_no_body() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let note = new_note(&router, &account).await;
    let path = format!("/accounts/{account}/notes/{note}");
    let (status, fresh, _) = exchange(&router, "GET", &path, None, &[]).await;
    assert_eq!((status, header(&fresh, "etag")), (StatusCode::OK, Some("\"1\"")));
    let plugin = header(&fresh, "x-plugin").expect("a note names its plugin").to_owned();

    // The ETag itself, `*` (any note that exists), a list holding it, its weak form.
    for held in ["\"1\"", "*", "\"7\", \"1\"", "W/\"1\""] {
        let (status, headers, body) = exchange(&router, "GET", &path, None, &[("if-none-match", held)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "If-None-Match: {held}");
        assert!(body.is_empty(), "If-None-Match: {held}: a 304 has no body, got {}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "etag"), Some("\"1\""), "If-None-Match: {held}: the 304 says which version is current");
        assert_eq!(header(&headers, "x-plugin"), Some(plugin.as_str()), "If-None-Match: {held}: every plugin-served answer names its plugin");
    }

    // Once the note changed, the client's copy is stale: the note, in full.
    assert_eq!(call(&router, "PUT", &path, Some(json!({ "content": "changed" }))).await.0, StatusCode::OK);
    let (status, headers, body) = exchange(&router, "GET", &path, None, &[("if-none-match", "\"1\"")]).await;
    assert_eq!((status, header(&headers, "etag")), (StatusCode::OK, Some("\"2\"")));
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["content"], "changed");
    // `*` matches only a note that exists.
    let (status, answer) = call_with(&router, "GET", &format!("/accounts/{account}/notes/{}", Uuid::new_v4()), None, &[("if-none-match", "*")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test]
async fn a_page_exactly_full_but_the_last_links_to_no_next_page() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let mut notes = Vec::new();
    for _ in 0..4 {
        notes.push(new_note(&router, &account).await);
    }
    notes.sort();
    let page = |query: String| {
        let router = router.clone();
        let path = format!("/accounts/{account}/notes?{query}");
        async move {
            let (status, headers, body) = exchange(&router, "GET", &path, None, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let ids: Vec<String> = serde_json::from_slice(&body).unwrap();
            (ids, header(&headers, "link").map(str::to_owned))
        }
    };
    let (ids, link) = page("limit=2".into()).await;
    assert_eq!((ids, link), (notes[..2].to_vec(), Some(format!("</accounts/{account}/notes?limit=2&after={}>; rel=\"next\"", notes[1]))));
    assert_eq!(page(format!("limit=2&after={}", notes[1])).await, (notes[2..].to_vec(), None), "the last page, exactly full, links nowhere");
    assert_eq!(page("limit=4".into()).await, (notes.clone(), None), "one page holding every id links nowhere");
    assert!(page("limit=3".into()).await.1.is_some(), "a full page with an id after it links to the next");
}

#[tokio::test]
async fn a_query_value_that_does_not_parse_gets_the_apis_json_error_naming_the_parameter_on_every_route() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let notes = format!("/accounts/{account}/notes");
    let cases = [
        ("GET", format!("{notes}?limit=abc"), r#"query parameter "limit" must be a whole number between 1 and 10000, got "abc""#),
        ("GET", format!("{notes}?limit=99999999999"), r#"query parameter "limit" must be a whole number between 1 and 10000, got "99999999999""#),
        ("GET", format!("{notes}?limit=1&limit=2"), r#"query parameter "limit" is given 2 times; give it once"#),
        ("GET", "/accounts?limit=abc".to_owned(), r#"query parameter "limit" must be a whole number between 1 and 1000, got "abc""#),
        ("GET", "/accounts?offset=-1".to_owned(), r#"query parameter "offset" must be a whole number of at least 0, got "-1""#),
        ("GET", "/audit?after=soon".to_owned(), r#"query parameter "after" must be a whole number, got "soon""#),
        ("POST", "/migration/rollout?dryRun=maybe".to_owned(), r#"query parameter "dryRun" must be `true` or `false`, got "maybe""#),
        ("POST", "/plugins?check=yes".to_owned(), r#"query parameter "check" must be `true` or `false`, got "yes""#),
    ];
    for (method, path, words) in cases {
        let (status, headers, body) = exchange(&router, method, &path, Some(json!({ "percent": 100 })), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"), "{method} {path}: the API's JSON shape");
        let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", String::from_utf8_lossy(&body)));
        assert_eq!(body["error"], words, "{method} {path}: {body}");
        assert!(body["requestId"].is_string(), "{method} {path}: {body}");
    }
    assert_eq!(migrating_count(&router).await, 0, "a refused rollout flipped nothing");
}

#[tokio::test]
async fn times_in_answers_have_three_digits_of_milliseconds_and_end_in_z() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    fleet.clock.advance(120);
    let (_, account) = call(&router, "POST", "/accounts", Some(json!({ "name": "Ada" }))).await;
    assert_eq!(account["createdAt"], "2023-11-14T22:13:20.120Z", "trailing zeros kept: {account}");
    let notes = format!("/accounts/{}/notes", account["id"].as_str().unwrap());
    fleet.clock.advance(880);
    let (_, note) = call(&router, "POST", &notes, Some(json!({ "content": "on the second" }))).await;
    assert_eq!((&note["createdAt"], &note["updatedAt"]), (&json!("2023-11-14T22:13:21.000Z"), &json!("2023-11-14T22:13:21.000Z")), "{note}");
    // A client's time is answered in the same width, whatever width it came in.
    let (_, kept) = call(&router, "POST", &notes, Some(json!({ "content": "dated", "createdAt": "2023-11-12T22:13:20.5+01:00" }))).await;
    assert_eq!(kept["createdAt"], "2023-11-12T21:13:20.500Z", "{kept}");
    assert_eq!(call(&router, "GET", "/healthz", None).await.1["timestamp"], "2023-11-14T22:13:21.000Z");
}

// ---- Notely's rules --------------------------------------------------------------

#[tokio::test]
async fn notely_a_client_created_at_is_kept_and_a_stale_updated_at_changes_nothing() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let two_days_ago = "2023-11-12T22:13:20Z";
    let (status, note) = call(
        &router,
        "POST",
        &format!("/accounts/{account}/notes"),
        Some(json!({ "id": Uuid::nil(), "content": "first", "createdAt": two_days_ago, "updatedAt": "0001-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(note["createdAt"], "2023-11-12T22:13:20.000Z", "the client's time, in the answers' fixed width");
    let path = format!("/accounts/{account}/notes/{}", note["id"].as_str().unwrap());

    let written = "2023-11-14T22:13:20Z";
    let (status, body) = call(&router, "PUT", &path, Some(json!({ "content": "second", "updatedAt": written }))).await;
    assert_eq!((status, body["content"].as_str(), body["updatedAt"].as_str()), (StatusCode::OK, Some("second"), Some("2023-11-14T22:13:20.000Z")));

    let older = "2023-11-13T22:13:20Z";
    let (status, body) = call(&router, "PUT", &path, Some(json!({ "content": "stale", "updatedAt": older }))).await;
    assert_eq!(status, StatusCode::OK, "Notely answers 200 to a stale write");
    assert_eq!(body["content"], "second", "and leaves the note as it is");
    assert_eq!(call(&router, "GET", &path, None).await.1["content"], "second");

    let (status, body) = call(&router, "PUT", &path, Some(json!({ "content": "third", "updatedAt": "0001-01-01T00:00:00Z" }))).await;
    assert_eq!((status, body["content"].as_str()), (StatusCode::OK, Some("third")), "Go's zero time means no time given");
}

#[tokio::test]
async fn notely_nil_ids_mean_generate_one_and_the_shard_is_echoed() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let mut ids = BTreeSet::new();
    for name in ["Ada", "Grace"] {
        let (status, body) =
            call(&router, "POST", "/accounts", Some(json!({ "id": Uuid::nil(), "name": name, "isMigrating": false, "shard": "eu-1" }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["shard"], "eu-1");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2, "two nil ids, two accounts");
    let account = ids.first().unwrap();
    let (_, renamed) = call(&router, "PUT", &format!("/accounts/{account}"), Some(json!({ "name": "Ada L.", "isMigrating": false }))).await;
    assert_eq!((renamed["name"].as_str(), renamed["shard"].as_str()), (Some("Ada L."), Some("eu-1")), "a rename keeps the shard");
    for (name, text) in [("", "account name is required"), (" ", "account name cannot be only whitespace")] {
        let (status, body) = call(&router, "POST", "/accounts", Some(json!({ "name": name }))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(text)), "Notely's text");
    }
}

// ---- moving notes --------------------------------------------------------------

#[tokio::test]
async fn a_move_follows_the_flag_each_batch_reads() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    for _ in 0..300 {
        new_note(&router, &account).await;
    }
    let path = format!("/accounts/{account}/migration/move");
    let (_, stayed) = call(&router, "POST", &path, None).await;
    assert_eq!((stayed["moved"].as_u64(), stayed["legacyNotes"].as_u64()), (Some(0), Some(300)), "flag off: all already in legacy");
    set_migrating(&router, &account, true).await;
    let (status, moved) = call(&router, "POST", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!((moved["moved"].as_u64(), moved["newNotes"].as_u64()), (Some(300), Some(300)));
    assert!(moved["batches"].as_u64().unwrap() > 1, "in batches: {moved}");
}

#[tokio::test]
async fn old_code_cannot_move_notes() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", LEGACY));
    let account = new_account(&router, false).await;
    let (status, body) = call(&router, "POST", &format!("/accounts/{account}/migration/move"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "refused even with nothing to move ({body})");
    assert!(body["error"].as_str().unwrap().contains("plugin activate"), "the refusal names the command: {body}");
    fleet.stores.new.as_ref().unwrap().put(&notes_routing::Note {
        id: Uuid::new_v4().to_string(),
        account_id: account.clone(),
        content: "left in new".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
        version: 1,
    }, 0).unwrap();
    let (status, body) = call(&router, "POST", &format!("/accounts/{account}/migration/move"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("does not move notes"), "{body}");
}

// ---- migration states, verify, rollout, kill switch, audit -----------------------

async fn state(router: &ApiService, account: &str) -> String {
    call(router, "GET", &format!("/accounts/{account}/migration"), None).await.1["state"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_account_goes_from_legacy_to_migrated_and_back_to_rolled_back() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    for _ in 0..40 {
        new_note(&router, &account).await;
    }
    assert_eq!(state(&router, &account).await, "legacy");
    set_migrating(&router, &account, true).await;
    assert_eq!(state(&router, &account).await, "migrating");
    call(&router, "POST", &format!("/accounts/{account}/migration/move"), None).await;
    assert_eq!(state(&router, &account).await, "migrating", "everything moved, but not verified yet");
    let (_, verified) = call(&router, "POST", &format!("/accounts/{account}/migration/verify"), None).await;
    assert_eq!((verified["clean"].as_bool(), verified["notes"].as_u64()), (Some(true), Some(40)), "{verified}");
    assert_eq!(state(&router, &account).await, "migrated");

    set_migrating(&router, &account, false).await;
    assert_eq!(state(&router, &account).await, "rolling-back", "a flip forgets the verify");
    call(&router, "POST", &format!("/accounts/{account}/migration/move"), None).await;
    assert_eq!(state(&router, &account).await, "legacy");
    call(&router, "POST", &format!("/accounts/{account}/migration/verify"), None).await;
    assert_eq!(state(&router, &account).await, "rolled-back");
    let (_, service) = call(&router, "GET", "/migration", None).await;
    assert_eq!(service["accounts"]["rolled-back"], 1, "{service}");
}

#[tokio::test]
async fn a_verify_leaves_an_account_that_never_migrated_legacy_not_rolled_back() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let (never, created_on) = (new_account(&router, false).await, new_account(&router, true).await);
    new_note(&router, &never).await;
    for account in [&never, &created_on] {
        let (_, verified) = call(&router, "POST", &format!("/accounts/{account}/migration/verify"), None).await;
        assert_eq!(verified["clean"].as_bool(), Some(true), "{verified}");
    }
    assert_eq!(state(&router, &never).await, "legacy", "its flag was never on: nothing was rolled back");
    set_migrating(&router, &created_on, false).await;
    call(&router, "POST", &format!("/accounts/{created_on}/migration/verify"), None).await;
    assert_eq!(state(&router, &created_on).await, "rolled-back", "created migrating, then turned off");
    let (_, service) = call(&router, "GET", "/migration", None).await;
    assert_eq!((service["accounts"]["legacy"].as_u64(), service["accounts"]["rolled-back"].as_u64()), (Some(1), Some(1)), "{service}");
}

#[tokio::test]
async fn verify_reports_each_planted_problem_with_its_note() {
    let fleet = InProcess::default();
    let settings = AppSettings { max_note_bytes: 100, ..AppSettings::default() };
    let router = http(&Arc::new(fleet.start("a", MIGRATE.as_bytes(), settings).unwrap()));
    let account = new_account(&router, true).await;
    for _ in 0..5 {
        new_note(&router, &account).await;
    }
    let (_, clean) = call(&router, "POST", &format!("/accounts/{account}/migration/verify"), None).await;
    assert_eq!(clean["clean"], true, "{clean}");

    let note = |id: &str, content: &str, version| notes_routing::Note {
        id: id.into(),
        account_id: account.clone(),
        content: content.into(),
        created_at_ms: 1,
        updated_at_ms: 1,
        version,
    };
    let (wrong_store, half_deleted, unreadable) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let new = fleet.stores.new.as_ref().unwrap();
    fleet.stores.legacy.put(&note(&wrong_store, "left behind in legacy", 1), 0).unwrap();
    new.put(&note(&half_deleted, "deleted in legacy at 2", 1), 0).unwrap();
    fleet.stores.legacy.delete_if_not_newer(&account, &half_deleted, 2, 0).unwrap();
    new.put(&note(&unreadable, &"x".repeat(200), 1), 0).unwrap();

    let (_, report) = call(&router, "POST", &format!("/accounts/{account}/migration/verify"), None).await;
    assert_eq!(report["clean"], false);
    assert_eq!((report["misplaced"].as_u64(), report["halfDeleted"].as_u64(), report["unreadable"].as_u64()), (Some(1), Some(1), Some(1)), "{report}");
    let named = |id: &str| report["problems"].as_array().unwrap().iter().any(|p| p["note"] == id);
    assert!(named(&wrong_store) && named(&half_deleted) && named(&unreadable), "{report}");
    assert_eq!(state(&router, &account).await, "migrating", "an unclean verify does not finish the migration");
}

#[tokio::test]
async fn accounts_can_be_searched_by_name_or_id_and_paged_with_a_total() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let mut ids = Vec::new();
    for name in ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Ada Yonath"] {
        let (_, body) = call(&router, "POST", "/accounts", Some(json!({ "name": name }))).await;
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let page = |query: String| {
        let router = router.clone();
        async move {
            let response = router.oneshot(Request::get(format!("/accounts{query}")).body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let total = response.headers().get("x-total-count").map(|v| v.to_str().unwrap().to_owned());
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let names: Vec<String> = body.as_array().map(|a| a.iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect()).unwrap_or_default();
            (status, total, names, body)
        }
    };
    let (_, total, every, _) = page(String::new()).await;
    assert_eq!((total.as_deref(), every.len()), (Some("4"), 4), "no query: every account, as Notely lists them");
    let (_, total, mut names, _) = page("?q=ada".into()).await;
    names.sort();
    assert_eq!((total.as_deref(), names), (Some("2"), vec!["Ada Lovelace".to_owned(), "Ada Yonath".to_owned()]), "any case");
    let (_, total, names, _) = page(format!("?q={}", &ids[2][..8])).await;
    assert_eq!((total.as_deref(), names), (Some("1"), vec!["Alan Turing".to_owned()]), "an id prefix");
    let (_, total, names, _) = page("?offset=1&limit=2".into()).await;
    assert_eq!((total.as_deref(), names), (Some("4"), every[1..3].to_vec()), "a page of the same order, with the total");
    let (status, _, _, body) = page("?limit=0".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit must be between 1 and 1000"), "{body}");
}

#[tokio::test]
async fn rollout_cohorts_are_stable_and_nested_and_the_kill_switch_turns_every_account_off() {
    let fleet = InProcess::default();
    let _other_host = start(&fleet, "b", MIGRATE);
    let router = http(&start(&fleet, "a", MIGRATE));
    let mut accounts = Vec::new();
    for _ in 0..60 {
        accounts.push(new_account(&router, false).await);
    }
    let on = |router: ApiService, accounts: Vec<String>| async move {
        let mut on = BTreeSet::new();
        for a in accounts {
            if call(&router, "GET", &format!("/accounts/{a}"), None).await.1["isMigrating"] == true {
                on.insert(a);
            }
        }
        on
    };
    let (_, ten) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 10 }))).await;
    let at_10 = on(router.clone(), accounts.clone()).await;
    assert_eq!(ten["turnedOn"].as_u64(), Some(at_10.len() as u64), "{ten}");
    let (_, preview) = call(&router, "POST", "/migration/rollout?dryRun=true", Some(json!({ "percent": 50 }))).await;
    assert_eq!(on(router.clone(), accounts.clone()).await, at_10, "a preview flips nothing");
    call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 50 }))).await;
    let at_50 = on(router.clone(), accounts.clone()).await;
    let turned_on = (at_50.len() - at_10.len()) as u64;
    assert_eq!((&preview["turnedOn"], &preview["turnedOff"], &preview["unchanged"]), (&json!(turned_on), &json!(0), &json!(60 - turned_on)), "the preview counted what the rollout then did: {preview}");
    assert!(at_10.is_subset(&at_50) && at_50.len() > at_10.len() && at_50.len() < 60, "nested: {} ⊂ {}", at_10.len(), at_50.len());
    call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 10 }))).await;
    assert_eq!(on(router.clone(), accounts.clone()).await, at_10, "the same accounts at 10% every time");
    assert_eq!(call(&router, "GET", "/migration", None).await.1["rolloutPercent"], 10.0);

    let (status, killed) = call(&router, "POST", "/migration/kill-switch", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((killed["turnedOff"].as_u64(), killed["failed"].as_array().map(Vec::len)), (Some(at_10.len() as u64), Some(0)), "{killed}");
    assert!(on(router.clone(), accounts.clone()).await.is_empty());
    let (status, _) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 101 }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_rollout_is_refused_while_a_host_runs_old_code() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let _old = start(&fleet, "old-host", LEGACY);
    let (status, body) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 100 }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("old-host"), "{body}");
    let (status, preview) = call(&router, "POST", "/migration/rollout?dryRun=true", Some(json!({ "percent": 100 }))).await;
    assert_eq!((status, &preview["error"]), (StatusCode::CONFLICT, &body["error"]), "a preview is refused as the rollout is");
    assert_eq!(call(&router, "GET", &format!("/accounts/{account}"), None).await.1["isMigrating"], false);
}

#[tokio::test]
async fn every_audited_action_appears_once_in_order_with_a_cursor() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let account = new_account(&router, false).await;
    set_migrating(&router, &account, true).await;
    set_migrating(&router, &account, true).await;
    call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 0 }))).await;
    app.plugins().push_plugin(LEGACY.as_bytes()).unwrap();
    call(&router, "PUT", "/plugins/active", Some(json!({ "digest": digest(LEGACY) }))).await;
    let (_, log) = call(&router, "GET", "/audit", None).await;
    let kinds: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["after"].as_str().unwrap().to_owned()))
        .collect();
    let legacy = digest(LEGACY);
    let expected: Vec<(&str, &str)> = vec![
        ("account", "false"),
        ("flag", "true"),
        // The second PATCH changed nothing: no entry. The rollout's flip
        // reads as the rollout (`GET /audit?kind=flag` lists it).
        ("rollout", "0%"),
        ("plugin", "native-legacy-only@0.1.0"),
        ("plugin", &legacy),
    ];
    assert_eq!(kinds.iter().map(|(k, a)| (k.as_str(), a.as_str())).collect::<Vec<_>>(), expected, "{log}");
    let (_, page) = call(&router, "GET", "/audit?kind=flag&limit=1", None).await;
    assert_eq!((page["entries"][0]["after"].as_str(), page["next"].as_i64().is_some()), (Some("true"), true));
    let next = page["next"].as_i64().unwrap();
    let (_, rest) = call(&router, "GET", &format!("/audit?kind=flag&after={next}"), None).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["entries"][0]["after"], "false");
    // The last page, exactly full, points to no next page.
    let (_, last) = call(&router, "GET", &format!("/audit?kind=flag&after={next}&limit=1"), None).await;
    assert_eq!((last["entries"].as_array().unwrap().len(), last.get("next").filter(|n| !n.is_null())), (1, None), "{last}");
    let (_, newest) = call(&router, "GET", "/audit?order=newest&limit=2", None).await;
    let seqs: Vec<i64> = newest["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(newest["entries"][0]["kind"], "plugin", "newest first: {newest}");
    assert!(seqs[0] > seqs[1], "{newest}");
    let (_, older) = call(&router, "GET", &format!("/audit?order=newest&before={}&limit=1", newest["next"]), None).await;
    assert_eq!((older["entries"][0]["kind"].as_str(), older["entries"][0]["after"].as_str()), (Some("rollout"), Some("0%")), "{older}");
    let (status, refused) = call(&router, "GET", "/audit?order=sideways", None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("oldest"), "{refused}");
}

// ---- migration jobs ----------------------------------------------------------------

/// Steps jobs on this host until none has work left; the number of steps.
/// A job rate at which one step (a quarter second's notes) is one batch.
fn one_batch_per_step() -> usize {
    4 * notes_host::app::FIRST_MOVE_BATCH
}

fn run_jobs(app: &App) -> usize {
    let mut steps = 0;
    while app.run_job_step().unwrap() {
        steps += 1;
        assert!(steps < 10_000, "jobs never finish");
    }
    steps
}

#[tokio::test]
async fn a_backfill_job_over_every_account_moves_only_the_migrating_accounts_notes() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let (on_a, on_b, off) = (new_account(&router, false).await, new_account(&router, false).await, new_account(&router, false).await);
    for account in [&on_a, &on_b, &off] {
        for _ in 0..50 {
            new_note(&router, account).await;
        }
    }
    set_migrating(&router, &on_a, true).await;
    set_migrating(&router, &on_b, true).await;
    let (status, job) = call(&router, "POST", "/jobs", Some(json!({ "kind": "backfill" }))).await;
    assert_eq!((status, job["total"].as_u64(), job["state"].as_str()), (StatusCode::CREATED, Some(100), Some("running")), "{job}");
    let steps = tokio::task::spawn_blocking({
        let app = app.clone();
        move || run_jobs(&app)
    })
    .await
    .unwrap();
    assert!(steps >= 2, "one batch or more per migrating account: {steps} steps");
    let (_, job) = call(&router, "GET", &format!("/jobs/{}", job["id"].as_str().unwrap()), None).await;
    assert_eq!((job["state"].as_str(), job["moved"].as_u64(), job["done"].as_u64()), (Some("done"), Some(100), Some(100)), "{job}");
    for (account, legacy, new) in [(&on_a, 0, 50), (&on_b, 0, 50), (&off, 50, 0)] {
        let (_, status) = call(&router, "GET", &format!("/accounts/{account}/migration"), None).await;
        assert_eq!((status["legacyNotes"].as_u64(), status["newNotes"].as_u64()), (Some(legacy), Some(new)), "{status}");
    }
}

#[tokio::test]
async fn a_flip_in_the_middle_of_a_backfill_never_moves_a_note_the_wrong_way() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let account = new_account(&router, true).await;
    set_migrating(&router, &account, false).await;
    let notes = 2 * notes_host::app::FIRST_MOVE_BATCH as u64;
    for _ in 0..notes {
        new_note(&router, &account).await;
    }
    set_migrating(&router, &account, true).await;
    // A step moves a quarter second's notes at the job's rate: one batch here.
    let (_, job) = call(&router, "POST", "/jobs", Some(json!({ "kind": "backfill", "account": account, "rate": one_batch_per_step() }))).await;
    assert!(app.run_job_step().unwrap(), "one batch");
    set_migrating(&router, &account, false).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let job = loop {
        assert!(std::time::Instant::now() < deadline, "the job never finished after the flip");
        let app2 = app.clone();
        tokio::task::spawn_blocking(move || run_jobs(&app2)).await.unwrap();
        let (_, job) = call(&router, "GET", &format!("/jobs/{id}"), None).await;
        if job["state"] != "running" {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // paced at its rate
    };
    assert_eq!(job["state"], "done");
    assert!(job["detail"].as_str().unwrap().contains("isMigrating is false"), "{job}");
    let batch = notes_host::app::FIRST_MOVE_BATCH as u64;
    let (_, status) = call(&router, "GET", &format!("/accounts/{account}/migration"), None).await;
    assert_eq!((status["newNotes"].as_u64(), status["legacyNotes"].as_u64()), (Some(batch), Some(notes - batch)), "nothing moved back or further: {status}");
}

#[tokio::test]
async fn a_job_can_be_paused_resumed_and_cancelled() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let account = new_account(&router, true).await;
    set_migrating(&router, &account, false).await;
    for _ in 0..2 * notes_host::app::FIRST_MOVE_BATCH {
        new_note(&router, &account).await;
    }
    set_migrating(&router, &account, true).await;
    let (_, job) = call(&router, "POST", "/jobs", Some(json!({ "kind": "backfill", "account": account, "rate": one_batch_per_step() }))).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&router, "POST", &format!("/jobs/{id}/pause"), None).await.1["state"], "paused");
    assert!(!app.run_job_step().unwrap(), "a paused job does not run");
    assert_eq!(call(&router, "POST", &format!("/jobs/{id}/pause"), None).await.0, StatusCode::CONFLICT);
    assert_eq!(call(&router, "POST", &format!("/jobs/{id}/resume"), None).await.1["state"], "running");
    assert!(app.run_job_step().unwrap());
    assert_eq!(call(&router, "POST", &format!("/jobs/{id}/cancel"), None).await.1["state"], "cancelled");
    assert!(!app.run_job_step().unwrap());
    let (_, job) = call(&router, "GET", &format!("/jobs/{id}"), None).await;
    assert_eq!((job["state"].as_str(), job["done"].as_u64()), (Some("cancelled"), Some(notes_host::app::FIRST_MOVE_BATCH as u64)), "{job}");
    let (_, audit) = call(&router, "GET", "/audit?kind=job", None).await;
    let states: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["after"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "paused", "running", "cancelled"], "{audit}");
    let (status, _) = call(&router, "POST", "/jobs", Some(json!({ "kind": "shuffle" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_job_is_named_by_a_unique_prefix_and_an_ambiguous_one_changes_nothing() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    // Two jobs whose ids share their first 8 characters, as the console shows them.
    for id in ["abcdef01-0000-4000-8000-000000000001", "abcdef01-1111-4000-8000-000000000002"] {
        let job = Job::new(id.into(), JobKind::Verify, 0);
        fleet.coordination.create_job(&job).unwrap();
    }
    let (status, body) = call(&router, "POST", "/jobs/abcdef01/pause", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2 jobs"), "the refusal says how many match: {body}");
    let (_, jobs) = call(&router, "GET", "/jobs", None).await;
    assert!(jobs.as_array().unwrap().iter().all(|j| j["state"] == "running"), "nothing changed: {jobs}");

    let (status, job) = call(&router, "POST", "/jobs/abcdef01-1/pause", None).await;
    assert_eq!((status, job["id"].as_str(), job["state"].as_str()), (StatusCode::OK, Some("abcdef01-1111-4000-8000-000000000002"), Some("paused")), "{job}");
    assert_eq!(call(&router, "GET", "/jobs/abcdef01-0", None).await.1["state"], "running");
    let (status, body) = call(&router, "GET", "/jobs/abcdef0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "shorter than 8: {body}");
    assert!(body["error"].as_str().unwrap().contains('8'), "the refusal says the minimum: {body}");
    assert_eq!(call(&router, "POST", "/jobs/01234567/cancel", None).await.0, StatusCode::NOT_FOUND);
    let (_, audit) = call(&router, "GET", "/audit?kind=job", None).await;
    let paused: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(paused, ["abcdef01-1111-4000-8000-000000000002"], "audited under the full id: {audit}");
}

#[tokio::test]
async fn a_plugin_is_activated_by_its_12_hex_prefix() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    app.plugins().push_plugin(LEGACY.as_bytes()).unwrap();
    let legacy = digest(LEGACY);
    let (status, body) = call(&router, "PUT", "/plugins/active", Some(json!({ "digest": &legacy[..12] }))).await;
    assert_eq!((status, body["digest"].as_str()), (StatusCode::OK, Some(legacy.as_str())), "{body}");
    assert_eq!(active_plugin(&router).await["active"]["digest"], legacy);
    let (status, body) = call(&router, "PUT", "/plugins/active", Some(json!({ "digest": &legacy[..11] }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "shorter than 12: {body}");
    assert!(body["error"].as_str().unwrap().contains("12"), "the refusal says the minimum: {body}");
}

#[tokio::test]
async fn a_verify_job_over_every_account_counts_the_unclean_ones() {
    let fleet = InProcess::default();
    let app = start(&fleet, "a", MIGRATE);
    let router = http(&app);
    let (clean, unclean) = (new_account(&router, true).await, new_account(&router, true).await);
    new_note(&router, &clean).await;
    fleet.stores.legacy.put(&notes_routing::Note {
        id: Uuid::new_v4().to_string(),
        account_id: unclean.clone(),
        content: "left in legacy".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
        version: 1,
    }, 0).unwrap();
    let (_, job) = call(&router, "POST", "/jobs", Some(json!({ "kind": "verify" }))).await;
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_jobs(&app2)).await.unwrap();
    let (_, job) = call(&router, "GET", &format!("/jobs/{}", job["id"].as_str().unwrap()), None).await;
    assert_eq!((job["state"].as_str(), job["done"].as_u64(), job["problems"].as_u64()), (Some("done"), Some(2), Some(1)), "{job}");
    assert_eq!(state(&router, &clean).await, "migrated");
    assert_eq!(state(&router, &unclean).await, "migrating");
}

/// The committed docs/openapi.json is what the host serves: a change to a
/// route or a body shows up as a diff to review, never silently.
#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let fleet = InProcess::new(true);
    let app = start(&fleet, "h1", MIGRATE);
    let response = http(&app).oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(api::OPENAPI_COMMITTED_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        served == committed,
        "{} differs from the document the host serves; if the change is meant, run \
         `target/release/notes-host openapi > {}` and commit it",
        path.display(),
        api::OPENAPI_COMMITTED_PATH,
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// Every operation in the document reaches a handler: none falls through to
/// "no such route" or "method not allowed".
#[tokio::test]
async fn every_operation_in_the_openapi_document_is_a_route() {
    let fleet = InProcess::new(true);
    let app = start(&fleet, "h1", MIGRATE);
    let router = http(&app);
    let doc = api::openapi_document();
    let mut operations = 0;
    for (path, item) in &doc.paths.paths {
        let concrete = path.replace("{account}", &Uuid::new_v4().to_string()).replace("{note}", &Uuid::new_v4().to_string())
            .replace("{job}", "job-1").replace("{key}", "key-1");
        for (method, operation) in [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put), ("PATCH", &item.patch), ("DELETE", &item.delete)] {
            if operation.is_none() {
                continue;
            }
            operations += 1;
            let request = Request::builder().method(method).uri(&concrete).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such route"),
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
    assert!(operations >= 30, "{operations} operations");
}

// ---- what a web page, a typo or a skewed clock must not do -------------------------

/// One request with exactly these headers (no Content-Type unless given).
async fn raw(router: &ApiService, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn account_count(router: &ApiService) -> usize {
    call(router, "GET", "/accounts", None).await.1.as_array().map_or(0, Vec::len)
}

async fn migrating_count(router: &ApiService) -> usize {
    let (_, accounts) = call(router, "GET", "/accounts", None).await;
    accounts.as_array().unwrap().iter().filter(|a| a["isMigrating"] == true).count()
}

#[tokio::test]
async fn without_an_admin_token_a_page_of_another_origin_or_a_rebound_name_changes_nothing() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let on = new_account(&router, true).await;
    let before = account_count(&router).await;

    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let (status, body) = raw(&router, "GET", "/accounts", "", &[("host", "rebind.evil.example:8090")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("loopback"), "{body}");
    // A page's no-cors writes carry its origin, with a body a page may send without a preflight.
    for (path, body) in [("/migration/kill-switch", ""), ("/accounts", r#"{"name":"Mallory"}"#)] {
        let (status, answer) =
            raw(&router, "POST", path, body, &[("host", "127.0.0.1:8080"), ("origin", "http://evil.example"), ("content-type", "text/plain")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    let (status, answer) = raw(&router, "POST", "/migration/kill-switch", "", &[("host", "127.0.0.1:8080"), ("origin", "null")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a sandboxed page's origin: {answer}");
    assert_eq!(account_count(&router).await, before, "no account was created");
    assert_eq!(call(&router, "GET", &format!("/accounts/{on}"), None).await.1["isMigrating"], true, "the kill switch did not run");

    // The host's own console, and curl on loopback, still work.
    let (status, body) =
        raw(&router, "POST", "/accounts", r#"{"name":"Ada"}"#, &[("host", "localhost:8080"), ("origin", "http://localhost:8080"), ("content-type", "application/json")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for host in ["127.0.0.1:8080", "[::1]:8080", "localhost"] {
        assert_eq!(raw(&router, "GET", "/accounts", "", &[("host", host)]).await.0, StatusCode::OK, "{host}");
    }

    // With an admin token a page cannot attach the token, and any name may be served.
    let guarded = api::router(
        start(&fleet, "b", MIGRATE),
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_plugin_bytes: 1 << 20,
            body_read_timeout: Duration::from_secs(5),
            admin_token: Some(api::AdminToken::new("0123456789abcdef0123".into()).unwrap()),
            auth_failure_burst: api::DEFAULT_AUTH_FAILURE_BURST,
        },
    );
    let (status, _) = raw(&guarded, "GET", "/accounts", "", &[("host", "notes.example.com"), ("authorization", "Bearer 0123456789abcdef0123")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_text_or_form_body_is_refused_with_415_and_a_body_without_a_type_is_still_json() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let before = account_count(&router).await;
    for content_type in ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, body) = raw(&router, "POST", "/accounts", r#"{"name":"Mallory"}"#, &[("content-type", content_type)]).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}: {body}");
        assert!(body["error"].as_str().unwrap().contains("application/json"), "{body}");
    }
    let (status, _) = raw(&router, "POST", &format!("/accounts/{account}/notes"), r#"{"content":"x"}"#, &[("content-type", "text/plain")]).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(account_count(&router).await, before, "nothing was created");
    let (status, body) = raw(&router, "POST", "/accounts", r#"{"name":"Ada"}"#, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "no Content-Type, as Notely's server accepts: {body}");
    let (status, body) = raw(&router, "POST", "/accounts", r#"{"name":"Ada"}"#, &[("content-type", "application/json; charset=utf-8")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_misspelled_dry_run_is_refused_naming_it_and_flips_nothing() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    for _ in 0..10 {
        new_account(&router, false).await;
    }
    for spelling in ["dryrun", "DryRun", "dry_run", "preview"] {
        let (status, body) = call(&router, "POST", &format!("/migration/rollout?{spelling}=true"), Some(json!({ "percent": 100 }))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spelling}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(&format!("{spelling:?}")) && error.contains("`dryRun`"), "names the parameter and the known one: {error}");
        assert_eq!(migrating_count(&router).await, 0, "{spelling} flipped accounts");
    }
    let (status, preview) = call(&router, "POST", "/migration/rollout?dryRun=true", Some(json!({ "percent": 100 }))).await;
    assert_eq!((status, &preview["dryRun"], &preview["turnedOn"]), (StatusCode::OK, &json!(true), &json!(10)), "{preview}");
    assert_eq!(migrating_count(&router).await, 0);
    let (_, done) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 100 }))).await;
    assert_eq!((&done["dryRun"], &done["turnedOn"]), (&json!(false), &json!(10)), "every answer says whether it was a dry run: {done}");
    let (_, killed) = call(&router, "POST", "/migration/kill-switch", None).await;
    assert_eq!(killed["dryRun"], false);

    // Every route, and unknown values of known parameters.
    for path in ["/healthz?verbose=1", "/accounts?name=Ada", "/migration?all=1", "/audit?kind=flag&sort=newest"] {
        let (status, body) = call(&router, "GET", path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, body) = call(&router, "GET", "/audit?kind=bogus", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kill-switch"), "lists the kinds: {body}");
    let (status, body) = call(&router, "GET", "/audit?kind=kill-switch", None).await;
    assert_eq!((status, body["entries"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{body}");
}

#[tokio::test]
async fn a_client_clock_far_ahead_is_refused_and_a_note_stamped_ahead_does_not_freeze_later_writes() {
    let fleet = InProcess::default();
    let router = http(&start(&fleet, "a", MIGRATE));
    let account = new_account(&router, false).await;
    let now_ms = 1_700_000_000_000_i64; // InProcess's clock
    // RFC 3339 with milliseconds, as the host answers times (and as it reads any RFC 3339).
    let at = |ms: i64| {
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap().format(format).unwrap()
    };
    let notes = format!("/accounts/{account}/notes");

    let (status, body) = call(&router, "POST", &notes, Some(json!({ "content": "x", "createdAt": "2030-01-01T00:00:00Z" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ahead of this host's clock"), "{body}");
    assert_eq!(call(&router, "GET", &notes, None).await.1, json!([]), "nothing was created");

    let note = new_note(&router, &account).await;
    let path = format!("{notes}/{note}");
    let (status, body) = call(&router, "PUT", &path, Some(json!({ "content": "frozen?", "updatedAt": "2030-01-01T00:00:00Z" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A skewed client within the tolerance stamps the note 4 minutes ahead...
    let (status, skewed) = call(&router, "PUT", &path, Some(json!({ "content": "from the fast clock", "updatedAt": at(now_ms + 4 * 60_000) }))).await;
    assert_eq!((status, &skewed["version"]), (StatusCode::OK, &json!(2)), "{skewed}");
    assert_eq!(skewed["updatedAt"], at(now_ms), "a time ahead is kept as the host's: no write happens later than it arrives");
    // ...and a client with the right time, a minute later, still writes.
    fleet.clock.advance(60_000);
    let (status, written) = call(&router, "PUT", &path, Some(json!({ "content": "from the right clock", "updatedAt": at(now_ms + 60_000) }))).await;
    assert_eq!((status, &written["version"], &written["content"]), (StatusCode::OK, &json!(3), &json!("from the right clock")), "{written}");
    // Notely's rule still holds for a write really older than the note.
    let (_, stale) = call(&router, "PUT", &path, Some(json!({ "content": "stale", "updatedAt": at(now_ms + 30_000) }))).await;
    assert_eq!((&stale["version"], &stale["content"]), (&json!(3), &json!("from the right clock")), "{stale}");
}

#[tokio::test]
async fn the_kill_switch_wins_over_a_rollout_sent_at_the_same_moment_in_either_order() {
    let fleet = InProcess::default();
    let _other_host = start(&fleet, "b", MIGRATE);
    let router = http(&start(&fleet, "a", MIGRATE));
    for _ in 0..400 {
        new_account(&router, false).await;
    }
    for round in 0..20 {
        // An operator starts the migration again at 50%...
        let (status, resumed) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 50, "resume": true }))).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {resumed}");
        assert!(migrating_count(&router).await > 100, "round {round}: {resumed}");
        // ...then a rollout to 100% and the kill switch are sent at the same moment.
        let rollout = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 100 })));
        let kill = call(&router, "POST", "/migration/kill-switch", None);
        // Alternate which is sent first, a few milliseconds apart or at once.
        let stagger = Duration::from_millis((round % 5) as u64 * 3);
        let ((rolled_status, rolled), (killed_status, killed)) = if round % 2 == 0 {
            tokio::join!(rollout, async {
                tokio::time::sleep(stagger).await;
                kill.await
            })
        } else {
            let (k, r) = tokio::join!(kill, async {
                tokio::time::sleep(stagger).await;
                rollout.await
            });
            (r, k)
        };
        assert_eq!(killed_status, StatusCode::OK, "round {round}: {killed}");
        assert_eq!(killed["failed"], json!([]), "round {round}: the kill switch fails nothing it can do: {killed}");
        assert!(rolled_status == StatusCode::OK || rolled_status == StatusCode::CONFLICT, "round {round}: {rolled}");
        assert_eq!(migrating_count(&router).await, 0, "round {round}: accounts left on after the kill switch answered; rollout: {rolled}");
        // It stays off: a rollout asked for after it turns nothing on.
        let (status, later) = call(&router, "POST", "/migration/rollout", Some(json!({ "percent": 100 }))).await;
        assert_eq!(status, StatusCode::CONFLICT, "round {round}: {later}");
        assert!(later["error"].as_str().unwrap().contains("resume"), "says how to start again: {later}");
        assert_eq!(migrating_count(&router).await, 0, "round {round}");
    }
}
