//! Clients of the notes-host HTTP API, kept out of the server crate (which
//! depends on no HTTP client):
//!
//! - [`Client`]: the one typed client of the API (simulator, plugin CLI,
//!   scenario tests);
//! - [`launcher`]: starts `notes-host serve` and waits for its
//!   `listening on` line (simulator, tests, `notes-host launch` for the
//!   benchmark scripts);
//! - [`sim`]: `notes-host sim`, the strict-client simulator;
//! - [`plugin_cli`]: `notes-host plugin`, the CLI face of `/plugins`;
//! - [`migrate_cli`]: `notes-host migrate`, jobs, the rollout and the kill
//!   switch, with progress bars.

mod cli;
mod http;
pub mod launcher;
pub mod migrate_cli;
pub mod plugin_cli;
mod plugin_template;
pub mod sim;

pub use cli::exit_quietly_on_broken_pipe;
pub use http::{AccountChange, Body, Client, NewAccount, NewNote, Response, TransportError};
