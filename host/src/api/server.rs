//! The listener: HTTP/1 connections served with limits a slow or greedy
//! client cannot get around.
//!
//! - a cap on open connections: at the cap, new ones wait in the kernel's
//!   listen backlog (and a warning says so) instead of using up file
//!   descriptors the open ones need;
//! - a cap per client address, so one client cannot hold every slot: its
//!   connections over the cap are closed at once (behind a proxy every
//!   client has the proxy's address: raise it);
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

use axum::Router;
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

/// Open connections per client address.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts a connection of `ip`, unless it already has `max`.
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { clients: Arc::clone(self), ip })
    }
}

/// One open connection of a client; leaves its count on drop.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Longest shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
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
        let Some(client) = clients.enter(peer.ip(), limits.max_connections_per_client) else {
            tracing::debug!(client = %peer.ip(), "connection refused: this client has its maximum open (--max-connections-per-client)");
            continue; // dropping the stream closes it, and the slot is free again
        };
        let _ = stream.set_nodelay(true);
        // Every request of the connection knows its client's address (`auth`).
        let service = router.clone().layer(axum::Extension(super::ClientAddr(peer.ip())));
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let (at_cap, slots) = (Arc::clone(&at_cap), Arc::clone(&slots));
        tokio::spawn(async move {
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
