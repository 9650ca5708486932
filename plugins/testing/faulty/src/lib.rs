//! TEST ONLY. The migrate router, plus faults a test triggers through the
//! content of the note it creates or updates:
//!
//! - `fault:panic` — panics (the instance traps).
//! - `fault:crash-after-write` — an update writes the new version, then the
//!   plugin crashes before cleaning up the other store (a move cut in half).
//! - `fault:loop` — never returns (the host's deadline must stop it).
//! - `fault:sleep-forever` — sleeps an hour, again and again, through WASI
//!   (`monotonic-clock.subscribe-duration`, then `pollable.block`): in the
//!   host, where no deadline could stop it, unless the host makes every such
//!   wait end at once.
//! - `fault:alloc` — allocates without end (the host's memory cap must stop it).
//! - `fault:slow` — a create spins for a while (≈0.2 s here; the guest has no
//!   clock) before succeeding: a request still running during a swap.
//! - `fault:slow-read` — created like any note, but a get that reads it
//!   spins for a while (≈1.5 s here) before answering: a read still running
//!   when its host is stopped past its lease and wakes.
//! - `fault:chatty` — prints 1 KiB to stderr (a panic if the write fails,
//!   as `eprintln!` does), then behaves like any note.
//! - `fault:huge` — a create returns a note of 24 MiB (the host must refuse
//!   to pass it on).
//! - `fault:write-other-account` — a create tries to write the note under
//!   another account id (the host's store scope must refuse it).
//! - `fault:loop-on-move` — created like any note, but a move (backfill,
//!   bulk rollback) that comes to it loops like `fault:loop`, after having
//!   moved the notes before it in its batch.
//!
//! Any other content behaves exactly like the migrate plugin.

use notes_routing::migrate::Migrate;
use notes_routing::{IdList, MoveReport, Note, NoteChange, PluginInfo, Result, Router, Store, Stores};

struct Faulty;

fn trigger(content: &str) {
    match content {
        "fault:panic" => panic!("the faulty plugin panics, as asked"),
        "fault:loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "fault:sleep-forever" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "fault:slow" => spin(400_000_000),
        "fault:chatty" => eprintln!("{}", "chatty plugin ".repeat(73)),
        "fault:alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {}
    }
}

/// Busy for `rounds` additions (the guest has no clock): ≈0.2 s per 400M here.
fn spin(rounds: u64) {
    let mut n: u64 = 0;
    for i in 0..rounds {
        n = std::hint::black_box(n.wrapping_add(i));
    }
}

/// Passes every call through, but dies right after the first successful put.
struct CrashAfterFirstPut<'a>(&'a dyn Stores);

impl Stores for CrashAfterFirstPut<'_> {
    fn get(&self, s: Store, id: &str) -> Result<Option<Note>> {
        self.0.get(s, id)
    }
    fn put(&self, s: Store, note: &Note) -> Result<bool> {
        let written = self.0.put(s, note)?;
        if written {
            panic!("the faulty plugin crashes after writing {} v{} to {s:?}", note.id, note.version);
        }
        Ok(written)
    }
    fn delete_if_not_newer(&self, s: Store, id: &str, version: u64) -> Result<bool> {
        self.0.delete_if_not_newer(s, id, version)
    }
    fn list_ids(&self, s: Store) -> Result<IdList> {
        self.0.list_ids(s)
    }
    fn is_configured(&self, s: Store) -> bool {
        self.0.is_configured(s)
    }
    fn recorded_version(&self, s: Store, id: &str) -> Result<Option<u64>> {
        self.0.recorded_version(s, id)
    }
}

impl Router for Faulty {
    fn info(&self) -> PluginInfo {
        PluginInfo { name: "faulty".into(), version: env!("CARGO_PKG_VERSION").into(), supports_migration: true }
    }
    fn create_note(&self, stores: &dyn Stores, account: &str, change: NoteChange, migrating: bool) -> Result<Note> {
        trigger(&change.content);
        if change.content == "fault:huge" {
            let huge = "x".repeat(24 << 20);
            return Ok(Note { id: change.id, account_id: account.into(), content: huge, created_at_ms: 0, updated_at_ms: 0, version: 1 });
        }
        if change.content == "fault:write-other-account" {
            let stolen = Note {
                id: change.id,
                account_id: "00000000-0000-4000-8000-000000000000".into(),
                content: change.content,
                created_at_ms: change.at_ms,
                updated_at_ms: change.at_ms,
                version: 1,
            };
            stores.put(Store::Legacy, &stolen)?;
            return Ok(stolen);
        }
        Migrate.create_note(stores, account, change, migrating)
    }
    fn get_note(&self, stores: &dyn Stores, account: &str, id: &str, migrating: bool) -> Result<Note> {
        let note = Migrate.get_note(stores, account, id, migrating)?;
        if note.content == "fault:slow-read" {
            spin(3_000_000_000);
        }
        Ok(note)
    }
    fn list_notes(&self, stores: &dyn Stores, account: &str, migrating: bool) -> Result<IdList> {
        Migrate.list_notes(stores, account, migrating)
    }
    fn update_note(
        &self,
        stores: &dyn Stores,
        account: &str,
        change: NoteChange,
        expected: Option<u64>,
        migrating: bool,
    ) -> Result<Note> {
        trigger(&change.content);
        if change.content == "fault:crash-after-write" {
            return Migrate.update_note(&CrashAfterFirstPut(stores), account, change, expected, migrating);
        }
        Migrate.update_note(stores, account, change, expected, migrating)
    }
    fn delete_note(&self, stores: &dyn Stores, account: &str, id: &str, migrating: bool) -> Result<()> {
        Migrate.delete_note(stores, account, id, migrating)
    }
    fn move_notes(&self, stores: &dyn Stores, account: &str, ids: &[String], migrating: bool) -> Result<MoveReport> {
        let from = if migrating { Store::Legacy } else { Store::New };
        for (i, id) in ids.iter().enumerate() {
            if stores.get(from, id)?.is_some_and(|n| n.content == "fault:loop-on-move") {
                Migrate.move_notes(stores, account, &ids[..i], migrating)?;
                trigger("fault:loop");
            }
        }
        Migrate.move_notes(stores, account, ids, migrating)
    }
}

notes_plugin_sdk::export_plugin!(Faulty);
