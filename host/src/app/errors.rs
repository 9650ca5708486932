//! What can go wrong in an operation, and how the other layers' errors
//! become `AppError` in the words an operator needs.

use uuid::Uuid;

use crate::catalog::RegistryError;
use crate::coordination::CoordinationError;
use crate::fleet::{FleetError, HostView};
use crate::router::PluginFailure;
use crate::stores::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    /// A note's content or an account's name over its limit (HTTP 400). The
    /// text is Notely's, which its clients show (it says characters, but
    /// Notely counts bytes too); the API adds the bytes in `detail`.
    #[error("{what} too long (max {max_bytes} characters)")]
    TooLong { what: &'static str, max_bytes: usize, sent_bytes: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The deployment gate refused to turn migration on.
    #[error("{0}")]
    Gate(String),
    /// A rollout's turn-on, refused because the kill switch was pressed after it began (HTTP 409).
    #[error("{0}")]
    Stopped(String),
    #[error("version mismatch: the note is at version {current}")]
    VersionMismatch { current: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// One account asks for more at once than it may have (HTTP 429).
    #[error("{0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    /// A plugin's own failure (a trap, a panic, an internal error): its
    /// message is kept for operators under `error_id` (`plugin_faults`).
    #[error("plugin {plugin} failed; an operator can look this failure up as error {error_id} (GET /plugins/{digest}/errors)")]
    PluginFault {
        plugin: String,
        /// The plugin's digest, short (12 hex digits) as `X-Plugin` shows it, or `native`.
        digest: String,
        error_id: String,
    },
    /// An uploaded plugin this host cannot run (HTTP 422).
    #[error("plugin rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Internal(String),
}

/// The fleet's answers, in the words an operator needs.
impl From<FleetError> for AppError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::NoAccount(_) => no_account(),
            FleetError::AccountExists(_) => AppError::Conflict(e.to_string()),
            FleetError::HostsCannotMigrate(hosts) => AppError::Gate(format!(
                "cannot turn isMigrating on: {} host(s) run a plugin that does not support migration: {}; \
                 old code running beside a migration loses notes. Upgrade them first (a host that stopped counts until its \
                 process has ended, or on PostgreSQL until its lease lapses)",
                hosts.len(),
                hosts.iter().map(HostView::describe).collect::<Vec<_>>().join(", ")
            )),
            FleetError::AccountsMigrating { plugin, accounts } => AppError::Gate(format!(
                "plugin {plugin} does not support migration, but {} account(s) are migrating: {}; turn their isMigrating off first",
                accounts.len(),
                accounts.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            )),
            FleetError::FlipInProgress(_) => AppError::Conflict(e.to_string()),
            FleetError::Stopped(m) => AppError::Stopped(m),
            FleetError::FlipFailed(m) | FleetError::Busy(m) | FleetError::Unavailable(m) => AppError::Unavailable(m),
            FleetError::AccountSaturated { .. } => AppError::TooManyRequests(e.to_string()),
        }
    }
}

/// Notely's text: the id is the one the client asked for.
pub(super) fn no_account() -> AppError {
    AppError::NotFound("Account not found".into())
}

pub(super) fn internal(e: anyhow::Error) -> AppError {
    AppError::Internal(format!("{e:#}"))
}

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Rejected(m) => AppError::Rejected(m),
            RegistryError::Unknown(_) => AppError::NotFound(e.to_string()),
            RegistryError::Failed(e) => internal(e),
        }
    }
}

/// Reads and renames of accounts, straight from the coordination state.
impl From<CoordinationError> for AppError {
    fn from(e: CoordinationError) -> Self {
        match e {
            CoordinationError::NoAccount(_) => no_account(),
            CoordinationError::AlreadyExists(_) | CoordinationError::FlipInProgress(_) => AppError::Conflict(e.to_string()),
            CoordinationError::HostsCannotMigrate(_) | CoordinationError::AccountsMigrating(_) => AppError::Gate(e.to_string()),
            CoordinationError::Unavailable(_) => AppError::Unavailable(e.to_string()),
            CoordinationError::Stopped(_) | CoordinationError::Latched => AppError::Stopped(e.to_string()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Fenced { .. } => AppError::Unavailable(e.to_string()),
            StoreError::Invalid(m) => AppError::Invalid(m),
            StoreError::Internal(_) => AppError::Internal(e.to_string()),
        }
    }
}
