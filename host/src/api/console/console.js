// The operator console. Every figure comes from the host's public API with the
// admin token the operator typed (kept for this tab only), and every button is
// one API call, so anything done here can be done with curl.
import { html, render, useState, useEffect, useRef, useCallback } from './htm-preact-standalone-3.1.1.js';
// The API's names (job kinds and states), written by the host from the types that spell them.
import { JobKind, JobState } from './names.js';

// A style or script the Content-Security-Policy blocks is a bug of this page:
// said in the browser's console, and kept for the browser tests to read.
window.consoleCspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.consoleCspViolations.push(`${e.violatedDirective}: ${e.blockedURI || e.sample}`);
  console.error('blocked by the Content-Security-Policy:', e.violatedDirective, e.blockedURI, e.sample);
});

// ---- the API ------------------------------------------------------------------------

const TOKEN_KEY = 'notes-console-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';

/// Connection and credential state, shown by the header and the login page.
const link = {
  state: { reachable: true, auth: 'unknown', message: '', throttled: '' },
  listeners: new Set(),
  set(patch) {
    const next = { ...this.state, ...patch };
    if (Object.keys(patch).every((k) => this.state[k] === next[k])) return;
    this.state = next;
    this.listeners.forEach((f) => f(next));
  },
};

function useLink() {
  const [state, setState] = useState(link.state);
  useEffect(() => { link.listeners.add(setState); return () => link.listeners.delete(setState); }, []);
  return state;
}

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body || {}; }
}

/// One API call. Resolves to the parsed body (or the Response with `raw`);
/// rejects with an ApiError carrying the server's own `error` text. Only
/// calls that need the token (`auth`) say whether it was accepted.
async function api(method, path, body, { raw = false, auth = true } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    link.set({ reachable: false });
    throw new ApiError(0, `The host at ${location.origin} is unreachable (${e.message}).`);
  }
  link.set({ reachable: true });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    const message = answer.error || `${response.status} ${response.statusText}`;
    if (auth && response.status === 401) link.set({ auth: token ? 'refused' : 'needed', message });
    // The console calls only admin routes: a 403 means this is not the admin token.
    if (auth && response.status === 403) link.set({ auth: 'refused', message });
    // Throttled by address, before the token is even looked at: not a verdict on it.
    if (response.status === 429) link.set({ throttled: message });
    throw new ApiError(response.status, message, answer);
  }
  if (auth) link.set({ auth: 'ok', throttled: '' });
  if (raw) return response;
  if (response.status === 204) return null;
  return (response.headers.get('content-type') || '').includes('json') ? response.json() : response.text();
}

/// Calls `load` now and every `ms`, keeping the last answer and error.
function usePoll(load, ms, deps = []) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  const [tick, setTick] = useState(0);
  const shown = useRef(JSON.stringify(deps));
  useEffect(() => {
    let live = true;
    let timer;
    // New arguments (another filter, page or search): the old answer is not theirs.
    const key = JSON.stringify(deps);
    if (shown.current !== key) {
      shown.current = key;
      setState({ data: undefined, error: undefined });
    }
    const run = async () => {
      try {
        const data = await load();
        if (live) setState({ data, error: undefined });
      } catch (error) {
        if (live) setState((s) => ({ data: s.data, error }));
      }
      if (live && ms) timer = setTimeout(run, ms);
    };
    run();
    return () => { live = false; clearTimeout(timer); };
  }, [...deps, tick]);
  return { ...state, reload: useCallback(() => setTick((t) => t + 1), []) };
}

// ---- small parts ----------------------------------------------------------------------

const number = (n) => (n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US'));
// An id's first 8 characters, with no ellipsis: what the CLI and the API take
// as a prefix (accounts, jobs), so it can be copied as shown.
const shortId = (id) => (id ? id.slice(0, 8) : '');
// UTC to the second in ISO form, as the CLI prints times
// (2026-12-06T20:28:12Z): the same in every browser and locale, and the
// form the audit log, the API and the CLI are searched by.
const when = (iso) => (iso ? new Date(iso).toISOString().replace(/\.\d+Z$/, 'Z') : '');

function duration(seconds) {
  if (seconds === undefined || seconds === null) return '–';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function Failure({ error }) {
  if (!error) return null;
  return html`<p class="banner bad" role="alert">${error.message}</p>`;
}

/// A modal question: what happens, then Cancel or the action. A refusal
/// from the server is shown in the dialog, which stays open.
function Confirm({ title, children, action, label, danger, onDone, onCancel }) {
  const ref = useRef();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState();
  useEffect(() => { ref.current.showModal(); }, []);
  const go = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const result = await action();
      ref.current?.close();
      onDone(result);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  // Escape while the action runs would hide a change that still happens: it waits.
  const escape = (e) => (busy ? e.preventDefault() : onCancel());
  return html`<dialog ref=${ref} id="confirm" onCancel=${escape} aria-labelledby="confirm-title">
    <h3 id="confirm-title">${title}</h3>
    <div>${children}</div>
    ${error && html`<p class="banner bad" role="alert" id="confirm-error">${error.message}</p>`}
    <div class="row">
      <button onClick=${() => { ref.current.close(); onCancel(); }} disabled=${busy}>Cancel</button>
      <button id="confirm-go" class=${danger ? 'danger' : 'primary'} onClick=${go} disabled=${busy}>${busy ? 'Working…' : label}</button>
    </div>
  </dialog>`;
}

/// A small line chart of time series: [{label, color, points: [[ms, value]]}].
function Chart({ title, series, unit = '' }) {
  const width = 600;
  const height = 140;
  const all = series.flatMap((s) => s.points);
  if (all.length < 2) return html`<div class="chart"><h3>${title}</h3><p class="muted">Collecting figures…</p></div>`;
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const top = Math.max(1, ...all.map((p) => p[1])) * 1.1;
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (width - 50) + 45;
  const y = (v) => height - 18 - (v / top) * (height - 28);
  const last = series.map((s) => `${s.label} ${number(Math.round((s.points.at(-1) || [0, 0])[1] * 10) / 10)}${unit}`).join(', ');
  return html`<div class="chart">
    <h3>${title}</h3>
    <svg viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" role="img" aria-label="${title}: ${last}">
      <line x1="45" x2=${width} y1=${y(0)} y2=${y(0)} stroke="#d9dde4" />
      <line x1="45" x2=${width} y1=${y(top / 1.1)} y2=${y(top / 1.1)} stroke="#eef0f3" />
      <text x="40" y=${y(top / 1.1) + 4} font-size="11" text-anchor="end" fill="#5b6475">${number(Math.round(top / 1.1))}</text>
      <text x="40" y=${y(0) + 4} font-size="11" text-anchor="end" fill="#5b6475">0</text>
      <text x=${width} y=${height - 2} font-size="11" text-anchor="end" fill="#5b6475">now</text>
      <text x="45" y=${height - 2} font-size="11" fill="#5b6475">${duration((t1 - t0) / 1000)} ago</text>
      ${series.map((s) => html`<polyline fill="none" stroke=${s.color} stroke-width="2" vector-effect="non-scaling-stroke"
          points=${s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')} />`)}
    </svg>
    <div class="legend">${series.map((s) => html`<span><span class="swatch" style="background:${s.color}"></span>${s.label}</span>`)}</div>
  </div>`;
}

// ---- metrics --------------------------------------------------------------------------

/// The Prometheus text format, as {name, labels, value} samples.
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/// Plugin call outcomes that are failures (`error` is an answer, such as not found).
const FAILED_OUTCOMES = new Set(['trap', 'limit', 'deadline', 'fuel', 'busy']);
const HISTORY = 150;
const history = [];

/// Polls /metrics and keeps a short history for the charts (this page's own:
/// the host keeps no history, a Prometheus does).
function useMetrics(ms) {
  const poll = usePoll(async () => {
    const samples = parseMetrics(await api('GET', '/metrics'));
    const point = { at: Date.now(), stores: {}, plugins: {} };
    for (const s of samples) {
      if (s.name === 'notes_notes') point.stores[s.labels.store] = s.value;
      if (s.name === 'notes_plugin_calls_total') {
        const p = (point.plugins[s.labels.plugin] ||= { calls: 0, failed: 0 });
        p.calls += s.value;
        if (FAILED_OUTCOMES.has(s.labels.outcome)) p.failed += s.value;
      }
    }
    history.push(point);
    if (history.length > HISTORY) history.shift();
    return point;
  }, ms);
  return poll;
}

const COLORS = ['#2457c5', '#b3261e', '#1d7a46', '#8a5a00', '#6b3fa0', '#00838f'];

function rates(key) {
  const series = {};
  for (let i = 1; i < history.length; i++) {
    const [a, b] = [history[i - 1], history[i]];
    const seconds = (b.at - a.at) / 1000;
    for (const [plugin, now] of Object.entries(b.plugins)) {
      const before = a.plugins[plugin];
      if (!before || seconds <= 0) continue;
      (series[plugin] ||= []).push([b.at, Math.max(0, now[key] - before[key]) / seconds]);
    }
  }
  return Object.entries(series).map(([label, points], i) => ({ label, points, color: COLORS[i % COLORS.length] }));
}

// ---- overview -------------------------------------------------------------------------

const STATES = ['legacy', 'migrating', 'migrated', 'rolling-back', 'rolled-back'];

function Overview() {
  const migration = usePoll(() => api('GET', '/migration'), 1000);
  useMetrics(2000); // the charts' history
  // Every figure of the notes card comes from this one answer (GET /migration
  // counts them in one pass): polls of their own (/metrics for the stores)
  // could show more left to move than a store holds.
  const m = migration.data;
  // Migrating accounts with nothing left in legacy wait only for a verify:
  // without saying so, `migrating` next to 0 left to move reads as stuck.
  const verifyDue = m && (m.accounts.migrating || 0) > 0 && m.notesToNew === 0;
  return html`<section aria-labelledby="overview-title">
    <h2 id="overview-title">Overview</h2>
    <${Failure} error=${migration.error} />
    <div class="grid">
      <div class="card" id="accounts-per-state">
        <h3>Accounts per migration state</h3>
        <dl class="figures">${STATES.map((s) => html`<div><dt>${s}</dt><dd data-state=${s}>${m ? number(m.accounts[s] || 0) : '–'}</dd></div>`)}</dl>
        ${verifyDue && html`<${VerifyDue} count=${m.accounts.migrating} onStarted=${migration.reload} />`}
      </div>
      <div class="card" id="notes-card">
        <h3>Notes</h3>
        <dl class="figures">
          <div><dt>in legacy</dt><dd id="notes-legacy">${m ? number(m.legacyNotes) : '–'}</dd></div>
          <div><dt>in new</dt><dd id="notes-new">${m ? number(m.newNotes) : '–'}</dd></div>
          <div><dt>left to move → new</dt><dd id="to-new">${m ? number(m.notesToNew) : '–'}</dd></div>
          <div><dt>left to move → legacy</dt><dd id="to-legacy">${m ? number(m.notesToLegacy) : '–'}</dd></div>
          <div><dt>rollout</dt><dd id="rollout-percent">${m ? (m.rolloutPercent === undefined ? 'none yet' : `${m.rolloutPercent}%`) : '–'}</dd></div>
        </dl>
      </div>
    </div>
    <div class="grid charts">
      <div class="card"><${Chart} title="Notes per store" series=${[
        { label: 'legacy', color: 'var(--legacy)', points: history.map((p) => [p.at, p.stores.legacy || 0]) },
        { label: 'new', color: 'var(--new)', points: history.map((p) => [p.at, p.stores.new || 0]) },
      ]} /></div>
      <div class="card"><${Chart} title="Plugin calls per second" series=${rates('calls')} unit="/s" /></div>
      <div class="card"><${Chart} title="Failed plugin calls per second (trap, limit, deadline, fuel, busy)" series=${rates('failed')} unit="/s" /></div>
    </div>
    <h2>Jobs</h2>
    <${Jobs} />
    <h2>Hosts</h2>
    <${Hosts} />
    <h2>Last flips</h2>
    <${Flips} />
  </section>`;
}

/// Why migrating accounts are not `migrated` yet, and the verify that makes them so.
function VerifyDue({ count, onStarted }) {
  const [message, setMessage] = useState();
  const start = async () => {
    try {
      const job = await api('POST', '/jobs', { kind: JobKind.Verify });
      setMessage({ text: `Started verify job ${shortId(job.id)}: ${number(job.total)} accounts to check.` });
      onStarted();
    } catch (e) {
      setMessage({ bad: true, text: e.message });
    }
  };
  return html`<div id="verify-due">
    <p class="banner info">${number(count)} ${count === 1 ? 'account is' : 'accounts are'} <strong>migrating</strong> with
      every note already in the new store: a verify is due. A clean verify is what makes an account <strong>migrated</strong>.</p>
    <div class="row"><button id="verify-due-start" class="primary" onClick=${start}>Verify every account</button></div>
    ${message && html`<p class="banner ${message.bad ? 'bad' : 'ok'}" role="status" id="verify-due-message">${message.text}</p>`}
  </div>`;
}

function Jobs() {
  const jobs = usePoll(() => api('GET', '/jobs'), 1000);
  const act = async (job, what) => {
    try { await api('POST', `/jobs/${job.id}/${what}`); } catch (e) { alert(e.message); }
    jobs.reload();
  };
  const list = (jobs.data || []).slice().sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, 10);
  return html`<div class="card">
    <${Failure} error=${jobs.error} />
    ${list.length === 0 ? html`<p class="muted">No jobs yet. Start one under Rollout.</p>` : html`<table id="jobs" class="stack">
      <thead><tr><th>Job</th><th>Scope</th><th>State</th><th class="progress">Progress</th><th class="num">Rate</th><th class="num">ETA</th><th class="num hide-narrow">Problems</th><th></th></tr></thead>
      <tbody>${list.map((job) => {
        const pct = job.total ? Math.floor((job.done / job.total) * 100) : (job.state === JobState.Done ? 100 : 0);
        return html`<tr key=${job.id} data-job=${job.id} data-state=${job.state}>
          <td>${job.kind}<br /><span class="muted mono">${shortId(job.id)}</span></td>
          <td>${job.account ? html`<span class="mono" title=${job.account}>${shortId(job.account)}</span>` : 'all accounts'}</td>
          <td class=${job.state === JobState.Failed ? 'bad' : job.state === JobState.Done ? 'ok' : ''}>${job.state}${job.detail && job.state !== JobState.Running ? html`<br /><span class="muted">${job.detail}</span>` : ''}</td>
          <td class="wide-cell"><progress max=${Math.max(job.total, 1)} value=${job.total ? job.done : (job.state === JobState.Done ? 1 : 0)} aria-label="${job.kind} progress"></progress>
            <span class="progress-text">${number(job.done)} / ${number(job.total)} (${pct}%)</span></td>
          <td class="num">${number(Math.round(job.perSecond))}/s</td>
          <td class="num">${job.state === JobState.Running ? duration(job.etaSeconds) : ''}</td>
          <td class="num hide-narrow ${job.problems ? 'bad' : ''}">${number(job.problems)}</td>
          <td class="actions wide-cell">${job.state === JobState.Running && html`<button class="pause" onClick=${() => act(job, 'pause')}>Pause</button>`}
              ${job.state === JobState.Paused && html`<button class="resume" onClick=${() => act(job, 'resume')}>Resume</button>`}
              ${(job.state === JobState.Running || job.state === JobState.Paused) && html` <button class="cancel" onClick=${() => act(job, 'cancel')}>Cancel</button>`}</td>
        </tr>`;
      })}</tbody></table>`}
  </div>`;
}

function Hosts() {
  const hosts = usePoll(() => api('GET', '/hosts'), 2000);
  return html`<div class="card">
    <${Failure} error=${hosts.error} />
    <table id="hosts">
      <thead><tr><th>Host</th><th class="hide-narrow">Address</th><th>Plugin</th><th>Liveness</th><th class="num hide-narrow">Heartbeat</th></tr></thead>
      <tbody>${(hosts.data || []).map((h) => html`<tr>
        <td>${h.name}${h.self ? html` <span class="pill muted">this one</span>` : ''}<br /><span class="muted host-version">host ${h.version}</span></td>
        <td class="hide-narrow mono">${h.address}</td>
        <td><span class="mono">${h.plugin.label}</span><br />${migrates(h.supportsMigration)}</td>
        <td class=${h.state === 'live' ? 'ok' : 'bad'}>${h.state}</td>
        <td class="num hide-narrow">${number(h.heartbeatAgeMs)} ms ago</td>
      </tr>`)}</tbody>
    </table>
  </div>`;
}

/// Whether a plugin can migrate, said both ways: a missing warning is easy to misread.
const migrates = (yes) => (yes ? html`<span class="ok migrates">can migrate</span>` : html`<span class="warn migrates">cannot migrate</span>`);

/// The flip's own record says how long the drain took: "…; N host(s) drained in M ms".
const drained = (detail) => detail.match(/(\d+) host\(s\) drained in (\d+) ms/);

function Flips() {
  const flips = usePoll(() => api('GET', '/audit?kind=flag&order=newest&limit=8'), 2000);
  const entries = flips.data?.entries || [];
  return html`<div class="card">
    <${Failure} error=${flips.error} />
    ${entries.length === 0 ? html`<p class="muted">No flips yet.</p>` : html`<table id="flips">
      <thead><tr><th>When</th><th>Account</th><th>isMigrating</th><th class="num">Took</th><th class="hide-narrow">By</th></tr></thead>
      <tbody>${entries.map((e) => {
        const d = drained(e.detail);
        return html`<tr>
          <td>${when(e.at)}</td>
          <td class="mono" title=${e.subject}>${shortId(e.subject)}</td>
          <td>${e.before} → ${e.after}</td>
          <td class="num">${d ? `${d[2]} ms (${d[1]} hosts)` : '–'}</td>
          <td class="hide-narrow">${e.actor} on ${e.host}</td>
        </tr>`;
      })}</tbody></table>`}
  </div>`;
}

// ---- accounts -------------------------------------------------------------------------

const PAGE = 20;

function flipQuestion(account, status) {
  const name = html`<strong>${account.name}</strong>`;
  if (!account.isMigrating) {
    return html`<p>${name} enters <strong>migration mode</strong>: new notes go to the new store, an update moves its
      note there, and reads look in both stores.</p>
      <p>Its ${number(status?.legacyNotes)} notes in the legacy store stay there until a backfill moves them.
      Every host finishes the account's requests in flight before the answer.</p>`;
  }
  return html`<p>${name} enters <strong>rollback mode</strong>: new notes go to the legacy store, an update moves its
    note back to legacy, and reads look in both stores.</p>
    <p>Its ${number(status?.newNotes)} notes in the new store stay there until a rollback job moves them.
    Every host finishes the account's requests in flight before the answer.</p>`;
}

/// Why an account is in its state when the state alone would puzzle: a
/// `migrating` account with nothing left in legacy waits for a verify.
function stateReason(status) {
  if (status?.state !== 'migrating') return '';
  return html`<br /><span class="muted reason">${status.legacyNotes === 0
    ? 'every note is in new: a verify is due'
    : `${number(status.legacyNotes)} ${status.legacyNotes === 1 ? 'note' : 'notes'} left in legacy`}</span>`;
}

const verifyDue = (status) => status?.state === 'migrating' && status.legacyNotes === 0;

function Accounts() {
  const [typed, setTyped] = useState('');
  const [query, setQuery] = useState('');
  const [offset, setOffset] = useState(0);
  useEffect(() => {
    const timer = setTimeout(() => { setQuery(typed.trim()); setOffset(0); }, 250);
    return () => clearTimeout(timer);
  }, [typed]);
  const [flipping, setFlipping] = useState();
  const [done, setDone] = useState();
  const page = usePoll(async () => {
    const response = await api('GET', `/accounts?q=${encodeURIComponent(query)}&offset=${offset}&limit=${PAGE}`, undefined, { raw: true });
    const accounts = await response.json();
    const total = Number(response.headers.get('x-total-count') || accounts.length);
    const statuses = await Promise.all(accounts.map((a) => api('GET', `/accounts/${a.id}/migration`).catch(() => undefined)));
    return { total, rows: accounts.map((account, i) => ({ account, status: statuses[i] })) };
  }, 5000, [query, offset]);
  const total = page.data?.total || 0;
  const verify = async (account) => {
    try {
      const r = await api('POST', `/accounts/${account.id}/migration/verify`);
      const found = r.clean ? 'clean'
        : `found ${number(r.unreadable)} unreadable, ${number(r.misplaced)} misplaced and ${number(r.halfDeleted)} half-deleted notes`;
      setDone({ bad: !r.clean, text: `${account.name}: verify ${found}; now ${r.state}.` });
    } catch (e) {
      setDone({ bad: true, text: `${account.name}: ${e.message}` });
    }
    page.reload();
  };
  return html`<section aria-labelledby="accounts-title">
    <h2 id="accounts-title">Accounts</h2>
    <div class="row">
      <label for="account-search">Search</label>
      <input id="account-search" type="search" placeholder="name or id" value=${typed}
        onInput=${(e) => setTyped(e.target.value)} />
      <span class="muted" id="account-count">${number(total)} accounts</span>
    </div>
    ${done && html`<p class="banner ${done.bad ? 'bad' : 'ok'}" role="status" id="account-outcome">${done.text}</p>`}
    <${Failure} error=${page.error} />
    <div class="card">
      <table id="accounts">
        <thead><tr><th>Name</th><th class="hide-narrow">Id</th><th>isMigrating</th><th>State</th><th class="num">Legacy notes</th><th class="num">New notes</th><th></th></tr></thead>
        <tbody>${(page.data?.rows || []).map(({ account, status }) => html`<tr key=${account.id} data-account=${account.id}>
          <td>${account.name}</td>
          <td class="mono hide-narrow" title=${account.id}>${shortId(account.id)}</td>
          <td class="flag">${account.isMigrating ? 'on' : 'off'}</td>
          <td class="state">${status?.state || '–'}${stateReason(status)}</td>
          <td class="num">${number(status?.legacyNotes)}</td>
          <td class="num">${number(status?.newNotes)}</td>
          <td><button class="flip" onClick=${() => setFlipping({ account, status })}>
            ${account.isMigrating ? 'Turn migration off' : 'Turn migration on'}</button>
            ${verifyDue(status) && html` <button class="verify" onClick=${() => verify(account)}>Verify</button>`}</td>
        </tr>`)}</tbody>
      </table>
      <div class="pager">
        <button onClick=${() => setOffset(Math.max(0, offset - PAGE))} disabled=${offset === 0}>Previous</button>
        <span class="muted">${total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${number(total)}` : 'none'}</span>
        <button onClick=${() => setOffset(offset + PAGE)} disabled=${offset + PAGE >= total}>Next</button>
      </div>
    </div>
    ${flipping && html`<${Confirm}
      title=${`Turn migration ${flipping.account.isMigrating ? 'off' : 'on'} for ${flipping.account.name}?`}
      label=${flipping.account.isMigrating ? 'Turn migration off' : 'Turn migration on'}
      action=${() => api('PATCH', `/accounts/${flipping.account.id}`, { isMigrating: !flipping.account.isMigrating })}
      onDone=${(a) => { setFlipping(undefined); setDone({ text: `${a.name}: isMigrating is now ${a.isMigrating ? 'on' : 'off'} on every host.` }); page.reload(); }}
      onCancel=${() => setFlipping(undefined)}>${flipQuestion(flipping.account, flipping.status)}</${Confirm}>`}
  </section>`;
}

// ---- rollout and jobs -----------------------------------------------------------------

function report(r) {
  const failed = r.failed.length ? ` ${r.failed.length} could not be flipped: ${r.failed.map((f) => `${shortId(f.account)} (${f.error})`).join('; ')}` : '';
  return `${r.turnedOn} turned on, ${r.turnedOff} turned off, ${r.unchanged} unchanged.${failed}`;
}

function Rollout() {
  const migration = usePoll(() => api('GET', '/migration'), 3000);
  const [percent, setPercent] = useState();
  const [preview, setPreview] = useState();
  const [asking, setAsking] = useState();
  const [outcome, setOutcome] = useState();
  const current = migration.data?.rolloutPercent ?? 0;
  const shown = percent ?? current;
  useEffect(() => {
    if (percent === undefined) return undefined;
    let live = true; // an answer for a percentage no longer chosen is dropped
    const timer = setTimeout(async () => {
      let answer;
      try { answer = await api('POST', '/migration/rollout?dryRun=true', { percent, resume: true }); } catch (e) { answer = e; }
      if (live) setPreview(answer);
    }, 200);
    return () => { live = false; clearTimeout(timer); };
  }, [percent]);
  const choose = (value) => {
    setPreview(undefined);
    setPercent(value === '' || Number.isNaN(Number(value)) ? undefined : Math.min(100, Math.max(0, Number(value))));
  };
  return html`<section aria-labelledby="rollout-title">
    <h2 id="rollout-title">Rollout</h2>
    ${outcome && html`<p class="banner ${outcome.bad ? 'bad' : 'ok'}" role="status" id="rollout-outcome">${outcome.text}</p>`}
    <div class="card">
      <p>Migration is on for the accounts whose stable hash falls under the percentage: raising it adds accounts and
        keeps the ones already in. Every flip waits until every host has drained the account.</p>
      <div class="row">
        <label for="rollout-slider">Percentage</label>
        <input id="rollout-slider" type="range" min="0" max="100" step="1" value=${shown} onInput=${(e) => choose(e.target.value)} />
        <input id="rollout-number" type="number" min="0" max="100" step="1" value=${shown} class="narrow" aria-label="Percentage"
          onInput=${(e) => choose(e.target.value)} />
        <span>%</span>
        ${[0, 1, 10, 25, 50, 100].map((p) => html`<button onClick=${() => choose(p)}>${p}%</button>`)}
      </div>
      <p id="rollout-preview" aria-live="polite">${preview instanceof Error
        ? html`<span class="bad">${preview.message}</span>`
        : preview ? `At ${preview.percent}%: ${preview.turnedOn} accounts turn on, ${preview.turnedOff} turn off, ${preview.unchanged} stay as they are.`
          : html`<span class="muted">Now at ${current}%. Move the slider to see what a new percentage changes.</span>`}</p>
      <div class="row">
        <button id="rollout-apply" class="primary" disabled=${percent === undefined} onClick=${() => setAsking('rollout')}>Roll out to ${shown}%</button>
        <button id="kill-switch" class="danger" onClick=${() => setAsking('kill')}>Kill switch: migration off everywhere</button>
      </div>
    </div>
    <h2>Start a job</h2>
    <${StartJob} />
    <h2>Jobs</h2>
    <${Jobs} />
    ${asking === 'rollout' && html`<${Confirm} title=${`Roll out to ${shown}%?`} label=${`Roll out to ${shown}%`}
      action=${() => api('POST', '/migration/rollout', { percent: shown, resume: true })}
      onDone=${(r) => { setAsking(undefined); setPercent(undefined); setPreview(undefined); setOutcome({ bad: r.failed.length > 0, text: `Rolled out to ${shown}%: ${report(r)}` }); migration.reload(); }}
      onCancel=${() => setAsking(undefined)}>
      <p>${preview && !(preview instanceof Error) && preview.percent === shown ? `${preview.turnedOn} accounts turn on and ${preview.turnedOff} turn off.` : ''}
        Accounts turned on enter migration mode: new notes go to the new store and updates move notes there.
        Accounts turned off enter rollback mode: their notes flow back to legacy as they are written.
        After the kill switch, this is what starts the rollout again.</p></${Confirm}>`}
    ${asking === 'kill' && html`<${Confirm} title="Turn migration off for every account?" label="Turn migration off everywhere" danger
      action=${() => api('POST', '/migration/kill-switch')}
      onDone=${(r) => { setAsking(undefined); setOutcome({ bad: r.failed.length > 0, text: `Kill switch: ${report(r)}` }); migration.reload(); }}
      onCancel=${() => setAsking(undefined)}>
      <p>Every account goes to rollback mode, through the drain barrier: new notes go to the legacy store and updates move
        notes back to it. Notes already in the new store stay readable there until a rollback job moves them.
        The rollout percentage becomes 0%. A rollout running anywhere stops turning accounts on, and none does again
        until an operator rolls out anew.</p></${Confirm}>`}
  </section>`;
}

// Each kind's button: its label and what it does.
const JOB_KINDS = {
  [JobKind.Backfill]: ['Backfill', 'Backfill: move notes of accounts in migration mode to the new store'],
  [JobKind.Rollback]: ['Roll back', 'Roll back: move notes of accounts in rollback mode to the legacy store'],
  [JobKind.Verify]: ['Verify', 'Verify: check every note (read-only)'],
};

function StartJob() {
  const [account, setAccount] = useState('');
  const [rate, setRate] = useState('');
  const [message, setMessage] = useState();
  const start = async (kind) => {
    const body = { kind };
    if (account.trim()) body.account = account.trim();
    if (rate.trim()) body.rate = Number(rate);
    try {
      const job = await api('POST', '/jobs', body);
      setMessage({ text: `Started ${job.kind} job ${job.id.slice(0, 8)}: ${number(job.total)} to go.` });
    } catch (e) {
      setMessage({ bad: true, text: e.message });
    }
  };
  return html`<div class="card">
    <div class="row">
      <label for="job-account">Account id</label>
      <input id="job-account" placeholder="id or its first 8 characters; empty: every account" value=${account} onInput=${(e) => setAccount(e.target.value)} class="wide" />
      <label for="job-rate">Notes per second</label>
      <input id="job-rate" type="number" min="0" placeholder="no limit" value=${rate} onInput=${(e) => setRate(e.target.value)} class="narrow" />
    </div>
    <div class="row">${Object.entries(JOB_KINDS).map(([kind, [label, title]]) => html`<button id="start-${kind}" title=${title} onClick=${() => start(kind)}>${
      label}${account.trim() ? ' this account' : ' all'}</button>`)}</div>
    ${message && html`<p class="banner ${message.bad ? 'bad' : 'ok'}" role="status" id="job-message">${message.text}</p>`}
  </div>`;
}

// ---- plugins --------------------------------------------------------------------------

function Plugins() {
  const registry = usePoll(() => api('GET', '/plugins'), 3000);
  const hosts = usePoll(() => api('GET', '/hosts'), 3000);
  const active = registry.data?.active;
  const faults = usePoll(() => (active ? api('GET', `/plugins/${active.digest === 'native' ? 'native' : active.digest}/errors`) : undefined), 3000, [active?.digest]);
  const [asking, setAsking] = useState();
  const [outcome, setOutcome] = useState();
  const file = useRef();
  const [check, setCheck] = useState(true);
  const [uploading, setUploading] = useState(false);
  const upload = async () => {
    const chosen = file.current.files[0];
    if (!chosen) { setOutcome({ bad: true, text: 'Choose a .wasm file first.' }); return; }
    setUploading(true);
    try {
      const response = await api('POST', `/plugins${check ? '?check=true' : ''}`, chosen, { raw: true });
      const p = await response.json();
      setOutcome({ text: `${response.status === 201 ? 'Stored' : 'Already stored'}: ${p.name}@${p.version} (WIT ${p.witVersion}, ${number(p.sizeBytes)} bytes${p.supportsMigration ? ', supports migration' : ', cannot migrate'}), ${p.digest.slice(0, 12)}. Activate it below.` });
      registry.reload();
    } catch (e) {
      setOutcome({ bad: true, text: `Refused (${e.status}): ${e.message}` });
    }
    setUploading(false);
  };
  return html`<section aria-labelledby="plugins-title">
    <h2 id="plugins-title">Plugins</h2>
    ${outcome && html`<div class="banner ${outcome.bad ? 'bad' : 'ok'}" role="status" id="plugin-outcome"><pre class="reason">${outcome.text}</pre></div>`}
    <div class="card">
      <div class="row">
        <label for="plugin-file">Upload a component</label>
        <input id="plugin-file" type="file" accept=".wasm,application/wasm" ref=${file} />
        <label><input type="checkbox" checked=${check} onChange=${(e) => setCheck(e.target.checked)} /> run the conformance kit first</label>
        <button id="plugin-upload" class="primary" onClick=${upload} disabled=${uploading}>${uploading ? 'Checking…' : 'Upload'}</button>
      </div>
    </div>
    <h2>Active on each host</h2>
    <div class="card">
      ${active && html`<p id="active-plugin">This host serves <span class="mono">${active.plugin}</span>${active.digest === 'native' ? '' : html` <span class="muted mono">${active.digest.slice(0, 12)}</span>`}:
        ${migrates(active.supportsMigration)}${active.supportsMigration ? '' : ' (turning migration on is refused while it is active)'}.</p>`}
      <${Failure} error=${hosts.error} />
      <table><thead><tr><th>Host</th><th>Plugin</th><th>Digest</th></tr></thead>
        <tbody>${(hosts.data || []).map((h) => html`<tr><td>${h.name}</td><td><span class="mono">${h.plugin.label}</span><br />${migrates(h.supportsMigration)}</td><td class="mono">${h.plugin.digest.slice(0, 12)}</td></tr>`)}</tbody></table>
      ${active?.suspended && html`<p class="banner bad">Suspended: ${active.suspended}</p>`}
      <div class="row"><button id="plugin-rollback" onClick=${() => setAsking({ rollback: true })}>Roll back to the previous plugin</button></div>
    </div>
    <h2>Stored plugins</h2>
    <div class="card">
      <${Failure} error=${registry.error} />
      <table id="plugins"><thead><tr><th>Plugin</th><th>WIT</th><th class="num hide-narrow">Size</th><th class="hide-narrow">Uploaded</th><th></th></tr></thead>
        <tbody>${(registry.data?.plugins || []).map((p) => html`<tr>
          <td><span class="mono">${p.name}@${p.version}</span><br /><span class="muted mono">${p.digest.slice(0, 12)}</span></td>
          <td>${p.witVersion}<br />${migrates(p.supportsMigration)}</td>
          <td class="num hide-narrow">${number(p.sizeBytes)} B</td>
          <td class="hide-narrow">${when(p.uploadedAt)}</td>
          <td>${active?.digest === p.digest ? html`<span class="pill ok">active</span>` : html`<button onClick=${() => setAsking({ plugin: p })}>Activate</button>`}</td>
        </tr>`)}</tbody></table>
    </div>
    <h2>Recent failures of the active plugin (this host)</h2>
    <div class="card">
      ${(faults.data?.errors || []).length === 0 ? html`<p class="muted">None recorded.</p>` : html`<table>
        <thead><tr><th>When</th><th>Operation</th><th class="hide-narrow">Account</th><th>Error id</th><th>Message</th></tr></thead>
        <tbody>${faults.data.errors.slice(0, 20).map((f) => html`<tr><td>${when(f.at)}</td><td>${f.operation}</td>
          <td class="mono hide-narrow">${shortId(f.account)}</td><td class="mono">${f.id}</td>
          <td><details><summary>${f.message.split('\n')[0].slice(0, 80)}</summary><pre class="reason">${f.message}</pre></details></td></tr>`)}</tbody></table>`}
    </div>
    ${asking && html`<${Confirm} title=${asking.rollback ? 'Roll back the plugin?' : `Activate ${asking.plugin.name}@${asking.plugin.version}?`}
      label=${asking.rollback ? 'Roll back' : 'Activate'}
      action=${() => (asking.rollback ? api('POST', '/plugins/rollback') : api('PUT', '/plugins/active', { digest: asking.plugin.digest }))}
      onDone=${() => { setAsking(undefined); setOutcome({ text: 'Every host now serves the plugin.' }); registry.reload(); hosts.reload(); }}
      onCancel=${() => setAsking(undefined)}>
      <p>Every host of the fleet switches before the answer; requests in flight finish on the plugin they started on.
        A plugin that cannot migrate is refused while any account is in migration mode.</p></${Confirm}>`}
  </section>`;
}

// ---- audit log ------------------------------------------------------------------------

function Audit() {
  const [kind, setKind] = useState('');
  const [before, setBefore] = useState([]);
  const cursor = before.at(-1);
  const page = usePoll(() => api('GET', `/audit?order=newest&limit=50${kind ? `&kind=${kind}` : ''}${cursor ? `&before=${cursor}` : ''}`), cursor ? 0 : 3000, [kind, cursor]);
  const entries = page.data?.entries || [];
  return html`<section aria-labelledby="audit-title">
    <h2 id="audit-title">Audit log</h2>
    <div class="row">
      <label for="audit-kind">Kind</label>
      <select id="audit-kind" value=${kind} onChange=${(e) => { setKind(e.target.value); setBefore([]); }}>
        <option value="">all</option>
        ${['flag', 'rollout', 'kill-switch', 'job', 'plugin', 'account', 'key'].map((k) => html`<option value=${k}>${k}</option>`)}
      </select>
      <span class="muted">newest first</span>
    </div>
    <${Failure} error=${page.error} />
    <div class="card">
      <table id="audit"><thead><tr><th>When</th><th>Kind</th><th>Subject</th><th>Change</th><th class="hide-narrow">By</th><th>Detail</th></tr></thead>
        <tbody>${entries.map((e) => html`<tr data-kind=${e.kind}>
          <td>${when(e.at)}</td><td>${e.kind}</td><td class="mono" title=${e.subject}>${e.subject.length > 20 ? shortId(e.subject) : e.subject}</td>
          <td>${e.before || '∅'} → ${e.after}</td><td class="hide-narrow">${e.actor} on ${e.host}</td>
          <td>${e.detail}${e.changes ? html` <${ActionFlips} action=${e.action} changes=${e.changes} />` : ''}</td></tr>`)}</tbody></table>
      <div class="pager">
        <button onClick=${() => setBefore(before.slice(0, -1))} disabled=${before.length === 0}>Newer</button>
        <button onClick=${() => setBefore([...before, page.data.next])} disabled=${!page.data?.next || before.includes(page.data.next)}>Older</button>
      </div>
    </div>
  </section>`;
}

// One operator action is one row; the accounts its flips changed are one
// click away (`GET /audit?action=`).
function ActionFlips({ action, changes }) {
  const [flips, setFlips] = useState();
  const [error, setError] = useState();
  const show = async () => {
    try {
      setFlips((await api('GET', `/audit?action=${action}&kind=flag&limit=1000`)).entries);
    } catch (e) {
      setError(e);
    }
  };
  if (error) return html`<${Failure} error=${error} />`;
  if (!flips) return html`<button class="link action-flips" onClick=${show}>${changes} account${changes === 1 ? '' : 's'}</button>`;
  return html`<ul class="action-flips mono">${flips.map((f) => html`<li title=${f.subject}>${shortId(f.subject)} ${f.before} → ${f.after}</li>`)}
    ${flips.length < changes ? html`<li class="muted">and ${changes - flips.length} more (GET /audit?action=${action}&kind=flag)</li>` : ''}</ul>`;
}

// ---- the page -------------------------------------------------------------------------

const VIEWS = { overview: ['Overview', Overview], accounts: ['Accounts', Accounts], rollout: ['Rollout', Rollout], plugins: ['Plugins', Plugins], audit: ['Audit log', Audit] };

function currentView() {
  const name = location.hash.slice(1);
  return VIEWS[name] ? name : 'overview';
}

function Login({ state }) {
  const [value, setValue] = useState('');
  const [invalid, setInvalid] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    // What the host accepts (visible ASCII); anything else could never be sent in a header.
    if (!/^[\x21-\x7e]+$/.test(value.trim())) {
      setInvalid('An admin token is visible ASCII characters only, without spaces.');
      return;
    }
    setInvalid('');
    token = value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    link.set({ auth: 'unknown' });
    await api('GET', '/migration').catch(() => {});
  };
  return html`<form class="card login" onSubmit=${submit}>
    <h2>Sign in</h2>
    ${state.auth === 'refused' && html`<p class="banner bad" role="alert" id="login-error">The host refused this token: ${state.message}.</p>`}
    ${invalid && html`<p class="banner bad" role="alert">${invalid}</p>`}
    <p>The console calls the host's admin API with its admin token (<code>--admin-token-file</code>). It is kept in this tab only.</p>
    <label for="token">Admin token</label>
    <input id="token" type="password" autocomplete="current-password" value=${value} onInput=${(e) => setValue(e.target.value)} autofocus />
    <button class="primary" id="sign-in" type="submit">Sign in</button>
  </form>`;
}

function App() {
  const state = useLink();
  const [view, setView] = useState(currentView());
  useEffect(() => {
    const follow = () => setView(currentView());
    window.addEventListener('hashchange', follow);
    api('GET', '/migration').catch(() => {});
    return () => window.removeEventListener('hashchange', follow);
  }, []);
  useEffect(() => {
    if (state.reachable) return undefined;
    // Keep knocking while the host is away, so the page recovers by itself.
    const timer = setInterval(() => api('GET', '/healthz', undefined, { auth: false }).catch(() => {}), 2000);
    return () => clearInterval(timer);
  }, [state.reachable]);
  const signOut = () => { token = ''; sessionStorage.removeItem(TOKEN_KEY); link.set({ auth: 'needed', message: '' }); };
  const [title, View] = VIEWS[view];
  const signedIn = state.auth === 'ok';
  return html`
    <header>
      <h1>Notes host · migration console</h1>
      ${signedIn && html`<nav aria-label="Views">${Object.entries(VIEWS).map(([name, [label]]) => html`<a href="#${name}" id="nav-${name}" aria-current=${name === view ? 'page' : undefined}>${label}</a>`)}</nav>`}
      <span class="who">${location.host}${signedIn && token ? html`<button onClick=${signOut}>Sign out</button>` : ''}</span>
    </header>
    <main>
      ${state.throttled && html`<p class="banner bad" role="alert">${state.throttled}</p>`}
      ${!state.reachable && html`<p class="banner bad" role="alert" id="unreachable">The host at ${location.origin} is unreachable. Retrying every 2 seconds; the figures below are the last ones seen.</p>`}
      ${signedIn ? html`<${View} key=${title} />` : state.auth === 'unknown' ? html`<p class="muted">Connecting…</p>` : html`<${Login} state=${state} />`}
    </main>`;
}

render(html`<${App} />`, document.getElementById('console'));
