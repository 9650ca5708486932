//! notes-host: a notes service whose routing between a legacy and a new data
//! store is decided per request by a WebAssembly plugin and the account's
//! `is_migrating` flag. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod api;
pub mod app;
pub mod clock;
mod db;
mod files;
pub mod fleet;
pub mod layout;
pub mod native;
pub mod plugin_health;
pub mod plugins;
pub mod serve;
pub mod stores;
