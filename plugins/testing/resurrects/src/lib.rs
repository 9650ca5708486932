//! TEST ONLY, broken on purpose: migrate, but an update that holds an
//! expected version and finds the note deleted writes it again, above the
//! delete's tombstone: a write that raced a delete resurrects the note.
//! `notes-host plugin check` must fail "a write that raced a delete cannot
//! resurrect the note".

use notes_routing::{Router, Error, Note, NoteChange, Result, Store, Stores};
use one_rule_broken::{Broken, OneRuleBroken, home};

struct Resurrects;

impl OneRuleBroken for Resurrects {
    const NAME: &'static str = "resurrects";
    fn update_note(&self, s: &dyn Stores, a: &str, c: NoteChange, v: Option<u64>, m: bool) -> Result<Note> {
        match notes_routing::migrate::Migrate.update_note(s, a, c.clone(), v, m) {
            Err(Error::NotFound) if v.is_some() => {
                let above = [Store::Legacy, Store::New].iter().filter(|st| s.is_configured(**st)).map(|st| s.recorded_version(*st, &c.id)).collect::<Result<Vec<_>>>()?;
                let version = above.into_iter().flatten().max().unwrap_or(0) + 1;
                let note = Note { id: c.id, account_id: a.into(), content: c.content, created_at_ms: c.at_ms, updated_at_ms: c.at_ms, version };
                s.put(home(m), &note)?;
                Ok(note)
            }
            answer => answer,
        }
    }
}

notes_plugin_sdk::export_plugin!(Broken(Resurrects));
