//! SQLite (accounts.db): the audit log.

use super::*;

impl AuditLog for SqliteCoordination {
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), CoordinationError> {
        let conn = self.write()?;
        insert_audit(&*conn, entry)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, CoordinationError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE seq > ?1 AND seq < ?6 AND at_ms >= coalesce(?2, at_ms) AND at_ms <= coalesce(?3, at_ms) AND kind = coalesce(?4, kind)
               AND action = coalesce(?7, action)
               AND NOT (?8 AND kind = 'flag' AND action != ''
                        AND EXISTS (SELECT 1 FROM audit s WHERE s.action = audit.action AND s.kind != 'flag'))
             ORDER BY seq {} LIMIT ?5",
            if query.newest_first { "DESC" } else { "ASC" }
        ))?;
        let params = params![
            query.after_seq,
            query.since_ms,
            query.until_ms,
            query.kind,
            query.limit,
            query.before_seq.unwrap_or(i64::MAX),
            query.action,
            query.fold
        ];
        let rows = stmt.query_map(params, |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                host: r.get(2)?,
                actor: r.get(3)?,
                kind: r.get(4)?,
                subject: r.get(5)?,
                before: r.get(6)?,
                after: r.get(7)?,
                detail: r.get(8)?,
                action: r.get(9)?,
                changes: r.get::<_, i64>(10)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
