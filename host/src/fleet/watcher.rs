//! The two background threads of a fleet member.
//!
//! `fleet-watcher` follows the coordination state's change watch (SQLite's
//! `PRAGMA data_version` on its own connection, woken by inotify when any
//! process writes `accounts.db`; on PostgreSQL, its notifications), polling
//! every millisecond only while a flip is pending here. When it
//! changes it reads the pending flips, freezes
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

use uuid::Uuid;

use super::Shared;
use super::liveness::Liveness;
use crate::coordination::PendingFlip;

/// How often the watcher checks for abandoned flips (deadline, dead flipper).
const ABANDONED_CHECK_EVERY: Duration = Duration::from_millis(20);
/// The longest a watcher with no flip pending waits for a change to wake it
/// (`ChangeWatch::wakes_on_change`) before it looks anyway, and how long
/// leaving the fleet may wait for it.
const IDLE_WAIT: Duration = Duration::from_millis(50);

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

/// A pending flip this host has seen, and whether it acknowledged it.
struct Watched {
    flip: PendingFlip,
    acked: bool,
}

fn watch(shared: &Shared) {
    let mut changes = match shared.coordination.change_watch() {
        Ok(changes) => changes,
        Err(e) => {
            // Without a watcher this host never acknowledges: every flip
            // fails cleanly instead of running unsafely.
            tracing::error!(error = %e, "fleet watcher cannot watch the accounts state; flips will fail until this host restarts");
            return;
        }
    };
    let me = shared.me.id.to_string();
    let mut watched: HashMap<Uuid, Watched> = HashMap::new();
    let mut reload = true;
    let mut next_abandoned_check = Instant::now();

    while !shared.stop.load(Ordering::Acquire) {
        match changes.changed() {
            Ok(changed) if changed || reload => match {
                // Whatever changed (a flip, a heartbeat, a hand-made edit or a
                // restore of the state), flags are read afresh: known flags
                // never outlive a change this watch sees (`inflight`).
                if changed {
                    shared.inflight.forget_all();
                }
                shared.coordination.pending_flips()
            } {
                Ok(pending) => {
                    reload = false;
                    reconcile(shared, &mut watched, pending);
                }
                Err(e) => tracing::warn!(error = %e, "fleet watcher cannot read pending flips"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "fleet watcher cannot look for changes"),
        }
        if shared.rejoined.swap(false, Ordering::AcqRel) {
            for w in watched.values_mut() {
                w.acked = false;
            }
        }
        for (account, w) in watched.iter_mut().filter(|(_, w)| !w.acked) {
            if shared.inflight.running(*account) == 0 {
                match shared.coordination.acknowledge_flip(&w.flip.id, &me, shared.clock.now_ms()) {
                    Ok(()) => w.acked = true,
                    Err(e) => tracing::warn!(error = %e, flip = %w.flip.id, "cannot acknowledge a flip; retrying"),
                }
            }
        }
        if Instant::now() >= next_abandoned_check {
            next_abandoned_check = Instant::now() + ABANDONED_CHECK_EVERY;
            let now = shared.clock.now_ms();
            for (account, w) in &watched {
                let flipper_gone = w.flip.by_host != me && shared.is_gone(&w.flip.by_host);
                if now > w.flip.deadline_ms || flipper_gone {
                    reload |= shared.abort(*account, &w.flip.id).is_ok();
                }
            }
        }
        // Polled while a flip is pending here (its acknowledgement waits for
        // this host's requests to drain, which no file change announces);
        // otherwise woken by the next change itself.
        let idle = watched.is_empty() && !reload && changes.wakes_on_change();
        changes.wait(if idle { IDLE_WAIT } else { shared.settings.poll_every });
    }
    for account in watched.keys() {
        shared.inflight.thaw(*account);
    }
}

/// Freezes accounts with a newly seen flip; thaws those whose flip ended.
fn reconcile(shared: &Shared, watched: &mut HashMap<Uuid, Watched>, pending: Vec<PendingFlip>) {
    let current: HashMap<Uuid, &str> = pending.iter().map(|f| (f.account, f.id.as_str())).collect();
    watched.retain(|account, w| {
        let still = current.get(account) == Some(&w.flip.id.as_str());
        if !still {
            shared.inflight.thaw(*account);
        }
        still
    });
    for flip in pending {
        watched.entry(flip.account).or_insert_with(|| {
            shared.inflight.freeze(flip.account);
            Watched { flip, acked: false }
        });
    }
}

fn heartbeat(shared: &Shared) {
    let me = shared.me.id.to_string();
    let mut next_beat = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        if Instant::now() >= next_beat {
            next_beat = Instant::now() + shared.settings.heartbeat_every;
            let sent = Instant::now();
            match shared.coordination.heartbeat(&me, shared.clock.now_ms()) {
                Ok(true) => {
                    shared.lease.renewed(sent);
                    shared.registered.store(true, Ordering::Release);
                }
                Ok(false) if matches!(shared.liveness, Liveness::Lease(_)) => rejoin(shared, &me),
                Ok(false) => {
                    shared.registered.store(false, Ordering::Release);
                    tracing::error!("this host's row in the fleet is gone; serving no note request (restart the host)");
                }
                Err(e) => tracing::warn!(error = %e, "cannot write the heartbeat"),
            }
            shared.prune_gone_hosts();
        }
        // Until the next beat; leaving the fleet unparks it (`Fleet::leave`).
        // A spurious wake-up only loops.
        std::thread::park_timeout(next_beat.saturating_duration_since(Instant::now()));
    }
}

/// The lease lapsed (the database was out of reach, or this process was
/// stopped): the fleet counts this host gone, flips went on without it, and
/// the stores refuse its writes from before them. It serves nothing until
/// it registers again, through the gate like a starting host.
fn rejoin(shared: &Shared, me: &str) {
    if shared.registered.swap(false, Ordering::AcqRel) {
        tracing::error!("this host's lease in the fleet lapsed; serving no note request until it joins again");
    }
    // Flips went on without this host: what it knew of flags may be stale,
    // and so may every read still running (`Admission::lease_held`).
    shared.lease.lapsed();
    shared.inflight.forget_all();
    let sent = Instant::now();
    let joined = shared.coordination.remove_host(me).and_then(|()| shared.coordination.register_host(&shared.record(), shared.gate()));
    match joined {
        Ok(()) => {
            shared.lease.renewed(sent);
            shared.rejoined.store(true, Ordering::Release);
            shared.registered.store(true, Ordering::Release);
            tracing::warn!("joined the fleet again after the lease lapsed");
        }
        Err(e) => tracing::warn!(error = %e, "cannot join the fleet again; retrying"),
    }
}
