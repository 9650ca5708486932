//! The two background threads of a fleet member.
//!
//! `fleet-watcher` polls SQLite's `PRAGMA data_version` on its own
//! connection (≈1.5 µs, no I/O: it changes when another connection commits
//! to `accounts.db`). When it changes it reads the pending flips, freezes
//! their accounts locally and acknowledges each once this host runs no request
//! for it; it thaws accounts whose flip ended. It also aborts flips whose
//! flipper has ended or whose deadline passed.
//!
//! `fleet-heartbeat` writes this host's heartbeat and drops hosts whose
//! process has ended. Separate threads, so a slow heartbeat write never
//! delays an acknowledgement.
//!
//! Both are OS threads, not tokio tasks: they block on SQLite, and a busy
//! async runtime must not delay a flip.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::Shared;
use super::flip::abort_on;
use crate::clock::now_ms;

/// How often the watcher checks for abandoned flips (deadline, dead flipper).
const ABANDONED_CHECK_EVERY: Duration = Duration::from_millis(20);

pub(super) fn start(shared: &Arc<Shared>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let watcher = {
        let shared = shared.clone();
        std::thread::Builder::new().name("fleet-watcher".into()).spawn(move || watch(&shared))?
    };
    let heartbeat = {
        let shared = shared.clone();
        std::thread::Builder::new().name("fleet-heartbeat".into()).spawn(move || heartbeat(&shared))?
    };
    Ok(vec![watcher, heartbeat])
}

/// A pending flip this host has seen.
struct Watched {
    flip_id: String,
    deadline_ms: i64,
    by_host: String,
    acked: bool,
}

fn watch(shared: &Shared) {
    let path = shared.pool.get().ok().and_then(|c| c.path().map(std::path::PathBuf::from));
    let conn = match path.as_deref().map(Connection::open) {
        Some(Ok(conn)) => conn,
        _ => {
            // Without a watcher this host never acknowledges: every flip
            // fails cleanly instead of running unsafely.
            tracing::error!("fleet watcher cannot open accounts.db; flips will fail until this host restarts");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    // Acknowledgements and aborts need no durability: after a power loss a
    // flip is aborted again, or re-acknowledged.
    let _ = conn.execute_batch("PRAGMA synchronous = NORMAL");
    let me = shared.me.id.to_string();
    let mut watched: HashMap<Uuid, Watched> = HashMap::new();
    let mut last_version: Option<i64> = None;
    let mut reload = true;
    let mut next_abandoned_check = Instant::now();

    while !shared.stop.load(Ordering::Acquire) {
        match conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
            Ok(v) if last_version != Some(v) || reload => {
                last_version = Some(v);
                match pending_flips(&conn) {
                    Ok(pending) => {
                        reload = false;
                        reconcile(shared, &mut watched, pending);
                    }
                    Err(e) => tracing::warn!(error = %e, "fleet watcher cannot read pending flips"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "fleet watcher cannot read data_version"),
        }
        for (account, w) in watched.iter_mut().filter(|(_, w)| !w.acked) {
            if shared.inflight.running(*account) == 0 {
                match conn.execute(
                    "INSERT OR IGNORE INTO flip_acks (flip_id, host_id, at_ms) VALUES (?1, ?2, ?3)",
                    params![w.flip_id, me, now_ms()],
                ) {
                    Ok(_) => w.acked = true,
                    Err(e) => tracing::warn!(error = %e, flip = %w.flip_id, "cannot acknowledge a flip; retrying"),
                }
            }
        }
        if Instant::now() >= next_abandoned_check {
            next_abandoned_check = Instant::now() + ABANDONED_CHECK_EVERY;
            let now = now_ms();
            for (account, w) in &watched {
                let flipper_gone = w.by_host != me && shared.is_gone(&w.by_host);
                if now > w.deadline_ms || flipper_gone {
                    // Our own write does not change our data_version: reload.
                    reload |= abort_on(&conn, *account, &w.flip_id).is_ok();
                }
            }
        }
        std::thread::sleep(shared.settings.poll_every);
    }
    for account in watched.keys() {
        shared.inflight.thaw(*account);
    }
}

fn pending_flips(conn: &Connection) -> rusqlite::Result<Vec<(Uuid, String, i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, flip_id, coalesce(flip_deadline_ms, 0), coalesce(flip_by, '') FROM accounts WHERE flip_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut pending = Vec::new();
    for row in rows {
        let (id, flip_id, deadline_ms, by_host) = row?;
        if let Ok(id) = Uuid::parse_str(&id) {
            pending.push((id, flip_id, deadline_ms, by_host));
        }
    }
    Ok(pending)
}

/// Freezes accounts with a newly seen flip; thaws those whose flip ended.
fn reconcile(shared: &Shared, watched: &mut HashMap<Uuid, Watched>, pending: Vec<(Uuid, String, i64, String)>) {
    let current: HashMap<Uuid, &str> = pending.iter().map(|(a, f, _, _)| (*a, f.as_str())).collect();
    watched.retain(|account, w| {
        let still = current.get(account) == Some(&w.flip_id.as_str());
        if !still {
            shared.inflight.thaw(*account);
        }
        still
    });
    for (account, flip_id, deadline_ms, by_host) in pending {
        watched.entry(account).or_insert_with(|| {
            shared.inflight.freeze(account);
            Watched { flip_id, deadline_ms, by_host, acked: false }
        });
    }
}

fn heartbeat(shared: &Shared) {
    let me = shared.me.id.to_string();
    let mut next_beat = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        if Instant::now() >= next_beat {
            next_beat = Instant::now() + shared.settings.heartbeat_every;
            let beat = shared.pool.get().map_err(|e| e.to_string()).and_then(|c| {
                c.execute("UPDATE hosts SET heartbeat_ms = ?2 WHERE id = ?1", params![me, now_ms()]).map_err(|e| e.to_string())
            });
            match beat {
                Ok(1) => shared.registered.store(true, Ordering::Release),
                Ok(_) => {
                    shared.registered.store(false, Ordering::Release);
                    tracing::error!("this host's row in the fleet is gone; serving no note request (restart the host)");
                }
                Err(e) => tracing::warn!(error = %e, "cannot write the heartbeat"),
            }
            shared.prune_gone_hosts();
        }
        // Short sleeps, so leaving the fleet does not wait a whole beat.
        std::thread::sleep(Duration::from_millis(20));
    }
}
