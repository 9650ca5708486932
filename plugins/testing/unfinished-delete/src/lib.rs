//! TEST ONLY, broken on purpose: migrate, but an update that meets a
//! half-done delete (the note live in one store, a newer tombstone in the
//! other) answers conflict instead of finishing the delete, so a client
//! retries forever. `notes-host plugin check` must fail "a half-done delete
//! is finished, not retried forever".

use notes_routing::{Error, Note, NoteChange, Result, Router, Store, Stores};
use one_rule_broken::{Broken, OneRuleBroken, live_copy};

struct UnfinishedDelete;

impl OneRuleBroken for UnfinishedDelete {
    const NAME: &'static str = "unfinished-delete";
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        if let Some(live) = live_copy(s, &c.id)? {
            for store in [Store::Legacy, Store::New] {
                if s.is_configured(store) && s.get(store, &c.id)?.is_none() && s.recorded_version(store, &c.id)? > Some(live.version) {
                    return Err(Error::Conflict(format!("note {} kept changing; retry", c.id)));
                }
            }
        }
        notes_routing::migrate::Migrate.update_note(s, a, c, v, m)
    }
}

notes_plugin_sdk::export_plugin!(Broken(UnfinishedDelete));
