//! A host that runs for weeks: what it holds stays bounded however many
//! requests it served and whether or not anything scrapes it, and a client
//! that churns connections from one address is served, not reset.

use std::time::Duration;

use notes_scenarios::Host;
use notes_scenarios::load::{self, Tally};

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the host's /proc status");
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmRSS");
    kib * 1024
}

/// Requests per batch: at the 75 bytes a request that a host without the
/// metrics upkeep kept for good, one batch is ~15 MB.
const BATCH: u64 = 200_000;
/// What a second batch may add to RSS: allocator and page-cache noise.
const MARGIN: u64 = 4 << 20;

#[test]
fn memory_stays_flat_over_hundreds_of_thousands_of_requests_that_nothing_scrapes() {
    let host = Host::start();
    let mut paths = Vec::new();
    for _ in 0..8 {
        let account = host.create_account(false);
        for n in 0..20 {
            let note = host.create_note(&account, &format!("note {n} {}", "x".repeat(200)));
            paths.push(format!("/accounts/{account}/notes/{note}"));
        }
        paths.push(format!("/accounts/{account}/notes"));
        paths.push(format!("/accounts/{account}"));
    }
    let served = |what: &str| {
        let tally = load::keep_alive(&host.base, &paths, BATCH, 8);
        assert_eq!(tally, Tally { ok: BATCH, ..Tally::default() }, "{what}");
        // The allocator's trim runs every 5 s.
        std::thread::sleep(Duration::from_secs(6));
        rss_bytes(host.pid())
    };
    let warmed = served("the first batch (warm-up)");
    let after = served("the second batch");
    assert!(
        after <= warmed + MARGIN,
        "a second batch of {BATCH} requests raised RSS from {} to {} KiB ({} bytes per request); nothing scraped /metrics",
        warmed / 1024,
        after / 1024,
        (after - warmed) / BATCH
    );
}

#[test]
fn a_client_opening_a_connection_per_request_from_one_address_gets_no_resets() {
    // As Notely's Go client under load (2 idle connections kept, thousands
    // opened a second), from one address, under the default per-client cap.
    let host = Host::start();
    let tally = load::connection_per_request(&host.base, "/healthz", 160, Duration::from_secs(12));
    assert_eq!((tally.broken, tally.refused), (0, 0), "{tally:?}");
    assert!(tally.ok > 1000, "{tally:?}");
    host.get("/healthz").expect(200);
}
