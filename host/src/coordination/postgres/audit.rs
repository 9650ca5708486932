//! PostgreSQL: the audit log.

use super::*;

impl AuditLog for PostgresCoordination {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        // Under the decision lock, as `commit_flip`'s entries are: then
        // entries commit in the order of their `seq`. Without it, seq 7
        // could commit before seq 6, and a reader paging by cursor who saw
        // 7 would never see 6. (SQLite has one writer at a time.)
        let mut conn = self.conn()?;
        let mut tx = Tx::begin(&mut conn, BEGIN_DECISION)?;
        insert_audit(&mut tx, entry)?;
        tx.commit(false)?;
        Ok(())
    }

    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        let sql = if q.newest_first { AUDIT_NEWEST_FIRST } else { AUDIT_OLDEST_FIRST };
        let params: Params<'_> =
            &[&q.after_seq, &q.since_ms, &q.until_ms, &q.kind, &i64::from(q.limit), &q.before_seq.unwrap_or(i64::MAX), &q.action, &q.fold];
        let rows = query(&mut *self.conn()?, sql, params)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at_ms: r.get(1),
                host: r.get(2),
                actor: r.get(3),
                kind: r.get(4),
                subject: r.get(5),
                before: r.get(6),
                after: r.get(7),
                detail: r.get(8),
                action: r.get(9),
                changes: r.get::<_, i64>(10) as u64,
            })
            .collect())
    }
}
