//! Micro-benchmarks of the pieces every note request goes through:
//!
//! - `dispatch/*`: one routing call through the Wasm plugin (a fresh instance
//!   from the pooling allocator, bind the account, call the export, return)
//!   against the same strategy compiled natively, over an in-memory store so
//!   that only the boundary differs. `wasm-reused-instance` is the same call
//!   on a kept instance (`--unsafe-reuse-instances`): the cost of isolation.
//! - `wasmtime/*`: what a fresh instance costs wasmtime itself on this machine,
//!   with the host's engine and pool: a minimal component (one core module,
//!   one function, the 17-page memory of a Rust plugin) fresh and kept, and the
//!   migrate plugin instantiated and dropped without a call. The floor under
//!   `dispatch/wasm/get`'s isolation cost.
//! - `store/*`: each `DataStore` operation on a real SQLite file
//!   (`synchronous = FULL`, so the writes include an fsync).
//! - `flag/*`: the flag read of every note request: the SQL alone, and
//!   `Fleet::admit` (in-flight count + the same read).
//!
//! Run with `cargo xtask bench` (builds the plugins first), or
//! `cargo bench -p notes-host --bench micro` once `target/plugins/` exists.
//! Results land in `target/criterion/<group>/<name>/new/estimates.json`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use notes_host::clock::SystemClock;
use notes_host::coordination::{Account, Accounts, Gate, PluginSummary, SqliteCoordination};
use notes_host::fleet::liveness::Liveness;
use notes_host::fleet::{Fleet, FleetSettings, Identity};
use notes_host::plugins::{PluginLimits, Runtime};
use notes_host::router::{AccountScope, NativeRouter, Router};
use notes_host::stores::{AsyncStore, BlockingStore, DataStores, Note, SqliteStore, StoreError};
use notes_routing::{IdList, NoteChange};
use uuid::Uuid;

const ACCOUNT: &str = "3f0c8a52-6d1e-4a57-9a3e-2b7d4c1e9f00";

/// Notes in memory: the dispatch benchmarks measure the boundary, not SQLite.
#[derive(Default)]
struct MemoryStore(RwLock<BTreeMap<(String, String), Note>>);

impl BlockingStore for MemoryStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        Ok(self.0.read().unwrap().get(&(account_id.to_owned(), note_id.to_owned())).cloned())
    }

    fn put(&self, note: &Note, _epoch: i64) -> Result<bool, StoreError> {
        let mut notes = self.0.write().unwrap();
        let key = (note.account_id.clone(), note.id.clone());
        if notes.get(&key).is_some_and(|n| n.version >= note.version) {
            return Ok(false);
        }
        notes.insert(key, note.clone());
        Ok(true)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, _epoch: i64) -> Result<bool, StoreError> {
        let mut notes = self.0.write().unwrap();
        let key = (account_id.to_owned(), note_id.to_owned());
        Ok(notes.get(&key).is_some_and(|n| n.version <= version) && notes.remove(&key).is_some())
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        let notes = self.0.read().unwrap();
        Ok(notes.keys().filter(|(a, _)| a == account_id).map(|(_, id)| id).collect())
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        Ok(self.list_ids(account_id)?.len() as u64)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(account_id, note_id)?.map(|n| n.version))
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.list_ids(account_id)?.iter().filter(|id| *id > after).take(limit).map(str::to_owned).collect())
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<notes_host::stores::StoredRow>, StoreError> {
        let found = note_ids.iter().map(|id| self.get(account_id, id)).collect::<Result<Vec<_>, _>>()?;
        Ok(found.into_iter().flatten().map(|note| notes_host::stores::StoredRow { note, deleted: false }).collect())
    }

    fn begin_batch(&self, _: &str, _: i64) -> Result<Box<dyn notes_host::stores::StoreBatch>, StoreError> {
        Err(StoreError::Internal("the dispatch benchmarks move no notes".into()))
    }

    fn raise_fence(&self, _: &str, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
}

impl AsyncStore for MemoryStore {}

fn note(id: usize, version: u64) -> Note {
    Note {
        id: format!("{:08}-0000-4000-8000-000000000000", id),
        account_id: ACCOUNT.into(),
        content: "x".repeat(200),
        created_at_ms: 1,
        updated_at_ms: 1,
        version,
    }
}

/// Legacy and new stores in memory, holding `notes` notes in the new store.
fn memory_stores(notes: usize) -> DataStores {
    let new = MemoryStore::default();
    for i in 0..notes {
        new.put(&note(i, 1), 0).unwrap();
    }
    DataStores { legacy: Arc::new(MemoryStore::default()), new: Some(Arc::new(new)) }
}

fn plugin_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("plugins/migrate.wasm")
}

fn migrate_plugin(reuse_instances: usize) -> Arc<dyn Router> {
    let path = plugin_path();
    let wasm = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build the plugins first (`cargo xtask build`)", path.display()));
    let runtime = Runtime::new(PluginLimits {
        deadline: Duration::from_secs(5),
        reuse_instances,
        ..PluginLimits::default()
    })
    .unwrap();
    let (component, _) = runtime.compile(&wasm).unwrap();
    Arc::new(runtime.instantiate(&component, "bench").unwrap())
}

/// A routing call driven to its end on the bench's thread (the calls are async:
/// on the host they run on the request's task).
fn dispatch(c: &mut Criterion) {
    use pollster::block_on;
    let routers: [(&str, Arc<dyn Router>); 3] = [
        ("wasm", migrate_plugin(0)),
        ("native", Arc::new(NativeRouter::new(notes_routing::migrate::Migrate))),
        ("wasm-reused-instance", migrate_plugin(16)),
    ];
    let mut group = c.benchmark_group("dispatch");
    for (name, router) in &routers {
        let stores = memory_stores(50);
        let id = note(7, 1).id;
        group.bench_function(format!("{name}/get"), |b| {
            b.iter(|| block_on(router.get_note(AccountScope::new(ACCOUNT.into(), 0, stores.clone()), black_box(&id), true)).unwrap().unwrap())
        });
        if *name == "wasm-reused-instance" {
            continue; // the cost of isolation is what it shows; one operation does
        }
        group.bench_function(format!("{name}/list-50"), |b| {
            b.iter(|| block_on(router.list_notes(AccountScope::new(ACCOUNT.into(), 0, stores.clone()), true)).unwrap().unwrap())
        });
        let big = memory_stores(1000);
        group.bench_function(format!("{name}/list-1000"), |b| {
            b.iter(|| block_on(router.list_notes(AccountScope::new(ACCOUNT.into(), 0, big.clone()), true)).unwrap().unwrap())
        });
        group.bench_function(format!("{name}/update"), |b| {
            let change = || NoteChange { id: id.clone(), content: "y".repeat(200), at_ms: 2 };
            b.iter(|| block_on(router.update_note(AccountScope::new(ACCOUNT.into(), 0, stores.clone()), change(), None, true)).unwrap().unwrap())
        });
    }
    group.finish();
}

/// One core module with a 17-page memory (a Rust plugin's initial size) and
/// one function: the least a component can be.
const MINIMAL_COMPONENT: &str = r#"(component
  (core module $m
    (memory (export "memory") 17)
    (func (export "answer") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "answer") (result u32) (canon lift (core func $i "answer"))))"#;

fn wasmtime_floor(c: &mut Criterion) {
    use wasmtime::Store;
    use wasmtime::component::{Component, Linker};

    let runtime = Runtime::new(PluginLimits::default()).unwrap();
    let engine = runtime.engine();
    let minimal = Component::new(engine, wat::parse_str(MINIMAL_COMPONENT).unwrap()).unwrap();
    let pre = Linker::<()>::new(engine).instantiate_pre(&minimal).unwrap();
    let store = || {
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(1_000);
        store
    };
    let mut group = c.benchmark_group("wasmtime");
    group.bench_function("minimal-component-fresh", |b| {
        b.iter(|| {
            let mut store = store();
            let instance = pre.instantiate(&mut store).unwrap();
            let answer = instance.get_typed_func::<(), (u32,)>(&mut store, "answer").unwrap();
            answer.call(&mut store, ()).unwrap()
        })
    });
    let mut kept = store();
    let instance = pre.instantiate(&mut kept).unwrap();
    let answer = instance.get_typed_func::<(), (u32,)>(&mut kept, "answer").unwrap();
    group.bench_function("minimal-component-reused", |b| b.iter(|| answer.call(&mut kept, ()).unwrap()));

    // The migrate plugin with its imports stubbed (they trap if called; none
    // is called): its shape's cost, three core instances and 25 imports.
    let wasm = std::fs::read(plugin_path()).unwrap();
    let (migrate, _) = runtime.compile(&wasm).unwrap();
    let mut linker = Linker::<()>::new(engine);
    linker.define_unknown_imports_as_traps(&migrate).unwrap();
    let pre = linker.instantiate_pre(&migrate).unwrap();
    group.bench_function("migrate-instantiate-drop", |b| b.iter(|| pre.instantiate(&mut store()).unwrap()));
    group.finish();
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("legacy.db")).unwrap();
    for i in 0..1000 {
        store.put(&note(i, 1), 0).unwrap();
    }
    let mut small = note(0, 1);
    small.account_id = "small".into();
    for i in 0..50 {
        store.put(&Note { id: format!("{i:08}"), ..small.clone() }, 0).unwrap();
    }
    let mut group = c.benchmark_group("store");
    let id = note(7, 1).id;
    group.bench_function("get", |b| b.iter(|| store.get(ACCOUNT, black_box(&id)).unwrap().unwrap()));
    group.bench_function("get-missing", |b| b.iter(|| store.get(ACCOUNT, black_box("nope")).unwrap()));
    group.bench_function("list-ids-50", |b| b.iter(|| store.list_ids(black_box("small")).unwrap()));
    group.bench_function("list-ids-1000", |b| b.iter(|| store.list_ids(black_box(ACCOUNT)).unwrap()));
    // Writes: fewer samples, each is a commit with an fsync.
    group.sample_size(20);
    let mut version = 1;
    group.bench_function("put", |b| {
        b.iter(|| {
            version += 1;
            assert!(store.put(&note(7, version), 0).unwrap());
        })
    });
    let mut next = 10_000;
    group.bench_function("delete-if-not-newer", |b| {
        b.iter_batched(
            || {
                next += 1;
                store.put(&note(next, 1), 0).unwrap();
                note(next, 1).id
            },
            |id| assert!(store.delete_if_not_newer(ACCOUNT, &id, 1, 0).unwrap()),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn flag(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let accounts = Arc::new(SqliteCoordination::open(&dir.path().join("accounts.db")).unwrap());
    let account = Uuid::new_v4();
    // Among many accounts, as in production: the read is a primary-key lookup.
    for i in 0..1000 {
        let id = if i == 500 { account } else { Uuid::new_v4() };
        let row = Account { id, name: "bench".into(), is_migrating: i % 2 == 0, shard: None, verified: None, was_migrating: i % 2 == 0, created_at_ms: 1, updated_at_ms: 1 };
        accounts.create_account(&row, Gate::Checked).unwrap();
    }
    let me = Identity { id: Uuid::new_v4(), name: "bench".into(), address: "-".into() };
    let fleet = Fleet::join(
        accounts.clone(),
        Liveness::lock_files(&dir.path().join("hosts"), &me.id.to_string()).unwrap(),
        me,
        &PluginSummary { digest: "native".into(), label: "bench".into(), supports_migration: true },
        FleetSettings::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut group = c.benchmark_group("flag");
    group.bench_function("flag-state-sql", |b| b.iter(|| accounts.flag_state(black_box(account)).unwrap().unwrap()));
    group.bench_function("fleet-admit", |b| b.iter(|| fleet.admit(black_box(account)).unwrap().is_migrating));
    group.finish();
    fleet.leave();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = dispatch, wasmtime_floor, store, flag
}
criterion_main!(benches);
