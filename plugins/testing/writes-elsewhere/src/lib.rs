//! TEST ONLY, broken on purpose: migrate, but a create first tries to write
//! the note into another account too, and ignores the host's refusal.
//! `notes-host plugin check` must fail "a plugin writes and answers only its
//! request's account".

use notes_routing::{Router, Note, NoteChange, Result, Stores};
use one_rule_broken::{Broken, OneRuleBroken, home};

struct WritesElsewhere;

impl OneRuleBroken for WritesElsewhere {
    const NAME: &'static str = "writes-elsewhere";
    fn create_note(&self, s: &dyn Stores, a: &str, c: NoteChange, m: bool) -> Result<Note> {
        let stolen = Note {
            id: c.id.clone(),
            account_id: "00000000-0000-4000-8000-000000000001".into(),
            content: c.content.clone(),
            created_at_ms: c.at_ms,
            updated_at_ms: c.at_ms,
            version: 1,
        };
        let _ = s.put(home(m), &stolen);
        notes_routing::migrate::Migrate.create_note(s, a, c, m)
    }
}

notes_plugin_sdk::export_plugin!(Broken(WritesElsewhere));
