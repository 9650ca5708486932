//! TEST ONLY, broken on purpose: migrate, but `list-notes` names each id
//! twice. `notes-host plugin check` must fail "list returns each id once,
//! sorted" and pass the rest.

use notes_routing::{Router, IdList, Result, Stores};
use one_rule_broken::{Broken, OneRuleBroken};

struct ListDuplicates;

impl OneRuleBroken for ListDuplicates {
    const NAME: &'static str = "list-duplicates";
    fn list_notes(&self, s: &dyn Stores, a: &str, m: bool) -> Result<IdList> {
        let ids = notes_routing::migrate::Migrate.list_notes(s, a, m)?.into_joined();
        Ok(IdList::from_joined(format!("{ids}{ids}")))
    }
}

notes_plugin_sdk::export_plugin!(Broken(ListDuplicates));
