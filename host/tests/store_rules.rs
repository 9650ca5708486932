//! The rules every note store keeps (`wit/notes.wit`): the same test on
//! each backend, the embedded SQLite files, a real PostgreSQL database, the
//! sharded new store over both, and memory (the in-process tests' store).

use notes_host::stores::{
    AsyncStore, BlockingStore, DataStore, MemoryStore, Note, PostgresStore, ReadConnections, ShardedStore, SqliteStore, StoreBatch, StoreError,
    StoredRow,
};
use notes_routing::IdList;

fn note(account: &str, id: &str, version: u64, content: &str) -> Note {
    Note { id: id.into(), account_id: account.into(), content: content.into(), created_at_ms: 1, updated_at_ms: 2, version }
}

/// A store and what must outlive it (its temp dir).
type Opened = (Box<dyn std::any::Any>, Box<dyn DataStore>);

fn sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (Box::new(dir), Box::new(store))
}

fn postgres() -> Opened {
    (Box::new(()), Box::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap()))
}

fn sharded_postgres() -> Opened {
    let shards: Vec<Box<dyn DataStore>> =
        (0..3).map(|_| Box::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap()) as Box<dyn DataStore>).collect();
    (Box::new(()), Box::new(ShardedStore::new(shards)))
}

/// PostgreSQL through the calls a request makes (`*_async`, the async
/// client): the same rules hold there.
fn postgres_async() -> Opened {
    (Box::new(()), Box::new(Awaited::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap())))
}

fn sharded_postgres_async() -> Opened {
    let shards: Vec<Box<dyn DataStore>> =
        (0..3).map(|_| Box::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap()) as Box<dyn DataStore>).collect();
    (Box::new(()), Box::new(Awaited::new(ShardedStore::new(shards))))
}

/// Three shards in schemas of one database, opened together as `serve`
/// opens them: they share the database's read connections.
fn shards_in_schemas() -> ShardedStore {
    let database = notes_scenarios::postgres::with_schemas(notes_scenarios::postgres::database(), &["shard0", "shard1", "shard2"]);
    let reads = ReadConnections::default();
    ShardedStore::new(
        (0..3)
            .map(|i| Box::new(PostgresStore::open_sharing(&format!("{database}?schema=shard{i}"), &reads).unwrap()) as Box<dyn DataStore>)
            .collect(),
    )
}

fn sharded_postgres_schemas() -> Opened {
    (Box::new(()), Box::new(shards_in_schemas()))
}

fn sharded_postgres_schemas_async() -> Opened {
    (Box::new(()), Box::new(Awaited::new(shards_in_schemas())))
}

/// A store whose request-path calls (get, put, delete, list, recorded
/// version) are its `*_async` ones, awaited on a tokio runtime as a
/// request's task awaits them; the rest are the store's own.
struct Awaited<S> {
    store: S,
    runtime: tokio::runtime::Runtime,
}

impl<S> Awaited<S> {
    fn new(store: S) -> Self {
        Awaited { store, runtime: tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap() }
    }
}

impl<S: DataStore> BlockingStore for Awaited<S> {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        self.runtime.block_on(self.store.get_async(account_id, note_id))
    }

    fn put(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        self.runtime.block_on(self.store.put_async(note, epoch))
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        self.runtime.block_on(self.store.delete_if_not_newer_async(account_id, note_id, version, epoch))
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        self.runtime.block_on(self.store.list_ids_async(account_id))
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.runtime.block_on(self.store.recorded_version_async(account_id, note_id))
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.store.first_ids(account_id, after, limit)
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        self.store.count(account_id)
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<StoredRow>, StoreError> {
        self.store.rows(account_id, note_ids)
    }

    fn begin_batch(&self, account_id: &str, epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        self.store.begin_batch(account_id, epoch)
    }

    fn raise_fence(&self, account_id: &str, epoch: i64) -> Result<(), StoreError> {
        self.store.raise_fence(account_id, epoch)
    }
}

impl<S: DataStore> AsyncStore for Awaited<S> {}

fn sharded_sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..3).map(|i| notes_host::backends::DataDir(dir.path()).new_shard_db(i)).collect();
    let store = ShardedStore::open(&files).unwrap();
    (Box::new(dir), Box::new(store))
}

/// A store plugin as `serve` serves it, reaching `upstream` (a stand-in
/// over HTTP), over a version table if it keeps content only.
fn plugin_store(plugin: notes_scenarios::Plugin, upstream: notes_scenarios::standin::Standin) -> Opened {
    use notes_host::backends::StorePluginSource;
    use notes_host::plugins::store::{HttpGrant, PluginStore, StoreGrant, http::parse_origin};
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let source = StorePluginSource {
        wasm: plugin.path(),
        grant: StoreGrant {
            config: [("url".to_owned(), upstream.url.clone())].into(),
            http: HttpGrant { allowed: vec![parse_origin(&upstream.origin).unwrap()], ..HttpGrant::default() },
        },
        deadline: std::time::Duration::from_secs(10),
    };
    let plugin = {
        let _inside = runtime.enter();
        std::sync::Arc::new(source.load().unwrap())
    };
    let versions = (!plugin.info().keeps_versions)
        .then(|| notes_host::stores::versions::VersionTable::open(&dir.path().join("versions.db")).unwrap());
    let store = PluginStore::new(plugin, versions, runtime.handle().clone()).unwrap();
    (Box::new((upstream, dir, runtime)), Box::new(store))
}

/// A store plugin that keeps content only, over a Notely data proxy: the
/// host's version table keeps the rules.
fn notely_plugin() -> Opened {
    plugin_store(notes_scenarios::Plugin::NotelyDataProxy, notes_scenarios::standin::Standin::start("notely-proxy-standin"))
}

/// A store plugin that keeps versions itself, by check-and-set in a
/// key-value store: the host passes every call through.
fn consul_plugin() -> Opened {
    plugin_store(notes_scenarios::Plugin::ConsulKv, notes_scenarios::standin::Standin::start("kv-standin"))
}

fn memory() -> Opened {
    (Box::new(()), Box::new(MemoryStore::default()))
}

/// Every data-driven store rule (`host/conformance/store.json`, the cases
/// `notes-host plugin check --profile store` runs on a store plugin) holds.
fn keeps_the_store_rules(s: &dyn DataStore) {
    let results = notes_host::plugins::store::kit::check(s);
    assert!(results.len() >= 8, "the cases were read");
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            notes_host::plugins::conformance::Outcome::Pass => None,
            other => Some(format!("{}: {other:?}", r.name)),
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// One test per rule and backend, named `<rule>_on_<backend>`.
macro_rules! rules {
    ($($backend:ident: [$($rule:ident),* $(,)?];)*) => { $( mod $backend { $(
        #[test]
        fn $rule() {
            let (_keep, store) = super::$backend();
            super::$rule(&*store);
        }
    )* } )* };
}

rules! {
    sqlite: [keeps_the_store_rules];
    postgres: [keeps_the_store_rules, a_fenced_store_refuses_writes_admitted_under_an_older_epoch_and_changes_nothing];
    postgres_async: [keeps_the_store_rules, a_fenced_store_refuses_writes_admitted_under_an_older_epoch_and_changes_nothing];
    sharded_postgres_async: [keeps_the_store_rules];
    sharded_sqlite: [keeps_the_store_rules];
    sharded_postgres: [keeps_the_store_rules];
    sharded_postgres_schemas: [keeps_the_store_rules];
    sharded_postgres_schemas_async: [keeps_the_store_rules];
    notely_plugin: [keeps_the_store_rules];
    consul_plugin: [keeps_the_store_rules];
    memory: [keeps_the_store_rules];
}

/// PostgreSQL only: row locks order concurrent writers to one note, so of
/// racing writes of increasing versions the newest always stays.
#[test]
fn racing_writers_on_postgres_leave_the_newest_version() {
    let store = std::sync::Arc::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap());
    let writers: Vec<_> = (1..=8u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for v in 0..50u64 {
                    let version = v * 8 + w;
                    store.put(&note("a", "n", version, &version.to_string()), 0).unwrap();
                    if version % 5 == 1 {
                        store.delete_if_not_newer("a", "n", version, 0).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(store.recorded_version("a", "n").unwrap(), Some(400), "the highest version written wins");
    assert_eq!(store.get("a", "n").unwrap().unwrap().content, "400");
}

/// PostgreSQL only (a store shared beyond one machine): once fenced at an
/// epoch, the store refuses every write admitted under an older one, plain
/// or batched, and changes nothing; writes at the fence or above go on, and
/// other accounts are untouched.
fn a_fenced_store_refuses_writes_admitted_under_an_older_epoch_and_changes_nothing(store: &dyn DataStore) {
    store.put(&note("a", "n", 1, "one"), 0).unwrap();
    store.raise_fence("a", 2).unwrap();
    let fenced = |r: Result<bool, StoreError>| matches!(r, Err(StoreError::Fenced { epoch: 1 }));
    assert!(fenced(store.put(&note("a", "n", 2, "stale"), 1)), "a put from before the flip");
    assert!(fenced(store.put(&note("a", "m", 1, "stale"), 1)), "a create from before the flip");
    assert!(fenced(store.delete_if_not_newer("a", "n", 1, 1)), "a delete from before the flip");
    let batch = store.begin_batch("a", 1).unwrap();
    assert!(matches!(batch.put(&note("a", "n", 3, "stale")), Err(StoreError::Fenced { epoch: 1 })), "a batched write");
    drop(batch);
    assert_eq!(store.get("a", "n").unwrap().unwrap().content, "one", "nothing changed");
    assert_eq!(store.recorded_version("a", "m").unwrap(), None);
    assert!(store.put(&note("a", "n", 2, "current"), 2).unwrap(), "the flag's current epoch writes");
    assert!(store.put(&note("b", "n", 1, "other account"), 0).unwrap(), "another account is not fenced");
    store.raise_fence("a", 1).unwrap();
    assert!(fenced(store.put(&note("a", "n", 9, "stale"), 1)), "a fence never goes down");
}

/// PostgreSQL only: raising a fence waits for a write already running under
/// the old epoch (here a batch left open), so none lands after it returns.
#[test]
fn raising_a_fence_waits_for_writes_in_flight_then_refuses_them() {
    let store = std::sync::Arc::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap());
    let batch = store.begin_batch("a", 0).unwrap();
    batch.put(&note("a", "n", 1, "in flight")).unwrap();
    let raising = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.raise_fence("a", 1).unwrap();
            std::time::Instant::now()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!raising.is_finished(), "the fence waits for the running write");
    let committed = std::time::Instant::now();
    batch.commit().unwrap();
    let raised = raising.join().unwrap();
    assert!(raised >= committed, "the fence was raised only once the write had committed");
    assert_eq!(store.get("a", "n").unwrap().unwrap().content, "in flight", "it landed before the fence");
    assert!(store.put(&note("a", "n", 2, "late"), 0).is_err(), "after it, the old epoch is refused");
}

/// PostgreSQL only: a delete that meets a copy of the note another
/// transaction is inserting (a move batch of another host, not committed
/// yet) waits for it, then deletes it: an acknowledged delete leaves no
/// live copy behind. The strict-client simulator found this one.
#[test]
fn a_delete_racing_an_uncommitted_insert_of_the_note_still_deletes_it() {
    let store = std::sync::Arc::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap());
    let batch = store.begin_batch("a", 0).unwrap();
    batch.put(&note("a", "n", 1, "being moved here")).unwrap();
    let deleting = {
        let store = store.clone();
        std::thread::spawn(move || store.delete_if_not_newer("a", "n", 2, 0).unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!deleting.is_finished(), "the delete waits for the insert");
    batch.commit().unwrap();
    deleting.join().unwrap();
    assert_eq!(store.get("a", "n").unwrap(), None, "the moved copy was deleted once it landed");
    assert_eq!(store.recorded_version("a", "n").unwrap(), Some(2), "under a tombstone at the delete's version");

    // A move that wrote one above a tombstone: the copy has the delete's version.
    let batch = store.begin_batch("a", 0).unwrap();
    batch.put(&note("a", "m", 3, "moved one above a tombstone")).unwrap();
    let deleting = {
        let store = store.clone();
        std::thread::spawn(move || store.delete_if_not_newer("a", "m", 3, 0).unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    batch.commit().unwrap();
    deleting.join().unwrap();
    assert_eq!(store.get("a", "m").unwrap(), None, "a copy at the delete's own version is deleted too");
}

/// PostgreSQL, a request's calls: a read never waits behind a write that
/// waits for a lock. A move batch holds note `n`; an update of `n` waits for
/// it; meanwhile reads of `m` and `n` (the committed state), a list, and
/// the other note's update answer at once, although reads of many requests
/// share one connection to the database.
#[test]
fn reads_and_other_writes_answer_while_a_write_waits_for_a_batchs_row_lock() {
    let store = std::sync::Arc::new(PostgresStore::open(&notes_scenarios::postgres::database()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        assert!(store.put_async(&note("a", "n", 1, "committed"), 0).await.unwrap());
        assert!(store.put_async(&note("a", "m", 1, "another note"), 0).await.unwrap());
        // Connected before the lock is taken: the wait below measures waiting, not connecting.
        store.get_async("a", "m").await.unwrap();
        store.list_ids_async("a").await.unwrap();
    });
    let batch = store.begin_batch("a", 0).unwrap();
    batch.put(&note("a", "n", 2, "being moved, not committed")).unwrap();
    let waiting = {
        let store = store.clone();
        runtime.spawn(async move { store.put_async(&note("a", "n", 3, "waits for the batch"), 0).await })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!waiting.is_finished(), "the update of the batch's note waits for its lock");
    let answered = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(3), async {
            let n = store.get_async("a", "n").await.unwrap().expect("n is readable");
            let m = store.get_async("a", "m").await.unwrap().expect("m is readable");
            let ids = store.list_ids_async("a").await.unwrap();
            let other_write = store.put_async(&note("a", "m", 2, "not held"), 0).await.unwrap();
            (n.content, m.content, ids.len(), other_write)
        })
        .await
    });
    let (n, m, listed, other_write) = answered.expect("reads and another note's write answer while a write waits for a lock");
    assert_eq!((n.as_str(), m.as_str(), listed, other_write), ("committed", "another note", 2, true));
    batch.commit().unwrap();
    assert!(runtime.block_on(waiting).unwrap().unwrap(), "the waiting update lands once the batch commits (version 3 over its 2)");
    assert_eq!(runtime.block_on(store.get_async("a", "n")).unwrap().unwrap().content, "waits for the batch");
}

/// PostgreSQL, a request's reads: a server that stops answering without
/// closing the connection (a partition) fails the reads on the shared
/// connection in seconds, 503-style, and once it answers again the next read
/// makes a new connection and is served. Between the host and the server, a
/// proxy that can stop forwarding.
#[test]
fn a_read_on_a_connection_that_stopped_answering_fails_in_seconds_and_the_next_read_reconnects() {
    let url = notes_scenarios::postgres::database();
    let (stalled, proxied) = stalling_proxy(&url);
    let store = PostgresStore::open(&proxied).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        assert!(store.put_async(&note("a", "n", 1, "kept"), 0).await.unwrap());
        assert_eq!(store.get_async("a", "n").await.unwrap().unwrap().content, "kept");
        stalled.store(true, std::sync::atomic::Ordering::SeqCst);
        let asked = std::time::Instant::now();
        let failed = tokio::time::timeout(std::time::Duration::from_secs(20), store.get_async("a", "n")).await.expect("the read is answered");
        assert!(matches!(failed, Err(StoreError::Unavailable(_))), "a read with no answer fails as unavailable: {failed:?}");
        assert!(asked.elapsed() < std::time::Duration::from_secs(8), "and in seconds ({:?})", asked.elapsed());
        stalled.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.get_async("a", "n").await.unwrap().unwrap().content, "kept", "the next read is served");
    });
}

/// A TCP proxy to `url`'s server; while the flag is set it forwards nothing
/// (and holds what it read). Returns the flag and `url` through the proxy.
fn stalling_proxy(url: &str) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, String) {
    use std::io::{Read, Write};
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let (before, after) = url.split_once("@127.0.0.1:").unwrap();
    let (server_port, db) = after.split_once('/').unwrap();
    let server = format!("127.0.0.1:{server_port}");
    let flag = stalled.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let client = client.unwrap();
            let upstream = std::net::TcpStream::connect(&server).unwrap();
            for (mut from, mut to) in [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)] {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        while flag.load(std::sync::atomic::Ordering::SeqCst) {
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (stalled, format!("{before}@127.0.0.1:{proxy_port}/{db}"))
}

/// SQLite only: single writes from many threads share commits (group
/// commit), and each still gets its own answer under the version rules: a
/// refused write does not fail the writes committed with it.
#[test]
fn concurrent_single_writes_to_one_file_each_get_their_own_answer() {
    let (_keep, s) = sqlite();
    let s = &*s;
    std::thread::scope(|threads| {
        for writer in 0..16 {
            threads.spawn(move || {
                for i in 0..40 {
                    let id = format!("{writer}-{i}");
                    assert!(s.put(&note("a", &id, 2, "two"), 0).unwrap());
                    assert!(!s.put(&note("a", &id, 1, "older"), 0).unwrap(), "refused for its version");
                    if i % 2 == 0 {
                        assert!(s.delete_if_not_newer("a", &id, 2, 0).unwrap());
                    }
                }
            });
        }
    });
    assert_eq!(s.count("a").unwrap(), 16 * 20);
    assert_eq!(s.get("a", "3-1").unwrap().unwrap().content, "two");
    assert_eq!((s.get("a", "3-2").unwrap(), s.recorded_version("a", "3-2").unwrap()), (None, Some(2)));
}

/// Stores in schemas of one database (`?schema=`) keep their notes apart,
/// each its own table, and the reads requests make of all of them travel on
/// one connection to the server, not one per store.
#[test]
fn stores_in_schemas_of_one_database_keep_their_notes_apart_and_share_one_connection_for_reads() {
    let database = notes_scenarios::postgres::with_schemas(notes_scenarios::postgres::database(), &["legacy", "shard0"]);
    let reads = ReadConnections::default();
    let legacy = PostgresStore::open_sharing(&format!("{database}?schema=legacy"), &reads).unwrap();
    let shard = PostgresStore::open_sharing(&format!("{database}?schema=shard0"), &reads).unwrap();
    legacy.put(&note("a", "in-legacy", 1, "old"), 0).unwrap();
    shard.put(&note("a", "in-shard", 1, "new"), 0).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        assert_eq!(legacy.get_async("a", "in-legacy").await.unwrap().map(|n| n.content), Some("old".into()));
        assert_eq!(shard.get_async("a", "in-legacy").await.unwrap(), None, "a note put in one schema is not in the other");
        assert_eq!(shard.get_async("a", "in-shard").await.unwrap().map(|n| n.content), Some("new".into()));
        assert_eq!(legacy.list_ids_async("a").await.unwrap(), IdList::from_joined("in-legacy\n".into()));
        assert_eq!(shard.list_ids_async("a").await.unwrap(), IdList::from_joined("in-shard\n".into()));
        assert_eq!(legacy.recorded_version_async("a", "in-shard").await.unwrap(), None);
    });
    // The server's view: the point reads of both stores came from one session.
    let mut admin = ::postgres::Client::connect(&database, ::postgres::NoTls).unwrap();
    let sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND (query LIKE 'SELECT content, created_at_ms%' OR query LIKE 'SELECT version FROM%')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "one connection carries both stores' note reads");
    drop(runtime);
}

/// A schema name that is not a plain identifier is refused before anything
/// is made, with the rule in the message.
#[test]
fn a_store_url_naming_an_invalid_schema_is_refused_with_the_rule() {
    let database = notes_scenarios::postgres::database();
    for bad in ["Shard", "shard-0", "0shard", "pg_shard", "a\"; DROP TABLE notes; --"] {
        let err = PostgresStore::open(&format!("{database}?schema={bad}")).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("invalid schema") && err.contains("lowercase letters"), "{bad}: {err}");
    }
    let mut admin = ::postgres::Client::connect(&database, ::postgres::NoTls).unwrap();
    let schemas: i64 =
        admin.query_one("SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema'", &[]).unwrap().get(0);
    assert_eq!(schemas, 1, "only the database's own public schema exists");
}

/// The host makes a store's tables, never its schema: a mistyped schema
/// fails with what to do, and makes nothing, where it would otherwise start
/// an empty store beside the real one.
#[test]
fn a_store_naming_a_schema_that_does_not_exist_is_refused_and_nothing_is_made() {
    let database = notes_scenarios::postgres::with_schemas(notes_scenarios::postgres::database(), &["shard0"]);
    let err = PostgresStore::open(&format!("{database}?schema=shard1")).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("the schema shard1 does not exist") && err.contains("CREATE SCHEMA shard1"), "{err}");
    let mut admin = ::postgres::Client::connect(&database, ::postgres::NoTls).unwrap();
    let made: i64 = admin.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = 'shard1'", &[]).unwrap().get(0);
    assert_eq!(made, 0);
}

/// A store whose URL names no schema keeps the one its names resolved to
/// when it opened: a schema made later that comes first in PostgreSQL's
/// default search path (one named after the user, here another store's)
/// does not take over its table while it runs.
#[test]
fn a_store_without_a_schema_keeps_its_table_when_a_schema_named_after_the_user_appears() {
    let database = notes_scenarios::postgres::database();
    let legacy = PostgresStore::open(&database).unwrap();
    legacy.put(&note("a", "kept", 1, "in public"), 0).unwrap();
    let user: String = ::postgres::Client::connect(&database, ::postgres::NoTls).unwrap().query_one("SELECT current_user", &[]).unwrap().get(0);
    let database = notes_scenarios::postgres::with_schemas(database, &[&user]);
    let shard = PostgresStore::open(&format!("{database}?schema={user}")).unwrap();
    assert_eq!(legacy.get("a", "kept").unwrap().map(|n| n.content), Some("in public".into()), "the legacy store still reads its own table");
    legacy.put(&note("a", "later", 1, "also in public"), 0).unwrap();
    assert_eq!(shard.get("a", "later").unwrap(), None, "and writes there, not into the new schema's table");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    assert!(runtime.block_on(legacy.get_async("a", "later")).unwrap().is_some(), "its shared reads too");
}
