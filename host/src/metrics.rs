//! Prometheus metrics: every series the host exports, in one place
//! (docs/metrics.md describes each). Labels have bounded cardinality: a
//! route template, a store, an operation, an outcome, a plugin label; never
//! an account or a note id.
//!
//! The `metrics` facade records; the Prometheus exporter renders the text
//! format for `GET /metrics` (no listener of its own). Gauges of the
//! migration's state are computed when scraped (`app`), not kept up to date.
//!
//! The exporter keeps every histogram sample in a lock-free bucket until
//! something folds them into the histogram: a render, or its upkeep. Built
//! with `build_recorder` (no listener) it has no upkeep task, so a host that
//! nobody scraped grew by ~75 bytes per request, for good (33 → 254 MiB over
//! 2.4 M requests). `install` therefore starts an upkeep thread.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "notes_http_requests_total";
pub const HTTP_DURATION: &str = "notes_http_request_duration_seconds";
pub const PLUGIN_CALLS: &str = "notes_plugin_calls_total";
pub const PLUGIN_DURATION: &str = "notes_plugin_call_duration_seconds";
pub const PLUGIN_INSTANCES: &str = "notes_plugin_instances_total";
pub const STORE_OPERATIONS: &str = "notes_store_operations_total";
pub const STORE_DURATION: &str = "notes_store_operation_duration_seconds";
pub const STORE_COMMITS: &str = "notes_store_commits_total";
pub const STORE_COMMITTED_WRITES: &str = "notes_store_committed_writes_total";
pub const FLIPS: &str = "notes_flips_total";
pub const FLIP_DURATION: &str = "notes_flip_duration_seconds";
pub const AUTH_FAILURES: &str = "notes_auth_failures_total";
pub const ACCOUNTS: &str = "notes_accounts";
pub const NOTES: &str = "notes_notes";
pub const NOTES_TO_MOVE: &str = "notes_notes_to_move";
pub const JOBS: &str = "notes_jobs";
pub const JOB_NOTES_LEFT: &str = "notes_job_notes_left";
pub const ROLLOUT_PERCENT: &str = "notes_rollout_percent";

/// Latency buckets, in seconds: 50 µs to 10 s.
const BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the upkeep folds recorded samples into the histograms: memory
/// held by samples is bounded by what a host records in this long.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the process-wide recorder (once; later calls, e.g. several
/// in-process apps, share it) and returns its handle. Starts the upkeep
/// thread that keeps the recorder's memory bounded whether or not anything
/// scrapes `/metrics`.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are given")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test harness's) may be installed already: then
        // this one still renders what is recorded through it, which is nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        let upkept = handle.clone();
        let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkept.run_upkeep();
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histogram samples are folded only when /metrics is scraped");
        }
        handle
    })
}

/// One plugin instance taken for a call: kept from an earlier call, or fresh.
pub fn plugin_instance(reused: bool) {
    static SERIES: Series<(), bool, Counter> = Series::new();
    SERIES
        .get("", (), reused, || metrics::counter!(PLUGIN_INSTANCES, "source" => if reused { "reused" } else { "fresh" }))
        .increment(1);
}

/// A request answered: counted by route, method and status, timed by route and method.
pub fn http_request(route: &str, method: &'static str, status: u16, took: Duration) {
    static COUNTS: Series<&'static str, u16, Counter> = Series::new();
    static TIMES: Series<&'static str, (), Histogram> = Series::new();
    COUNTS
        .get(route, method, status, || {
            metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status.to_string())
        })
        .increment(1);
    TIMES.get(route, method, (), || metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method)).record(took);
}

/// A routing call: counted by plugin, operation and outcome, timed by plugin and operation.
pub fn plugin_call(plugin: &str, op: &'static str, outcome: &'static str, took: Duration) {
    static COUNTS: Series<&'static str, &'static str, Counter> = Series::new();
    static TIMES: Series<&'static str, (), Histogram> = Series::new();
    COUNTS
        .get(plugin, op, outcome, || {
            metrics::counter!(PLUGIN_CALLS, "plugin" => plugin.to_owned(), "op" => op, "outcome" => outcome)
        })
        .increment(1);
    TIMES.get(plugin, op, (), || metrics::histogram!(PLUGIN_DURATION, "plugin" => plugin.to_owned(), "op" => op)).record(took);
}

/// A store operation under a routing call, counted and timed.
pub fn store_operation(store: &'static str, op: &'static str, took: Duration) {
    static COUNTS: Series<&'static str, &'static str, (Counter, Histogram)> = Series::new();
    let (count, time) = COUNTS.get("", store, op, || {
        (
            metrics::counter!(STORE_OPERATIONS, "store" => store, "op" => op),
            metrics::histogram!(STORE_DURATION, "store" => store, "op" => op),
        )
    });
    count.increment(1);
    time.record(took);
}

/// The handles of one metric's series, made once per label set. `counter!`
/// with labels builds a key (allocating each owned label), hashes it and
/// looks it up in the recorder's registry on every call; a request records
/// seven or more series, and that was a tenth of a GET's CPU. A handle is
/// an atomic add. Keyed by one free-form label (a route, a plugin's name;
/// looked up without allocating) and two small ones.
///
/// Only after [`install`]: a handle made before the recorder exists would
/// record nowhere for good, so until then nothing is cached (and nothing
/// recorded, as the facade does without a recorder).
struct Series<A, B, H> {
    by_name: RwLock<Option<HashMap<String, Vec<(A, B, H)>>>>,
}

impl<A: Copy + PartialEq, B: Copy + PartialEq, H: Clone> Series<A, B, H> {
    const fn new() -> Self {
        Series { by_name: RwLock::new(None) }
    }

    fn get(&self, name: &str, a: A, b: B, make: impl FnOnce() -> H) -> H {
        if HANDLE.get().is_none() {
            return make();
        }
        let found = |map: &HashMap<String, Vec<(A, B, H)>>| {
            map.get(name).and_then(|series| series.iter().find(|(x, y, _)| *x == a && *y == b).map(|(_, _, h)| h.clone()))
        };
        if let Some(handle) = self.by_name.read().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(found) {
            return handle;
        }
        let mut map = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        let map = map.get_or_insert_with(HashMap::new);
        if let Some(handle) = found(map) {
            return handle;
        }
        let handle = make();
        map.entry(name.to_owned()).or_default().push((a, b, handle.clone()));
        handle
    }
}
