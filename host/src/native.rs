//! The native baseline: a routing strategy compiled into the host, behind
//! the same [`NoteRouter`] as a Wasm plugin, so the Wasm boundary is the only
//! difference between the two (same HTTP, flag reads, stores). Selected with
//! `--strategy native-migrate`; used to measure what the plugin costs.

use notes_routing::{Note, NoteChange, Strategy};

use crate::plugins::{AccountScope, NoteRouter, Routed};

pub struct NativeRouter<S> {
    strategy: S,
    label: String,
}

impl<S: Strategy> NativeRouter<S> {
    pub fn new(strategy: S) -> Self {
        let info = strategy.info();
        NativeRouter { label: format!("native-{}@{}", info.name, info.version), strategy }
    }
}

impl<S: Strategy + Send + Sync> NoteRouter for NativeRouter<S> {
    fn label(&self) -> &str {
        &self.label
    }

    fn supports_migration(&self) -> bool {
        self.strategy.info().supports_migration
    }

    fn create_note(&self, scope: AccountScope, change: NoteChange, is_migrating: bool) -> Routed<Note> {
        Ok(self.strategy.create_note(&scope, &scope.account_id().to_owned(), change, is_migrating))
    }

    fn get_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<Note> {
        Ok(self.strategy.get_note(&scope, scope.account_id(), note_id, is_migrating))
    }

    fn list_notes(&self, scope: AccountScope, is_migrating: bool) -> Routed<Vec<String>> {
        Ok(self.strategy.list_notes(&scope, scope.account_id(), is_migrating))
    }

    fn update_note(&self, scope: AccountScope, change: NoteChange, expected: Option<u64>, is_migrating: bool) -> Routed<Note> {
        Ok(self.strategy.update_note(&scope, scope.account_id(), change, expected, is_migrating))
    }

    fn delete_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<()> {
        Ok(self.strategy.delete_note(&scope, scope.account_id(), note_id, is_migrating))
    }
}
