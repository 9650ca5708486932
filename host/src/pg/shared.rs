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
//! (tokio also releases a deferred wake-up at each worker's maintenance
//! tick, every 61 polls, so a busy worker cannot hold the send back.)
//!
//! Only statements that never wait for a lock belong here: a read under
//! MVCC waits for no writer, fence or batch (only for an operator's DDL, a
//! `VACUUM FULL` or `REINDEX`, and `lock_timeout` ends that). A write may
//! wait for a row lock for seconds, and every statement queued behind it
//! would wait too, so writes keep a pooled connection of their own. What
//! sharing costs: statements on one connection run one after the other, so
//! a long read (a list of 100k ids, ~10-30 ms) delays the reads behind it;
//! hence lists have a connection of their own, apart from notes' reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::tokio_postgres::{self, Client, NoTls, Row, Statement};

use super::CHECKOUT_TIMEOUT;

/// Why a shared read failed before PostgreSQL answered it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreachable {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// Could not connect now (timed out, or refused while this request
    /// waited for the attempt), or the connection stopped answering.
    #[error("{0}")]
    Failed(String),
    /// The attempt this request waited for was turned away for good (a
    /// wrong password, an unknown database): not worth a retry.
    #[error("{0}")]
    Rejected(String),
}

/// The longest a shared read may take. A read waits for no lock (bar an
/// operator's DDL, which `lock_timeout` ends sooner), so one that takes
/// longer is on a connection that died without closing (a partition, a
/// crashed server machine): it is dropped, and the next read makes another.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to one database, made on first use (on the runtime of the
/// request that needs it) and made again once the server has dropped it or
/// it stopped answering. The stores of one database share it (each store's
/// statements name their schema).
pub(crate) struct Shared {
    config: tokio_postgres::Config,
    live: Mutex<Option<Arc<SharedConn>>>,
    /// One request makes the connection; the others wait for it, and take
    /// its failure as theirs: when it failed, why, and whether for good.
    connecting: tokio::sync::Mutex<Option<(Instant, String, bool)>>,
}

/// The shared connection, with the statements prepared on it so far.
struct SharedConn {
    client: Client,
    /// A handful (three per store), found by their text.
    statements: Mutex<Vec<(Box<str>, Statement)>>,
}

impl SharedConn {
    /// `sql`'s statement, prepared on this connection on its first use.
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some((_, statement)) = self.statements.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(s, _)| &**s == sql) {
            return Ok(statement.clone());
        }
        // Two requests may both prepare it; the first kept is used after.
        let statement = self.client.prepare(sql).await?;
        let mut statements = self.statements.lock().unwrap_or_else(|e| e.into_inner());
        if !statements.iter().any(|(s, _)| &**s == sql) {
            statements.push((sql.into(), statement.clone()));
        }
        Ok(statement)
    }
}

impl Shared {
    pub(crate) fn new(config: tokio_postgres::Config) -> Self {
        Shared { config, live: Mutex::new(None), connecting: tokio::sync::Mutex::new(None) }
    }

    /// The rows of `sql`, sent on the shared connection behind the reads of
    /// other requests (prepared first, on the connection's first use of it).
    pub(crate) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Unreachable> {
        let conn = self.connection().await?;
        let read = async {
            let statement = conn.statement(sql).await?;
            conn.client.query(&statement, params).await
        };
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(rows) => Ok(rows?),
            Err(_) => {
                self.drop_if_live(&conn);
                Err(Unreachable::Failed(format!("PostgreSQL did not answer a read in {} s; reconnecting", READ_TIMEOUT.as_secs())))
            }
        }
    }

    async fn connection(&self) -> Result<Arc<SharedConn>, Unreachable> {
        if let Some(conn) = self.open() {
            return Ok(conn);
        }
        let waiting_since = Instant::now();
        let Ok(mut failed) = tokio::time::timeout(CHECKOUT_TIMEOUT, self.connecting.lock()).await else {
            return Err(Unreachable::Failed("timed out waiting for a connection to PostgreSQL".into()));
        };
        if let Some(conn) = self.open() {
            return Ok(conn);
        }
        // A server that cannot be reached fails each request that waited for
        // this attempt once, not once per request before it in line.
        if let Some((at, why, for_good)) = failed.as_ref().filter(|(at, ..)| *at >= waiting_since) {
            let why = format!("{why} ({} ms ago)", at.elapsed().as_millis());
            return Err(if *for_good { Unreachable::Rejected(why) } else { Unreachable::Failed(why) });
        }
        let connected = match tokio::time::timeout(CHECKOUT_TIMEOUT, self.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(Unreachable::Failed("timed out connecting to PostgreSQL".into())),
        };
        match connected {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                *failed = None;
                Ok(conn)
            }
            Err(e) => {
                let for_good = match &e {
                    Unreachable::Postgres(e) => !super::is_transient(e),
                    Unreachable::Failed(_) => false,
                    Unreachable::Rejected(_) => true,
                };
                *failed = Some((Instant::now(), e.to_string(), for_good));
                Err(e)
            }
        }
    }

    fn open(&self) -> Option<Arc<SharedConn>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|c| !c.client.is_closed()).cloned()
    }

    /// Forgets `conn` if it is still the live one; it closes once the reads
    /// still on it have ended.
    fn drop_if_live(&self, conn: &Arc<SharedConn>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *live = None;
        }
    }

    async fn connect(&self) -> Result<SharedConn, Unreachable> {
        let (client, connection) = self.config.connect(NoTls).await?;
        // Ends when the server drops the connection or the client is dropped;
        // every statement in flight then fails with the connection's error.
        tokio::spawn(AfterReadyTasks { inner: connection, yielded: false });
        Ok(SharedConn { client, statements: Mutex::new(Vec::new()) })
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::AfterReadyTasks;

    /// On a worker, a task that wakes another usually hands it the worker
    /// next (tokio's LIFO slot): the connection would send the first
    /// request's statement alone. Wrapped, it runs once the requests ready
    /// at the same time have all queued theirs, and sends them together.
    #[test]
    fn a_woken_connection_sends_after_every_request_then_ready_has_queued() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let sent = log.clone();
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let polled = polls.clone();
        // Stands in for tokio-postgres's connection task: each poll sends
        // what has been queued since the last.
        let connection = std::future::poll_fn(move |cx| {
            polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut batch = Vec::new();
            while let std::task::Poll::Ready(Some(statement)) = queued.poll_recv(cx) {
                batch.push(statement);
            }
            if !batch.is_empty() {
                sent.lock().unwrap().push(format!("sent {}", batch.join(" ")));
            }
            std::task::Poll::<()>::Pending
        });
        let (driver, driver_done) = (log.clone(), log.clone());
        runtime.block_on(async move {
            tokio::spawn(async move {
                tokio::spawn(AfterReadyTasks { inner: Box::pin(connection), yielded: false });
                // Until its first polls are over (it waits for statements, with no wake-up pending).
                while polls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                for request in ["a", "b", "c"] {
                    let (queue, log) = (queue.clone(), driver.clone());
                    tokio::spawn(async move {
                        log.lock().unwrap().push(format!("queued {request}"));
                        queue.send(request).unwrap();
                    });
                }
            })
            .await
            .unwrap();
            // Until all three are sent, however slowly the machine runs.
            let sent_statements =
                |log: &[String]| log.iter().filter_map(|l| l.strip_prefix("sent ")).map(|b| b.split(' ').count()).sum::<usize>();
            for _ in 0..5000 {
                if sent_statements(&driver_done.lock().unwrap()) == 3 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 4, "three requests queued, then one send: {log:?}");
        assert!(log[..3].iter().all(|l| l.starts_with("queued")), "every request queued before the send: {log:?}");
        assert!(log[3].starts_with("sent ") && log[3].split(' ').count() == 4, "one send of all three: {log:?}");
    }
}
