//! [`ShardedStore`]: the new store, N shards (SQLite files or PostgreSQL
//! databases); an account's notes all live in one shard, chosen by a stable
//! hash of the account id.

use notes_routing::IdList;
use std::path::PathBuf;

use super::{AsyncStore, BlockingStore, DataStore, Note, SqliteStore, StoreBatch, StoreError};

pub struct ShardedStore {
    shards: Vec<Box<dyn DataStore>>,
}

impl ShardedStore {
    /// One SQLite file per shard, in shard order (`backends::DataDir` names them).
    pub fn open(files: &[PathBuf]) -> anyhow::Result<Self> {
        let shards = files.iter().map(|file| Ok(Box::new(SqliteStore::open(file)?) as Box<dyn DataStore>)).collect::<anyhow::Result<_>>()?;
        Ok(ShardedStore::new(shards))
    }

    /// The given shards, in order: shard i holds the accounts `shard_index` sends to i.
    pub fn new(shards: Vec<Box<dyn DataStore>>) -> Self {
        assert!(!shards.is_empty(), "a sharded store needs a shard");
        ShardedStore { shards }
    }

    fn shard(&self, account_id: &str) -> &dyn DataStore {
        &*self.shards[shard_index(account_id, self.shards.len())]
    }
}

/// The account's shard: FNV-1a of its id. Changing the hash, or the shard
/// count, re-homes accounts, so the data dir records the shard count and the
/// host refuses to start with another (see `layout`).
pub(super) fn shard_index(account_id: &str, shards: usize) -> usize {
    (crate::stable_hash::fnv1a(account_id.bytes()) % shards as u64) as usize
}

impl BlockingStore for ShardedStore {
    fn get(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        self.shard(account_id).get(account_id, note_id)
    }

    fn put(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        self.shard(&note.account_id).put(note, epoch)
    }

    fn delete_if_not_newer(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        self.shard(account_id).delete_if_not_newer(account_id, note_id, version, epoch)
    }

    fn list_ids(&self, account_id: &str) -> Result<IdList, StoreError> {
        self.shard(account_id).list_ids(account_id)
    }

    fn count(&self, account_id: &str) -> Result<u64, StoreError> {
        self.shard(account_id).count(account_id)
    }

    fn recorded_version(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.shard(account_id).recorded_version(account_id, note_id)
    }

    fn first_ids(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.shard(account_id).first_ids(account_id, after, limit)
    }

    fn rows(&self, account_id: &str, note_ids: &[String]) -> Result<Vec<super::StoredRow>, StoreError> {
        self.shard(account_id).rows(account_id, note_ids)
    }

    fn begin_batch(&self, account_id: &str, epoch: i64) -> Result<Box<dyn StoreBatch>, StoreError> {
        self.shard(account_id).begin_batch(account_id, epoch)
    }

    fn raise_fence(&self, account_id: &str, epoch: i64) -> Result<(), StoreError> {
        self.shard(account_id).raise_fence(account_id, epoch)
    }
}

#[async_trait::async_trait]
impl AsyncStore for ShardedStore {
    fn is_in_process(&self) -> bool {
        self.shards.iter().all(|s| s.is_in_process())
    }

    fn serves_requests_async(&self) -> bool {
        self.shards.iter().all(|s| s.serves_requests_async())
    }

    async fn put_async(&self, note: &Note, epoch: i64) -> Result<bool, StoreError> {
        self.shard(&note.account_id).put_async(note, epoch).await
    }

    async fn delete_if_not_newer_async(&self, account_id: &str, note_id: &str, version: u64, epoch: i64) -> Result<bool, StoreError> {
        self.shard(account_id).delete_if_not_newer_async(account_id, note_id, version, epoch).await
    }

    async fn get_async(&self, account_id: &str, note_id: &str) -> Result<Option<Note>, StoreError> {
        self.shard(account_id).get_async(account_id, note_id).await
    }

    async fn list_ids_async(&self, account_id: &str) -> Result<IdList, StoreError> {
        self.shard(account_id).list_ids_async(account_id).await
    }

    async fn recorded_version_async(&self, account_id: &str, note_id: &str) -> Result<Option<u64>, StoreError> {
        self.shard(account_id).recorded_version_async(account_id, note_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_choice_is_stable_and_spreads_accounts() {
        // Pinned values: a change here re-homes every account's notes.
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(shard_index("a", 1000), (0xaf63_dc4c_8601_ec8cu64 % 1000) as usize);
        let mut used = [0; 4];
        for i in 0..400 {
            used[shard_index(&format!("{i:08}-0000-4000-8000-000000000000"), 4)] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }

    #[test]
    fn an_accounts_notes_live_in_one_shard_file() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..4).map(|i| dir.path().join(format!("new-shard-{i}.db"))).collect();
        let s = ShardedStore::open(&files).unwrap();
        let note = Note { id: "n".into(), account_id: "acct".into(), content: "c".into(), created_at_ms: 0, updated_at_ms: 0, version: 1 };
        s.put(&note, 0).unwrap();
        let home = shard_index("acct", 4);
        for (i, file) in files.iter().enumerate() {
            let file = SqliteStore::open(file).unwrap();
            assert_eq!(file.count("acct").unwrap(), u64::from(i == home));
        }
    }
}
