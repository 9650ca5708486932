//! TEST ONLY, broken on purpose: migrate, but an update of a note at
//! version 2 answers the new content at version 2 (an off-by-one a real
//! strategy could have): the version does not grow. `notes-host plugin
//! check` must fail "versions grow by one".

use notes_routing::{Note, NoteChange, Result, Router, Stores};
use one_rule_broken::{Broken, OneRuleBroken, home, live_copy};

struct VersionStuck;

impl OneRuleBroken for VersionStuck {
    const NAME: &'static str = "version-stuck";
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        match live_copy(s, &c.id)? {
            Some(current) if current.version == 2 && v.is_none_or(|v| v == 2) => {
                let note = Note { content: c.content, updated_at_ms: c.at_ms, ..current };
                let _ = s.put(home(m), &note); // not newer: the store keeps what it has
                Ok(note)
            }
            _ => notes_routing::migrate::Migrate.update_note(s, a, c, v, m),
        }
    }
}

notes_plugin_sdk::export_plugin!(Broken(VersionStuck));
