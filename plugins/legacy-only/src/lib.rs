//! The legacy-only plugin ("old code", from before migrations): every note
//! in the legacy store.
notes_plugin_sdk::export_plugin!(notes_routing::legacy_only::LegacyOnly);
