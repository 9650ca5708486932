//! Accounts, their `isMigrating` flag, and this host's half of the deployment gate.

use uuid::Uuid;

use crate::coordination::{Account, AccountDetails};
use crate::fleet::{FlipCause, FlipOutcome, HostView};
use super::{Actor, App, AppError};
use super::errors::no_account;

/// The fewest characters of an account's id that name it on the operator
/// routes (its migration state, move, verify, `PATCH`, jobs, rollouts by
/// list) and in the CLI: the 8 the console and the CLI show, as for jobs.
/// 8 hex digits are 32 bits, so among a million accounts a given prefix
/// names a second account about once in 4,000 (then a 400 asks for more).
/// Notely's own routes (`GET`/`PUT /accounts/{id}`, the notes) keep taking
/// whole UUIDs only: its clients send them, and a note request must not pay
/// for a lookup.
pub(super) const ACCOUNT_PREFIX_MIN: usize = 8;

/// A change to an account; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub name: Option<String>,
    pub is_migrating: Option<bool>,
    /// Notely's `shard` (echoed, not deciding placement).
    pub shard: Option<String>,
}

impl App {
    pub fn create_account(&self, id: Option<Uuid>, name: &str, is_migrating: bool, shard: Option<String>) -> Result<Account, AppError> {
        let name = valid_name(name, self.settings.max_name_bytes)?;
        let shard = shard.map(|s| valid_shard(s, self.settings.max_name_bytes)).transpose()?;
        let _admin = is_migrating.then(|| self.plugins.admin_lock());
        if is_migrating {
            self.migration_gate()?;
        }
        let now = self.now_ms();
        let account = Account {
            id: id.unwrap_or_else(Uuid::new_v4),
            name: name.to_owned(),
            is_migrating,
            shard,
            verified: None,
            created_at_ms: now,
            updated_at_ms: now,
            was_migrating: is_migrating,
        };
        self.fleet.create_account(&account)?;
        self.fleet.audit(Actor::Operator.as_str(), "account", &account.id.to_string(), "", &is_migrating.to_string(), "created");
        Ok(account)
    }

    pub fn account(&self, id: Uuid) -> Result<Account, AppError> {
        self.coordination.account(id)?.ok_or_else(no_account)
    }

    /// The id of the account whose id is `raw` (a whole UUID, taken as it
    /// is: no lookup) or starts with it (at least [`ACCOUNT_PREFIX_MIN`]
    /// characters; 400 if shorter or ambiguous, 404 if no account has it).
    /// Ids are kept in their order, so the accounts a prefix names are the
    /// ones from the prefix padded with zeros on, walked one at a time on the
    /// primary key (`next_account_after`): a few reads however many accounts
    /// there are, not a read of them all.
    pub fn account_id(&self, raw: &str) -> Result<Uuid, AppError> {
        if let Ok(id) = Uuid::parse_str(raw) {
            return Ok(id);
        }
        const LOWEST: &str = "00000000-0000-0000-0000-000000000000";
        let prefix = raw.to_ascii_lowercase();
        let fits = prefix.len() < LOWEST.len()
            && prefix.bytes().zip(LOWEST.bytes()).all(|(c, l)| if l == b'-' { c == b'-' } else { c.is_ascii_hexdigit() });
        if !fits {
            return Err(AppError::Invalid(format!("account id {raw:?} is not a UUID or the start of one")));
        }
        if prefix.len() < ACCOUNT_PREFIX_MIN {
            return Err(AppError::Invalid(format!(
                "account id {raw:?} is too short: give the id or its first {ACCOUNT_PREFIX_MIN} or more characters"
            )));
        }
        let lowest = Uuid::parse_str(&format!("{prefix}{}", &LOWEST[prefix.len()..])).expect("a prefix padded with zeros is a UUID");
        let mut next = match self.coordination.account(lowest)? {
            Some(_) => Some(lowest),
            None => self.coordination.next_account_after(Some(lowest))?,
        };
        let mut matching = Vec::new();
        while let Some(id) = next.filter(|id| id.to_string().starts_with(&prefix)) {
            matching.push(id);
            next = self.coordination.next_account_after(Some(id))?;
        }
        super::one_by_prefix(matching, &prefix, "accounts have an id", || format!("no account has an id starting with {prefix}"))
    }

    pub fn accounts(&self) -> Result<Vec<Account>, AppError> {
        Ok(self.coordination.accounts()?)
    }

    /// Renames, sets the shard and/or flips. A flip changes the flag on the
    /// whole fleet and returns once no host runs a request of the account
    /// under the old value; if it fails, nothing changed (the name neither).
    pub fn update_account(&self, id: Uuid, change: AccountChange) -> Result<Account, AppError> {
        let name = change.name.as_deref().map(|n| valid_name(n, self.settings.max_name_bytes)).transpose()?;
        let shard = change.shard.map(|s| valid_shard(s, self.settings.max_name_bytes)).transpose()?;
        if let Some(to) = change.is_migrating {
            let cause = FlipCause { actor: Actor::Operator.as_str(), reason: "account update", action: "", rollout: None };
            self.set_flag(id, to, cause)?;
        }
        if name.is_none() && shard.is_none() {
            return self.account(id);
        }
        let details = AccountDetails { name: name.map(str::to_owned), shard };
        self.coordination.update_account(id, &details, self.now_ms())?.ok_or_else(no_account)
    }

    /// Changes the account's flag on the whole fleet (the gate first, for
    /// on), recorded in the audit log with its `cause`. A rollout passes the
    /// stop generation it began at: once the kill switch raised it, the
    /// rollout turns nothing on (`AppError::Stopped`).
    pub(super) fn set_flag(&self, id: Uuid, to: bool, cause: FlipCause<'_>) -> Result<FlipOutcome, AppError> {
        let _admin = to.then(|| self.plugins.admin_lock());
        if to {
            self.migration_gate()?;
        }
        let started = std::time::Instant::now();
        let account = id.to_string();
        let fence = |epoch| self.stores.raise_fence(&account, epoch).map_err(|e| e.to_string());
        let outcome = self.fleet.flip(id, to, cause, &fence);
        let label = match &outcome {
            Ok(FlipOutcome::Flipped { .. }) => "flipped",
            Ok(FlipOutcome::Unchanged) => "unchanged",
            Err(_) => "failed",
        };
        metrics::counter!(crate::metrics::FLIPS, "outcome" => label).increment(1);
        metrics::histogram!(crate::metrics::FLIP_DURATION, "outcome" => label).record(started.elapsed().as_secs_f64());
        let outcome = outcome?;
        if let FlipOutcome::Flipped { hosts, took } = outcome {
            tracing::info!(account = %id, is_migrating = to, hosts, took_us = took.as_micros() as u64, reason = cause.reason, "isMigrating changed on the fleet");
        }
        Ok(outcome)
    }

    /// Deregisters this host from the fleet (at shutdown, once requests ended).
    pub fn leave_fleet(&self) {
        self.fleet.leave();
    }

    /// Every host serving this data dir (`GET /hosts`).
    pub fn hosts(&self) -> Result<Vec<HostView>, AppError> {
        Ok(self.fleet.hosts()?)
    }

    /// A migration starts only once the code that understands it runs
    /// (the design note's first goal): old code beside a migration loses
    /// notes (see `plugins/routing/src/legacy_only.rs`).
    pub(super) fn migration_gate(&self) -> Result<(), AppError> {
        let router = self.plugins.serving();
        if !router.supports_migration() {
            return Err(AppError::Gate(format!(
                "cannot turn isMigrating on: the active plugin {} does not support migration; \
                 old code running beside a migration loses notes. Activate a plugin that supports migration first \
                 (`notes-host plugin rollback` to the one before, or `notes-host plugin list`, then `notes-host plugin activate <digest>`)",
                router.label()
            )));
        }
        if self.stores.new.is_none() {
            return Err(AppError::Gate(
                "cannot turn isMigrating on: this host has no new store (started with --shards 0)".into(),
            ));
        }
        Ok(())
    }
}

fn valid_name(name: &str, max_bytes: usize) -> Result<&str, AppError> {
    // Notely's texts, which its client shows to its user; like Notely, the
    // limit counts bytes.
    if name.is_empty() {
        return Err(AppError::Invalid("account name is required".into()));
    }
    let trimmed = name.trim();
    if trimmed.len() > max_bytes {
        return Err(AppError::TooLong { what: "account name", max_bytes, sent_bytes: trimmed.len() });
    }
    if trimmed.is_empty() {
        return Err(AppError::Invalid("account name cannot be only whitespace".into()));
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(AppError::Invalid(format!("name must not contain control characters, found {c:?}")));
    }
    if let Some(c) = trimmed.chars().find(|&c| is_bidi_control(c)) {
        return Err(AppError::Invalid(format!(
            "name must not contain bidirectional controls (they make text read in another order than it is stored), found U+{:04X}",
            c as u32
        )));
    }
    if trimmed.chars().all(is_invisible) {
        return Err(AppError::Invalid("account name has no visible character".into()));
    }
    Ok(trimmed)
}

/// Unicode's bidirectional formatting characters (embeddings, overrides,
/// isolates and marks): a name holding one can show as another name.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: white space, and the zero-width and
/// formatting characters that `char::is_whitespace` does not count.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}'
            | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}')
}

/// A shard is echoed to Notely clients as they sent it: any text up to the
/// name limit, without control characters.
fn valid_shard(shard: String, max_bytes: usize) -> Result<String, AppError> {
    if shard.len() > max_bytes {
        return Err(AppError::Invalid(format!("shard must be at most {max_bytes} bytes, got {}", shard.len())));
    }
    if let Some(c) = shard.chars().find(|c| c.is_control()) {
        return Err(AppError::Invalid(format!("shard must not contain control characters, found {c:?}")));
    }
    Ok(shard)
}
