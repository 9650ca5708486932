//! The listener: HTTP/1 connections served with limits a slow or greedy
//! client cannot get around.
//!
//! - a cap on open connections: at the cap, new ones wait in the kernel's
//!   listen backlog (and a warning says so) instead of using up file
//!   descriptors the open ones need;
//! - a cap per client address, so one client cannot hold every slot: a
//!   connection over the cap waits (up to the header read timeout) for one of
//!   the client's own to close, and is closed if none does (behind a proxy
//!   every client has the proxy's address: raise it);
//! - a header read timeout, which also closes a keep-alive connection that
//!   sends nothing;
//! - graceful shutdown: requests in flight finish.
//!
//! axum's own `serve` sets no header timeout and no connection cap, hence
//! this loop on hyper's connection builder.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How connections are accepted and kept.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// A request's headers, or the first byte of the next request on a
    /// keep-alive connection, must arrive within this.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: 1024, max_connections_per_client: 256, header_read_timeout: Duration::from_secs(10) }
    }
}

/// Open connections per client address, and the connections waiting for
/// one of that address's slots.
#[derive(Default)]
struct PerClient {
    counts: std::sync::Mutex<std::collections::HashMap<IpAddr, Counts>>,
    /// Woken whenever any connection closes.
    freed: tokio::sync::Notify,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    open: usize,
    waiting: usize,
}

// A new connection of a client at its cap waits for one of the client's
// connections to close (at most the header read timeout, as long as a new
// connection may take to send its request) before it is closed itself. A
// client that opens a connection per request (Go's client past its 2 idle
// connections, thousands a second) closes its old ones as fast as it opens
// new ones, but this host counts a close only once the connection's task has
// seen it. On a busy host that lags: 160 such client threads left 50–250 of
// their closed connections in CLOSE-WAIT at once, and closing the newcomer at
// once reset 5–80% of their requests under a cap they never really reached.

impl PerClient {
    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, Counts>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection of `ip`, waiting (up to `wait`) while it already
    /// has `max` open. A client may have at most `max` waiting too. `Err`
    /// tells how many it holds.
    async fn enter(self: &Arc<Self>, ip: IpAddr, max: usize, wait: Duration) -> Result<ClientSlot, usize> {
        {
            let mut counts = self.counts();
            let count = counts.entry(ip).or_default();
            if count.open < max {
                count.open += 1;
                return Ok(ClientSlot { clients: Arc::clone(self), ip });
            }
            if count.waiting >= max {
                return Err(count.open);
            }
            count.waiting += 1;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let entered = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut counts = self.counts();
                let count = counts.entry(ip).or_default();
                if count.open < max {
                    count.open += 1;
                    break Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    break Err(count.open);
                }
            }
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        };
        let mut counts = self.counts();
        let count = counts.entry(ip).or_default();
        count.waiting -= 1;
        match entered {
            Ok(()) => Ok(ClientSlot { clients: Arc::clone(self), ip }),
            Err(open) => {
                if count.open == 0 && count.waiting == 0 {
                    counts.remove(&ip);
                }
                Err(open)
            }
        }
    }
}

/// One open connection of a client; leaves its count on drop.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        {
            let mut counts = self.clients.counts();
            if let Some(count) = counts.get_mut(&self.ip) {
                count.open -= 1;
                if count.open == 0 && count.waiting == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
        self.clients.freed.notify_waiters();
    }
}

/// Says (at most every 10 s, so a flood does not flood the log) that a
/// client's connection was closed at its cap, and how many it holds.
fn warn_client_at_cap(client: IpAddr, open: usize, max: usize, waited: Duration) {
    static LAST_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) >= 10_000 && LAST_MS.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(
            %client,
            open,
            max,
            "a connection was closed: this client address holds {open} open connections, its maximum, and none closed within {waited:?} \
             (--max-connections-per-client; behind a proxy every client has the proxy's address: raise it)"
        );
    }
}

/// Longest shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: super::ApiService,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let at_cap = Arc::new(AtomicBool::new(false));
    let clients = Arc::new(PerClient::default());
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 && !at_cap.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new connections wait in the listen backlog until one closes (--max-connections)"
            );
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Every request of the connection knows its client's address (`auth`).
        let service = router.for_client(peer.ip());
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let (at_cap, slots, clients) = (Arc::clone(&at_cap), Arc::clone(&slots), Arc::clone(&clients));
        let (max_per_client, slot_wait) = (limits.max_connections_per_client, limits.header_read_timeout);
        tokio::spawn(async move {
            let client = match clients.enter(peer.ip(), max_per_client, slot_wait).await {
                Ok(client) => client,
                Err(open) => {
                    warn_client_at_cap(peer.ip(), open, max_per_client, slot_wait);
                    return; // dropping the connection closes it; the slot is free again
                }
            };
            // Errors here are a client's doing (reset, header timeout).
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(client);
            drop(slot);
            // Warn again only after the pressure really eased, not per close.
            if slots.available_permits() * 2 >= limits.max_connections {
                at_cap.store(false, Ordering::Relaxed);
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown: some connections were still open after {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}
