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

use std::sync::OnceLock;
use std::time::Duration;

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
    metrics::counter!(PLUGIN_INSTANCES, "source" => if reused { "reused" } else { "fresh" }).increment(1);
}

pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}
