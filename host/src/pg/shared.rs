//! A connection many requests use at once, for the request path's reads.
//!
//! A pooled connection serves one request's statement at a time: each read
//! is then a round trip of its own, and the server's backend sleeps and
//! wakes for every one (half of a statement's server CPU on this machine,
//! BENCHMARKS "PostgreSQL"). Here concurrent requests write their statements
//! into one shared connection, one behind the other (tokio-postgres
//! pipelines whatever is sent on a `Client` while earlier statements are in
//! flight), and the connection's task sends what has queued only once every
//! other task ready on its worker has run ([`AfterReadyTasks`]): the
//! statements of requests under way leave in one write, and the backend
//! finds them waiting when it wakes.
//!
//! Only statements that never wait for a lock belong here: a read under
//! MVCC waits for no writer, fence or batch. A write may wait for a row lock
//! for seconds, and every statement queued behind it would wait too, so
//! writes keep a pooled connection of their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use deadpool_postgres::tokio_postgres::{self, Client, NoTls, Statement};

use super::CHECKOUT_TIMEOUT;
use crate::stores::StoreError;

/// One connection to one database, made on first use (on the runtime of the
/// request that needs it) and made again once the server has dropped it.
pub(crate) struct Shared {
    config: tokio_postgres::Config,
    /// Prepared on the connection as it is made.
    statements: &'static [&'static str],
    live: Mutex<Option<Arc<SharedConn>>>,
    /// One request makes the connection; the others wait for it, and take
    /// its failure as theirs (holds when it failed and why).
    connecting: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// The shared connection, with its statements prepared.
pub(crate) struct SharedConn {
    client: Client,
    statements: Vec<(&'static str, Statement)>,
}

impl SharedConn {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// `sql`'s prepared statement; `sql` must be one the [`Shared`] was made with.
    pub(crate) fn statement(&self, sql: &str) -> &Statement {
        let found = self.statements.iter().find(|(s, _)| std::ptr::eq(*s, sql) || *s == sql);
        &found.unwrap_or_else(|| panic!("statement not prepared on the shared connection: {sql}")).1
    }
}

impl Shared {
    pub(crate) fn new(config: tokio_postgres::Config, statements: &'static [&'static str]) -> Self {
        Shared { config, statements, live: Mutex::new(None), connecting: tokio::sync::Mutex::new(None) }
    }

    /// The connection to send one statement on.
    pub(crate) async fn get(&self) -> Result<Arc<SharedConn>, StoreError> {
        if let Some(conn) = self.open() {
            return Ok(conn);
        }
        let waiting_since = Instant::now();
        let mut failed = self.connecting.lock().await;
        if let Some(conn) = self.open() {
            return Ok(conn);
        }
        // A server that cannot be reached fails each request that waited for
        // this attempt once, not once per request before it in line.
        if let Some((at, why)) = failed.as_ref().filter(|(at, _)| *at >= waiting_since) {
            return Err(StoreError::Unavailable(format!("{why} ({} ms ago)", at.elapsed().as_millis())));
        }
        match self.connect().await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                *failed = None;
                Ok(conn)
            }
            Err(e) => {
                let why = match &e {
                    StoreError::Unavailable(why) => why.clone(),
                    e => e.to_string(),
                };
                *failed = Some((Instant::now(), why));
                Err(e)
            }
        }
    }

    fn open(&self) -> Option<Arc<SharedConn>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|c| !c.client.is_closed()).cloned()
    }

    async fn connect(&self) -> Result<SharedConn, StoreError> {
        let connected = tokio::time::timeout(CHECKOUT_TIMEOUT, self.config.connect(NoTls)).await;
        let (client, connection) = connected.map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))??;
        // Ends when the server drops the connection or the client is dropped;
        // every statement in flight then fails with the connection's error.
        tokio::spawn(AfterReadyTasks { inner: connection, yielded: false });
        let mut statements = Vec::with_capacity(self.statements.len());
        for &sql in self.statements {
            statements.push((sql, client.prepare(sql).await?));
        }
        Ok(SharedConn { client, statements })
    }
}

/// `inner`, polled each time it is woken only after every task then ready
/// on the worker has run (tokio's `yield_now` defers a wake-up until the
/// worker has no other work). For the connection's task, that gathers the
/// statements of every request under way into one write, and the responses
/// that arrived meanwhile into one read. Measured (BENCHMARKS "PostgreSQL"):
/// +15% GETs a second against sending at once.
struct AfterReadyTasks<F> {
    inner: F,
    yielded: bool,
}

impl<F: Future + Unpin> Future for AfterReadyTasks<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            // Polled once, `yield_now` registers the deferred wake-up and is
            // pending; dropping it then does not cancel the wake-up.
            if std::pin::pin!(tokio::task::yield_now()).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let polled = Pin::new(&mut self.inner).poll(cx);
        if polled.is_pending() {
            self.yielded = false;
        }
        polled
    }
}
