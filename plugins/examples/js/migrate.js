// The migrate strategy in JavaScript (componentize-js), against notes:plugin@0.4.0.
//
// A port of the Rust plugin (plugins/routing/src/ops.rs and migrate.rs): the
// same routes and the same duties of the WIT contract, so it passes
// `notes-host plugin check --profile migrate` and serves the same migration.
// Versions are u64 in the WIT: BigInt here. An `error` is thrown as its
// variant ({ tag, val }); a store call that fails throws, and the failure
// goes back to the host as this call's error.
import { get, put, deleteIfNotNewer, recordedVersion, listIds, isConfigured } from 'notes:plugin/stores@0.4.0';

// How often an update, delete or move re-reads after losing a race before answering `conflict`.
const MAX_ATTEMPTS = 8;

const conflict = (what) => ({ tag: 'conflict', val: `${what}; retry` });
const notFound = { tag: 'not-found' };

/** [where writes go, the store that may still hold older copies]. */
function route(isMigrating) {
  if (!isConfigured('new')) return ['legacy', undefined];
  return isMigrating ? ['new', 'legacy'] : ['legacy', 'new'];
}

/** The newest copy, where it is, and an older copy elsewhere ([store, version]).
 *  `other` is read before `home`: a moving note is durable in `home` before it
 *  leaves `other`, so it is never missed. */
function find(home, other, id) {
  const theirs = other === undefined ? undefined : get(other, id);
  const mine = get(home, id);
  if (mine === undefined && theirs === undefined) return undefined;
  if (theirs === undefined) return { newest: mine, newestIn: home };
  if (mine === undefined) return { newest: theirs, newestIn: other };
  if (theirs.version > mine.version) return { newest: theirs, newestIn: other, stale: [home, mine.version] };
  return { newest: mine, newestIn: home, stale: [other, theirs.version] };
}

function tryDelete(store, id, version) {
  try { deleteIfNotNewer(store, id, version); } catch { /* best effort: a duplicate is resolved by the next read */ }
}

function create(home, other, accountId, change) {
  let recorded = 0n;
  for (const store of other === undefined ? [home] : [other, home]) {
    const version = recordedVersion(store, change.id);
    if (version !== undefined && version > recorded) recorded = version;
    if (get(store, change.id) !== undefined) throw conflict(`note id ${change.id} is already taken`);
  }
  const note = { id: change.id, accountId, content: change.content, createdAtMs: change.atMs, updatedAtMs: change.atMs, version: recorded + 1n };
  if (!put(home, note)) throw conflict(`note id ${change.id} is already taken`);
  return note;
}

function read(home, other, id) {
  const found = find(home, other, id);
  if (found === undefined) throw notFound;
  if (found.stale) tryDelete(found.stale[0], id, found.stale[1]); // read repair
  return found.newest;
}

function list(home, other) {
  // `other` first, as in `find`: a note moving meanwhile is listed.
  const ids = new Set(other === undefined ? [] : listIds(other).split('\n'));
  for (const id of listIds(home).split('\n')) ids.add(id);
  ids.delete('');
  return [...ids].sort(byCodePoint).map((id) => `${id}\n`).join('');
}

/** Byte order of UTF-8, as the WIT asks: code point order (JavaScript's own
 *  sort compares UTF-16 units, which differs above U+FFFF). */
function byCodePoint(a, b) {
  const [x, y] = [[...a], [...b]];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function update(home, other, change, expected) {
  let refused;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const found = find(home, other, change.id);
    if (found === undefined) throw notFound;
    const current = found.newest.version;
    const copies = [...(found.stale ? [found.stale[0]] : []), found.newestIn];
    if (refused && refused[0] === current && refused[1] === found.newestIn) {
      // A newer record nobody can read: the tombstone of a delete that stopped
      // between the stores. Finish that delete.
      for (const store of copies) deleteIfNotNewer(store, change.id, current + 1n);
      throw notFound;
    }
    if (expected !== undefined && expected !== current) throw { tag: 'version-mismatch', val: current };
    const next = { ...found.newest, content: change.content, updatedAtMs: change.atMs, version: current + 1n };
    if (!put(home, next)) {
      refused = [current, found.newestIn];
      continue;
    }
    for (const store of copies) if (store !== home) tryDelete(store, next.id, next.version);
    return next;
  }
  throw conflict(`note ${change.id} kept changing during the update`);
}

function remove(home, other, id) {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const found = find(home, other, id);
    if (found === undefined) throw notFound;
    const tombstone = found.newest.version + 1n;
    let removed = deleteIfNotNewer(home, id, tombstone);
    if (other !== undefined) removed = deleteIfNotNewer(other, id, tombstone) || removed;
    if (removed || find(home, other, id) === undefined) return;
  }
  throw conflict(`note ${id} kept changing during the delete`);
}

function moveOne(home, other, id) {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const found = find(home, other, id);
    if (found === undefined) return 'missing';
    const copies = [...(found.stale ? [found.stale] : []), [found.newestIn, found.newest.version]].filter(([s]) => s !== home);
    if (found.newestIn === home) {
      for (const [store, version] of copies) deleteIfNotNewer(store, id, version);
      return copies.length ? 'moved' : 'inPlace';
    }
    let note = found.newest;
    const tombstone = recordedVersion(home, id);
    if (tombstone !== undefined && tombstone > note.version) {
      for (const [store] of copies) deleteIfNotNewer(store, id, tombstone); // a half-done delete: finish it
      return 'missing';
    }
    if (tombstone === note.version) note = { ...note, version: note.version + 1n };
    if (put(home, note)) {
      for (const [store, version] of copies) deleteIfNotNewer(store, id, version);
      return 'moved';
    }
  }
  throw conflict(`note ${id} kept changing during the move`);
}

/** Runs one operation. A store call that fails throws an error whose
 *  `payload` is the WIT error (say `unavailable`): it is this call's error
 *  too, not a trap, so the client gets 503 as with the Rust plugin. A bug
 *  (an `Error`, say a TypeError) traps; its stack is printed first, since
 *  the bindings report only their own frame (`initializer.js`), and what is
 *  printed reaches `notes-host plugin errors`. */
function answer(operation) {
  try {
    return operation();
  } catch (e) {
    if (e !== null && typeof e === 'object' && 'payload' in e) throw e.payload;
    if (e instanceof Error) console.error(`${e}\n${e.stack}`);
    throw e;
  }
}

export const router = {
  info: () => ({ name: 'migrate-js', version: '0.1.0', supportsMigration: true }),
  createNote: (accountId, change, isMigrating) => answer(() => create(...route(isMigrating), accountId, change)),
  getNote: (accountId, noteId, isMigrating) => answer(() => read(...route(isMigrating), noteId)),
  listNotes: (accountId, isMigrating) => answer(() => list(...route(isMigrating))),
  updateNote: (accountId, change, expectedVersion, isMigrating) => answer(() => update(...route(isMigrating), change, expectedVersion)),
  deleteNote: (accountId, noteId, isMigrating) => answer(() => remove(...route(isMigrating), noteId)),
  moveNotes: (accountId, noteIds, isMigrating) => answer(() => {
    const [home, other] = route(isMigrating);
    const report = { moved: 0, inPlace: 0, missing: 0 };
    for (const id of noteIds) report[moveOne(home, other, id)] += 1;
    return report;
  }),
  // Where each note belongs (one per id of the `note-id-list`): the store
  // this strategy writes to, so the host's verify judges it as it routes.
  homes: (accountId, noteIds, isMigrating) => answer(() => {
    const [home] = route(isMigrating);
    return noteIds.split('\n').filter((id) => id !== '').map(() => home);
  }),
};
