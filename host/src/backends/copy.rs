//! `notes-host db copy`: moves a service from one machine (a SQLite data
//! dir) to PostgreSQL, once, with every host stopped.
//!
//! It copies accounts (flags, Notely shards, last verify), account keys,
//! the audit log, migration jobs and the rollout percent; every note with
//! its version, and every tombstone, into the same store and shard; every
//! uploaded plugin (its bytes) with the activation history. Then it counts
//! both sides and fails if any count differs. It refuses a data dir with a
//! host running or a flip pending, and a target that already holds data:
//! it never merges.
//!
//! The target gets the data dir's id as its service id, and the shard count
//! must match: the hash of an account id picks its shard on both backends.

use std::path::Path;

use anyhow::{Context, bail};

use super::{DataDir, PostgresBackends, layout};
use crate::catalog::{Catalog, PostgresCatalog, SqliteCatalog};
use crate::coordination::{Accounts, AuditLog, Flips, Gate, Hosts, Jobs, Keys, PostgresCoordination, Rollouts, SqliteCoordination};
use crate::fleet::liveness::Liveness;
use crate::plugins::registry::Registry;
use crate::stores::{BlockingStore, PostgresStore, SqliteStore, new_shard_role};

/// What was copied; every count was checked on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub accounts: u64,
    pub keys: u64,
    pub audit_entries: u64,
    pub jobs: u64,
    pub plugins: u64,
    pub activations: u64,
    /// Rows per store, tombstones included: legacy, then each new-store shard.
    pub rows: Vec<u64>,
}

/// The host name `db copy` records its audit entry under.
const COPIER: &str = "db-copy";

pub fn copy_data_dir(from: &Path, to: &PostgresBackends) -> anyhow::Result<CopyReport> {
    let identity = layout::existing_data_dir(from)?;
    if let Some((flag, name)) = layout::recorded_store_plugins(from)?.into_iter().next() {
        bail!(
            "the data dir {} serves a store with the store plugin {name:?} ({flag} plugin:…): its notes are in the plugin's upstream, \
             not in a file db copy could move. Move them with a migration instead (backfill into a PostgreSQL service's stores)",
            from.display()
        );
    }
    let shards = identity.new_store_shards as usize;
    if to.new_stores.len() != shards {
        bail!(
            "the data dir {} has {shards} new-store shard(s), but {} --new-store URL(s) were given: give one per shard, in order",
            from.display(),
            to.new_stores.len()
        );
    }
    refuse_running_hosts(from)?;
    let source = SqliteCoordination::open(&DataDir(from).accounts_db())?;
    if let Some(flip) = source.pending_flips()?.first() {
        bail!("a change of isMigrating is pending on account {}: let it finish (start a host), then copy", flip.account);
    }

    let target = PostgresCoordination::open(&to.coordination)?;
    if !target.accounts()?.is_empty() {
        bail!("the coordination database {} already holds accounts: db copy only fills an empty service", crate::pg::redact(&to.coordination));
    }
    let record = target.layout_record()?;
    record.write_if_absent(&[("data_dir_id", identity.id.to_string()), ("new_store_shards", shards.to_string())])?;
    let service = layout::open_service(&record, shards as u32)?;
    if service.id != identity.id {
        bail!("the coordination database {} belongs to another service ({})", crate::pg::redact(&to.coordination), service.id);
    }

    let mut report = copy_state(&source, &target)?;
    let (plugins, activations) = copy_plugins(from, &to.coordination)?;
    report.plugins = plugins;
    report.activations = activations;
    let files = DataDir(from);
    let stores = std::iter::once(("legacy".to_owned(), files.legacy_db(), &to.legacy_store)).chain(
        to.new_stores.iter().enumerate().map(|(i, url)| (new_shard_role(i), files.new_shard_db(i as u32), url)),
    );
    for (role, file, url) in stores {
        report.rows.push(copy_store(&file, url, identity.id, &role)?);
    }
    Ok(report)
}

/// A host still running on the data dir would write what the copy misses.
fn refuse_running_hosts(from: &Path) -> anyhow::Result<()> {
    let liveness = Liveness::lock_files(&DataDir(from).hosts_dir(), COPIER)?;
    let state = SqliteCoordination::open(&DataDir(from).accounts_db())?;
    let running: Vec<String> = state.hosts()?.into_iter().filter(|h| !liveness.is_gone(&h.id)).map(|h| h.name).collect();
    liveness.forget(COPIER);
    if !running.is_empty() {
        bail!("host(s) {} still run on {}: stop every host of the data dir, then copy", running.join(", "), from.display());
    }
    Ok(())
}

fn copy_state(source: &SqliteCoordination, target: &PostgresCoordination) -> anyhow::Result<CopyReport> {
    let mut report = CopyReport::default();
    let accounts = source.accounts()?;
    for account in &accounts {
        // Unchecked: no host runs yet; the gate holds again when hosts join.
        target.create_account(account, Gate::Unchecked)?;
        if let Some(verified) = account.verified {
            target.record_verify(account.id, account.updated_at_ms, verified)?;
        }
        for key in source.keys(account.id)? {
            target.create_key(&key)?;
            report.keys += 1;
        }
    }
    report.accounts = accounts.len() as u64;
    let mut after_seq = 0;
    loop {
        let page = source.audit(&crate::coordination::AuditQuery { after_seq, limit: 1000, ..Default::default() })?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for entry in &page {
            target.append_audit(entry)?;
        }
        report.audit_entries += page.len() as u64;
    }
    for job in source.jobs()?.into_iter().rev() {
        // Its owner was a host of the data dir: any host of the new fleet takes it.
        target.create_job(&crate::coordination::Job { owner: None, ..job })?;
        report.jobs += 1;
    }
    if let Some(percent) = source.rollout_percent()? {
        target.set_rollout_percent(percent)?;
    }
    let copied = (target.accounts()?.len() as u64, target.jobs()?.len() as u64);
    if copied != (report.accounts, report.jobs) {
        bail!("copied {} account(s) and {} job(s), but the target holds {} and {}", report.accounts, report.jobs, copied.0, copied.1);
    }
    Ok(report)
}

/// Plugins (bytes from the data dir's registry) and every host's activations.
fn copy_plugins(from: &Path, coordination_url: &str) -> anyhow::Result<(u64, u64)> {
    let source = SqliteCatalog::open(&DataDir(from).plugins_db(), COPIER)?;
    let target = PostgresCatalog::open(coordination_url, COPIER)?;
    let records = source.records()?;
    for record in &records {
        let file = Registry::wasm_file(&DataDir(from).plugin_cache(), &record.digest);
        let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        if crate::catalog::sha256_hex(&wasm) != record.digest {
            bail!("{} does not match its digest: the stored plugin is damaged", file.display());
        }
        target.insert(record, "", &wasm)?;
    }
    let history = source.history()?;
    for activation in &history {
        target.import_activation(activation)?;
    }
    let copied = (target.records()?.len(), target.history()?.len());
    if copied != (records.len(), history.len()) {
        bail!("copied {} plugin(s) and {} activation(s), but the target holds {} and {}", records.len(), history.len(), copied.0, copied.1);
    }
    Ok((records.len() as u64, history.len() as u64))
}

/// One store file into one store database, claimed for the service; the row count of both.
fn copy_store(file: &Path, url: &str, service: uuid::Uuid, role: &str) -> anyhow::Result<u64> {
    let source = SqliteStore::open(file)?;
    let target = PostgresStore::open(url)?;
    target.claim(url, service, role)?;
    if target.row_count()? != 0 {
        bail!("the {role} store {} already holds notes: db copy only fills an empty service", crate::pg::redact(url));
    }
    let rows = source.rows()?;
    target.import(&rows)?;
    let copied = target.row_count()?;
    if copied != rows.len() as u64 {
        bail!("the {role} store: copied {} row(s), but {} holds {copied}", rows.len(), crate::pg::redact(url));
    }
    // Live notes too, per account, as the API counts them.
    for account in rows.iter().map(|r| r.note.account_id.as_str()).collect::<std::collections::BTreeSet<_>>() {
        let (before, after) = (source.count(account)?, target.count(account)?);
        if before != after {
            bail!("the {role} store: account {account} had {before} live note(s), the copy has {after}");
        }
    }
    Ok(copied)
}
