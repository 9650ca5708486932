//! [`Catalog`] in a PostgreSQL database shared by the fleet (the
//! coordination database): the only code that runs SQL on its plugin tables.
//!
//! Unlike `plugins.db`, it keeps each plugin's bytes: hosts share nothing but
//! the database, so any host can activate any upload, and a host that starts
//! with an empty data dir fetches what is active (`plugins::registry`). The
//! precompiled artifact is each host's own (its machine may differ), so its
//! sha256 is recorded per host.

use anyhow::Context;

use super::{Activation, Catalog, Instances, PluginRecord};
use crate::pg::{self, PgPool};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS plugins (
    digest             TEXT    COLLATE "C" PRIMARY KEY,
    name               TEXT    NOT NULL,
    version            TEXT    NOT NULL,
    supports_migration BOOLEAN NOT NULL,
    wit_version        TEXT    NOT NULL,
    size_bytes         BIGINT  NOT NULL,
    uploaded_at_ms     BIGINT  NOT NULL,
    wasm               BYTEA   NOT NULL
);
-- How its instances are made (`Instances`, as JSON); '' = fresh. Added
-- after the first release.
ALTER TABLE plugins ADD COLUMN IF NOT EXISTS instances TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS plugin_artifacts (
    digest TEXT COLLATE "C" NOT NULL REFERENCES plugins (digest),
    host   TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (digest, host)
);
CREATE TABLE IF NOT EXISTS activations (
    seq    BIGSERIAL PRIMARY KEY,
    digest TEXT   COLLATE "C" NOT NULL REFERENCES plugins (digest),
    at_ms  BIGINT NOT NULL,
    -- who: 'operator', 'startup' or 'automatic'
    actor  TEXT   NOT NULL,
    reason TEXT   NOT NULL,
    host   TEXT   NOT NULL
);
"#;

const RECORD_COLUMNS: &str = "digest, name, version, supports_migration, wit_version, size_bytes, uploaded_at_ms, instances";

pub struct PostgresCatalog {
    pool: PgPool,
    /// This host's name: activations and artifacts are recorded and read per host.
    host: String,
}

impl PostgresCatalog {
    pub fn open(url: &str, host: &str) -> anyhow::Result<Self> {
        Ok(PostgresCatalog { pool: pg::open(url, 4, SCHEMA)?, host: host.to_owned() })
    }

    fn conn(&self) -> anyhow::Result<r2d2::PooledConnection<pg::Manager>> {
        self.pool.get().context("the plugin catalog (PostgreSQL) is unavailable")
    }
}

impl Catalog for PostgresCatalog {
    fn insert(&self, record: &PluginRecord, artifact_sha256: &str, wasm: &[u8]) -> anyhow::Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO plugins ({RECORD_COLUMNS}, wasm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (digest) DO NOTHING"
            ),
            &[
                &record.digest,
                &record.name,
                &record.version,
                &record.supports_migration,
                &record.wit_version,
                &(record.size_bytes as i64),
                &record.uploaded_at_ms,
                &record.instances.to_text(),
                &wasm,
            ],
        )
        .context("cannot record the plugin")?;
        if !artifact_sha256.is_empty() {
            upsert_artifact(&mut tx, &record.digest, &self.host, artifact_sha256)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn wasm(&self, digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.conn()?.client().query_opt("SELECT wasm FROM plugins WHERE digest = $1", &[&digest])?.map(|r| r.get(0)))
    }

    fn record(&self, digest: &str) -> anyhow::Result<Option<PluginRecord>> {
        let row = self.conn()?.client().query_opt(&format!("SELECT {RECORD_COLUMNS} FROM plugins WHERE digest = $1"), &[&digest])?;
        Ok(row.as_ref().map(row_to_record))
    }

    fn records(&self) -> anyhow::Result<Vec<PluginRecord>> {
        let rows = self.conn()?.client().query(&format!("SELECT {RECORD_COLUMNS} FROM plugins ORDER BY uploaded_at_ms, digest"), &[])?;
        Ok(rows.iter().map(row_to_record).collect())
    }

    fn artifact_sha256(&self, digest: &str) -> anyhow::Result<Option<String>> {
        let row = self.conn()?.client().query_opt(
            "SELECT coalesce((SELECT sha256 FROM plugin_artifacts WHERE digest = $1 AND host = $2), '') FROM plugins WHERE digest = $1",
            &[&digest, &self.host],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_artifact_sha256(&self, digest: &str, sha256: &str) -> anyhow::Result<()> {
        upsert_artifact(self.conn()?.client(), digest, &self.host, sha256).context("cannot record the artifact's digest")
    }

    fn history(&self) -> anyhow::Result<Vec<Activation>> {
        let rows = self.conn()?.client().query("SELECT seq, digest, at_ms, actor, reason, host FROM activations ORDER BY seq", &[])?;
        Ok(rows
            .iter()
            .map(|r| Activation { seq: r.get(0), digest: r.get(1), at_ms: r.get(2), actor: r.get(3), reason: r.get(4), host: r.get(5) })
            .collect())
    }

    fn active_digest(&self) -> anyhow::Result<Option<String>> {
        let row = self
            .conn()?
            .client()
            .query_opt("SELECT digest FROM activations WHERE host = $1 ORDER BY seq DESC LIMIT 1", &[&self.host])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn previous_digest(&self) -> anyhow::Result<Option<String>> {
        let row = self.conn()?.client().query_opt(
            "SELECT digest FROM activations
             WHERE host = $1 AND digest <> (SELECT digest FROM activations WHERE host = $1 ORDER BY seq DESC LIMIT 1)
             ORDER BY seq DESC LIMIT 1",
            &[&self.host],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn record_activation(&self, digest: &str, actor: &str, reason: &str, now_ms: i64) -> anyhow::Result<()> {
        self.conn()?.client().execute(
            "INSERT INTO activations (digest, at_ms, actor, reason, host) VALUES ($1, $2, $3, $4, $5)",
            &[&digest, &now_ms, &actor, &reason, &self.host],
        )?;
        Ok(())
    }

    fn set_instances(&self, digest: &str, instances: Instances) -> anyhow::Result<bool> {
        let updated = self.conn()?.client().execute("UPDATE plugins SET instances = $2 WHERE digest = $1", &[&digest, &instances.to_text()])?;
        Ok(updated == 1)
    }
}

impl PostgresCatalog {
    /// Records an activation as another catalog recorded it: its host, time
    /// and reason (`db copy`; the sequence is this catalog's own, in order).
    pub fn import_activation(&self, activation: &Activation) -> anyhow::Result<()> {
        self.conn()?.client().execute(
            "INSERT INTO activations (digest, at_ms, actor, reason, host) VALUES ($1, $2, $3, $4, $5)",
            &[&activation.digest, &activation.at_ms, &activation.actor, &activation.reason, &activation.host],
        )?;
        Ok(())
    }
}

fn upsert_artifact(client: &mut impl postgres::GenericClient, digest: &str, host: &str, sha256: &str) -> anyhow::Result<()> {
    client.execute(
        "INSERT INTO plugin_artifacts (digest, host, sha256) VALUES ($1, $2, $3)
         ON CONFLICT (digest, host) DO UPDATE SET sha256 = excluded.sha256",
        &[&digest, &host, &sha256],
    )?;
    Ok(())
}

fn row_to_record(r: &postgres::Row) -> PluginRecord {
    PluginRecord {
        digest: r.get(0),
        name: r.get(1),
        version: r.get(2),
        supports_migration: r.get(3),
        wit_version: r.get(4),
        size_bytes: r.get::<_, i64>(5) as u64,
        uploaded_at_ms: r.get(6),
        instances: Instances::from_text(r.get(7)),
    }
}
