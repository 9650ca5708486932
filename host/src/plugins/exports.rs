//! A plugin's exports, whichever served version of `notes:plugin` it was
//! built against, and the [`Router`] calls on them: the one place that knows
//! which version has what. Results of an older version are converted to the
//! newest types; an operation a version lacks is refused naming the version.
//!
//! A note operation looks up only the export it calls. The generated
//! bindings' `load` looks up and type-checks every export of the plugin for
//! each instance (≈7% of a GET's CPU through the plugin, BENCHMARKS.md "Where
//! a GET's CPU goes"), though the types cannot differ between two instances
//! of one component. Here the five note operations' functions are
//! type-checked once, when the plugin loads ([`ExportsPre::check`], run by
//! `Runtime::instantiate` before the plugin serves anything), and each call
//! then takes its function unchecked, typed by the same bindings.

use notes_routing::{Error, IdList, MoveReport, Note, NoteChange, Placement, Store as StoreKind, Stores as _};
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Func, Instance, InstancePre, Lift, Lower, TypedFunc};

use super::bindings::{v0_1, v0_2, v0_3, v0_4};
use super::{CallState, Plugin, PluginInfo, WIT_VERSION};
use crate::router::{AccountScope, InstanceUsage, Instances, Routed, Router, RouterInfo};

/// The served versions, oldest first: what `exports` and `wit/VERSIONS.md` list.
pub const SERVED_WIT_VERSIONS: [&str; 4] = ["0.1.0", "0.2.0", "0.3.0", "0.4.0"];

/// The interface each served version exports the router as.
pub(super) const EXPORT_NAMES: [(&str, &str); 4] = [("0.1", "note-store"), ("0.2", "router"), ("0.3", "router"), ("0.4", "router")];

type RouterV0_1 = v0_1::exports::notes::plugin::note_store::Guest;
type RouterV0_2 = v0_2::exports::notes::plugin::router::Guest;
type RouterV0_3 = v0_3::exports::notes::plugin::router::Guest;
type RouterV0_4 = v0_4::exports::notes::plugin::router::Guest;

/// A compiled plugin, linked and ready to instantiate, with where its
/// exports are.
pub(super) struct ExportsPre {
    pre: InstancePre<CallState>,
    /// The whole router export, type-checked on load (`info`, `move-notes`).
    version: Version,
    /// The note operations' functions.
    notes: NoteExports,
}

/// The generated bindings of the version a plugin was built against.
enum Version {
    V0_1(v0_1::NotePluginIndices),
    V0_2(v0_2::NotePluginIndices),
    V0_3(v0_3::NotePluginIndices),
    V0_4(v0_4::NotePluginIndices),
}

/// Where the note operations are among a plugin's exports.
struct NoteExports {
    create: ComponentExportIndex,
    get: ComponentExportIndex,
    list: ComponentExportIndex,
    update: ComponentExportIndex,
    delete: ComponentExportIndex,
}

impl NoteExports {
    fn find(pre: &InstancePre<CallState>, interface: &str) -> wasmtime::Result<Self> {
        let component = pre.component();
        let router = component
            .get_export_index(None, interface)
            .ok_or_else(|| wasmtime::format_err!("no exported instance named `{interface}`"))?;
        let find = |name: &str| {
            component.get_export_index(Some(&router), name).ok_or_else(|| wasmtime::format_err!("`{interface}` does not export `{name}`"))
        };
        Ok(NoteExports {
            create: find("create-note")?,
            get: find("get-note")?,
            list: find("list-notes")?,
            update: find("update-note")?,
            delete: find("delete-note")?,
        })
    }
}

/// `func` as the bindings' typed function `_typed` gives.
///
/// SAFETY: `func` must have the type `_typed` has. Every function passed
/// here is one of a plugin's [`NoteExports`], each checked against the same
/// `_typed` by [`typed_as`] when the plugin loaded ([`ExportsPre::check`]);
/// a component's export types are the same in each of its instances.
unsafe fn unchecked<'a, G, P, R>(_typed: fn(&'a G) -> TypedFunc<P, R>, func: Func) -> TypedFunc<P, R>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    // SAFETY: as this function's.
    unsafe { TypedFunc::new_unchecked(func) }
}

/// Type-checks the export at `index` against the bindings' typed function
/// `_typed`: the check [`unchecked`] relies on.
fn typed_as<'a, G, P, R>(
    _typed: fn(&'a G) -> TypedFunc<P, R>,
    store: &mut Store<CallState>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<()>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    instance.get_typed_func::<P, R>(store, index).map(drop)
}

impl ExportsPre {
    /// Finds the router export of the bindings of `wit_version` (already
    /// known to be served). Its types are checked by [`ExportsPre::check`].
    pub(super) fn new(pre: InstancePre<CallState>, wit_version: &str) -> wasmtime::Result<Self> {
        let (version, interface) = if wit_version.starts_with("0.1.") {
            (Version::V0_1(v0_1::NotePluginIndices::new(&pre)?), "notes:plugin/note-store@0.1.0")
        } else if wit_version.starts_with("0.2.") {
            (Version::V0_2(v0_2::NotePluginIndices::new(&pre)?), "notes:plugin/router@0.2.0")
        } else if wit_version.starts_with("0.3.") {
            (Version::V0_3(v0_3::NotePluginIndices::new(&pre)?), "notes:plugin/router@0.3.0")
        } else {
            (Version::V0_4(v0_4::NotePluginIndices::new(&pre)?), "notes:plugin/router@0.4.0")
        };
        let notes = NoteExports::find(&pre, interface)?;
        Ok(ExportsPre { pre, version, notes })
    }

    pub(super) fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }

    pub(super) async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        self.pre.instantiate_async(store).await
    }

    /// Type-checks the note operations' functions of `instance` against
    /// the bindings of the plugin's version: what [`unchecked`] relies on.
    /// Checked by index, the very functions the calls take (an export name
    /// the bindings look up may differ, say `@0.3.1` beside `@0.3.0`).
    pub(super) fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        macro_rules! check_all {
            ($guest:ty) => {{
                let n = &self.notes;
                typed_as(<$guest>::func_create_note, store, instance, &n.create)?;
                typed_as(<$guest>::func_get_note, store, instance, &n.get)?;
                typed_as(<$guest>::func_list_notes, store, instance, &n.list)?;
                typed_as(<$guest>::func_update_note, store, instance, &n.update)?;
                typed_as(<$guest>::func_delete_note, store, instance, &n.delete)
            }};
        }
        match &self.version {
            Version::V0_1(_) => check_all!(RouterV0_1),
            Version::V0_2(_) => check_all!(RouterV0_2),
            Version::V0_3(_) => check_all!(RouterV0_3),
            Version::V0_4(_) => check_all!(RouterV0_4),
        }
    }

    /// Asks the plugin who it is, through the whole router export (its
    /// `load` type-checks every export).
    pub(super) async fn info(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<PluginInfo> {
        Ok(match &self.version {
            Version::V0_1(indices) => {
                let i = indices.load(&mut *store, instance)?.notes_plugin_note_store().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
            Version::V0_2(indices) => {
                let i = indices.load(&mut *store, instance)?.notes_plugin_router().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
            Version::V0_3(indices) => {
                let i = indices.load(&mut *store, instance)?.notes_plugin_router().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
            Version::V0_4(indices) => {
                let i = indices.load(&mut *store, instance)?.notes_plugin_router().call_info(store).await?;
                PluginInfo { name: i.name, version: i.version, supports_migration: i.supports_migration }
            }
        })
    }

    fn is_v0_1(&self) -> bool {
        matches!(self.version, Version::V0_1(_))
    }
}

/// Calls the note operation `$field` (an export of [`NoteExports`]) of the
/// call's instance with `$args`, typed as the bindings' `$typed` of each
/// version, and converts the answer to the plain types.
macro_rules! note_call {
    ($plugin:expr, $call:expr, $field:ident, $typed:ident, $args:expr) => {{
        let (store, instance) = (&mut $call.warm.store, &$call.warm.instance);
        // SAFETY (below): see `unchecked`: the function was type-checked on load.
        match instance.get_func(&mut *store, &$plugin.pre.notes.$field).ok_or_else(missing_export).map(|func| (func, &$plugin.pre.version)) {
            Err(e) => Err(e),
            Ok((func, version)) => match version {
            Version::V0_1(_) => unsafe { unchecked(RouterV0_1::$typed, func) }
                .call_async(&mut *store, $args)
                .await
                .map(|(answer,)| answer.map(Into::into).map_err(Error::from)),
            Version::V0_2(_) => unsafe { unchecked(RouterV0_2::$typed, func) }
                .call_async(&mut *store, $args)
                .await
                .map(|(answer,)| answer.map(Into::into).map_err(Error::from)),
            Version::V0_3(_) => unsafe { unchecked(RouterV0_3::$typed, func) }
                .call_async(&mut *store, $args)
                .await
                .map(|(answer,)| answer.map(Into::into).map_err(Error::from)),
            Version::V0_4(_) => unsafe { unchecked(RouterV0_4::$typed, func) }
                .call_async(&mut *store, $args)
                .await
                .map(|(answer,)| answer.map(Into::into).map_err(Error::from)),
            },
        }
    }};
}

/// An instance without a function its component was checked to have: a bug
/// of the host, failed as the call's trap rather than a panic.
fn missing_export() -> wasmtime::Error {
    wasmtime::format_err!("the plugin's instance lacks a note operation found when it loaded")
}

impl RouterInfo for Plugin {
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

    fn homes_by_migrate_rule(&self) -> bool {
        !matches!(self.pre.version, Version::V0_4(_))
    }
}

#[async_trait::async_trait]
impl Router for Plugin {
    async fn create_note(&self, scope: AccountScope, change: NoteChange, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let answer = note_call!(self, call, create, func_create_note, (account.as_str(), &change.into(), is_migrating));
        self.leave(call, answer)
    }

    async fn get_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let answer = note_call!(self, call, get, func_get_note, (account.as_str(), note_id, is_migrating));
        self.leave(call, answer)
    }

    async fn list_notes(&self, scope: AccountScope, is_migrating: bool) -> Routed<IdList> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, instance) = (&mut call.warm.store, &call.warm.instance);
        let args = (account.as_str(), is_migrating);
        // SAFETY (below): see `unchecked`: the function was type-checked on load.
        let answer = match instance.get_func(&mut *store, &self.pre.notes.list).ok_or_else(missing_export) {
            Err(e) => Err(e),
            Ok(func) => match &self.pre.version {
            // One string for the whole list (0.3's `note-id-list`).
            Version::V0_3(_) => unsafe { unchecked(RouterV0_3::func_list_notes, func) }
                .call_async(&mut *store, args)
                .await
                .map(|(answer,)| answer.map(IdList::parse).map_err(Error::from)),
            Version::V0_4(_) => unsafe { unchecked(RouterV0_4::func_list_notes, func) }
                .call_async(&mut *store, args)
                .await
                .map(|(answer,)| answer.map(IdList::parse).map_err(Error::from)),
            Version::V0_2(_) => unsafe { unchecked(RouterV0_2::func_list_notes, func) }
                .call_async(&mut *store, args)
                .await
                .map(|(answer,)| answer.map(IdList::from_iter).map_err(Error::from)),
            Version::V0_1(_) => unsafe { unchecked(RouterV0_1::func_list_notes, func) }
                .call_async(&mut *store, args)
                .await
                .map(|(answer,)| answer.map(IdList::from_iter).map_err(Error::from)),
            },
        };
        self.leave(call, answer)
    }

    async fn update_note(&self, scope: AccountScope, change: NoteChange, expected: Option<u64>, is_migrating: bool) -> Routed<Note> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let answer = note_call!(self, call, update, func_update_note, (account.as_str(), &change.into(), expected, is_migrating));
        self.leave(call, answer)
    }

    async fn delete_note(&self, scope: AccountScope, note_id: &str, is_migrating: bool) -> Routed<()> {
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let answer = note_call!(self, call, delete, func_delete_note, (account.as_str(), note_id, is_migrating));
        self.leave(call, answer)
    }

    async fn move_notes(&self, scope: AccountScope, note_ids: &[String], is_migrating: bool) -> Routed<MoveReport> {
        if self.pre.is_v0_1() {
            return Ok(Err(Error::Invalid(format!(
                "plugin {} was built against notes:plugin@{}, which cannot move notes; rebuild it against notes:plugin@{WIT_VERSION}",
                self.label, self.wit_version
            ))));
        }
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, instance) = (&mut call.warm.store, &call.warm.instance);
        // Once per batch of moves: through the bindings' whole `load`.
        macro_rules! move_through {
            ($indices:expr) => {
                match $indices.load(&mut *store, instance) {
                    Ok(p) => p
                        .notes_plugin_router()
                        .call_move_notes(&mut *store, &account, note_ids, is_migrating)
                        .await
                        .map(|answer| answer.map(Into::into).map_err(Error::from)),
                    Err(e) => Err(e),
                }
            };
        }
        let answer = match &self.pre.version {
            Version::V0_2(indices) => move_through!(indices),
            Version::V0_3(indices) => move_through!(indices),
            Version::V0_4(indices) => move_through!(indices),
            Version::V0_1(_) => unreachable!("refused above"),
        };
        self.leave(call, answer)
    }

    /// A plugin built before 0.4.0 is not asked: the migrate rule, from
    /// the scope's stores. A 0.4 plugin answers for the whole list in one
    /// call; an answer of another length is the plugin's error.
    async fn homes(&self, scope: AccountScope, note_ids: &IdList, is_migrating: bool) -> Routed<Vec<Placement>> {
        let Version::V0_4(indices) = &self.pre.version else {
            let rule = Placement::by_migrate_rule(scope.is_configured(StoreKind::New), is_migrating);
            return Ok(Ok(vec![rule; note_ids.len()]));
        };
        let account = scope.account_id().to_owned();
        let mut call = self.enter(Some(scope)).await?;
        let (store, instance) = (&mut call.warm.store, &call.warm.instance);
        let answer = match indices.load(&mut *store, instance) {
            Ok(p) => p
                .notes_plugin_router()
                .call_homes(&mut *store, &account, &note_ids.as_str().to_owned(), is_migrating)
                .await
                .map(|answer| answer.map(|homes| homes.into_iter().map(Placement::from).collect::<Vec<_>>()).map_err(Error::from)),
            Err(e) => Err(e),
        };
        let answer = answer.map(|answer| match answer {
            Ok(homes) if homes.len() != note_ids.len() => Err(Error::Internal(format!(
                "homes answered {} placements for {} note ids; it must answer one per id, in order",
                homes.len(),
                note_ids.len()
            ))),
            other => other,
        });
        self.leave(call, answer)
    }
}
