//! In memory: the audit log.

use super::*;

impl AuditLog for MemoryCoordination {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        self.write()?.append_audit(entry);
        Ok(())
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        let state = self.read()?;
        let summarised = |action: &str| state.audit.iter().any(|s| s.action == action && s.is_action_summary());
        let wanted = |e: &&AuditEntry| {
            e.seq > query.after_seq
                && query.before_seq.is_none_or(|b| e.seq < b)
                && query.since_ms.is_none_or(|t| e.at_ms >= t)
                && query.until_ms.is_none_or(|t| e.at_ms <= t)
                && query.kind.as_ref().is_none_or(|k| &e.kind == k)
                && query.action.as_ref().is_none_or(|a| &e.action == a)
                && !(query.fold && e.kind == "flag" && !e.action.is_empty() && summarised(&e.action))
        };
        let with_changes = |e: &AuditEntry| {
            let changes = if e.is_action_summary() {
                state.audit.iter().filter(|f| f.action == e.action && f.kind == "flag").count() as u64
            } else {
                0
            };
            AuditEntry { changes, ..e.clone() }
        };
        let limit = query.limit as usize;
        Ok(if query.newest_first {
            state.audit.iter().rev().filter(wanted).take(limit).map(with_changes).collect()
        } else {
            state.audit.iter().filter(wanted).take(limit).map(with_changes).collect()
        })
    }
}
