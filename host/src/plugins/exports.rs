//! A plugin's exports, whichever served version of `notes:plugin` it was
//! built against, and the [`Router`] calls on them: the one place that knows
//! which version has what. Results of an older version are converted to the
//! newest types; an operation a version lacks is refused naming the version.

use notes_routing::{Error, IdList, MoveReport, Note, NoteChange};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::{v0_1, v0_2, v0_3};
use super::{CallState, Plugin, PluginInfo, WIT_VERSION};
use crate::router::{AccountScope, InstanceUsage, Instances, Routed, Router};

/// The served versions, oldest first: what `exports` and `wit/VERSIONS.md` list.
pub const SERVED_WIT_VERSIONS: [&str; 3] = ["0.1.0", "0.2.0", "0.3.0"];

/// The interface each served version exports the router as.
pub(super) const EXPORT_NAMES: [(&str, &str); 3] = [("0.1", "note-store"), ("0.2", "router"), ("0.3", "router")];

pub(super) enum ExportsPre {
    V0_1(v0_1::NotePluginPre<CallState>),
    V0_2(v0_2::NotePluginPre<CallState>),
    V0_3(v0_3::NotePluginPre<CallState>),
}

pub(super) enum Exports {
    V0_1(v0_1::NotePlugin),
    V0_2(v0_2::NotePlugin),
    V0_3(v0_3::NotePlugin),
}

impl ExportsPre {
    /// Type-checks the exports against the bindings of `wit_version` (already
    /// known to be served).
    pub fn new(pre: InstancePre<CallState>, wit_version: &str) -> wasmtime::Result<Self> {
        Ok(if wit_version.starts_with("0.1.") {
            ExportsPre::V0_1(v0_1::NotePluginPre::new(pre)?)
        } else if wit_version.starts_with("0.2.") {
            ExportsPre::V0_2(v0_2::NotePluginPre::new(pre)?)
        } else {
            ExportsPre::V0_3(v0_3::NotePluginPre::new(pre)?)
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            ExportsPre::V0_1(pre) => pre.engine(),
            ExportsPre::V0_2(pre) => pre.engine(),
            ExportsPre::V0_3(pre) => pre.engine(),
        }
    }

    pub async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Exports> {
        Ok(match self {
            ExportsPre::V0_1(pre) => Exports::V0_1(pre.instantiate_async(store).await?),
            ExportsPre::V0_2(pre) => Exports::V0_2(pre.instantiate_async(store).await?),
            ExportsPre::V0_3(pre) => Exports::V0_3(pre.instantiate_async(store).await?),
        })
    }
}

impl Exports {
    pub async fn info(&self, store: &mut Store<CallState>) -> wasmtime::Result<PluginInfo> {
        Ok(match self {
            Exports::V0_1(p) => {
                let i = p.notes_plugin_note_store().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
            Exports::V0_2(p) => {
                let i = p.notes_plugin_router().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
            Exports::V0_3(p) => {
                let i = p.notes_plugin_router().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
        })
    }
}

/// Runs `$call` with `$router` bound to the plugin's router export, for
/// whichever version it is, and converts the answer to the plain types.
macro_rules! on_router {
    ($exports:expr, $router:ident => $call:expr) => {
        match $exports {
            Exports::V0_1(p) => {
                let $router = p.notes_plugin_note_store();
                $call.map(|answer| answer.map(Into::into).map_err(Error::from))
            }
            Exports::V0_2(p) => {
                let $router = p.notes_plugin_router();
                $call.map(|answer| answer.map(Into::into).map_err(Error::from))
            }
            Exports::V0_3(p) => {
                let $router = p.notes_plugin_router();
                $call.map(|answer| answer.map(Into::into).map_err(Error::from))
            }
        }
    };
}

#[async_trait::async_trait]
impl Router for Plugin {
    fn label(&self) -> &str {
        &self.label
    }

    fn digest(&self) -> &str {
        &self.digest
    }

    fn supports_migration(&self) -> bool {
        self.info.supports_migration
    }

    fn usage(&self) -> Option<InstanceUsage> {
        Some(self.instance_usage())
    }

    fn instances(&self) -> Option<Instances> {
        Some(Plugin::instances(self))
    }

    fn set_instances(&self, instances: Instances) {
        Plugin::set_instances(self, instances);
    }

    fn writes_block(&self) -> bool {
        false
    }

    async fn create_note(&self, scope: AccountScope, change: NoteChange, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, p) = (&mut call.warm.store, &call.warm.plugin);
        let answer = on_router!(p, r => r.call_create_note(store, &account, &change.into(), is_migrating).await);
        self.leave(call, answer)
    }

    async fn get_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, p) = (&mut call.warm.store, &call.warm.plugin);
        let answer = on_router!(p, r => r.call_get_note(store, &account, note_id, is_migrating).await);
        self.leave(call, answer)
    }

    async fn list_notes(&self, scope: AccountScope, is_migrating: bool) -> Routed<IdList> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let store = &mut call.warm.store;
        let answer = match &call.warm.plugin {
            // One string for the whole list (0.3's `note-id-list`).
            Exports::V0_3(p) => p
                .notes_plugin_router()
                .call_list_notes(store, &account, is_migrating)
                .await
                .map(|answer| answer.map(IdList::parse).map_err(Error::from)),
            Exports::V0_2(p) => p
                .notes_plugin_router()
                .call_list_notes(store, &account, is_migrating)
                .await
                .map(|answer| answer.map(IdList::from_iter).map_err(Error::from)),
            Exports::V0_1(p) => p
                .notes_plugin_note_store()
                .call_list_notes(store, &account, is_migrating)
                .await
                .map(|answer| answer.map(IdList::from_iter).map_err(Error::from)),
        };
        self.leave(call, answer)
    }

    async fn update_note(&self, scope: AccountScope, change: NoteChange, expected: Option<u64>, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, p) = (&mut call.warm.store, &call.warm.plugin);
        let answer = on_router!(p, r => r.call_update_note(store, &account, &change.into(), expected, is_migrating).await);
        self.leave(call, answer)
    }

    async fn delete_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<()> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, p) = (&mut call.warm.store, &call.warm.plugin);
        let answer = on_router!(p, r => r.call_delete_note(store, &account, note_id, is_migrating).await);
        self.leave(call, answer)
    }

    async fn move_notes(&self, scope: AccountScope, note_ids: &[String], is_migrating: bool) -> Routed<MoveReport> {
        if let ExportsPre::V0_1(_) = &self.pre {
            return Ok(Err(Error::Invalid(format!(
                "plugin {} was built against notes:plugin@{}, which cannot move notes; rebuild it against notes:plugin@{WIT_VERSION}",
                self.label, self.wit_version
            ))));
        }
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let store = &mut call.warm.store;
        let answer = match &call.warm.plugin {
            Exports::V0_2(p) => p
                .notes_plugin_router()
                .call_move_notes(store, &account, note_ids, is_migrating)
                .await
                .map(|answer| answer.map(Into::into).map_err(Error::from)),
            Exports::V0_3(p) => p
                .notes_plugin_router()
                .call_move_notes(store, &account, note_ids, is_migrating)
                .await
                .map(|answer| answer.map(Into::into).map_err(Error::from)),
            Exports::V0_1(_) => unreachable!("refused above: its instances come from its own pre"),
        };
        self.leave(call, answer)
    }
}
