//! The router: whatever decides, per request, how a note operation is routed
//! between the legacy and the new store. A Wasm plugin is one
//! (`plugins::Plugin`); the same routing compiled into the host is another
//! (`native`, the benchmark baseline and the in-process tests' router).
//! The rest of the host sees only [`Router`], and knows no wasmtime.

mod batch;
mod instances;
mod native;
mod scope;

use std::time::Duration;

use notes_routing::{IdList, MoveReport, Note, NoteChange, Placement};

pub use native::{FailingRouter, NativeRouter};
pub use batch::ScopeBatch;
pub use scope::AccountScope;
pub use instances::Instances;

/// A routing operation: what a call asks the router to do. Its name is the
/// WIT export's, in snake case, as the metrics and the fault records show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateNote,
    GetNote,
    ListNotes,
    UpdateNote,
    DeleteNote,
    MoveNotes,
    Homes,
}

impl Op {
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::CreateNote => "create_note",
            Op::GetNote => "get_note",
            Op::ListNotes => "list_notes",
            Op::UpdateNote => "update_note",
            Op::DeleteNote => "delete_note",
            Op::MoveNotes => "move_notes",
            Op::Homes => "homes",
        }
    }

    /// A note request that only reads: its answer is as good as the flag
    /// it ran under (`NoteService::route_note` refuses one whose lease lapsed).
    pub const fn is_read(self) -> bool {
        matches!(self, Op::GetNote | Op::ListNotes)
    }
}

/// What a failed plugin call tells the caller.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    #[error("plugin {plugin} did not finish within {deadline:?}")]
    Timeout { plugin: String, deadline: Duration },
    #[error("plugin {plugin} ran out of fuel ({fuel} units)")]
    OutOfFuel { plugin: String, fuel: u64 },
    #[error("plugin {plugin} failed: {message}")]
    Trapped { plugin: String, message: String },
    /// It asked for more than its allowance (linear memory, table elements):
    /// refused by the host's limiter, which names the limit in `message`.
    #[error("plugin {plugin} failed: {message}")]
    OverLimit { plugin: String, message: String },
    /// Every plugin instance slot is in use (HTTP 503, retry).
    #[error("plugin {plugin} could not start: the host runs its maximum of plugin instances ({message}); retry shortly")]
    Busy { plugin: String, message: String },
}

/// What a routing call returns: the routing's own answer (`Ok` or a WIT
/// `error`), or a failure of the code that routes (trap, deadline, fuel).
pub type Routed<T> = Result<Result<T, notes_routing::Error>, PluginFailure>;

/// Whatever routes note requests: a Wasm plugin, or the same routing
/// compiled natively into the host (the benchmark baseline). Every call gets
/// the stores bound to the request's account, and the account's flag.
///
/// The calls are async: a Wasm plugin runs on the request's own task, and
/// yields at each epoch tick and while it waits for a write's commit
/// (ARCHITECTURE.md, "The note path").
#[async_trait::async_trait]
pub trait Router: RouterInfo {
    async fn create_note(&self, scope: AccountScope, change: NoteChange, is_migrating: bool) -> Routed<Note>;

    async fn get_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<Note>;

    async fn list_notes(&self, scope: AccountScope, is_migrating: bool) -> Routed<IdList>;

    async fn update_note(&self, scope: AccountScope, change: NoteChange, expected: Option<u64>, is_migrating: bool) -> Routed<Note>;

    async fn delete_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<()>;

    /// Puts each note where the account's mode wants it (backfill, bulk rollback).
    async fn move_notes(&self, scope: AccountScope, note_ids: &[String], is_migrating: bool) -> Routed<MoveReport>;

    /// Where each of `note_ids` belongs under `is_migrating`, one placement
    /// per id in their order (WIT 0.4's `homes`; the migrate rule for a
    /// plugin built before it). What verify and the account states judge
    /// notes by. The scope should be read-only: what a router writes in it
    /// must not land (`AccountScope::batched`, never committed).
    async fn homes(&self, scope: AccountScope, note_ids: &IdList, is_migrating: bool) -> Routed<Vec<Placement>>;
}

/// What the host knows of a router besides its calls: its name and digest,
/// what it supports, and how its instances are made.
pub trait RouterInfo: Send + Sync {
    /// `name@version`, as in `X-Plugin`.
    fn label(&self) -> &str;

    /// What the registry knows it by: the sha256 of its `.wasm`, or `native`.
    fn digest(&self) -> &str;

    fn supports_migration(&self) -> bool;

    /// True if [`Router::homes`] is the migrate rule without asking the
    /// router (a plugin built before WIT 0.4.0): the host may then count
    /// notes per store instead of listing them and calling.
    fn homes_by_migrate_rule(&self) -> bool {
        false
    }

    /// What its calls have cost on this host, if it runs in instances (a
    /// Wasm plugin): for authors, in `GET /plugins` and `plugin check`.
    fn usage(&self) -> Option<InstanceUsage> {
        None
    }

    /// How its instances are made, if it runs in instances (a Wasm plugin).
    fn instances(&self) -> Option<Instances> {
        None
    }

    /// Follows a new setting from its next call on (a Wasm plugin; others
    /// have no instances).
    fn set_instances(&self, _instances: Instances) {}

    /// Whether a write through it holds its thread until the commit (the
    /// native routers: their store calls are synchronous), so a write must
    /// not run on an async worker. A Wasm plugin's writes wait as async
    /// host imports.
    fn writes_block(&self) -> bool {
        true
    }
}

/// What a plugin's instances cost, since it was loaded on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceUsage {
    /// Routing calls made.
    pub calls: u64,
    /// Mean time of a call, instantiation included (what a request pays).
    pub mean_call_micros: f64,
    /// Linear memory of a new instance, before any call.
    pub start_memory_bytes: usize,
    /// Most linear memory an instance held after a call.
    pub peak_memory_bytes: usize,
    /// Instances waiting for their account's next request (`Instances::PerAccount`).
    pub kept_instances: usize,
}

