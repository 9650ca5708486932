//! notes-host: a notes service whose routing between a legacy and a new data
//! store is decided per request by a WebAssembly plugin and the account's
//! `is_migrating` flag. See ARCHITECTURE.md for the map.

pub mod api;
pub mod app;
pub mod backends;
mod blocking;
pub mod catalog;
pub mod clock;
pub mod coordination;
mod db;
mod files;
pub mod freed_memory;
mod lock;
mod pg;
pub mod fleet;
mod metrics;
mod plugin_health;
pub mod plugins;
pub mod request_id;
pub mod router;
pub mod serve;
mod stable_hash;
pub mod stores;
