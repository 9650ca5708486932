//! The application core: every operation the API offers, with its rules.
//! Knows no HTTP (that is `api`), no SQL (that is `accounts` and `stores`)
//! and no wasmtime (that is `plugins`).
//!
//! Rules kept here:
//! - the flag is read for every note request and passed to the plugin; if it
//!   cannot be read the request fails (`Unavailable`), it never guesses;
//! - deployment gate: `is_migrating = true` is refused while the active
//!   plugin does not support migration, or there is no new store.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use notes_routing::{Error as PluginError, Note, NoteChange, Store};
use uuid::Uuid;

use crate::accounts::{Account, AccountChange, AccountError, Accounts};
use crate::plugins::{AccountScope, Plugin, PluginFailure};
use crate::stores::{DataStores, StoreError};

/// Longest account name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The deployment gate refused to turn migration on.
    #[error("{0}")]
    Gate(String),
    #[error("version mismatch: the note is at version {current}")]
    VersionMismatch { current: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    #[error("{0}")]
    Internal(String),
}

/// A result served by a plugin, with the plugin's `name@version`.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub plugin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    pub is_migrating: bool,
    pub legacy_notes: u64,
    pub new_notes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub legacy: bool,
    pub new: bool,
}

pub struct App {
    accounts: Accounts,
    stores: DataStores,
    plugin: Arc<Plugin>,
}

impl App {
    /// Refuses a plugin that cannot migrate while any account migrates.
    pub fn new(accounts: Accounts, stores: DataStores, plugin: Plugin) -> Result<Self, AppError> {
        let app = App { accounts, stores, plugin: Arc::new(plugin) };
        app.plugin_gate(&app.plugin)?;
        Ok(app)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    // ---- accounts -------------------------------------------------------

    pub fn create_account(&self, id: Option<Uuid>, name: &str, is_migrating: bool) -> Result<Account, AppError> {
        let name = valid_name(name)?;
        if is_migrating {
            self.migration_gate()?;
        }
        self.accounts.create(id.unwrap_or_else(Uuid::new_v4), name, is_migrating, now_ms()).map_err(Into::into)
    }

    pub fn account(&self, id: Uuid) -> Result<Account, AppError> {
        self.accounts.get(id)?.ok_or_else(|| no_account(id))
    }

    pub fn accounts(&self) -> Result<Vec<Account>, AppError> {
        Ok(self.accounts.list()?)
    }

    pub fn update_account(&self, id: Uuid, mut change: AccountChange) -> Result<Account, AppError> {
        if let Some(name) = &change.name {
            change.name = Some(valid_name(name)?.to_owned());
        }
        if change.is_migrating == Some(true) {
            self.migration_gate()?;
        }
        self.accounts.update(id, &change, now_ms())?.ok_or_else(|| no_account(id))
    }

    /// Seed goal 1: a migration starts only once the code that understands it
    /// runs. Mixed code loses notes (see `plugins/routing/src/legacy.rs`).
    fn migration_gate(&self) -> Result<(), AppError> {
        let info = self.plugin.info();
        if !info.supports_migration {
            return Err(AppError::Gate(format!(
                "cannot turn isMigrating on: the active plugin {} does not support migration; \
                 old code running beside a migration loses notes. Activate a plugin that supports migration first",
                self.plugin.label()
            )));
        }
        if self.stores.new.is_none() {
            return Err(AppError::Gate(
                "cannot turn isMigrating on: this host has no new store (started with --shards 0)".into(),
            ));
        }
        Ok(())
    }

    /// The other half of the gate: old code must not serve an account that
    /// is migrating.
    fn plugin_gate(&self, plugin: &Plugin) -> Result<(), AppError> {
        if plugin.info().supports_migration {
            return Ok(());
        }
        let migrating = self.accounts.migrating()?;
        if migrating.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = migrating.iter().map(Uuid::to_string).collect();
        Err(AppError::Gate(format!(
            "plugin {} does not support migration, but {} account(s) are migrating: {}; turn their isMigrating off first",
            plugin.label(),
            ids.len(),
            ids.join(", ")
        )))
    }

    // ---- notes, through the plugin ---------------------------------------

    pub fn create_note(&self, account: Uuid, id: Option<Uuid>, content: String) -> Result<Served<Note>, AppError> {
        valid_content(&content)?;
        let change = NoteChange { id: id.unwrap_or_else(Uuid::new_v4).to_string(), content, at_ms: now_ms() };
        self.with_plugin(account, |store, p, account, migrating| {
            p.notes_plugin_note_store().call_create_note(store, account, &change.into(), migrating)
        })
        .map(|served| served.map(Note::from))
    }

    pub fn note(&self, account: Uuid, id: Uuid) -> Result<Served<Note>, AppError> {
        self.with_plugin(account, |store, p, account, migrating| {
            p.notes_plugin_note_store().call_get_note(store, account, &id.to_string(), migrating)
        })
        .map(|served| served.map(Note::from))
    }

    pub fn note_ids(&self, account: Uuid) -> Result<Served<Vec<String>>, AppError> {
        self.with_plugin(account, |store, p, account, migrating| {
            p.notes_plugin_note_store().call_list_notes(store, account, migrating)
        })
    }

    pub fn update_note(
        &self,
        account: Uuid,
        id: Uuid,
        content: String,
        expected_version: Option<u64>,
    ) -> Result<Served<Note>, AppError> {
        valid_content(&content)?;
        let change = NoteChange { id: id.to_string(), content, at_ms: now_ms() };
        self.with_plugin(account, |store, p, account, migrating| {
            p.notes_plugin_note_store().call_update_note(store, account, &change.into(), expected_version, migrating)
        })
        .map(|served| served.map(Note::from))
    }

    pub fn delete_note(&self, account: Uuid, id: Uuid) -> Result<Served<()>, AppError> {
        self.with_plugin(account, |store, p, account, migrating| {
            p.notes_plugin_note_store().call_delete_note(store, account, &id.to_string(), migrating)
        })
    }

    /// Reads the account's flag now, then makes one plugin call with the
    /// stores bound to that account.
    fn with_plugin<T>(
        &self,
        account: Uuid,
        call: impl FnOnce(
            &mut wasmtime::Store<crate::plugins::CallState>,
            &crate::plugins::NotePlugin,
            &str,
            bool,
        ) -> wasmtime::Result<Result<T, crate::plugins::WitError>>,
    ) -> Result<Served<T>, AppError> {
        let is_migrating = self.flag(account)?;
        let plugin = Arc::clone(&self.plugin);
        let account_id = account.to_string();
        let scope = AccountScope::new(account_id.clone(), self.stores.clone());
        let answer = plugin.call(Some(scope), |store, p| call(store, p, &account_id, is_migrating))?;
        match answer {
            Ok(value) => Ok(Served { value, plugin: plugin.label().to_owned() }),
            Err(e) => Err(from_plugin_error(PluginError::from(e), plugin.label())),
        }
    }

    /// Fail closed: an account that cannot be read fails the request.
    fn flag(&self, account: Uuid) -> Result<bool, AppError> {
        match self.accounts.is_migrating(account) {
            Ok(Some(flag)) => Ok(flag),
            Ok(None) => Err(no_account(account)),
            Err(e) => Err(AppError::Unavailable(format!("cannot read the isMigrating flag of account {account}: {e}"))),
        }
    }

    // ---- operator views, straight from the stores -------------------------

    pub fn migration_status(&self, account: Uuid) -> Result<MigrationStatus, AppError> {
        let is_migrating = self.flag(account)?;
        let key = account.to_string();
        let new_notes = match &self.stores.new {
            Some(new) => new.count(&key)?,
            None => 0,
        };
        Ok(MigrationStatus { is_migrating, legacy_notes: self.stores.legacy.count(&key)?, new_notes })
    }

    pub fn placement(&self, account: Uuid, note: Uuid) -> Result<Placement, AppError> {
        self.flag(account)?;
        let (key, id) = (account.to_string(), note.to_string());
        let is_in = |store| -> Result<bool, AppError> {
            Ok(match self.stores.get(store) {
                Some(s) => s.get(&key, &id)?.is_some(),
                None => false,
            })
        };
        let placement = Placement { legacy: is_in(Store::Legacy)?, new: is_in(Store::New)? };
        if !placement.legacy && !placement.new {
            return Err(AppError::NotFound(format!("note {note} is in no store")));
        }
        Ok(placement)
    }
}

impl<T> Served<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Served<U> {
        Served { value: f(self.value), plugin: self.plugin }
    }
}

fn from_plugin_error(e: PluginError, plugin: &str) -> AppError {
    match e {
        PluginError::NotFound => AppError::NotFound("note not found".into()),
        PluginError::VersionMismatch(current) => AppError::VersionMismatch { current },
        PluginError::Conflict(m) => AppError::Conflict(m),
        PluginError::Invalid(m) => AppError::Invalid(m),
        PluginError::Unavailable(m) => AppError::Unavailable(m),
        PluginError::Internal(m) => AppError::Internal(format!("plugin {plugin}: {m}")),
    }
}

fn no_account(id: Uuid) -> AppError {
    AppError::NotFound(format!("account {id} not found"))
}

fn valid_name(name: &str) -> Result<&str, AppError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(AppError::Invalid("name must not be blank".into()));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::Invalid(format!("name must be at most {MAX_NAME_CHARS} characters")));
    }
    Ok(trimmed)
}

fn valid_content(content: &str) -> Result<(), AppError> {
    if content.is_empty() {
        return Err(AppError::Invalid("content must not be empty".into()));
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::AlreadyExists(_) => AppError::Conflict(e.to_string()),
            AccountError::Unavailable(_) => AppError::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => AppError::Unavailable(e.to_string()),
            StoreError::Invalid(m) => AppError::Invalid(m),
            StoreError::Internal(_) => AppError::Internal(e.to_string()),
        }
    }
}
