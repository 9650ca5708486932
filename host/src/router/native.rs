//! Routers compiled into the host, behind the same [`Router`] as a Wasm
//! plugin, so the Wasm boundary is the only difference between the two
//! (same HTTP, flag reads, stores):
//! - [`NativeRouter`] runs a `notes_routing::Router` (a plugin's routing, as plain Rust) natively. Selected with
//!   `--routing native-migrate`, it measures what the plugin costs; in
//!   in-process tests it stands in for the compiled plugins.
//! - [`FailingRouter`] fails every call as a trapping plugin does: the
//!   in-process tests' broken plugin.

use notes_routing::{IdList, MoveReport, Note, NoteChange, Placement};

use super::{AccountScope, PluginFailure, Routed, Router, RouterInfo};

pub struct NativeRouter<S> {
    routing: S,
    label: String,
    digest: String,
}

impl<S: notes_routing::Router> NativeRouter<S> {
    /// Known as `native` (it is not in any registry).
    pub fn new(routing: S) -> Self {
        Self::with_digest(routing, "native".into())
    }

    /// Known by `digest`, as if a registry had stored it.
    pub fn with_digest(routing: S, digest: String) -> Self {
        let info = routing.info();
        NativeRouter { label: format!("native-{}@{}", info.name, info.version), routing, digest }
    }
}

impl<S: notes_routing::Router + Send + Sync> RouterInfo for NativeRouter<S> {
    fn label(&self) -> &str {
        &self.label
    }

    fn digest(&self) -> &str {
        &self.digest
    }

    fn supports_migration(&self) -> bool {
        self.routing.info().supports_migration
    }
}

#[async_trait::async_trait]
impl<S: notes_routing::Router + Send + Sync> Router for NativeRouter<S> {
    async fn create_note(&self, scope: AccountScope, change: NoteChange, is_migrating: bool) -> Routed<Note> {
        Ok(self.routing.create_note(&scope, &scope.account_id().to_owned(), change, is_migrating))
    }

    async fn get_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<Note> {
        Ok(self.routing.get_note(&scope, scope.account_id(), note_id, is_migrating))
    }

    async fn list_notes(&self, scope: AccountScope, is_migrating: bool) -> Routed<IdList> {
        Ok(self.routing.list_notes(&scope, scope.account_id(), is_migrating))
    }

    async fn update_note(&self, scope: AccountScope, change: NoteChange, expected: Option<u64>, is_migrating: bool) -> Routed<Note> {
        Ok(self.routing.update_note(&scope, scope.account_id(), change, expected, is_migrating))
    }

    async fn delete_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<()> {
        Ok(self.routing.delete_note(&scope, scope.account_id(), note_id, is_migrating))
    }

    async fn move_notes(&self, scope: AccountScope, note_ids: &[String], is_migrating: bool) -> Routed<MoveReport> {
        Ok(self.routing.move_notes(&scope, scope.account_id(), note_ids, is_migrating))
    }

    /// The routing's own `home` per note (the migrate rule unless it says otherwise).
    async fn homes(&self, scope: AccountScope, note_ids: &IdList, is_migrating: bool) -> Routed<Vec<Placement>> {
        Ok(note_ids.iter().map(|id| self.routing.home(&scope, scope.account_id(), id, is_migrating)).collect())
    }
}

/// Every call fails (`Trapped`), and the stores are never touched.
pub struct FailingRouter {
    label: String,
    digest: String,
    supports_migration: bool,
}

impl FailingRouter {
    pub fn new(label: &str, digest: String, supports_migration: bool) -> Self {
        FailingRouter { label: label.to_owned(), digest, supports_migration }
    }

    fn fail<T>(&self) -> Routed<T> {
        Err(PluginFailure::Trapped { plugin: self.label.clone(), message: "wasm trap: unreachable (a failing router)".into() })
    }
}

impl RouterInfo for FailingRouter {
    fn label(&self) -> &str {
        &self.label
    }

    fn digest(&self) -> &str {
        &self.digest
    }

    fn supports_migration(&self) -> bool {
        self.supports_migration
    }
}

#[async_trait::async_trait]
impl Router for FailingRouter {
    async fn create_note(&self, _: AccountScope, _: NoteChange, _: bool) -> Routed<Note> {
        self.fail()
    }

    async fn get_note(&self, _: AccountScope, _: &str, _: bool) -> Routed<Note> {
        self.fail()
    }

    async fn list_notes(&self, _: AccountScope, _: bool) -> Routed<IdList> {
        self.fail()
    }

    async fn update_note(&self, _: AccountScope, _: NoteChange, _: Option<u64>, _: bool) -> Routed<Note> {
        self.fail()
    }

    async fn delete_note(&self, _: AccountScope, _: &str, _: bool) -> Routed<()> {
        self.fail()
    }

    async fn move_notes(&self, _: AccountScope, _: &[String], _: bool) -> Routed<MoveReport> {
        self.fail()
    }

    async fn homes(&self, _: AccountScope, _: &IdList, _: bool) -> Routed<Vec<Placement>> {
        self.fail()
    }
}
