//! What a data dir was created with. The shard count decides which file holds
//! an account's notes; starting a host with another count would silently hide
//! notes, so the first start records it and later starts must match.

use std::path::Path;

use anyhow::bail;
use rusqlite::OptionalExtension;

use crate::db;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS layout (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);";

/// Records `new_shards` in a new data dir, or checks it against the record.
pub fn check_new_store_shards(accounts_db: &Path, new_shards: u32) -> anyhow::Result<()> {
    let pool = db::open(accounts_db, 1, SCHEMA)?;
    let conn = pool.get()?;
    conn.execute(
        "INSERT INTO layout (key, value) VALUES ('new_store_shards', ?1) ON CONFLICT (key) DO NOTHING",
        [new_shards.to_string()],
    )?;
    let recorded: Option<String> =
        conn.query_row("SELECT value FROM layout WHERE key = 'new_store_shards'", [], |r| r.get(0)).optional()?;
    match recorded.as_deref().map(str::parse::<u32>) {
        Some(Ok(n)) if n == new_shards => Ok(()),
        Some(Ok(n)) => bail!(
            "this data dir was created with {n} new-store shard(s), not {new_shards}: \
             another count would send accounts to other shard files and hide their notes; \
             start with --shards {n}"
        ),
        other => bail!("the data dir's layout record is damaged: new_store_shards = {other:?}"),
    }
}
