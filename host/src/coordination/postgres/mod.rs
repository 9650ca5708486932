//! [`Coordination`] in a PostgreSQL database: a port of `sqlite.rs`, with the
//! same tables, rules and answers, for a fleet whose hosts share a database
//! server instead of a data dir.
//!
//! Every decision (a gate, a flip) is one transaction that first takes one
//! advisory lock ([`BEGIN_DECISION`]), so PostgreSQL orders the decisions of
//! every host as SQLite's `BEGIN IMMEDIATE` does. The flag is read from the
//! database for every note request (one prepared statement): there is no
//! cache to go stale. A failed read is an error, never "not migrating".
//!
//! The change watch is LISTEN/NOTIFY: every transaction that changes what the
//! fleet watches notifies the channel `notes_coordination` as it commits
//! ([`Listener`]).

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use anyhow::Context;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};
use uuid::Uuid;

use super::{
    Account, AccountDetails, AccountKey, Announced, AuditEntry, AuditQuery, Accounts, AuditLog, ChangeWatch, CoordinationError, Flips, Hosts, Jobs, Keys, Rollouts, FlagState, Gate, HostRecord,
    Job, JobState, PendingFlip, PluginSummary, Verified,
};
use crate::pg::{self, PgConn, PgPool};

mod accounts;
mod flips;
mod hosts;
mod rollouts;
mod jobs;
mod keys;
mod audit;

/// The tables of `sqlite.rs`, with PostgreSQL's types. Ids are compared byte
/// by byte (`COLLATE "C"`), whatever the database's locale, so `ORDER BY id`
/// (and `next_account_after`'s walk) is the order SQLite gives.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id               TEXT    COLLATE "C" PRIMARY KEY NOT NULL,
    name             TEXT    NOT NULL,
    is_migrating     BOOLEAN NOT NULL DEFAULT false,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL,
    -- A flip in progress: its id, the value it sets, when any host may abort it, the host running it.
    flip_id          TEXT,
    flip_to          BOOLEAN,
    flip_deadline_ms BIGINT,
    flip_by          TEXT,
    -- Notely's `shard`, stored and echoed.
    shard            TEXT,
    -- The last verify since the flag changed (cleared by a flip).
    verified_at_ms   BIGINT,
    verified_clean   BOOLEAN,
    -- Raised by every commit or abort of a flip: the stores refuse writes
    -- admitted under an older one once fenced (see ARCHITECTURE.md).
    flag_epoch       BIGINT  NOT NULL DEFAULT 0
);
-- Whether the flag was ever on (added later: rows from before count as such
-- if the flag is on or has changed; an aborted flip to on counts too).
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'accounts' AND column_name = 'was_migrating') THEN
        ALTER TABLE accounts ADD COLUMN was_migrating BOOLEAN NOT NULL DEFAULT false;
        UPDATE accounts SET was_migrating = is_migrating OR flag_epoch > 0;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS accounts_flipping ON accounts (flip_id) WHERE flip_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS hosts (
    id                 TEXT    COLLATE "C" PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL,
    address            TEXT    NOT NULL,
    pid                BIGINT  NOT NULL,
    version            TEXT    NOT NULL,
    started_at_ms      BIGINT  NOT NULL,
    heartbeat_ms       BIGINT  NOT NULL,
    plugin_digest      TEXT    NOT NULL,
    plugin_label       TEXT    NOT NULL,
    supports_migration BOOLEAN NOT NULL,
    -- The host's lease, on the database's clock (ms since the epoch): a
    -- heartbeat renews it only while it holds; once it lapsed the host
    -- serves nothing until it joins again.
    lease_until_ms     BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms   BIGINT  NOT NULL,
    host    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    before  TEXT    NOT NULL,
    after   TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
-- The operator action (a rollout, the kill switch) the entry is part of
-- (added later: entries from before are each an action of their own).
ALTER TABLE audit ADD COLUMN IF NOT EXISTS action TEXT COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS audit_action ON audit (action) WHERE action <> '';
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT    COLLATE "C" PRIMARY KEY NOT NULL,
    kind          TEXT    NOT NULL,
    account       TEXT    COLLATE "C",
    state         TEXT    NOT NULL,
    rate          BIGINT  NOT NULL,
    total         BIGINT  NOT NULL,
    done          BIGINT  NOT NULL,
    moved         BIGINT  NOT NULL,
    problems      BIGINT  NOT NULL,
    cursor        TEXT    NOT NULL,
    owner         TEXT,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    detail        TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS account_keys (
    id            TEXT    COLLATE "C" PRIMARY KEY NOT NULL,
    account       TEXT    COLLATE "C" NOT NULL,
    label         TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS account_keys_by_account ON account_keys (account);
CREATE TABLE IF NOT EXISTS service_state (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flip_acks (
    flip_id TEXT    NOT NULL,
    host_id TEXT    NOT NULL,
    at_ms   BIGINT  NOT NULL,
    PRIMARY KEY (flip_id, host_id)
);
-- The service's identity (`layout::open_service`), as `accounts.db` records a data dir's.
CREATE TABLE IF NOT EXISTS layout (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
"#;

/// As many connections as `SqliteCoordination` pools.
const MAX_CONNECTIONS: u32 = 8;

/// Begins a transaction that decides something, and takes the decision lock.
///
/// SQLite runs one `BEGIN IMMEDIATE` transaction at a time; PostgreSQL at
/// READ COMMITTED runs them side by side, each reading what was committed
/// before its statement began. The two halves of the deployment gate read
/// what the other half writes: `announce_flip` reads the hosts and marks an
/// account, `register_host` reads the accounts and adds a host. Side by side,
/// each would see the other's row missing, and a flag would turn on while a
/// host whose plugin cannot migrate registers: the loss the gate prevents.
/// (Row locks cannot help: each writes a row the other only reads, or a row
/// that did not exist yet.) So every decision first takes this one lock,
/// released when its transaction ends: decisions run one at a time, and each
/// statement after the lock sees every decision committed before it (the
/// lock is released only once the commit is visible). The key is "coord" in
/// ASCII; `pg::open`'s schema lock has another.
const BEGIN_DECISION: &str = "BEGIN; SELECT pg_advisory_xact_lock(427071337060)";
/// An announcement needs no durability either: lost in a crash, the flip
/// never happened (its commit finds no mark and fails; hosts thaw when they
/// see none). Its gate check and mark are what matter, under the lock.
const BEGIN_DECISION_UNSYNCED: &str = "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock(427071337060)";
const BEGIN: &str = "BEGIN";
/// Acknowledgements commit without waiting for the WAL to reach the disk:
/// they need no durability (after a crash a flip is aborted again, or
/// acknowledged again), and a flip waits for them. Nothing else is lost: a
/// later synchronous commit (the flip's) flushes the WAL up to itself.
const BEGIN_UNSYNCED: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// Every change of the watched state is notified on the channel
/// `notes_coordination`. A notification is delivered when (and only if) its
/// transaction commits; several in one transaction are delivered once.
const NOTIFY_AND_COMMIT: &str = "NOTIFY notes_coordination; COMMIT";
const COMMIT: &str = "COMMIT";

// Column lists, as macros so that each statement is one `&'static str` (the
// key of the per-connection statement cache).
macro_rules! account_columns {
    () => {
        "id, name, is_migrating, created_at_ms, updated_at_ms, shard, verified_at_ms, verified_clean, was_migrating"
    };
}
macro_rules! host_columns {
    () => {
        "id, name, address, pid, version, started_at_ms, heartbeat_ms, plugin_digest, plugin_label, supports_migration"
    };
}

/// The flag and any flip in progress of one account (`row_to_flag_state`):
/// the read every note request makes.
const FLAG_STATE: &str = "SELECT id, flip_id, flip_to, flip_deadline_ms, flip_by, is_migrating, flag_epoch FROM accounts WHERE id = $1";
const ACCOUNT: &str = concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = $1");
const ACCOUNTS: &str = concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY created_at_ms, id");
const NEXT_ACCOUNT: &str = "SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT 1";
const INSERT_ACCOUNT: &str = "INSERT INTO accounts (id, name, is_migrating, created_at_ms, updated_at_ms, shard, was_migrating)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
const UPDATE_ACCOUNT: &str = concat!(
    "UPDATE accounts SET name = coalesce($2, name), shard = coalesce($3, shard), updated_at_ms = $4 WHERE id = $1 RETURNING ",
    account_columns!()
);
const MARK_FLIP: &str = "UPDATE accounts SET flip_id = $2, flip_to = $3, flip_deadline_ms = $4, flip_by = $5 WHERE id = $1";
const COMMIT_FLIP: &str = "UPDATE accounts SET is_migrating = $3, updated_at_ms = $4, flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL,
         verified_at_ms = NULL, verified_clean = NULL, flag_epoch = flag_epoch + 1, was_migrating = (was_migrating OR $3)
     WHERE id = $1 AND flip_id = $2";
const ABORT_FLIP: &str = "UPDATE accounts SET flip_id = NULL, flip_to = NULL, flip_deadline_ms = NULL, flip_by = NULL, flag_epoch = flag_epoch + 1
     WHERE id = $1 AND flip_id = $2";
const PENDING_FLIPS: &str = "SELECT id, flip_id, flip_to, flip_deadline_ms, flip_by FROM accounts WHERE flip_id IS NOT NULL ORDER BY id";
const DELETE_ACKS_OF_FLIP: &str = "DELETE FROM flip_acks WHERE flip_id = $1";
const INSERT_ACK: &str = "INSERT INTO flip_acks (flip_id, host_id, at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const FLIP_ACKS: &str = "SELECT host_id FROM flip_acks WHERE flip_id = $1";
const SET_FLAG: &str = "UPDATE accounts SET is_migrating = $2, updated_at_ms = $3, verified_at_ms = NULL, verified_clean = NULL,
         flag_epoch = flag_epoch + 1, was_migrating = (was_migrating OR $2) WHERE id = $1";
/// Accounts whose flag is on or being turned on.
const MIGRATING: &str = "SELECT id FROM accounts WHERE is_migrating OR flip_to IS TRUE ORDER BY id";
const RECORD_VERIFY: &str =
    "UPDATE accounts SET verified_at_ms = $2, verified_clean = $3 WHERE id = $1 AND updated_at_ms = $4 AND flip_id IS NULL";

const HOSTS: &str = concat!("SELECT ", host_columns!(), " FROM hosts ORDER BY started_at_ms, id");
/// The database's clock in ms: leases are timed by one clock for every host.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}
const INSERT_HOST: &str = concat!(
    "INSERT INTO hosts (",
    host_columns!(),
    ", lease_until_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ",
    db_now_ms!(),
    " + $11)"
);
/// Renews only a lease that still holds: a lapsed one stays lapsed.
const HEARTBEAT: &str =
    concat!("UPDATE hosts SET heartbeat_ms = $2, lease_until_ms = ", db_now_ms!(), " + $3 WHERE id = $1 AND lease_until_ms > ", db_now_ms!());
const EXPIRED_HOSTS: &str = concat!("SELECT id FROM hosts WHERE lease_until_ms <= ", db_now_ms!());
/// Removes a host only while its lease is lapsed: the row lock orders it
/// after a renewal in flight, and a host that joined again keeps its row.
const PRUNE_HOST: &str = concat!("DELETE FROM hosts WHERE id = $1 AND lease_until_ms <= ", db_now_ms!());
const CHANGE_HOST_PLUGIN: &str = "UPDATE hosts SET plugin_digest = $2, plugin_label = $3, supports_migration = $4 WHERE id = $1";
const DELETE_HOST: &str = "DELETE FROM hosts WHERE id = $1";
const DELETE_ACKS_OF_HOST: &str = "DELETE FROM flip_acks WHERE host_id = $1";

const ROLLOUT_PERCENT: &str = "SELECT value FROM service_state WHERE key = 'rollout_percent'";
const STOP_GENERATION: &str = "SELECT value FROM service_state WHERE key = 'stop_generation'";
const STOPPED: &str = "SELECT value FROM service_state WHERE key = 'stopped'";
const SET_STATE: &str = "INSERT INTO service_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const SET_ROLLOUT_PERCENT: &str =
    "INSERT INTO service_state (key, value) VALUES ('rollout_percent', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

const INSERT_AUDIT: &str =
    "INSERT INTO audit (at_ms, host, actor, kind, subject, before, after, detail, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// A filter left `NULL` keeps every entry (typed, since PostgreSQL cannot
/// infer the type of a bare `$2 IS NULL`).
macro_rules! audit_page {
    ($order:literal) => {
        concat!(
            "SELECT seq, at_ms, host, actor, kind, subject, before, after, detail, action,
            CASE WHEN action <> '' AND kind <> 'flag'
                 THEN (SELECT count(*) FROM audit f WHERE f.action = audit.action AND f.kind = 'flag') ELSE 0 END
     FROM audit
     WHERE seq > $1 AND seq < $6 AND ($2::BIGINT IS NULL OR at_ms >= $2) AND ($3::BIGINT IS NULL OR at_ms <= $3) AND ($4::TEXT IS NULL OR kind = $4)
       AND ($7::TEXT IS NULL OR action = $7)
       AND NOT ($8::BOOLEAN AND kind = 'flag' AND action <> ''
                AND EXISTS (SELECT 1 FROM audit s WHERE s.action = audit.action AND s.kind <> 'flag'))
     ORDER BY seq ",
            $order,
            " LIMIT $5"
        )
    };
}
const AUDIT_OLDEST_FIRST: &str = audit_page!("ASC");
const AUDIT_NEWEST_FIRST: &str = audit_page!("DESC");

/// How often [`Listener::changed`] answers true even if it heard nothing: a
/// notification sent while its connection was down is lost.
const SAFETY_NET: Duration = Duration::from_millis(100);
/// How often a [`Listener`] whose connection is gone tries to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);
/// A reconnection gives up after this: the watcher thread waits for it.
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct PostgresCoordination {
    pool: PgPool,
    /// How long a host's lease lasts after it registers or heartbeats, in ms.
    lease_ms: i64,
    /// For the change watch's connection of its own.
    listen_config: postgres::Config,
}

impl PostgresCoordination {
    /// Connects to the database at `url` (a `postgres://` URL or a libpq
    /// key=value string), creating the tables if needed.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        if pg::StorePlace::parse(url)?.schema.is_some() {
            // Its change notifications are per database: two services in
            // schemas of one would hear each other.
            anyhow::bail!("{}: only a store's URL may name a schema; the coordination state needs a database of its own", pg::redact(url));
        }
        let mut listen_config: postgres::Config = url.parse().with_context(|| format!("invalid PostgreSQL URL {}", pg::redact(url)))?;
        listen_config
            .connect_timeout(LISTEN_CONNECT_TIMEOUT)
            .application_name("notes-host-watch")
            // The watch only listens: without probes, a server gone without
            // closing the connection (a network cut) would leave it deaf
            // (though the safety net still answers) for hours.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        let pool = pg::open(url, MAX_CONNECTIONS, SCHEMA)?;
        Ok(PostgresCoordination { pool, lease_ms: super::DEFAULT_LEASE.as_millis() as i64, listen_config })
    }

    /// Hosts' leases last `lease` after each heartbeat (`--host-timeout-ms`).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<pg::Manager>, CoordinationError> {
        Ok(self.pool.get()?)
    }

    /// The service's identity as this database records it (table `layout`):
    /// `layout.rs` decides, this only reads and writes.
    pub fn layout_record(&self) -> anyhow::Result<PostgresLayout> {
        Ok(PostgresLayout { pool: self.pool.clone() })
    }
}

/// The `layout` table of the coordination database: the service's identity
/// (`layout::open_service`), the counterpart of `sqlite::LayoutRecord`.
pub struct PostgresLayout {
    pool: PgPool,
}

const LAYOUT_VALUE: &str = "SELECT value FROM layout WHERE key = $1";
const LAYOUT_INSERT: &str = "INSERT INTO layout (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

impl PostgresLayout {
    pub fn value(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(query_opt(&mut *self.pool.get()?, LAYOUT_VALUE, &[&key])?.map(|r| r.get(0)))
    }

    /// Writes each pair whose key is not recorded yet, in one decision: of
    /// hosts starting at once, the first one's values stay, all of them.
    pub fn write_if_absent(&self, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        for (key, value) in pairs {
            execute(&mut tx, LAYOUT_INSERT, &[key, value])?;
        }
        tx.commit(false)?;
        Ok(())
    }
}

/// A transaction on one pooled connection: rolled back when dropped
/// uncommitted (an early return, an error, a panic in `before_commit`), so the
/// connection goes back to the pool without one open.
struct Tx<'c> {
    conn: &'c mut PgConn,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `begin`: [`BEGIN`], [`BEGIN_DECISION`] or [`BEGIN_UNSYNCED`].
    fn begin(conn: &'c mut PgConn, begin: &str) -> Result<Self, postgres::Error> {
        // Open before the first statement: if the lock wait fails, the
        // transaction is open (and failed) and must be rolled back.
        let tx = Tx { conn, open: true };
        tx.conn.client().batch_execute(begin)?;
        Ok(tx)
    }

    /// Commits; `notify`: tells every change watch, as part of the commit.
    fn commit(mut self, notify: bool) -> Result<(), postgres::Error> {
        self.conn.client().batch_execute(if notify { NOTIFY_AND_COMMIT } else { COMMIT })?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Tx<'_> {
    type Target = PgConn;

    fn deref(&self) -> &PgConn {
        self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.client().batch_execute("ROLLBACK");
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs `sql`, prepared once per connection, on `conn` (in its transaction, if one is open).
fn execute(conn: &mut PgConn, sql: &'static str, params: Params<'_>) -> Result<u64, postgres::Error> {
    let statement = conn.prepared(sql)?;
    conn.client().execute(&statement, params)
}

fn query(conn: &mut PgConn, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
    let statement = conn.prepared(sql)?;
    conn.client().query(&statement, params)
}

fn query_opt(conn: &mut PgConn, sql: &'static str, params: Params<'_>) -> Result<Option<Row>, postgres::Error> {
    let statement = conn.prepared(sql)?;
    conn.client().query_opt(&statement, params)
}

fn insert_audit(conn: &mut PgConn, e: &AuditEntry) -> Result<(), postgres::Error> {
    execute(conn, INSERT_AUDIT, &[&e.at_ms, &e.host, &e.actor, &e.kind, &e.subject, &e.before, &e.after, &e.detail, &e.action]).map(drop)
}

fn hosts_on(conn: &mut PgConn) -> Result<Vec<HostRecord>, CoordinationError> {
    let rows = query(conn, HOSTS, &[])?;
    Ok(rows
        .iter()
        .map(|r| HostRecord {
            id: r.get(0),
            name: r.get(1),
            address: r.get(2),
            pid: u32::try_from(r.get::<_, i64>(3)).unwrap_or_default(),
            version: r.get(4),
            started_at_ms: r.get(5),
            heartbeat_ms: r.get(6),
            plugin: PluginSummary { digest: r.get(7), label: r.get(8), supports_migration: r.get(9) },
        })
        .collect())
}

/// Accounts whose flag is on or being turned on.
fn migrating_on(conn: &mut PgConn) -> Result<Vec<Uuid>, CoordinationError> {
    let rows = query(conn, MIGRATING, &[])?;
    Ok(rows.iter().filter_map(|r| Uuid::parse_str(r.get(0)).ok()).collect())
}

fn parse_id(id: &str) -> Result<Uuid, CoordinationError> {
    Uuid::parse_str(id).map_err(|e| CoordinationError::Unavailable(format!("the accounts database holds an invalid account id {id:?}: {e}")))
}

/// The flip of a row whose columns are account id, flip_id, flip_to,
/// flip_deadline_ms, flip_by; `None` if no flip is pending.
fn row_to_flip(r: &Row) -> Result<Option<PendingFlip>, CoordinationError> {
    let Some(id) = r.get::<_, Option<String>>(1) else { return Ok(None) };
    Ok(Some(PendingFlip {
        account: parse_id(r.get(0))?,
        id,
        to: r.get::<_, Option<bool>>(2).unwrap_or(false),
        deadline_ms: r.get::<_, Option<i64>>(3).unwrap_or(0),
        by_host: r.get::<_, Option<String>>(4).unwrap_or_default(),
    }))
}

/// A [`FLAG_STATE`] row: the flip's columns, then is_migrating and flag_epoch.
fn row_to_flag_state(r: &Row) -> Result<FlagState, CoordinationError> {
    Ok(FlagState { is_migrating: r.get(5), epoch: r.get(6), flip: row_to_flip(r)? })
}

fn row_to_account(r: &Row) -> Result<Account, CoordinationError> {
    Ok(Account {
        id: parse_id(r.get(0))?,
        name: r.get(1),
        is_migrating: r.get(2),
        created_at_ms: r.get(3),
        updated_at_ms: r.get(4),
        shard: r.get(5),
        verified: match (r.get::<_, Option<i64>>(6), r.get::<_, Option<bool>>(7)) {
            (Some(at_ms), Some(clean)) => Some(Verified { at_ms, clean }),
            _ => None,
        },
        was_migrating: r.get(8),
    })
}

/// A connection of its own that listens on `notes_coordination`.
fn listen(config: &postgres::Config) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute("LISTEN notes_coordination")?;
    Ok(client)
}

/// The change watch: a connection listening on `notes_coordination`.
///
/// `changed` makes no round trip: it takes the notifications the connection
/// received (a look at the socket, at most 1 ms: see [`heard_any`]). It
/// answers true on the first call, when it heard a notification, and at
/// least every [`SAFETY_NET`] whatever it heard, since a notification sent
/// while the connection was down (or a change nobody notified) is never
/// heard. A lost connection is reopened at once (true then: anything may
/// have changed meanwhile); if that fails, the call is an error, and the
/// next attempts come every [`RECONNECT_EVERY`], the calls in between
/// answering false (the watcher polls every millisecond and would log each
/// error; the true that follows the reconnection covers the gap).
struct Listener {
    config: postgres::Config,
    /// `None` after the connection was lost and not reopened yet.
    client: Option<Client>,
    /// When `changed` last answered true (`None`: never).
    answered_true: Option<Instant>,
    next_reconnect: Instant,
}

impl Listener {
    /// Reconnects (if it is time to try): true once listening again.
    fn reconnect(&mut self) -> Result<bool, CoordinationError> {
        self.client = None;
        let now = Instant::now();
        if now < self.next_reconnect {
            return Ok(false);
        }
        match listen(&self.config) {
            Ok(client) => {
                self.client = Some(client);
                Ok(true)
            }
            Err(e) => {
                self.next_reconnect = now + RECONNECT_EVERY;
                Err(e.into())
            }
        }
    }
}

impl ChangeWatch for Listener {
    fn changed(&mut self) -> Result<bool, CoordinationError> {
        let heard = match self.client.as_mut().filter(|c| !c.is_closed()) {
            None => self.reconnect()?,
            Some(client) => match heard_any(client) {
                // `None` from the iterator also means "disconnected".
                Ok(heard) if !client.is_closed() => heard,
                Ok(_) | Err(_) => self.reconnect()?,
            },
        };
        let now = Instant::now();
        let due = self.answered_true.is_none_or(|at| now.duration_since(at) >= SAFETY_NET);
        if (heard || due) && self.client.is_some() {
            self.answered_true = Some(now);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Takes every notification that arrived; true if there was any.
///
/// Not `Notifications::iter`: it never hears anything new. The client runs
/// its connection on a runtime of its own, whose I/O driver learns that the
/// socket is readable only when it turns, and `iter` returns before it does
/// (it hands out what is already buffered, then polls a connection that
/// believes the socket is empty). A `timeout_iter` of zero lets the driver
/// turn once: it returns at once if something arrived, else at the timer's
/// next tick (at most 1 ms), and it also reads the end of a lost connection.
fn heard_any(client: &mut Client) -> Result<bool, postgres::Error> {
    let mut notifications = client.notifications();
    // The client reads its socket only while it waits: a wait of zero ends
    // at the runtime's next timer tick (~1 ms) anyway, so wait that long for
    // a first notification, which ends the wait the moment it arrives; then
    // take whatever else is already here without waiting.
    if notifications.timeout_iter(LISTEN_WAIT).next()?.is_none() {
        return Ok(false);
    }
    let mut buffered = notifications.iter();
    while buffered.next()?.is_some() {}
    Ok(true)
}

/// The longest one look of the change watch waits for a notification.
const LISTEN_WAIT: Duration = Duration::from_millis(1);

impl From<postgres::Error> for CoordinationError {
    fn from(e: postgres::Error) -> Self {
        // The error's own text is a kind ("db error"); the server's message is its source.
        match std::error::Error::source(&e) {
            Some(source) => CoordinationError::Unavailable(format!("{e}: {source}")),
            None => CoordinationError::Unavailable(e.to_string()),
        }
    }
}

/// The kill switch's generation (0 before it was first pressed).
fn stop_generation_in(conn: &mut PgConn) -> Result<i64, CoordinationError> {
    let value: Option<String> = query_opt(conn, STOP_GENERATION, &[])?.map(|r| r.get(0));
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    /// Refused before any connection is tried: no server listens here.
    #[test]
    fn a_coordination_url_naming_a_schema_is_refused_with_why() {
        let err = super::PostgresCoordination::open("postgres://notes@127.0.0.1:1/fleet?schema=one").err().expect("refused");
        assert!(err.to_string().contains("only a store's URL may name a schema"), "{err:#}");
    }
}
