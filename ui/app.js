// hookrunner dashboard: plain JavaScript, no build step, no dependency.
// Every value from the API is put into the page as text (textContent,
// createTextNode); nothing here ever assigns HTML.
'use strict';

const TOKEN_KEY = 'hookrunner.api-token';
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted'];
const OUTCOMES = ['accepted', 'ignored', 'duplicate', 'rejected', 'refused'];
const PAGE = 100;
// Rows a list adds live before it asks to be loaded again.
const LIVE_MAX = 500;

// ------------------------------------------------------------------ DOM

/** Builds an element; strings and numbers among the children become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'href') el.setAttribute('href', safeHref(v));
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Only the dashboard's own routes are linked. */
function safeHref(v) {
  const s = String(v);
  return s.startsWith('#/') ? s : '#/';
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const main = () => document.getElementById('main');

function badge(status) {
  const s = status === null || status === undefined ? 'unknown' : String(status);
  return h('span', { class: 'badge s-' + s.replace(/[^a-z_]/gi, '-') }, s);
}

function link(route, text) {
  return h('a', { href: route }, text);
}

function taskLink(id, text) {
  return link('#/tasks/' + encodeURIComponent(id), text || shortId(id));
}

function deliveryLink(id, text) {
  return link('#/deliveries/' + encodeURIComponent(id), text || shortId(id));
}

function shortId(id) {
  const s = String(id);
  return s.length > 13 ? s.slice(0, 8) + '…' : s;
}

function when(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  const ago = (Date.now() - d.getTime()) / 1000;
  const clock = d.toLocaleTimeString([], { hour12: false });
  if (ago < 86400 && ago > -60) return clock;
  return d.toLocaleDateString() + ' ' + clock;
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  const m = Math.floor(s / 60);
  return m + ' min ' + Math.round(s - m * 60) + ' s';
}

function between(a, b) {
  if (!a) return null;
  const end = b ? new Date(b) : new Date();
  return Math.max(0, end - new Date(a));
}

/**
 * How long attempt `a` of task `t` ran; for the attempt running now, as the
 * daemon counts (its `duration_ms` of the task, less the attempts before),
 * never by this page's clock, which may differ from the daemon's.
 */
function attemptMs(t, a) {
  if (a.finished_at || !a.started_at) return between(a.started_at, a.finished_at);
  if (t.duration_ms === null || t.duration_ms === undefined || !t.started_at) return null;
  return Math.max(0, t.duration_ms - between(t.started_at, a.started_at));
}

/**
 * A duration of `ms` as of now; while `running`, it goes on counting, once
 * a second, from this moment (by this page's clock, so a daemon's clock
 * that differs makes no jump).
 */
function elapsed(ms, running) {
  if (!running || ms === null || ms === undefined) return duration(ms);
  ticker.start();
  return h('span', { class: 'elapsed', 'data-ms': String(ms), 'data-at': String(performance.now()) }, duration(ms));
}

/** Advances every running duration on the page once a second; stops when none is left. */
const ticker = {
  timer: null,
  start() {
    if (this.timer === null) this.timer = setInterval(() => this.tick(), 1000);
  },
  tick() {
    const all = document.querySelectorAll('span.elapsed');
    if (!all.length) { clearInterval(this.timer); this.timer = null; return; }
    const now = performance.now();
    for (const el of all) el.textContent = duration(Math.round(Number(el.dataset.ms) + now - Number(el.dataset.at)));
  },
};

function json(v) {
  return typeof v === 'string' ? v : JSON.stringify(v, null, 2);
}

// Bidi and direction controls, which would show a value as another (an
// argument `\u202Egnp.exe` read as `exe.png`).
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/** `s` with its bidi controls shown as `\u{…}`, as the CLI shows them: exactly what a handler gets. */
function exact(s) {
  return String(s).replace(BIDI, (c) => '\\u{' + c.codePointAt(0).toString(16) + '}');
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(headers, rows, cls) {
  return h('div', { class: 'scroll' },
    h('table', { class: cls || '' },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}

/** A row whose cells carry their column's name (shown as labels on narrow screens). */
function row(labels, cells, attrs) {
  return h('tr', attrs || {}, cells.map((c, i) => h('td', { 'data-label': labels[i] }, c)));
}

function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, String(e && e.message ? e.message : e));
}

// ------------------------------------------------------------------ API

class NeedToken extends Error {}
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set('Authorization', 'Bearer ' + token);
  return headers;
}

/** fetch() with the token; a 401 asks for one. No cookies are ever sent. */
async function api(path, opts) {
  const o = Object.assign({ cache: 'no-store', credentials: 'omit' }, opts || {});
  o.headers = authHeaders(o.headers);
  const r = await fetch(path, o);
  if (r.status === 401) {
    let why = 'the API asks for a token';
    try { why = (await r.json()).error || why; } catch (_) { /* not JSON */ }
    throw new NeedToken(why);
  }
  return r;
}

async function getJson(path, opts) {
  const r = await api(path, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { /* empty or not JSON */ }
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || r.status + ' ' + r.statusText);
  return body;
}

async function post(path, body) {
  const opts = { method: 'POST' };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers = { 'Content-Type': 'application/json' };
  }
  const r = await api(path, opts);
  let answer = null;
  try { answer = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, ok: r.ok, body: answer, location: r.headers.get('Location') };
}

// ------------------------------------------------------------------ SSE over fetch

/**
 * Reads a text/event-stream response body, calling `each({id, event, data})`.
 * (EventSource cannot send Authorization, so the stream is read by hand.)
 */
async function readEvents(response, each, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  if (signal) {
    if (signal.aborted) reader.cancel().catch(() => {});
    else signal.addEventListener('abort', () => reader.cancel().catch(() => {}));
  }
  let buf = '';
  let ev = { id: null, event: 'message', data: [] };
  const line = (l) => {
    if (l === '') {
      if (ev.data.length) each({ id: ev.id, event: ev.event, data: ev.data.join('\n') });
      ev = { id: null, event: 'message', data: [] };
      return;
    }
    if (l.startsWith(':')) return;
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') ev.data.push(value);
    else if (field === 'event') ev.event = value;
    else if (field === 'id') ev.id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    for (;;) {
      const m = /\r\n|\n|\r/.exec(buf);
      if (!m) break;
      // A lone CR at the end may be the first half of CRLF: wait for more.
      if (m[0] === '\r' && m.index === buf.length - 1) break;
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
  }
}

/**
 * The daemon's event stream (GET /events), shared by every page. Besides
 * the daemon's events it emits `connected` (`{again}`) each time the stream
 * opens, and a `reset` of its own when it opens again with no id to resume
 * from (the events in between are lost, as after a daemon's reset).
 */
const live = {
  listeners: new Set(),
  lastId: null,
  mode: 'connecting',
  wake: null,
  stop: null,
  opened: false,
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
  emit(kind, data) {
    for (const fn of [...this.listeners]) {
      try { fn(kind, data); } catch (e) { console.error(e); }
    }
  },
  show(mode, text) {
    this.mode = mode;
    const el = document.getElementById('live');
    el.textContent = text;
    el.className = 'live ' + (mode === 'live' ? 'on' : mode === 'poll' ? '' : 'off');
  },
  /** Closes the stream and opens it again at once, with the token as it is now. */
  restart() {
    if (this.stop) this.stop.abort();
    if (this.wake) this.wake();
  },
  async run() {
    let backoff = 500;
    for (;;) {
      const stop = new AbortController();
      this.stop = stop;
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (this.lastId !== null) headers.set('Last-Event-ID', this.lastId);
        const r = await fetch('/events', { headers, cache: 'no-store', credentials: 'omit', signal: stop.signal });
        if (r.status === 404) {
          // A daemon without the stream: the pages poll instead.
          this.show('poll', 'polling');
          for (;;) {
            await sleep(1000);
            this.emit('poll', null);
          }
        }
        if (r.status === 401 || r.status === 403) {
          this.show('off', r.status === 401 ? 'needs a token' : 'not allowed');
          if (r.status === 401) this.emit('needs-token', null);
          await new Promise((resolve) => { this.wake = resolve; setTimeout(resolve, 5000); });
          continue;
        }
        if (!r.ok || !r.body) throw new Error('status ' + r.status);
        this.show('live', 'live');
        backoff = 500;
        const again = this.opened;
        this.opened = true;
        this.emit('connected', { again });
        if (again && this.lastId === null) this.emit('reset', null);
        await readEvents(r, (ev) => {
          if (ev.id !== null) this.lastId = ev.id;
          let data = null;
          try { data = JSON.parse(ev.data); } catch (_) { data = ev.data; }
          this.emit(ev.event, data);
        }, stop.signal);
      } catch (e) {
        if (!stop.signal.aborted) console.warn('event stream:', e);
      }
      // Closed on purpose (the token changed): open again at once.
      if (stop.signal.aborted) continue;
      this.show('off', 'reconnecting…');
      await new Promise((resolve) => { this.wake = resolve; setTimeout(resolve, backoff); });
      backoff = Math.min(backoff * 2, 10000);
    }
  },
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs the async `fn` `ms` after a call, once for all the calls meanwhile;
 * calls that come while it runs get one more run after it. Runs never
 * overlap, so an older answer never lands after a newer one.
 * `during(promise)` counts as a run (for a page's first load);
 * `stop()` drops what is pending.
 */
function coalesce(fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;
  const call = () => {
    if (stopped) return;
    if (running) again = true;
    else if (!timer) timer = setTimeout(() => { timer = null; call.during(fn()).catch((e) => console.warn(e)); }, ms);
  };
  call.during = async (p) => {
    running = true;
    try {
      return await p;
    } finally {
      running = false;
      if (again) { again = false; call(); }
    }
  };
  call.stop = () => { stopped = true; clearTimeout(timer); timer = null; };
  return call;
}

/**
 * Fetches `pathOf(id)` for each id `want(id)` is given, a batch at a time
 * (one batch in flight, so an older state never lands after a newer one;
 * what comes meanwhile makes the next batch), and gives each record found
 * (`pick(answer)`) to `put`. A batch runs a few requests at a time (a burst
 * of thousands of events must not open thousands of requests, which the
 * browser refuses), and an id whose request failed for want of an answer
 * (not a 4xx: the record is gone) is asked for again a second later.
 * `want.stop()` drops what is pending; `want.during(p)` holds batches back
 * while `p` runs.
 */
function batchFetch(pathOf, pick, put) {
  const pending = new Set();
  let retry = null;
  let stopped = false;
  const flush = coalesce(async () => {
    const ids = [...pending];
    pending.clear();
    const failed = [];
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        let r = null;
        try {
          r = pick(await getJson(pathOf(id)));
        } catch (e) {
          if (!(e instanceof ApiError && e.status >= 400 && e.status < 500)) failed.push(id);
          continue;
        }
        if (r) put(r, false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(6, ids.length) }, worker));
    if (failed.length && !stopped) {
      for (const id of failed) pending.add(id);
      clearTimeout(retry);
      retry = setTimeout(flush, 1000);
    }
  }, 50);
  const want = (id) => { pending.add(id); flush(); };
  want.stop = () => { stopped = true; clearTimeout(retry); flush.stop(); };
  // While `p` runs (the first page's load), fetched ids wait for the next batch.
  want.during = flush.during;
  return want;
}

// ------------------------------------------------------------------ routing

let page = { cleanups: [] };

function onCleanup(fn) {
  page.cleanups.push(fn);
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/overview';
  const [path, qs] = hash.split('?');
  let parts;
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch (_) {
    // A malformed escape (`%E0%A4%A`) names no page: "Not found".
    parts = ['\u0000not-found'];
  }
  return { parts, query: new URLSearchParams(qs || '') };
}

function setQuery(base, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  const target = '#/' + base + (s ? '?' + s : '');
  if (location.hash !== target) history.replaceState(null, '', target);
}

// The filter control that had the focus when its change reloaded the page:
// the new page gives it back to the same control (keyboard users step
// through a select's options with the arrow keys, each one applied).
let refocus = null;

function keepFocus(form) {
  const name = refocus;
  refocus = null;
  const again = name && form.querySelector('[name="' + name + '"]');
  if (again) again.focus({ preventScroll: true });
}

async function route() {
  const active = document.activeElement;
  refocus = active && active.name && active.closest('form.filters') ? active.name : null;
  for (const fn of page.cleanups) fn();
  page = { cleanups: [] };
  const mine = page;
  const { parts, query } = parseRoute();
  const [name, id] = parts;
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === (name || 'overview')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const el = clear(main());
  // Each page with the most parts its address may have: more name no page.
  const pages = {
    overview: [1, () => overviewPage(el)],
    tasks: [2, () => (id ? taskPage(el, id) : tasksPage(el, query))],
    deliveries: [2, () => (id ? deliveryPage(el, id) : deliveriesPage(el, query))],
    try: [1, () => tryPage(el)],
  };
  const known = Object.prototype.hasOwnProperty.call(pages, name) && parts.length <= pages[name][0];
  const render = known ? pages[name][1] : (() => add(el, [h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. '), link('#/overview', 'Overview')]));
  try {
    await render();
  } catch (e) {
    if (page !== mine) return;
    if (e instanceof NeedToken) tokenForm(el, e.message);
    else add(clear(el), [h('h1', {}, 'Something went wrong'), errorBox(e)]);
  }
}

function focusMain(heading) {
  document.title = heading + ' · hookrunner';
}

// ------------------------------------------------------------------ token

function tokenForm(el, why) {
  clear(el);
  focusMain('API token');
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const bad = h('p', { class: 'error', id: 'token-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'token-form', 'aria-labelledby': 'token-title' },
    h('h1', { id: 'token-title' }, 'API token needed'),
    h('p', {}, 'This daemon answers its API only with a bearer token (', h('code', {}, 'api.tokens'),
      '). The token is kept in this tab only (sessionStorage) and sent as ', h('code', {}, 'Authorization: Bearer'), '.'),
    h('p', { class: 'muted' }, why),
    h('label', { for: 'token' }, 'API token', input),
    bad,
    h('button', { type: 'submit', class: 'primary' }, 'Use this token'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    // As api.tokens are: printable ASCII (spaces inside allowed). Any other
    // could never be accepted, and cannot be sent in a header at all.
    if (!/^[\x20-\x7e]+$/.test(t)) {
      bad.textContent = 'A token is printable ASCII (letters, digits, punctuation, spaces inside): this one has other characters, so the daemon cannot have it.';
      bad.hidden = false;
      input.focus();
      return;
    }
    // Tried before it is kept: a wrong one is never stored nor sent again.
    let r;
    try {
      r = await fetch('/tasks?limit=1&output=none', { cache: 'no-store', credentials: 'omit', headers: { Authorization: 'Bearer ' + t } });
    } catch (e) {
      bad.textContent = 'The daemon did not answer: ' + (e.message || e);
      bad.hidden = false;
      return;
    }
    if (r.status === 401) {
      let why = 'the API token is not valid';
      try { why = (await r.json()).error || why; } catch (_) { /* not JSON */ }
      bad.textContent = why.charAt(0).toUpperCase() + why.slice(1) + '.';
      bad.hidden = false;
      input.select();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    tokenButton();
    live.restart();
    route();
  });
  el.appendChild(form);
  input.focus();
}

function tokenButton() {
  const b = document.getElementById('forget-token');
  b.hidden = !sessionStorage.getItem(TOKEN_KEY);
}

// ------------------------------------------------------------------ overview

async function overviewPage(el) {
  focusMain('Overview');
  const mine = page;
  // Drawn again in place as tasks change; changes that come while it
  // loads get one more load after it, so the last of a burst is shown too.
  const load = async () => {
    const [ov, nodes, ready] = await Promise.all([
      getJson('/-/overview'),
      getJson('/nodes').catch(() => null),
      fetch('/readyz', { cache: 'no-store', credentials: 'omit' }).then((r) => r.json()).catch(() => null),
    ]);
    if (page !== mine) return;
    // Counted by the daemon among the newest 1000 tasks (no task list fetched).
    const lh = ov.last_hour;
    const rate = lh && lh.finished ? Math.round((100 * lh.failed) / lh.finished) + ' %' : '—';
    const card = (label, n, sub) => h('div', { class: 'card' }, h('span', { class: 'muted' }, label), h('span', { class: 'n' }, n), sub ? h('span', { class: 'muted' }, sub) : null);
    clear(el);
    add(el, [
      h('h1', {}, 'Overview'),
      h('div', { class: 'cards' },
        card('Running', String(ov.running), 'of ' + ov.limits.max_concurrent + ' at once (tasks.max_concurrent)'),
        card('Queued', String(ov.queued), 'of ' + ov.limits.max_queued + ' (tasks.max_queued)'),
        card('Failure rate, last hour', rate, lh
          ? lh.finished + ' finished, ' + lh.failed + ' failed (among the newest ' + lh.among_newest + ' tasks)'
          : 'the store cannot be read just now'),
        card('Store', ready && ready.store ? (ready.store.writable ? 'writable' : 'cannot write') : 'memory only',
          ready && ready.store ? ready.store.store : 'no state: configured')),
      h('h2', {}, 'Programs'),
      table(['program', 'running', 'queued', 'limit', 'timeout', 'runs on'],
        ov.programs.map((p) => row(['program', 'running', 'queued', 'limit', 'timeout', 'runs on'], [
          link('#/tasks?program=' + encodeURIComponent(p.name), p.name),
          String(p.running), String(p.queued),
          p.max_concurrent === null ? 'the global limit' : String(p.max_concurrent),
          duration(p.timeout_ms),
          p.run_on.length ? p.run_on.join(', ') : 'any node',
        ])), 'rows'),
      h('h2', {}, 'Sources'),
      table(['source', 'provider', 'auth', 'URL'],
        ov.sources.map((s) => row(['source', 'provider', 'auth', 'URL'], [
          link('#/deliveries?source=' + encodeURIComponent(s.name), s.name), s.provider, s.auth, h('code', {}, s.url)])), 'rows'),
      nodes ? [
        h('h2', {}, nodes.clustered ? 'Nodes of the cluster' : 'Node'),
        table(['node', 'status', 'running', 'labels', 'last heartbeat'],
          nodes.nodes.map((n) => row(['node', 'status', 'running', 'labels', 'last heartbeat'], [
            n.name, badge(n.alive ? 'alive' : n.status), String(n.running === undefined ? '—' : n.running),
            (n.labels || []).join(', ') || '—', n.last_heartbeat ? when(n.last_heartbeat) : '—'])), 'rows'),
      ] : null,
      h('p', { class: 'muted' }, 'hookrunner ' + ov.version + ' · node ' + ov.node),
    ]);
  };
  const again = coalesce(() => load().catch((e) => { if (e instanceof NeedToken && page === mine) route(); }), 1000);
  onCleanup(again.stop);
  onCleanup(live.on((kind) => { if ((kind.startsWith('task.') && kind !== 'task.output') || kind === 'reset') again(); }));
  await again.during(load());
}

// ------------------------------------------------------------------ tasks

function taskMatches(t, f) {
  if (f.status && t.status !== f.status) return false;
  if (f.program && t.program !== f.program) return false;
  if (f.source && t.source !== f.source) return false;
  if (f.node && (t.node || '') !== f.node) return false;
  if (f.q && !String(t.id || t.task).startsWith(f.q.toLowerCase())) return false;
  return true;
}

const TASK_COLS = ['task', 'program', 'source · event', 'status', 'exit', 'created', 'duration', 'node'];

function taskRow(t) {
  return row(TASK_COLS, [
    taskLink(t.id),
    t.program,
    [t.source, t.event ? ' · ' + t.event : ''].join(''),
    badge(t.status),
    t.exit_code === null || t.exit_code === undefined ? '—' : String(t.exit_code),
    h('time', { datetime: t.created_at }, when(t.created_at)),
    elapsed(t.duration_ms, t.status === 'running'),
    t.node || '—',
  ], { 'data-task': t.id });
}

// A table of records (tasks or deliveries) paged by `before`, newest
// first. `put` shows one at its place by creation time (`at`; among equal
// times, the one announced later above), refreshes it in place, or takes
// it away once it no longer matches the filters; `first` loads the first
// page, the button the older ones. `seen` notes the order in which the
// live events announced records. The count line follows the rows.
function pagedRows({ tbody, status, more, path, field, query, rowOf, at, matches, noun }) {
  const [one, many] = noun;
  const shown = new Map();
  const entries = new WeakMap();
  const order = new Map();
  let cursor = null; // the `next` of the last page loaded
  let oldest = null;
  let end = false;
  let failed = false;
  const count = () => {
    if (failed) return;
    status.textContent = shown.size ? shown.size + ' ' + (shown.size === 1 ? one : many) + ' shown' + (end ? ', no older ones' : '') : 'No ' + many + ' match.';
  };
  const newer = (a, b) => a.at > b.at || (a.at === b.at && a.order > b.order);
  const put = (r, fromPage) => {
    const old = shown.get(r.id);
    if (!matches(r)) {
      if (old) { old.el.remove(); shown.delete(r.id); count(); }
      return;
    }
    const fresh = rowOf(r);
    if (old) { old.el.replaceWith(fresh); old.el = fresh; entries.set(fresh, old); return; }
    const entry = { el: fresh, at: at(r), order: fromPage ? 0 : order.get(r.id) || 0 };
    if (fromPage) {
      tbody.appendChild(fresh);
    } else {
      // The rows are newest first: it goes above the first one older than it.
      let before = null;
      for (const el of tbody.children) {
        if (newer(entry, entries.get(el))) { before = el; break; }
      }
      // Older than every row loaded: the older pages will bring it.
      if (!before && !end && oldest && !newer(entry, oldest)) return;
      tbody.insertBefore(fresh, before);
    }
    entries.set(fresh, entry);
    shown.set(r.id, entry);
    count();
  };
  const seen = (id) => { if (!order.has(id)) order.set(id, order.size + 1); };
  const loadMore = async () => {
    more.disabled = true;
    const q = new URLSearchParams(query);
    q.set('limit', String(PAGE));
    if (cursor) q.set('before', cursor);
    const answer = await getJson(path + '?' + q);
    const page = answer[field];
    failed = false;
    for (const r of page) put(r, true);
    if (page.length) oldest = { at: at(page[page.length - 1]), order: 0 };
    // A cursor, not the last row's id: it stays good when that row is deleted or pruned.
    cursor = answer.next;
    if (!cursor) end = true;
    count();
    more.disabled = end;
    more.hidden = end;
  };
  const fail = (e) => {
    if (e instanceof NeedToken) throw e;
    failed = true;
    clear(status).appendChild(errorBox(e));
    more.hidden = true;
  };
  more.addEventListener('click', () => loadMore().catch(fail));
  return { shown, put, seen, first: () => loadMore().catch(fail) };
}

async function tasksPage(el, query) {
  focusMain('Tasks');
  const f = {
    status: query.get('status') || '', program: query.get('program') || '', source: query.get('source') || '',
    node: query.get('node') || '', q: (query.get('q') || '').trim(),
  };
  const ov = await getJson('/-/overview');
  const select = (name, label, options) => h('label', {}, label,
    h('select', { name }, h('option', { value: '' }, 'any'), options.map((o) => h('option', { value: o, selected: o === f[name] }, o))));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks' },
    select('status', 'Status', STATUSES),
    select('program', 'Program', ov.programs.map((p) => p.name)),
    select('source', 'Source', ov.sources.map((s) => s.name)),
    h('label', {}, 'Node', h('input', { name: 'node', value: f.node, size: 12, placeholder: 'any' })),
    h('label', {}, 'Task id starts with', h('input', { name: 'q', value: f.q, size: 14, placeholder: 'e.g. 3f2a', spellcheck: 'false', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Apply'));
  const apply = (ev) => {
    if (ev) ev.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const k of ['status', 'program', 'source', 'node', 'q']) next[k] = String(data.get(k) || '').trim();
    const full = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(next.q);
    location.hash = full ? '#/tasks/' + next.q.toLowerCase() : '#/tasks?' + new URLSearchParams(Object.entries(next).filter(([, v]) => v)).toString();
  };
  form.addEventListener('submit', apply);
  for (const s of form.querySelectorAll('select')) s.addEventListener('change', apply);

  const tbody = h('tbody', {});
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const more = h('button', { type: 'button' }, 'Load older tasks');
  add(el, [
    h('h1', {}, 'Tasks'),
    form,
    h('div', { class: 'scroll' }, h('table', { class: 'rows', id: 'tasks' },
      h('thead', {}, h('tr', {}, TASK_COLS.map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    status,
    h('div', { class: 'more' }, more),
  ]);
  keepFocus(form);

  // Every filter is the API's (GET /tasks?status=&program=&source=&node=&id=).
  const base = new URLSearchParams();
  for (const k of ['status', 'program', 'source', 'node']) if (f[k]) base.set(k, f[k]);
  if (f.q) base.set('id', f.q.toLowerCase());
  // The list shows no output: the tasks come without their output tails.
  base.set('output', 'none');
  const { shown, put, seen, first } = pagedRows({
    tbody, status, more, path: '/tasks', field: 'tasks', query: base, rowOf: taskRow,
    at: (t) => Date.parse(t.created_at), matches: (t) => taskMatches(t, f), noun: ['task', 'tasks'],
  });

  // Without the stream: the newest page, again and again.
  const pollNewest = async () => {
    const q = new URLSearchParams(base);
    q.set('limit', '50');
    const { tasks } = await getJson('/tasks?' + q);
    for (const t of tasks.reverse()) { seen(t.id); put(t, false); }
  };
  // Live: a task the filters may show is fetched and put at its place (or
  // refreshed in place, or taken away when it no longer matches); `put`
  // judges it by every filter. One batch at a time, so a task's older
  // state never lands after a newer one; what comes meanwhile (the first
  // page's load included) makes the next batch.
  const fetchTask = batchFetch((id) => '/tasks?output=none&limit=1&id=' + encodeURIComponent(id), (a) => a.tasks[0], put);
  onCleanup(fetchTask.stop);
  onCleanup(live.on((kind, data) => {
    if (kind === 'poll') return pollNewest().catch(() => {});
    if (kind === 'reset') return route();
    if (!data || !data.task || kind === 'task.output') return;
    seen(data.task);
    const candidate = shown.has(data.task) || taskMatches(Object.assign({}, data, { id: data.task }), Object.assign({}, f, { status: '', node: data.node ? f.node : '' }));
    if (candidate) {
      fetchTask(data.task);
    }
  }));
  await fetchTask.during(first());
}

// ------------------------------------------------------------------ one task

async function taskPage(el, id) {
  focusMain('Task ' + shortId(id));
  // The task is read again when the stream tells of it, each time the
  // stream opens (what happened while it was closed may not come), and on
  // `reset`; one read at a time, so an older answer never lands last.
  let render = () => {}; // drawn once the page is built
  const refresh = coalesce(async () => {
    let t;
    try { t = await getJson('/tasks/' + encodeURIComponent(id)); } catch (_) { return; /* gone, or the daemon away: the next event tries again */ }
    render(t);
  }, 100);
  onCleanup(refresh.stop);
  onCleanup(live.on((kind, data) => {
    if ((data && data.task === id && kind !== 'task.output') || ['poll', 'reset', 'connected'].includes(kind)) refresh();
  }));
  const [t, ov] = await refresh.during(Promise.all([getJson('/tasks/' + encodeURIComponent(id)), getJson('/-/overview').catch(() => null)]));
  const head = h('div', {});
  const details = h('div', {});
  const message = h('p', { role: 'status', 'aria-live': 'polite', class: 'muted' });
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel' }, 'Cancel');
  const rerun = h('button', { type: 'button', id: 'rerun' }, 'Rerun');
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    const r = await post('/tasks/' + encodeURIComponent(id) + '/cancel');
    message.textContent = r.ok ? 'Cancel requested.' : 'Not cancelled: ' + ((r.body && r.body.error) || r.status);
    refresh();
  });
  rerun.addEventListener('click', async () => {
    rerun.disabled = true;
    const r = await post('/tasks/' + encodeURIComponent(id) + '/rerun');
    if (r.ok && r.body && r.body.id) location.hash = '#/tasks/' + encodeURIComponent(r.body.id);
    else { message.textContent = 'Not rerun: ' + ((r.body && r.body.error) || r.status); rerun.disabled = false; }
  });

  // Output: stdout and stderr lines as the handler writes them.
  const out = h('div', { class: 'output', id: 'output', role: 'log', 'aria-label': 'Output', tabindex: '0' });
  const follow = h('input', { type: 'checkbox', id: 'autoscroll', checked: true });
  const showOut = h('input', { type: 'checkbox', id: 'show-stdout', checked: true });
  const showErr = h('input', { type: 'checkbox', id: 'show-stderr', checked: true });
  showOut.addEventListener('change', () => out.classList.toggle('hide-stdout', !showOut.checked));
  showErr.addEventListener('change', () => out.classList.toggle('hide-stderr', !showErr.checked));
  out.addEventListener('scroll', () => {
    const atEnd = out.scrollHeight - out.scrollTop - out.clientHeight < 8;
    // Scrolled up by hand: stop following; back down to the end: follow again.
    if (out.dataset.auto !== '1') {
      if (!atEnd && follow.checked) follow.checked = false;
      else if (atEnd && !follow.checked) follow.checked = true;
    }
    out.dataset.auto = '';
  });
  // The view keeps the last OUTPUT_LINES lines (the whole output stays at
  // /tasks/{id}/output), and follows the end once per frame, not per line:
  // a handler printing thousands of lines at once must not freeze the page.
  const OUTPUT_LINES = 5000;
  let dropped = 0;
  const droppedNote = h('div', { class: 'line note', id: 'output-dropped' });
  let scrolling = false;
  const line = (stream, text) => {
    out.appendChild(h('div', { class: 'line ' + stream }, h('span', { class: 'tag' }, stream === 'stderr' ? 'err' : stream === 'note' ? '··' : 'out'), h('span', {}, text)));
    if (out.childElementCount > OUTPUT_LINES + 500) {
      if (droppedNote.parentNode) droppedNote.remove();
      while (out.childElementCount > OUTPUT_LINES) { out.firstChild.remove(); dropped += 1; }
      clear(droppedNote);
      add(droppedNote, [h('span', { class: 'tag' }, '··'), h('span', {}, '[' + dropped + ' earlier lines are not shown here; the whole output: '),
        h('a', { href: '/tasks/' + encodeURIComponent(id) + '/output', target: '_blank', rel: 'noopener' }, 'stdout'), ']']);
      out.insertBefore(droppedNote, out.firstChild);
    }
    if (follow.checked && !scrolling) {
      scrolling = true;
      requestAnimationFrame(() => {
        scrolling = false;
        if (!follow.checked) return;
        out.dataset.auto = '1';
        out.scrollTop = out.scrollHeight;
      });
    }
  };

  const summary = h('div', {});
  // Said when the page shows only the end of a stream (the handler printed
  // more than `tasks.output_limit`), with where the whole of it is.
  const partial = h('p', { class: 'muted', id: 'output-partial' });
  partial.hidden = true;
  add(el, [
    head,
    h('div', { class: 'actions' }, cancel, rerun, message),
    summary,
    h('h2', { id: 'output-title' }, 'Output'),
    h('div', { class: 'actions' },
      h('label', {}, showOut, ' stdout'), h('label', {}, showErr, ' stderr (marked “err”)'), h('label', {}, follow, ' follow the end')),
    partial,
    out,
    details,
  ]);

  render = (t) => {
    const cut = ['stdout', 'stderr'].filter((s) => t[s + '_truncated']);
    partial.hidden = cut.length === 0;
    clear(partial);
    if (cut.length) {
      const base = '/tasks/' + encodeURIComponent(t.id) + '/output';
      add(partial, [
        'Only the end of ' + cut.join(' and ') + ' is shown here: the handler printed more than tasks.output_limit. The whole of it, as far as the daemon keeps it: ',
        cut.map((s, i) => {
          // The API's own path for this task (safeHref keeps page links to '#/').
          const a = h('a', { class: 'whole-output' }, s);
          a.setAttribute('href', s === 'stdout' ? base : base + '?stream=stderr');
          return [i ? ', ' : '', a];
        }),
        sessionStorage.getItem(TOKEN_KEY) ? ' (those links send no API token: with tokens set, fetch them with yours)' : '',
        '.',
      ]);
    }
    clear(head);
    add(head, [h('h1', {}, 'Task ', h('code', {}, t.id)),
      h('p', {}, badge(t.status), ' ', t.program, ' · ', t.source, ' · ', t.event,
        t.error ? [' — ', h('span', { class: 'muted' }, t.error)] : null)]);
    const done = !['queued', 'running'].includes(t.status) && !t.next_attempt_at;
    cancel.disabled = done;
    rerun.disabled = !done;
    const program = ov && ov.programs.find((p) => p.name === t.program);
    const attempts = (t.attempts || []).concat([{ attempt: t.attempt, status: t.status, exit_code: t.exit_code, error: t.error, started_at: t.started_at, finished_at: t.finished_at, current: true }]);
    clear(summary);
    summary.appendChild(
      facts([
        ['delivery', deliveryLink(t.delivery_id, t.delivery_id)],
        ['request id', h('code', {}, t.request_id)],
        ['created', when(t.created_at)],
        ['started', when(t.started_at)],
        ['finished', when(t.finished_at)],
        ['duration', elapsed(t.duration_ms, t.status === 'running')],
        ['exit code', t.exit_code === null ? '—' : String(t.exit_code)],
        t.next_attempt_at ? ['next attempt', when(t.next_attempt_at)] : null,
        t.node ? ['node', t.node] : null,
        t.concurrency_key ? ['concurrency key', h('code', {}, t.concurrency_key)] : null,
        t.rerun_of ? ['rerun of', taskLink(t.rerun_of)] : null,
        t.reruns && t.reruns.length ? ['reruns', t.reruns.map((r, i) => [i ? ', ' : '', taskLink(r)])] : null,
      ]));
    clear(details);
    add(details, [
      h('div', { class: 'grid2' },
        h('section', { 'aria-labelledby': 'argv-title' }, h('h2', { id: 'argv-title' }, 'Arguments'),
          h('ol', { class: 'argv', start: '0' }, t.argv.map((a) => h('li', {}, h('code', {}, exact(a)))))),
        h('section', { 'aria-labelledby': 'env-title' }, h('h2', { id: 'env-title' }, 'Environment'),
          h('p', { class: 'muted' }, 'Names only; values are never shown.'),
          program ? h('p', {}, program.env.length ? program.env.map((n, i) => [i ? ' ' : '', h('code', {}, n)]) : 'No variables beyond the inherited ones.') : h('p', {}, 'Program no longer in the config.'))),
      h('h2', {}, 'Params'),
      Object.keys(t.params || {}).length
        ? table(['param', 'value'], Object.entries(t.params).map(([k, v]) => row(['param', 'value'], [h('code', {}, exact(k)), h('pre', {}, exact(json(v)))])), 'rows')
        : h('p', { class: 'muted' }, 'No params.'),
      h('h2', {}, 'Attempts'),
      h('ol', { class: 'timeline', 'aria-label': 'Attempts' }, attempts.filter((a) => a.attempt).map((a) => h('li', {},
        h('strong', {}, 'Attempt ' + a.attempt), ' ', badge(a.status), ' exit ', a.exit_code === null || a.exit_code === undefined ? '—' : String(a.exit_code),
        ' · ', when(a.started_at), ' → ', a.finished_at ? when(a.finished_at) : (a.started_at ? 'now' : '—'),
        ' · ', elapsed(attemptMs(t, a), a.current && t.status === 'running' && !a.finished_at),
        a.error ? [' · ', h('span', { class: 'muted' }, a.error)] : null,
        // An earlier attempt's output: the end of it, as the API keeps it.
        !a.current && (a.stdout || a.stderr)
          ? h('details', {}, h('summary', {}, 'its output (the end)'),
            a.stdout ? h('pre', { class: 'attempt-out' }, a.stdout) : null,
            a.stderr ? h('pre', { class: 'attempt-out stderr' }, a.stderr) : null)
          : null))),
      h('h2', {}, 'Callbacks'),
      t.callbacks && t.callbacks.length
        ? table(['URL', 'state', 'attempts', 'last error'], t.callbacks.map((c) => row(['URL', 'state', 'attempts', 'last error'], [h('code', {}, c.url), badge(c.status), String(c.attempts), c.last_error || '—'])), 'rows')
        : h('p', { class: 'muted' }, 'None.'),
    ]);
  };
  render(t);

  // The output, live while the task runs (a retry goes on with its new
  // attempt). A stream cut before the task's last `status` (the daemon
  // restarted, the network failed) is opened again until it gets there;
  // the output is then shown afresh, from what the daemon keeps of it.
  const abort = new AbortController();
  onCleanup(() => abort.abort());
  (async () => {
    let backoff = 500;
    let cut = false;
    for (let again = false; !abort.signal.aborted; again = true) {
      try {
        const r = await api('/tasks/' + encodeURIComponent(id) + '/output?follow=1', { signal: abort.signal, headers: { Accept: 'text/event-stream' } });
        if (r.status !== 404 && (!r.ok || !r.body)) throw new Error('status ' + r.status);
        backoff = 500;
        cut = false;
        if (again) {
          clear(out);
          dropped = 0;
          line('note', '[output stream opened again: the output so far, as the daemon keeps it]');
          refresh();
        }
        if (r.status === 404) {
          // Only in the store: what its record kept, stream by stream.
          for (const stream of ['stdout', 'stderr']) {
            const x = await api('/tasks/' + encodeURIComponent(id) + '/output?stream=' + stream);
            const text = x.ok ? await x.text() : (stream === 'stdout' ? t.stdout : t.stderr);
            for (const l of text.split('\n').filter((s, i, all) => s !== '' || i < all.length - 1)) line(stream, l);
          }
          return;
        }
        let ended = false;
        await readEvents(r, (ev) => {
          if (ev.event === 'stdout' || ev.event === 'stderr') line(ev.event, ev.data);
          else if (ev.event === 'missed') {
            let n = '?';
            try { n = JSON.parse(ev.data).bytes; } catch (_) { /* keep ? */ }
            line('note', '[' + n + ' bytes skipped: this page fell behind]');
          } else if (ev.event === 'status') {
            ended = true;
            refresh();
          }
        }, abort.signal);
        if (ended) return;
      } catch (e) {
        if (abort.signal.aborted) return;
        if (e instanceof NeedToken) { line('note', '[output stream ended: ' + e.message + ']'); return; }
        if (!cut) line('note', '[output stream cut: ' + (e.message || e) + '; opening it again…]');
        cut = true;
      }
      if (abort.signal.aborted) return;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  })();
}

// ------------------------------------------------------------------ deliveries

const DELIVERY_COLS = ['received', 'source', 'event', 'outcome', 'status', 'why', 'tasks', 'record'];

function deliveryRow(d) {
  return row(DELIVERY_COLS, [
    h('time', { datetime: d.received_at }, when(d.received_at)),
    d.source, d.event || '—', badge(d.outcome), String(d.status), d.reason || '—',
    String((d.task_ids || []).length),
    deliveryLink(d.id),
  ], { 'data-delivery': d.id });
}

async function deliveriesPage(el, query) {
  focusMain('Deliveries');
  const f = { source: query.get('source') || '', outcome: query.get('outcome') || '', event: query.get('event') || '' };
  const ov = await getJson('/-/overview');
  const select = (name, label, options) => h('label', {}, label,
    h('select', { name }, h('option', { value: '' }, 'any'), options.map((o) => h('option', { value: o, selected: o === f[name] }, o))));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter deliveries' },
    select('source', 'Source', ov.sources.map((s) => s.name)),
    select('outcome', 'Outcome', OUTCOMES),
    h('label', {}, 'Event', h('input', { name: 'event', value: f.event, size: 14, placeholder: 'any' })),
    h('button', { type: 'submit' }, 'Apply'));
  const apply = (ev) => {
    if (ev) ev.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const k of ['source', 'outcome', 'event']) { const v = String(data.get(k) || '').trim(); if (v) q.set(k, v); }
    location.hash = '#/deliveries' + (q.toString() ? '?' + q : '');
  };
  form.addEventListener('submit', apply);
  for (const s of form.querySelectorAll('select')) s.addEventListener('change', apply);
  const tbody = h('tbody', {});
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const more = h('button', { type: 'button' }, 'Load older deliveries');
  add(el, [h('h1', {}, 'Deliveries'), form,
    h('div', { class: 'scroll' }, h('table', { class: 'rows', id: 'deliveries' },
      h('thead', {}, h('tr', {}, DELIVERY_COLS.map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    status, h('div', { class: 'more' }, more)]);
  keepFocus(form);
  const base = new URLSearchParams();
  for (const k of ['source', 'outcome', 'event']) if (f[k]) base.set(k, f[k]);
  const matches = (d) => !((f.source && d.source !== f.source) || (f.outcome && d.outcome !== f.outcome) || (f.event && d.event !== f.event));
  const { put, seen, first } = pagedRows({
    tbody, status, more, path: '/deliveries', field: 'deliveries', query: base, rowOf: deliveryRow,
    at: (d) => Date.parse(d.received_at), matches, noun: ['delivery', 'deliveries'],
  });
  // Live, from the events' own data (no request per record, so a flood of
  // refused requests costs this page no fetch), drawn at most four times a
  // second, and at most LIVE_MAX rows added: past that, a line says how
  // many more came, with a button that loads the newest page.
  let added = 0;
  let waiting = 0;
  const pending = [];
  const newer = h('div', { class: 'newer muted', id: 'newer', role: 'status', hidden: true });
  const notice = () => {
    newer.hidden = waiting === 0;
    newer.dataset.waiting = String(waiting);
    clear(newer);
    if (waiting) add(newer, [waiting + ' newer ' + (waiting === 1 ? 'delivery' : 'deliveries') + ' not shown. ',
      h('button', { type: 'button', onclick: () => route() }, 'Show the newest')]);
  };
  form.after(newer);
  const draw = coalesce(async () => {
    for (const d of pending.splice(0)) put(d, false);
    notice();
  }, 250);
  onCleanup(draw.stop);
  onCleanup(live.on(async (kind, data) => {
    if (kind === 'reset') return route();
    if (kind === 'delivery.recorded' && data && data.delivery) {
      const d = {
        id: data.delivery, source: data.source, event: data.event, outcome: data.outcome, status: data.status,
        reason: data.reason, task_ids: data.tasks || [], received_at: data.received_at,
      };
      if (!matches(d)) return;
      seen(d.id);
      if (added < LIVE_MAX) { added += 1; pending.push(d); } else waiting += 1;
      draw();
    }
    if (kind === 'poll') {
      try {
        const q = new URLSearchParams(base);
        q.set('limit', '20');
        const { deliveries } = await getJson('/deliveries?' + q);
        for (const d of deliveries.reverse()) { seen(d.id); put(d, false); }
      } catch (_) { /* try again at the next poll */ }
    }
  }));
  await draw.during(first());
}

async function deliveryPage(el, id) {
  focusMain('Delivery ' + shortId(id));
  const d = await getJson('/deliveries/' + encodeURIComponent(id));
  const message = h('p', { role: 'status', 'aria-live': 'polite', class: 'muted' });
  const replay = h('button', { type: 'button', class: 'primary', id: 'replay', disabled: !d.body_kept }, 'Replay');
  replay.addEventListener('click', async () => {
    replay.disabled = true;
    const r = await post('/deliveries/' + encodeURIComponent(id) + '/replay');
    const to = r.location && r.location.split('/').pop();
    if (to && r.status < 500 && r.status !== 409 && r.status !== 404) {
      location.hash = '#/deliveries/' + encodeURIComponent(to);
    } else {
      message.textContent = 'Not replayed: ' + ((r.body && (r.body.error || r.body.message)) || r.status);
      replay.disabled = false;
    }
  });
  const tryIt = h('button', { type: 'button', id: 'try-this' }, 'Try in “Try a payload”');
  const bodyBox = h('div', {}, h('p', { class: 'muted' }, d.body_kept ? 'Loading…' : 'The body is not kept (refused, a duplicate, or over deliveries.body_bytes).'));
  let bodyText = '';
  tryIt.addEventListener('click', () => {
    // Not the framing of that request, nor the values the record masks
    // (`***` would only mislead the dry run).
    const framing = ['content-length', 'host', 'connection', 'transfer-encoding', 'expect'];
    const headers = (d.headers || []).filter(([k, v]) => !framing.includes(String(k).toLowerCase()) && v !== '***');
    sessionStorage.setItem('hookrunner.try', JSON.stringify({ source: d.source, headers, body: bodyText }));
    location.hash = '#/try';
  });
  const matched = (r) => String(r.result).startsWith('matched');
  add(el, [
    h('h1', {}, 'Delivery ', h('code', {}, d.id)),
    h('p', {}, badge(d.outcome), ' ', String(d.status), ' · ', d.source, ' · ', d.event || 'event unknown', d.reason ? [' — ', d.reason] : null),
    h('div', { class: 'actions' }, replay, tryIt, message),
    facts([
      ['received', when(d.received_at)],
      ['provider delivery id', h('code', {}, d.delivery_id)],
      ['request id', h('code', {}, d.request_id)],
      d.raw_event ? ['provider event', d.raw_event] : null,
      ['client', d.remote_addr],
      ['body', d.body_size + ' bytes' + (d.body_kept ? ', kept' : ', not kept')],
      ['tasks', d.task_ids.length ? d.task_ids.map((t, i) => [i ? ', ' : '', taskLink(t)]) : 'none'],
      d.duplicate_of ? ['duplicate of', deliveryLink(d.duplicate_of)] : null,
      d.replay_of ? ['replay of', deliveryLink(d.replay_of)] : null,
      d.replays && d.replays.length ? ['replays', d.replays.map((r, i) => [i ? ', ' : '', deliveryLink(r)])] : null,
    ]),
    h('h2', { id: 'trace' }, 'Rules, one by one'),
    d.rules.length ? h('p', { class: 'muted' }, d.rules.some(matched) ? 'Matched rules ran (or would have) the program named.' : 'No rule matched: nothing ran. Each rule below says why.') : h('p', { class: 'muted' }, d.outcome === 'refused' ? 'Refused before it passed the source\'s auth: nothing was judged.' : d.outcome === 'rejected' ? 'Refused before any rule was judged.' : 'No rule was judged (no mapping for this source and event).'),
    d.rules.length ? table(['mapping', 'rule', 'condition', 'program', 'verdict'], d.rules.map((r) => row(['mapping', 'rule', 'condition', 'program', 'verdict'],
      [r.mapping, String(r.rule), r.if ? h('code', {}, r.if) : 'always', r.program, h('span', { class: matched(r) ? 's-matched' : 's-not-matched' }, r.result)], { class: matched(r) ? 'rule-matched' : '' })), 'rows trace') : null,
    d.notes ? h('ul', {}, d.notes.map((n) => h('li', {}, n))) : null,
    h('h2', {}, 'Params'),
    Object.keys(d.params || {}).length ? h('pre', {}, exact(json(d.params))) : h('p', { class: 'muted' }, 'None.'),
    h('h2', {}, 'Headers'),
    h('p', { class: 'muted' }, 'Credentials are masked (***), as the API records them.'),
    table(['header', 'value'], d.headers.map(([k, v]) => row(['header', 'value'], [h('code', {}, k), h('code', {}, v)])), 'rows'),
    d.query.length ? [h('h2', {}, 'Query'), table(['name', 'value'], d.query.map(([k, v]) => row(['name', 'value'], [h('code', {}, k), h('code', {}, v)])), 'rows')] : null,
    h('h2', {}, 'Body'),
    bodyBox,
  ]);
  if (d.body_kept) {
    const r = await api('/deliveries/' + encodeURIComponent(id) + '/body');
    clear(bodyBox);
    if (r.ok) {
      bodyText = await r.text();
      let shown = bodyText;
      try { shown = JSON.stringify(JSON.parse(bodyText), null, 2); } catch (_) { /* not JSON: as is */ }
      bodyBox.appendChild(h('pre', { id: 'body', tabindex: '0' }, shown));
    } else {
      bodyBox.appendChild(h('p', { class: 'muted' }, 'The body is no longer kept.'));
    }
  }
}

// ------------------------------------------------------------------ try a payload

async function tryPage(el) {
  focusMain('Try a payload');
  const ov = await getJson('/-/overview');
  let prefill = null;
  try { prefill = JSON.parse(sessionStorage.getItem('hookrunner.try') || 'null'); } catch (_) { /* none */ }
  sessionStorage.removeItem('hookrunner.try');
  const source = h('select', { id: 'try-source', name: 'source', required: true },
    ov.sources.map((s) => h('option', { value: s.name, selected: prefill && prefill.source === s.name }, s.name + ' (' + s.provider + ')')));
  const headers = h('textarea', { id: 'try-headers', name: 'headers', rows: 5, spellcheck: 'false', placeholder: 'X-GitHub-Event: push\nContent-Type: application/json' });
  const body = h('textarea', { id: 'try-body', name: 'body', rows: 9, spellcheck: 'false', placeholder: '{"ref": "refs/heads/main"}' });
  if (prefill) {
    headers.value = (prefill.headers || []).map(([k, v]) => k + ': ' + v).join('\n');
    body.value = prefill.body || '';
  }
  const result = h('div', { id: 'try-result', 'aria-live': 'polite' });
  const form = h('form', { 'aria-label': 'A payload to judge' },
    h('div', { class: 'grid2' },
      h('div', {},
        h('div', { class: 'field' }, h('label', { for: 'try-source' }, 'Source'), source),
        h('div', { class: 'field' }, h('label', { for: 'try-headers' }, 'Headers, one “Name: value” per line'), headers)),
      h('div', { class: 'field' }, h('label', { for: 'try-body' }, 'Body'), body)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'try-run' }, 'Dry run'),
      h('span', { class: 'muted' }, 'Nothing runs and nothing is recorded. The source’s signature is not checked.')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pairs = [];
    for (const l of headers.value.split('\n')) {
      if (!l.trim()) continue;
      const i = l.indexOf(':');
      if (i <= 0) { clear(result).appendChild(errorBox('Not a header line: ' + l)); return; }
      pairs.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
    }
    clear(result).appendChild(h('p', { class: 'muted' }, 'Judging…'));
    try {
      const r = await post('/-/dry-run', { source: source.value, headers: pairs, body: body.value });
      clear(result);
      if (!r.ok) { result.appendChild(errorBox('Refused (' + r.status + '): ' + ((r.body && r.body.error) || ''))); return; }
      showTrace(result, r.body);
    } catch (e) {
      if (e instanceof NeedToken) tokenForm(el, e.message); else clear(result).appendChild(errorBox(e));
    }
  });
  add(el, [h('h1', {}, 'Try a payload'),
    h('p', { class: 'muted' }, 'Judge a body as a source would: the verdict of every rule and the exact arguments each match would run.'),
    form, result]);
}

function showTrace(el, t) {
  const matched = (r) => String(r.result).startsWith('matched');
  add(el, [
    h('h2', {}, t.would_run ? 'Would run ' + t.would_run + ' task' + (t.would_run === 1 ? '' : 's') : 'Would run nothing'),
    t.handshake ? h('p', {}, 'A handshake: answered, nothing to run.') : null,
    facts([['event', t.event || '—'], ['action', t.action || '—'], ['delivery id', h('code', {}, t.delivery_id)]]),
    h('h2', {}, 'Rules, one by one'),
    t.rules.length ? table(['mapping', 'rule', 'condition', 'program', 'verdict', 'argv'], t.rules.map((r) => row(['mapping', 'rule', 'condition', 'program', 'verdict', 'argv'], [
      r.mapping, String(r.rule), r.if ? h('code', {}, r.if) : 'always', r.program,
      h('span', { class: matched(r) ? 's-matched' : 's-not-matched' }, r.result),
      r.argv ? h('ol', { class: 'argv', start: '0' }, r.argv.map((a) => h('li', {}, h('code', {}, exact(a))))) : '—',
    ], { class: matched(r) ? 'rule-matched' : '' })), 'rows trace') : h('p', { class: 'muted' }, 'No rule to judge for this event.'),
    t.notes ? h('ul', {}, t.notes.map((n) => h('li', {}, n))) : null,
    h('h2', {}, 'Params'),
    h('pre', {}, exact(json(t.params))),
  ]);
}

// ------------------------------------------------------------------ start

document.getElementById('forget-token').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenButton();
  // Nothing stays open with the token: the event stream opens again
  // without it, and leaving the page closes its output stream.
  live.restart();
  route();
});
window.addEventListener('hashchange', () => {
  route();
  // Unless a filter keeps it (keepFocus), the focus goes to the new page.
  if (refocus === null) main().focus({ preventScroll: true });
});
// A token that stops working (withdrawn by a reload) turns whatever page
// is shown into the token form, as a first 401 does.
live.on((kind) => {
  if (kind === 'needs-token' && !document.getElementById('token')) route();
});
tokenButton();
route();
live.run();
