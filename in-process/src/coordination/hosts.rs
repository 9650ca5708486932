//! In memory: the fleet's hosts.

use super::*;

impl Hosts for MemoryCoordination {
    fn register_host(&self, host: &HostRecord, gate: Gate) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_plugin(&host.plugin, || Ok(state.migrating()))?;
        state.hosts.insert(host.id.clone(), host.clone());
        Ok(())
    }

    fn change_host_plugin(
        &self,
        host: &str,
        plugin: &PluginSummary,
        gate: Gate,
        before_commit: &mut dyn FnMut(),
    ) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        gate.allows_plugin(plugin, || Ok(state.migrating()))?;
        before_commit();
        if let Some(record) = state.hosts.get_mut(host) {
            record.plugin = plugin.clone();
        }
        Ok(())
    }

    fn heartbeat(&self, host: &str, now_ms: i64) -> Result<bool, CoordinationError> {
        Ok(self.write()?.hosts.get_mut(host).map(|h| h.heartbeat_ms = now_ms).is_some())
    }

    fn prune_host(&self, host: &str) -> Result<bool, CoordinationError> {
        self.remove_host(host).map(|()| true)
    }

    /// Hosts in one process hold no lease.
    fn expired_hosts(&self) -> Result<BTreeSet<String>, CoordinationError> {
        Ok(BTreeSet::new())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, CoordinationError> {
        Ok(self.read()?.hosts())
    }

    fn remove_host(&self, host: &str) -> Result<(), CoordinationError> {
        let mut state = self.write()?;
        state.hosts.remove(host);
        for acked in state.acks.values_mut() {
            acked.remove(host);
        }
        Ok(())
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, CoordinationError> {
        Ok(Box::new(VersionWatch { version: self.version.clone(), last: None }))
    }
}
