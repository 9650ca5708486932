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
//!   statements pipelined ([`ReadConnections`], [`shared`]).
//!
//! A store may live in a schema of its database (`?schema=NAME` on its URL,
//! [`StorePlace`]): stores in one database then share its read connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    config_in(url, None)
}

/// `url` with the host's session settings, and unqualified names resolved
/// in `schema` when given.
fn config_in(url: &str, schema: Option<&str>) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().with_context(|| format!("invalid PostgreSQL URL {}", redact(url)))?;
    let search_path = schema.map(|s| format!(" -c search_path={s}")).unwrap_or_default();
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
        .options(format!("-c lock_timeout={LOCK_TIMEOUT} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION}{search_path}"));
    Ok(config)
}

/// Where a store lives: a database, and the schema in it when the store's
/// URL names one (`postgres://…/notes?schema=shard0`; the parameter is the
/// host's, taken out before the URL reaches the client). Stores in schemas
/// of one database share its read connections ([`ReadConnections`]): a
/// GET's reads of the legacy store and a shard then travel on one
/// connection, and wake one server process, not two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorePlace {
    /// The database's URL, without `schema`.
    pub database: String,
    pub schema: Option<String>,
}

impl StorePlace {
    pub(crate) fn parse(url: &str) -> anyhow::Result<StorePlace> {
        let mut schemas = Vec::new();
        let database = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_owned(),
                Some((base, query)) => {
                    let mut kept = Vec::new();
                    for pair in query.split('&') {
                        match pair.strip_prefix("schema=") {
                            Some(name) => schemas.push(name.to_owned()),
                            None => kept.push(pair),
                        }
                    }
                    if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
                }
            }
        } else {
            // A libpq key=value string: the `schema=` pair is cut out, and
            // the rest left as written (a quoted value keeps its spaces).
            let mut database = url.to_owned();
            for pair in url.split_whitespace().filter(|pair| pair.starts_with("schema=")).collect::<Vec<_>>().into_iter().rev() {
                schemas.push(pair["schema=".len()..].to_owned());
                let start = pair.as_ptr() as usize - url.as_ptr() as usize;
                database.replace_range(start..start + pair.len(), "");
            }
            database.trim().to_owned()
        };
        if schemas.len() > 1 {
            anyhow::bail!("{} names a schema {} times: a store lives in one", redact(url), schemas.len());
        }
        let schema = schemas.pop();
        if let Some(name) = &schema
            && !is_plain_schema_name(name)
        {
            anyhow::bail!("invalid schema {name:?} in {}: {SCHEMA_NAME_RULE}", redact(url));
        }
        Ok(StorePlace { database, schema })
    }

    /// Where the store's tables are, as the server resolves its unqualified
    /// names, checked on one connection: the named schema, which must exist
    /// (the host makes a store's tables, never its schema, so a mistyped
    /// name fails instead of starting an empty store) and must be the
    /// connection's search path (a pooler that drops startup options would
    /// put every store in `public`); or, when none is named, the schema the
    /// server picks now, pinned from then on, so that a schema made later
    /// (one named after the user, which comes first in the default path)
    /// cannot take the store's names over while it runs.
    fn pinned(self) -> anyhow::Result<StorePlace> {
        let config = postgres::Config::from(config_in(&self.database, self.schema.as_deref())?);
        let mut client = config.connect(NoTls).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(&self.database)))?;
        let row = client.query_one(
            "SELECT current_schema(), $1::text IS NULL OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&self.schema],
        )?;
        let (current, exists): (Option<String>, bool) = (row.get(0), row.get(1));
        let database = redact(&self.database);
        match (self.schema, current) {
            (Some(named), _) if !exists => anyhow::bail!(
                "the schema {named} does not exist in {database}: make it first (CREATE SCHEMA {named};). \
                 The host makes a store's tables, not its schema, so that a mistyped name cannot start an empty store"
            ),
            (Some(named), Some(current)) if current == named => Ok(StorePlace { database: self.database, schema: Some(named) }),
            (Some(named), current) => anyhow::bail!(
                "connections to {database} resolve names in {current:?}, not in the schema {named}: the server did not take the \
                 session's search_path (a connection pooler that drops startup options?)"
            ),
            (None, Some(current)) if is_plain_schema_name(&current) => Ok(StorePlace { database: self.database, schema: Some(current) }),
            (None, current) => anyhow::bail!(
                "the store's tables in {database} would go in the schema {current:?}; name the schema with ?schema= ({SCHEMA_NAME_RULE})"
            ),
        }
    }

    /// `sql` (naming the `notes` table) with the table in this store's
    /// schema: for connections shared by the stores of one database, which
    /// cannot rely on a search path. The place must know its schema (one
    /// [`open_store`] returns, pinned, always does).
    pub(crate) fn qualify(&self, sql: &str) -> String {
        let schema = self.schema.as_deref().expect("a pinned store place knows its schema");
        assert!(sql.contains(" FROM notes "), "a shared read names its table as FROM notes: {sql}");
        sql.replace(" FROM notes ", &format!(" FROM \"{schema}\".notes "))
    }
}

const SCHEMA_NAME_RULE: &str =
    "a store's schema is 1-63 lowercase letters, digits and underscores, starting with a letter or underscore, and not pg_";

fn is_plain_schema_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pg_")
}

/// The shared read connections of the stores opened together, one per
/// database and purpose (see [`shared`]): stores in schemas of one database
/// share them.
#[derive(Default)]
pub struct ReadConnections {
    opened: Mutex<HashMap<(String, &'static str), Arc<Shared>>>,
}

impl ReadConnections {
    /// The connection for `purpose` (say "notes" or "lists") to `place`'s
    /// database, made on a request's first read.
    pub(crate) fn to(&self, place: &StorePlace, purpose: &'static str) -> anyhow::Result<Arc<Shared>> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = opened.get(&(place.database.clone(), purpose)) {
            return Ok(shared.clone());
        }
        let shared = Arc::new(Shared::new(config(&place.database)?));
        opened.insert((place.database.clone(), purpose), shared.clone());
        Ok(shared)
    }
}

/// A pool of async connections to a store's database, up to
/// `max_connections`, made as requests need them (the schema is
/// [`open_store`]'s). A connection the server dropped is never handed out
/// again (deadpool checks `is_closed`), and each keeps its statements
/// prepared (`prepare_cached`).
pub(crate) fn open_async(place: &StorePlace, max_connections: usize) -> anyhow::Result<AsyncPool> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    let config = config_in(&place.database, place.schema.as_deref())?;
    let manager = Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(max_connections)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CHECKOUT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .with_context(|| format!("cannot pool connections to {}", redact(&place.database)))
}

/// [`open`] for a store at `url`, in its schema ([`StorePlace::pinned`]);
/// with where it is, its schema always known.
pub(crate) fn open_store(url: &str, max_connections: u32, ddl: &str) -> anyhow::Result<(PgPool, StorePlace)> {
    let place = StorePlace::parse(url)?.pinned()?;
    let config = config_in(&place.database, place.schema.as_deref())?;
    Ok((open_with(&place.database, config, max_connections, ddl)?, place))
}

/// Connects to `url` (a `postgres://` URL or a libpq key=value string),
/// applies `schema` once (under an advisory lock, since hosts may start at
/// once and `CREATE … IF NOT EXISTS` races), and pools up to
/// `max_connections`.
pub(crate) fn open(url: &str, max_connections: u32, schema: &str) -> anyhow::Result<PgPool> {
    open_with(url, config(url)?, max_connections, schema)
}

fn open_with(url: &str, config: tokio_postgres::Config, max_connections: u32, schema: &str) -> anyhow::Result<PgPool> {
    let config = postgres::Config::from(config);
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

/// `url` without its password, for messages and logs: in the user info of
/// a URL (`user:PASSWORD@`), and as a `password=` parameter (of a URL's
/// query or a key=value string, quoted or not).
pub(crate) fn redact(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    let mut from = 0;
    while let Some(found) = out[from..].find("password=") {
        let start = from + found + "password=".len();
        let rest = &out[start..];
        let len = match rest.strip_prefix('\'') {
            // A quoted value ends at its closing quote (`\'` escapes one).
            Some(quoted) => {
                let mut escaped = false;
                let mut end = rest.len();
                for (i, c) in quoted.char_indices() {
                    if c == '\'' && !escaped {
                        end = i + 2;
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                end
            }
            None => rest.find(|c: char| c == '&' || c.is_whitespace()).unwrap_or(rest.len()),
        };
        out.replace_range(start..start + len, "***");
        from = start + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stores_schema_is_taken_out_of_its_url_and_the_rest_kept() {
        let place = |url| StorePlace::parse(url).unwrap();
        assert_eq!(place("postgres://u@h/db"), StorePlace { database: "postgres://u@h/db".into(), schema: None });
        assert_eq!(place("postgres://u@h/db?schema=shard_1"), StorePlace { database: "postgres://u@h/db".into(), schema: Some("shard_1".into()) });
        assert_eq!(
            place("postgres://u@h/db?sslmode=disable&schema=s&connect_timeout=3"),
            StorePlace { database: "postgres://u@h/db?sslmode=disable&connect_timeout=3".into(), schema: Some("s".into()) }
        );
        assert_eq!(place("host=h dbname=db schema=legacy"), StorePlace { database: "host=h dbname=db".into(), schema: Some("legacy".into()) });
        assert_eq!(
            place("host=h schema=s password='a  b'"),
            StorePlace { database: "host=h  password='a  b'".into(), schema: Some("s".into()) }
        );
        assert_eq!(
            place("postgres://u@h/db?schema=s").qualify("SELECT id FROM notes WHERE account_id = $1"),
            r#"SELECT id FROM "s".notes WHERE account_id = $1"#
        );
        assert!(StorePlace::parse("postgres://u@h/db?schema=S").is_err());
        assert!(StorePlace::parse("postgres://u@h/db?schema=a&schema=b").unwrap_err().to_string().contains("names a schema 2 times"));
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("postgres://notes:s3cret@db:5432/x"), "postgres://notes:***@db:5432/x");
        assert_eq!(redact("postgres://notes@db/x"), "postgres://notes@db/x");
        assert_eq!(redact("postgres://notes@db/x?password=s3cret&schema=a"), "postgres://notes@db/x?password=***&schema=a");
        assert_eq!(redact("host=db password=s3cret dbname=x"), "host=db password=*** dbname=x");
        assert_eq!(redact(r"host=db password='s3 \'cret' dbname=x"), "host=db password=*** dbname=x");
        let refused = StorePlace::parse("host=db password=s3cret schema=Bad").unwrap_err().to_string();
        assert!(refused.contains("invalid schema") && !refused.contains("s3cret"), "{refused}");
    }
}
