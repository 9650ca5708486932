//! [`Catalog`] in `plugins.db`: the only code that runs SQL on it.

use std::path::Path;

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::{Activation, Catalog, Instances, PluginRecord};
use crate::db::{self, Pool};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS plugins (
    digest             TEXT    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL,
    version            TEXT    NOT NULL,
    supports_migration INTEGER NOT NULL,
    wit_version        TEXT    NOT NULL,
    size_bytes         INTEGER NOT NULL,
    uploaded_at_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    digest  TEXT    NOT NULL REFERENCES plugins (digest),
    at_ms   INTEGER NOT NULL,
    -- who: 'operator', 'startup' or 'automatic'
    actor   TEXT    NOT NULL,
    reason  TEXT    NOT NULL
);
";

/// Columns added after the first release, each with the statement that adds
/// it to an older `plugins.db`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // Which host (by `--host-name`) activated: each host restores and rolls
    // back its own.
    ("activations", "host", "ALTER TABLE activations ADD COLUMN host TEXT NOT NULL DEFAULT ''"),
    // sha256 of the `.cwasm`, checked when it is loaded ('' = not recorded:
    // the artifact is compiled again and its digest recorded).
    ("plugins", "artifact_sha256", "ALTER TABLE plugins ADD COLUMN artifact_sha256 TEXT NOT NULL DEFAULT ''"),
    // How its instances are made (`Instances`, as JSON); '' = fresh.
    ("plugins", "instances", "ALTER TABLE plugins ADD COLUMN instances TEXT NOT NULL DEFAULT ''"),
];

const RECORD_COLUMNS: &str = "digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms, instances";

pub struct SqliteCatalog {
    pool: Pool,
    /// This host's name: activations are recorded and read per host (rows
    /// from before hosts were named, `host = ''`, count as every host's).
    host: String,
}

impl SqliteCatalog {
    pub fn open(path: &Path, host: &str) -> anyhow::Result<Self> {
        let pool = db::open(path, 4, SCHEMA)?;
        {
            let conn = pool.get()?;
            for (table, column, add) in ADDED_COLUMNS {
                let present: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )?;
                if !present {
                    // Two hosts opening an old file at once may both try.
                    if let Err(e) = conn.execute_batch(add) {
                        if !e.to_string().contains("duplicate column") {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Ok(SqliteCatalog { pool, host: host.to_owned() })
    }
}

impl Catalog for SqliteCatalog {
    /// `wasm` is not kept: the registry's files in the data dir are the bytes.
    fn insert(&self, record: &PluginRecord, artifact_sha256: &str, _wasm: &[u8]) -> anyhow::Result<()> {
        let conn = self.pool.get().context("plugins.db")?;
        conn.execute(
            &format!(
                "INSERT INTO plugins ({RECORD_COLUMNS}, artifact_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (digest) DO UPDATE SET artifact_sha256 = excluded.artifact_sha256"
            ),
            params![
                record.digest,
                record.name,
                record.version,
                record.supports_migration,
                record.wit_version,
                record.size_bytes as i64,
                record.uploaded_at_ms,
                record.instances.to_text(),
                artifact_sha256
            ],
        )
        .context("cannot record the plugin")?;
        Ok(())
    }

    fn wasm(&self, _digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn record(&self, digest: &str) -> anyhow::Result<Option<PluginRecord>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM plugins WHERE digest = ?1"))?;
        Ok(stmt.query_row([digest], row_to_record).optional()?)
    }

    fn records(&self) -> anyhow::Result<Vec<PluginRecord>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM plugins ORDER BY uploaded_at_ms, digest"))?;
        let records = stmt.query_map([], row_to_record)?.collect::<Result<_, _>>()?;
        Ok(records)
    }

    fn artifact_sha256(&self, digest: &str) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get().context("plugins.db")?;
        Ok(conn.query_row("SELECT artifact_sha256 FROM plugins WHERE digest = ?1", [digest], |r| r.get(0)).optional()?)
    }

    fn set_artifact_sha256(&self, digest: &str, sha256: &str) -> anyhow::Result<()> {
        let conn = self.pool.get().context("plugins.db")?;
        conn.execute("UPDATE plugins SET artifact_sha256 = ?2 WHERE digest = ?1", params![digest, sha256])
            .context("cannot record the artifact's digest")?;
        Ok(())
    }

    fn history(&self) -> anyhow::Result<Vec<Activation>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT seq, digest, at_ms, actor, reason, host FROM activations ORDER BY seq")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Activation {
                    seq: r.get(0)?,
                    digest: r.get(1)?,
                    at_ms: r.get(2)?,
                    actor: r.get(3)?,
                    reason: r.get(4)?,
                    host: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn active_digest(&self) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get()?;
        Ok(conn
            .query_row(
                "SELECT digest FROM activations WHERE host IN (?1, '') ORDER BY seq DESC LIMIT 1",
                [&self.host],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn previous_digest(&self) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get()?;
        Ok(conn
            .query_row(
                "SELECT digest FROM activations
                 WHERE host IN (?1, '')
                   AND digest <> (SELECT digest FROM activations WHERE host IN (?1, '') ORDER BY seq DESC LIMIT 1)
                 ORDER BY seq DESC LIMIT 1",
                [&self.host],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn record_activation(&self, digest: &str, actor: &str, reason: &str, now_ms: i64) -> anyhow::Result<()> {
        let conn = self.pool.get()?;
        conn.execute(
            "INSERT INTO activations (digest, at_ms, actor, reason, host) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![digest, now_ms, actor, reason, self.host],
        )?;
        Ok(())
    }

    fn set_instances(&self, digest: &str, instances: Instances) -> anyhow::Result<bool> {
        let conn = self.pool.get()?;
        Ok(conn.execute("UPDATE plugins SET instances = ?2 WHERE digest = ?1", params![digest, instances.to_text()])? == 1)
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginRecord> {
    Ok(PluginRecord {
        digest: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        supports_migration: r.get(3)?,
        wit_version: r.get(4)?,
        size_bytes: r.get::<_, i64>(5)? as u64,
        uploaded_at_ms: r.get(6)?,
        instances: Instances::from_text(&r.get::<_, String>(7)?),
    })
}
