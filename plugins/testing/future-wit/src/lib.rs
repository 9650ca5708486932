//! TEST ONLY. A plugin built against `notes:plugin@0.9.0`; the host serves
//! 0.1.x and 0.2.x and must refuse it on upload with both versions in the message.

wit_bindgen::generate!({ world: "note-plugin", path: "wit" });

use exports::notes::plugin::note_store::Guest;
use notes::plugin::types::PluginInfo;

struct Future;

impl Guest for Future {
    fn info() -> PluginInfo {
        PluginInfo { name: "future-wit".into(), version: "0.9.0".into(), supports_migration: true }
    }
    fn search_notes(_: String, _: String) -> Vec<String> {
        Vec::new()
    }
}

export!(Future);
