//! The deployment gate, decided here and nowhere else: a flag may turn on
//! only while every registered host runs a plugin that can migrate, and a
//! host may run a plugin that cannot migrate only while no account migrates.
//! Old code beside new code loses notes.
//!
//! Each backend asks inside the transaction of the change it gates (creating
//! an account, a flip's announce and commit, a host's registration and its
//! plugin change), passing how to read the hosts or the migrating accounts in
//! that transaction, so the check and the change are one atomic step.

use uuid::Uuid;

use super::{CoordinationError, HostRecord, PluginSummary};

/// Whether the deployment gate is checked. Only `--unsafe-no-fleet-safety`
/// turns it off, to reproduce the loss it prevents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Checked,
    Unchecked,
}

impl Gate {
    /// Before a flag is set to `to`: turning it on needs every host's plugin
    /// to migrate (`HostsCannotMigrate` names those that cannot). `hosts`
    /// reads the registered hosts, and is called only when it matters.
    pub fn allows_flag(self, to: bool, hosts: impl FnOnce() -> Result<Vec<HostRecord>, CoordinationError>) -> Result<(), CoordinationError> {
        if !to || self == Gate::Unchecked {
            return Ok(());
        }
        let lacking: Vec<HostRecord> = hosts()?.into_iter().filter(|h| !h.plugin.supports_migration).collect();
        if lacking.is_empty() { Ok(()) } else { Err(CoordinationError::HostsCannotMigrate(lacking)) }
    }

    /// Before a host runs `plugin`: one that cannot migrate needs no account
    /// to migrate (`AccountsMigrating` names them). `migrating` reads the
    /// accounts whose flag is on (or being turned on), only when it matters.
    pub fn allows_plugin(
        self,
        plugin: &PluginSummary,
        migrating: impl FnOnce() -> Result<Vec<Uuid>, CoordinationError>,
    ) -> Result<(), CoordinationError> {
        if plugin.supports_migration || self == Gate::Unchecked {
            return Ok(());
        }
        let migrating = migrating()?;
        if migrating.is_empty() { Ok(()) } else { Err(CoordinationError::AccountsMigrating(migrating)) }
    }
}
