//! The last count of notes away from home per account, as the serving
//! plugin's `homes` judged them: `GET /metrics`, `GET /migration` and the
//! console work out every account's state on each scrape, and a migrated or
//! rolled-back account would otherwise cost a plugin call (a fresh instance,
//! counted in the plugin's metrics and its health) every time.
//!
//! `homes` is a function of the plugin, the flag and the note ids, so an
//! answer stands while the same plugin sees the same ids in the same stores
//! under the same flag. One entry per account, replaced when any of that
//! changes: bounded by the number of accounts, whoever scrapes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use notes_routing::IdList;
use uuid::Uuid;

/// What an account's count was worked out from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    digest: String,
    is_migrating: bool,
    /// A hash of the live ids in legacy and in new.
    ids: u64,
}

impl Seen {
    pub(super) fn new(digest: &str, is_migrating: bool, legacy: &IdList, new: &IdList) -> Self {
        let mut hasher = DefaultHasher::new();
        for (store, ids) in [(0u8, legacy), (1u8, new)] {
            store.hash(&mut hasher);
            ids.len().hash(&mut hasher);
            for id in ids.iter() {
                id.hash(&mut hasher);
            }
        }
        Seen { digest: digest.to_owned(), is_migrating, ids: hasher.finish() }
    }
}

#[derive(Default)]
pub(super) struct AwayMemo {
    counts: Mutex<HashMap<Uuid, (Seen, u64)>>,
}

impl AwayMemo {
    /// The count worked out from `seen`, if it is the last one kept for `account`.
    pub(super) fn get(&self, account: Uuid, seen: &Seen) -> Option<u64> {
        let counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.get(&account).filter(|(kept, _)| kept == seen).map(|(_, away)| *away)
    }

    pub(super) fn keep(&self, account: Uuid, seen: Seen, away: u64) {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(account, (seen, away));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> IdList {
        list.iter().copied().collect()
    }

    #[test]
    fn a_count_stands_only_for_the_same_plugin_flag_and_ids() {
        let memo = AwayMemo::default();
        let account = Uuid::new_v4();
        let seen = Seen::new("d1", false, &ids(&["a", "b"]), &ids(&["c"]));
        memo.keep(account, seen.clone(), 2);
        assert_eq!(memo.get(account, &seen), Some(2));
        assert_eq!(memo.get(Uuid::new_v4(), &seen), None, "another account");
        for changed in [
            Seen::new("d2", false, &ids(&["a", "b"]), &ids(&["c"])),
            Seen::new("d1", true, &ids(&["a", "b"]), &ids(&["c"])),
            Seen::new("d1", false, &ids(&["a"]), &ids(&["b", "c"])),
            Seen::new("d1", false, &ids(&["a", "b", "c"]), &ids(&[])),
        ] {
            assert_eq!(memo.get(account, &changed), None, "{changed:?}");
        }
    }
}
