//! The migrate plugin: the seed's migration and rollback routing.
notes_plugin_sdk::export_plugin!(notes_routing::migrate::Migrate);
