//! SQLite (accounts.db): the fleet's hosts.

use super::*;

impl Hosts for SqliteCoordination {
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_plugin(&host.plugin, || migrating_in(&tx))?;
        tx.execute(
            &format!("INSERT INTO hosts ({HOST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                host.id,
                host.name,
                host.address,
                host.pid,
                host.version,
                host.started_at_ms,
                host.heartbeat_ms,
                host.plugin.digest,
                host.plugin.label,
                host.plugin.supports_migration
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        gate.allows_plugin(plugin, || migrating_in(&tx))?;
        tx.execute(
            "UPDATE hosts SET plugin_digest = ?2, plugin_label = ?3, supports_migration = ?4 WHERE id = ?1",
            params![host, plugin.digest, plugin.label, plugin.supports_migration],
        )?;
        before_commit();
        tx.commit()?;
        Ok(())
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        let conn = self.write()?;
        Ok(conn.execute("UPDATE hosts SET heartbeat_ms = ?2 WHERE id = ?1", params![host, now_ms])? > 0)
    }

    /// Hosts on one data dir hold no lease: lock files tell who is gone.
    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(BTreeSet::new())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        let mut conn = self.pool.get()?;
        hosts_in(&conn.transaction()?)
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        let mut conn = self.write()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM hosts WHERE id = ?1", [host])?;
        tx.execute("DELETE FROM flip_acks WHERE host_id = ?1", [host])?;
        tx.commit()?;
        Ok(())
    }

    /// Lock files told it is gone, and a process that ended does not come back.
    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        self.remove_host(host).map(|()| true)
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        Ok(Box::new(super::change_watch::DataVersion::open(&self.path)?))
    }
}
