//! PostgreSQL: the fleet's hosts.

use super::*;

impl Hosts for PostgresCoordination {
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        gate.allows_plugin(&host.plugin, || migrating_on(&mut tx))?;
        execute(
            &mut tx,
            INSERT_HOST,
            &[
                &host.id,
                &host.name,
                &host.address,
                &i64::from(host.pid),
                &host.version,
                &host.started_at_ms,
                &host.heartbeat_ms,
                &host.plugin.digest,
                &host.plugin.label,
                &host.plugin.supports_migration,
                &self.lease_ms,
            ],
        )?;
        tx.commit(true)?;
        Ok(())
    }

    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        gate.allows_plugin(plugin, || migrating_on(&mut tx))?;
        execute(&mut tx, CHANGE_HOST_PLUGIN, &[&host, &plugin.digest, &plugin.label, &plugin.supports_migration])?;
        before_commit();
        tx.commit(true)?;
        Ok(())
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        // Not notified: no watcher looks at heartbeats (the watch's safety
        // net covers one that would), and every host writes four a second.
        Ok(execute(&mut *self.conn()?, HEARTBEAT, &[&host, &now_ms, &self.lease_ms])? > 0)
    }

    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(query(&mut *self.conn()?, EXPIRED_HOSTS, &[])?.iter().map(|r| r.get(0)).collect())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        hosts_on(&mut *self.conn()?)
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        execute(&mut tx, DELETE_HOST, &[&host])?;
        execute(&mut tx, DELETE_ACKS_OF_HOST, &[&host])?;
        tx.commit(true)?;
        Ok(())
    }

    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        let pruned = execute(&mut tx, PRUNE_HOST, &[&host])? > 0;
        if pruned {
            execute(&mut tx, DELETE_ACKS_OF_HOST, &[&host])?;
        }
        tx.commit(pruned)?;
        Ok(pruned)
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        // Its own connection, outside the pool: LISTEN belongs to a session,
        // and the session must stay with the watch.
        let client = listen(&self.listen_config)?;
        Ok(Box::new(Listener {
            config: self.listen_config.clone(),
            client: Some(client),
            answered_true: None,
            next_reconnect: Instant::now(),
        }))
    }
}
