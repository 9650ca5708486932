//! Host-side bindings of every served version of `notes:plugin`
//! (`wit/VERSIONS.md`), and their conversions to the plain [`notes_routing`]
//! types the rest of the host uses. Each version gets its own `bindgen!`
//! module; the conversions and the `stores` import are written once, by the
//! macros below, for the types every version shares.

/// One served version's bindings, all generated alike: the call runs on the
/// request's task (async exports), and a store call waits there, for a
/// write's commit or a round trip to PostgreSQL, without holding the thread
/// (async `stores` imports; `is-configured` asks nothing of a store). The
/// imports a version has beyond 0.1's are named after the path.
macro_rules! served_version {
    ($path:literal $(, $since_0_2:literal)*) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "note-plugin",
            exports: { default: async },
            imports: {
                "notes:plugin/stores.get": async,
                "notes:plugin/stores.put": async,
                "notes:plugin/stores.delete-if-not-newer": async,
                "notes:plugin/stores.list-ids": async,
                $($since_0_2: async,)*
            },
        });
    };
}

/// `notes:plugin@0.1.0`: the interface `note-store`; no move, no recorded version.
pub(super) mod v0_1 {
    served_version!("../wit/v0.1/notes.wit");
}

/// `notes:plugin@0.2.0`: the interface `router`, lists of ids as `list<string>`.
pub(super) mod v0_2 {
    served_version!("../wit/v0.2/notes.wit", "notes:plugin/stores.recorded-version");
}

/// `notes:plugin@0.3.0`: lists of ids as one `note-id-list`.
pub(super) mod v0_3 {
    served_version!("../wit/v0.3/notes.wit", "notes:plugin/stores.recorded-version");
}

/// `notes:plugin@0.4.0` (the current version): `router.homes`, where the
/// plugin says each note belongs.
pub(super) mod v0_4 {
    served_version!("../wit/notes.wit", "notes:plugin/stores.recorded-version");
}

use notes_routing::{Error, MoveReport, Note, NoteChange, Placement, Store, Stores};

use super::CallState;
use crate::router::AccountScope;

/// The conversions between one version's types and the plain ones, and the
/// `stores` functions every version has, answered from the call's scope.
macro_rules! shared_by_every_version {
    ($v:ident) => {
        impl $v::notes::plugin::types::Host for CallState {}

        impl From<$v::notes::plugin::stores::Store> for Store {
            fn from(s: $v::notes::plugin::stores::Store) -> Self {
                match s {
                    $v::notes::plugin::stores::Store::Legacy => Store::Legacy,
                    $v::notes::plugin::stores::Store::New => Store::New,
                }
            }
        }

        impl From<$v::notes::plugin::types::Note> for Note {
            fn from(n: $v::notes::plugin::types::Note) -> Self {
                let $v::notes::plugin::types::Note { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
                Note { id, account_id, content, created_at_ms, updated_at_ms, version }
            }
        }

        impl From<Note> for $v::notes::plugin::types::Note {
            fn from(n: Note) -> Self {
                let Note { id, account_id, content, created_at_ms, updated_at_ms, version } = n;
                $v::notes::plugin::types::Note { id, account_id, content, created_at_ms, updated_at_ms, version }
            }
        }

        impl From<NoteChange> for $v::notes::plugin::types::NoteChange {
            fn from(c: NoteChange) -> Self {
                $v::notes::plugin::types::NoteChange { id: c.id, content: c.content, at_ms: c.at_ms }
            }
        }

        impl From<Error> for $v::notes::plugin::types::Error {
            fn from(e: Error) -> Self {
                use $v::notes::plugin::types::Error as W;
                match e {
                    Error::NotFound => W::NotFound,
                    Error::VersionMismatch(v) => W::VersionMismatch(v),
                    Error::Conflict(m) => W::Conflict(m),
                    Error::Invalid(m) => W::Invalid(m),
                    Error::Unavailable(m) => W::Unavailable(m),
                    Error::Internal(m) => W::Internal(m),
                }
            }
        }

        impl From<$v::notes::plugin::types::Error> for Error {
            fn from(e: $v::notes::plugin::types::Error) -> Self {
                use $v::notes::plugin::types::Error as W;
                match e {
                    W::NotFound => Error::NotFound,
                    W::VersionMismatch(v) => Error::VersionMismatch(v),
                    W::Conflict(m) => Error::Conflict(m),
                    W::Invalid(m) => Error::Invalid(m),
                    W::Unavailable(m) => Error::Unavailable(m),
                    W::Internal(m) => Error::Internal(m),
                }
            }
        }

        impl $v::notes::plugin::stores::Host for CallState {
            async fn get(
                &mut self,
                s: $v::notes::plugin::stores::Store,
                note_id: String,
            ) -> Result<Option<$v::notes::plugin::types::Note>, $v::notes::plugin::types::Error> {
                Ok(store_call(self, s.into(), async |scope| scope.get_async(s.into(), &note_id).await).await?.map(Into::into))
            }

            async fn put(
                &mut self,
                s: $v::notes::plugin::stores::Store,
                n: $v::notes::plugin::types::Note,
            ) -> Result<bool, $v::notes::plugin::types::Error> {
                let n = n.into();
                Ok(store_call(self, s.into(), async |scope| scope.put_async(s.into(), &n).await).await?)
            }

            async fn delete_if_not_newer(
                &mut self,
                s: $v::notes::plugin::stores::Store,
                note_id: String,
                version: u64,
            ) -> Result<bool, $v::notes::plugin::types::Error> {
                Ok(store_call(self, s.into(), async |scope| scope.delete_if_not_newer_async(s.into(), &note_id, version).await).await?)
            }

            fn is_configured(&mut self, s: $v::notes::plugin::stores::Store) -> bool {
                self.scope.as_ref().is_some_and(|scope| scope.is_configured(s.into()))
            }

            shared_by_every_version!(@since_0_2 $v);
            shared_by_every_version!(@list_ids $v);
        }

        shared_by_every_version!(@move_report $v);
    };
    (@move_report v0_1) => {};
    (@move_report $v:ident) => {
        impl From<$v::notes::plugin::types::MoveReport> for MoveReport {
            fn from(r: $v::notes::plugin::types::MoveReport) -> Self {
                MoveReport { moved: r.moved, in_place: r.in_place, missing: r.missing }
            }
        }
    };
    (@since_0_2 v0_1) => {};
    (@since_0_2 $v:ident) => {
        async fn recorded_version(
            &mut self,
            s: $v::notes::plugin::stores::Store,
            note_id: String,
        ) -> Result<Option<u64>, $v::notes::plugin::types::Error> {
            Ok(store_call(self, s.into(), async |scope| scope.recorded_version_async(s.into(), &note_id).await).await?)
        }
    };
    (@list_ids v0_3) => {
        shared_by_every_version!(@joined_list_ids v0_3);
    };
    (@list_ids v0_4) => {
        shared_by_every_version!(@joined_list_ids v0_4);
    };
    (@joined_list_ids $v:ident) => {
        async fn list_ids(&mut self, s: $v::notes::plugin::stores::Store) -> Result<String, $v::notes::plugin::types::Error> {
            Ok(store_call(self, s.into(), async |scope| scope.list_ids_async(s.into()).await).await?.into_joined())
        }
    };
    (@list_ids $v:ident) => {
        async fn list_ids(&mut self, s: $v::notes::plugin::stores::Store) -> Result<Vec<String>, $v::notes::plugin::types::Error> {
            Ok(store_call(self, s.into(), async |scope| scope.list_ids_async(s.into()).await).await?.to_vec())
        }
    };
}

shared_by_every_version!(v0_1);
shared_by_every_version!(v0_2);
shared_by_every_version!(v0_3);
shared_by_every_version!(v0_4);

impl From<v0_4::notes::plugin::types::Placement> for Placement {
    fn from(p: v0_4::notes::plugin::types::Placement) -> Self {
        use v0_4::notes::plugin::types::Placement as W;
        match p {
            W::Legacy => Placement::Legacy,
            W::New => Placement::New,
            W::Both => Placement::Both,
        }
    }
}

/// A store call of the plugin's, in the scope of the call in progress. A
/// wait on a store plugin's upstream is not the router's: it is excused from
/// the router's deadline, so a slow upstream never stops a router that did
/// nothing wrong, nor counts against its health (the store plugin's own
/// deadline bounds it). The host's own databases answer within the deadline.
async fn store_call<T>(state: &mut CallState, store: Store, call: impl AsyncFnOnce(&AccountScope) -> Result<T, Error>) -> Result<T, Error> {
    let started = std::time::Instant::now();
    let scope = scope(state)?;
    let excused = scope.waits_on_an_upstream(store);
    let answer = call(scope).await;
    if excused {
        state.clock.excuse(started.elapsed());
    }
    answer
}

/// Every store call goes to the scope of the call in progress (the account
/// of the request being served); there is none between calls.
fn scope(state: &CallState) -> Result<&AccountScope, Error> {
    state.scope.as_ref().ok_or_else(|| Error::Internal("store calls are allowed only while serving a request".into()))
}
