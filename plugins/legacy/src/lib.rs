//! The legacy plugin ("old code"): every note in the legacy store.
notes_plugin_sdk::export_plugin!(notes_routing::legacy::Legacy);
