//! Routers for notes plugins, in plain Rust: the [`Router`] trait a plugin
//! implements, and the two routers this repo ships (`migrate`, `legacy`).
//!
//! The types here mirror the WIT package `notes:plugin` one to one; the
//! `notes-plugin-sdk` crate converts between them and the wit-bindgen types, so
//! a router never sees wit-bindgen and can be unit-tested natively (see
//! [`memory::MemoryStores`]) or compiled straight into the host.

mod ids;
pub mod legacy_only;
pub mod memory;
pub mod migrate;
pub mod ops;

pub use ids::IdList;

/// A stored note (WIT `note`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: String,
    pub account_id: String,
    pub content: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// 1 after create, +1 per update.
    pub version: u64,
}

/// What a client asked to write (WIT `note-change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteChange {
    pub id: String,
    pub content: String,
    pub at_ms: i64,
}

/// WIT `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotFound,
    VersionMismatch(u64),
    Conflict(String),
    Invalid(String),
    Unavailable(String),
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// WIT `move-report`: what [`Router::move_notes`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub moved: u32,
    pub in_place: u32,
    pub missing: u32,
}

/// WIT `plugin-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub supports_migration: bool,
}

/// WIT `store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    Legacy,
    New,
}

/// WIT `placement`: where a note belongs under the account's flag
/// ([`Router::home`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// In the legacy store only.
    Legacy,
    /// In the new store only.
    New,
    /// A copy in each store (dual writes, a mirror).
    Both,
}

impl Placement {
    /// The migrate rule: the new store when the flag is on and the host has
    /// one, else legacy. What the host assumes of a plugin built before WIT
    /// 0.4.0, and [`Router::home`]'s default.
    pub fn by_migrate_rule(new_configured: bool, is_migrating: bool) -> Self {
        if is_migrating && new_configured { Placement::New } else { Placement::Legacy }
    }

    /// Whether a note belonging here should have a live copy in `store`.
    pub fn holds(self, store: Store) -> bool {
        matches!((self, store), (Placement::Both, _) | (Placement::Legacy, Store::Legacy) | (Placement::New, Store::New))
    }
}

/// The data stores of one account (WIT interface `stores`). The host's
/// implementation is already bound to the request's account.
pub trait Stores {
    fn get(&self, store: Store, note_id: &str) -> Result<Option<Note>>;
    /// Writes unless this version or a newer one is recorded; true if written.
    fn put(&self, store: Store, note: &Note) -> Result<bool>;
    /// Deletes up to `version` and leaves a tombstone there; true if a live
    /// note was removed.
    fn delete_if_not_newer(&self, store: Store, note_id: &str, version: u64) -> Result<bool>;
    /// The live notes' ids, sorted.
    fn list_ids(&self, store: Store) -> Result<IdList>;
    fn is_configured(&self, store: Store) -> bool;
    /// The version recorded for the id, live or deleted; `None` if never written.
    fn recorded_version(&self, store: Store, note_id: &str) -> Result<Option<u64>>;
}

/// A router: decides, per request, how a note operation is routed between the
/// legacy and the new store (WIT interface `router`; `note-store` in 0.1).
pub trait Router {
    fn info(&self) -> PluginInfo;
    fn create_note(&self, stores: &dyn Stores, account_id: &str, change: NoteChange, is_migrating: bool) -> Result<Note>;
    fn get_note(&self, stores: &dyn Stores, account_id: &str, note_id: &str, is_migrating: bool) -> Result<Note>;
    /// The account's notes' ids, sorted, each once.
    fn list_notes(&self, stores: &dyn Stores, account_id: &str, is_migrating: bool) -> Result<IdList>;
    fn update_note(
        &self,
        stores: &dyn Stores,
        account_id: &str,
        change: NoteChange,
        expected_version: Option<u64>,
        is_migrating: bool,
    ) -> Result<Note>;
    fn delete_note(&self, stores: &dyn Stores, account_id: &str, note_id: &str, is_migrating: bool) -> Result<()>;
    /// Puts each note where the account's mode wants it, keeping its version.
    fn move_notes(&self, stores: &dyn Stores, account_id: &str, note_ids: &[String], is_migrating: bool) -> Result<MoveReport>;
    /// Where the note belongs under `is_migrating` (WIT `homes`, per id): the
    /// host's verify and the account states ask it, and `plugin check`
    /// checks it against where this router's writes put notes. Override it
    /// when the writes place notes otherwise than the migrate rule (the
    /// default, [`Placement::by_migrate_rule`]): by the note's id, or in
    /// both stores (dual writes). `stores` may be read; what is written
    /// while the host asks is discarded.
    fn home(&self, stores: &dyn Stores, account_id: &str, note_id: &str, is_migrating: bool) -> Result<Placement> {
        let _ = (account_id, note_id);
        Ok(Placement::by_migrate_rule(stores.is_configured(Store::New), is_migrating))
    }
}
