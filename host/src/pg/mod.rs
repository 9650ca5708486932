//! Opening PostgreSQL databases: the one place that knows connection
//! settings (timeouts), the pools and statement caching; `db.rs` is its
//! SQLite counterpart.
//!
//! Two clients over the same settings:
//! - the blocking `postgres` client, as `rusqlite` is, for what runs on
//!   blocking threads (jobs' batches, flips' fences, the coordination state,
//!   `db copy`); it runs its own small runtime and would panic inside tokio's;
//! - the async `tokio-postgres` client it wraps, for the request path's
//!   store calls: a request awaits its round trip on its own task, and no
//!   thread waits for it. Writes take a connection of their own from a
//!   deadpool pool ([`open_async`]); reads share connections, their
//!   statements pipelined ([`open_shared`], [`shared`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use postgres::{Client, NoTls, Statement};
use deadpool_postgres::tokio_postgres;

mod shared;
pub(crate) use shared::{Shared, Unreachable};

/// How long a statement waits for a row another transaction holds before it
/// fails (503): a backstop, since waits across two databases (a batch's
/// legacy and new store) are invisible to PostgreSQL's deadlock detector.
const LOCK_TIMEOUT: &str = "5s";
/// How long the server keeps a transaction open with no statement running
/// before it ends the session: a host stopped (or cut off) in the middle of
/// a batch must not hold its locks, and with them a flip's fence, for long.
/// A batch's session on one store may sit idle while the plugin works or
/// while its other store waits for a row; past this it is ended and the
/// batch fails, which moves nothing (the destination commits first, so the
/// worst case of a half-committed batch is a duplicate, never a loss).
const IDLE_IN_TRANSACTION: &str = "2s";
/// How long a request waits for a free pooled connection, and a new
/// connection for the server.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with its prepared statements: each statement is parsed once
/// per connection, so a query costs one round trip, not two.
pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgConn {
    /// `sql`, prepared on this connection (once).
    pub(crate) fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

pub(crate) struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn { client: self.config.connect(NoTls)?, statements: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    /// A connection the server dropped (a restart) is never handed out
    /// again: the request that met it failed (503), the next one gets a new
    /// connection.
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

pub(crate) type PgPool = r2d2::Pool<Manager>;

/// Connections for the request path's async calls (see the module doc).
pub(crate) type AsyncPool = deadpool_postgres::Pool;

/// `url` with the host's session settings, for either client.
fn config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().with_context(|| format!("invalid PostgreSQL URL {}", redact(url)))?;
    config
        .connect_timeout(CHECKOUT_TIMEOUT)
        // A connection that died without closing (a partition, a crashed
        // server machine) is noticed within seconds, not the kernel's
        // minutes: requests' reads share one connection (`shared`).
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15))
        .application_name("notes-host")
        .options(format!("-c lock_timeout={LOCK_TIMEOUT} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION}"));
    Ok(config)
}

/// A pool of async connections to `url`, up to `max_connections`, made as
/// requests need them (the schema is [`open`]'s). A connection the server
/// dropped is never handed out again (deadpool checks `is_closed`), and each
/// keeps its statements prepared (`prepare_cached`).
pub(crate) fn open_async(url: &str, max_connections: usize) -> anyhow::Result<AsyncPool> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    let manager = Manager::from_config(config(url)?, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(max_connections)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CHECKOUT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .with_context(|| format!("cannot pool connections to {}", redact(url)))
}

/// A connection to `url` that requests share for the reads in `statements`
/// (see [`shared`]), made when a request first needs it.
pub(crate) fn open_shared(url: &str, statements: &'static [&'static str]) -> anyhow::Result<Shared> {
    Ok(Shared::new(config(url)?, statements))
}

/// Connects to `url` (a `postgres://` URL or a libpq key=value string),
/// applies `schema` once (under an advisory lock, since hosts may start at
/// once and `CREATE … IF NOT EXISTS` races), and pools up to
/// `max_connections`.
pub(crate) fn open(url: &str, max_connections: u32, schema: &str) -> anyhow::Result<PgPool> {
    let config = postgres::Config::from(config(url)?);
    let pool = r2d2::Pool::builder()
        .max_size(max_connections)
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        // `has_broken` catches dead connections; a round trip per checkout would double a request's.
        .test_on_check_out(false)
        .build(Manager { config })
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    let mut conn = pool.get()?;
    conn.client()
        .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {schema} COMMIT;"))
        .with_context(|| format!("cannot create the schema in {}", redact(url)))?;
    Ok(pool)
}

/// The advisory lock key schema changes take ("notes" in ASCII).
const SCHEMA_LOCK: i64 = 0x6e6f746573;

/// True if the error means "the database could not be reached right now"
/// (the connection is gone, the server is starting or shutting down, a lock
/// wait timed out), as opposed to a bug or bad data.
pub(crate) fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O or protocol error on the connection.
        None => true,
        Some(code) => {
            let code = code.code();
            // 08: connection exception; 53: insufficient resources;
            // 57P0x: shutting down / cannot connect now; 55P03: lock timeout;
            // 40001 / 40P01: serialization failure / deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || matches!(code, "55P03" | "40001" | "40P01")
        }
    }
}

/// `url` without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("postgres://notes:s3cret@db:5432/x"), "postgres://notes:***@db:5432/x");
        assert_eq!(redact("postgres://notes@db/x"), "postgres://notes@db/x");
    }
}
