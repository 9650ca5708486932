"""The migrate strategy in Python (componentize-py), against notes:plugin@0.4.0.

A port of the Rust plugin (`plugins/routing/src/ops.rs` and `migrate.rs`):
the same routes and the same duties of the WIT contract, so it passes
`notes-host plugin check --profile migrate` and serves the same migration.

- migration mode (flag on): create -> new; update moves the note to new;
  get -> new first, then legacy; list -> both; delete -> both.
- rollback mode (flag off, new store configured): the same, towards legacy.
- plain mode (no new store): legacy only.
"""

from dataclasses import replace
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import stores
from wit_world.imports.stores import Store
from wit_world.imports.types import (
    Error_Conflict,
    Error_NotFound,
    Error_VersionMismatch,
    MoveReport,
    Note,
    NoteChange,
    Placement,
    PluginInfo,
)

# How often an update, delete or move re-reads after losing a race before
# answering `conflict`.
MAX_ATTEMPTS = 8


def route(is_migrating: bool) -> Tuple[Store, Optional[Store]]:
    """(where writes go, the store that may still hold older copies)."""
    if not stores.is_configured(Store.NEW):
        return Store.LEGACY, None
    if is_migrating:
        return Store.NEW, Store.LEGACY
    return Store.LEGACY, Store.NEW


def find(home: Store, other: Optional[Store], note_id: str):
    """The newest copy, where it is, and an older copy elsewhere (store, version).

    `other` is read before `home`: a note moving from `other` to `home` is made
    durable in `home` before it leaves `other`, so it is never missed.
    """
    theirs = stores.get(other, note_id) if other is not None else None
    mine = stores.get(home, note_id)
    if mine is None and theirs is None:
        return None
    if theirs is None:
        return mine, home, None
    if mine is None:
        return theirs, other, None
    if theirs.version > mine.version:
        return theirs, other, (home, mine.version)
    return mine, home, (other, theirs.version)


def create(home: Store, other: Optional[Store], account_id: str, change: NoteChange) -> Note:
    recorded = 0
    for store in ([other] if other is not None else []) + [home]:
        recorded = max(recorded, stores.recorded_version(store, change.id) or 0)
        if stores.get(store, change.id) is not None:
            raise Err(Error_Conflict(f"note id {change.id} is already taken"))
    note = Note(change.id, account_id, change.content, change.at_ms, change.at_ms, recorded + 1)
    if not stores.put(home, note):
        raise Err(Error_Conflict(f"note id {change.id} is already taken"))
    return note


def get(home: Store, other: Optional[Store], note_id: str) -> Note:
    found = find(home, other, note_id)
    if found is None:
        raise Err(Error_NotFound())
    newest, _, stale = found
    if stale is not None:
        try:  # read repair, best effort: a leftover duplicate is harmless
            stores.delete_if_not_newer(stale[0], note_id, stale[1])
        except Err:
            pass
    return newest


def list_ids(home: Store, other: Optional[Store]) -> str:
    # `other` first, as in `find`: a note moving meanwhile is listed.
    ids = set(stores.list_ids(other).split("\n")) if other is not None else set()
    ids.update(stores.list_ids(home).split("\n"))
    ids.discard("")
    return "".join(f"{i}\n" for i in sorted(ids))


def update(home: Store, other: Optional[Store], change: NoteChange, expected: Optional[int]) -> Note:
    refused = None
    for _ in range(MAX_ATTEMPTS):
        found = find(home, other, change.id)
        if found is None:
            raise Err(Error_NotFound())
        newest, newest_in, stale = found
        current = newest.version
        if refused == (current, newest_in):
            # A newer record nobody can read: a tombstone of a delete that
            # stopped between the stores. Finish that delete.
            for store in ([stale[0]] if stale else []) + [newest_in]:
                stores.delete_if_not_newer(store, change.id, current + 1)
            raise Err(Error_NotFound())
        if expected is not None and expected != current:
            raise Err(Error_VersionMismatch(current))
        nxt = replace(newest, content=change.content, updated_at_ms=change.at_ms, version=current + 1)
        if not stores.put(home, nxt):
            refused = (current, newest_in)
            continue
        for store in ([stale[0]] if stale else []) + [newest_in]:
            if store != home:
                try:
                    stores.delete_if_not_newer(store, nxt.id, nxt.version)
                except Err:
                    pass
        return nxt
    raise Err(Error_Conflict(f"note {change.id} kept changing during the update; retry"))


def delete(home: Store, other: Optional[Store], note_id: str) -> None:
    for _ in range(MAX_ATTEMPTS):
        found = find(home, other, note_id)
        if found is None:
            raise Err(Error_NotFound())
        tombstone = found[0].version + 1
        removed = stores.delete_if_not_newer(home, note_id, tombstone)
        if other is not None:
            removed = stores.delete_if_not_newer(other, note_id, tombstone) or removed
        if removed or find(home, other, note_id) is None:
            return
    raise Err(Error_Conflict(f"note {note_id} kept changing during the delete; retry"))


def move_one(home: Store, other: Optional[Store], note_id: str) -> str:
    for _ in range(MAX_ATTEMPTS):
        found = find(home, other, note_id)
        if found is None:
            return "missing"
        newest, newest_in, stale = found
        copies = [c for c in ([stale] if stale else []) + [(newest_in, newest.version)] if c[0] != home]
        if newest_in == home:
            for store, version in copies:
                stores.delete_if_not_newer(store, note_id, version)
            return "moved" if copies else "in-place"
        note = newest
        tombstone = stores.recorded_version(home, note_id)
        if tombstone is not None and tombstone > note.version:
            for store, _ in copies:  # a delete stopped between the stores: finish it
                stores.delete_if_not_newer(store, note_id, tombstone)
            return "missing"
        if tombstone == note.version:
            note = replace(note, version=note.version + 1)
        if stores.put(home, note):
            for store, version in copies:
                stores.delete_if_not_newer(store, note_id, version)
            return "moved"
    raise Err(Error_Conflict(f"note {note_id} kept changing during the move; retry"))


class Router(exports.Router):
    def info(self) -> PluginInfo:
        return PluginInfo("migrate-python", "0.1.0", True)

    def create_note(self, account_id: str, change: NoteChange, is_migrating: bool) -> Note:
        return create(*route(is_migrating), account_id, change)

    def get_note(self, account_id: str, note_id: str, is_migrating: bool) -> Note:
        return get(*route(is_migrating), note_id)

    def list_notes(self, account_id: str, is_migrating: bool) -> str:
        return list_ids(*route(is_migrating))

    def update_note(self, account_id: str, change: NoteChange, expected_version: Optional[int], is_migrating: bool) -> Note:
        return update(*route(is_migrating), change, expected_version)

    def delete_note(self, account_id: str, note_id: str, is_migrating: bool) -> None:
        delete(*route(is_migrating), note_id)

    def move_notes(self, account_id: str, note_ids: List[str], is_migrating: bool) -> MoveReport:
        home, other = route(is_migrating)
        outcomes = [move_one(home, other, i) for i in note_ids]
        return MoveReport(outcomes.count("moved"), outcomes.count("in-place"), outcomes.count("missing"))

    def homes(self, account_id: str, note_ids: str, is_migrating: bool) -> List[Placement]:
        # Where each note belongs (one per id of the note-id-list): the store
        # this strategy writes to, so the host's verify judges it as it routes.
        home = Placement.NEW if route(is_migrating)[0] == Store.NEW else Placement.LEGACY
        return [home for note_id in note_ids.split("\n") if note_id]
