// The agentgate-obs dashboard: follows /ws (the hello snapshot, then
// every event), polls /api/summary and /health, and renders at most every
// RENDER_EVERY_MS. The model is in model.js, the DOM building in view.js,
// which puts every value from the stream in as text, never as HTML; the
// Content-Security-Policy is a second wall.

import { STATUSES, applyEvent, fromSnapshot, num, oneOf, str, time } from './model.js';
import { describe, el, fmtClock, fmtMs, makeRow, tone, updateElapsed, updateRow } from './view.js';
import { HISTORY_SECONDS, History, bucketCounts, drawBars, drawSparkline, makeSvg } from './plots.js';

const MAX_ROWS = 200; // rows in the DOM at once: keeps 1,000+ runs smooth
const MAX_RUNS = 5000; // runs the page remembers; oldest finished go first
// At most this often under a burst of events: a render relayouts the
// rows that changed, and the time between renders goes to the messages.
const RENDER_EVERY_MS = 150;
const SUMMARY_EVERY_MS = 3000;
const HEALTH_EVERY_MS = 2000;
const RATE_WINDOW_S = 5;

const $ = (id) => document.getElementById(id);
const token = readToken();

let runs = new Map(); // key -> run
let lastSeq = null; // seq of the last event applied
let instance = ''; // the server's, from hello: a restarted one has another
let ws = null;
let attempt = 0;
let reconnectAt = 0;
let reconnectTimer = 0;
let selected = null; // key of the run whose timeline is open
let filter = 'all';
let search = '';
let orderDirty = true;
const dirty = new Set();
let frame = 0;
let lastRender = 0;
const rows = new Map(); // key -> row elements
const rowKeys = new WeakMap(); // row element -> key (ids may hold any character)
const secondBuckets = new Array(RATE_WINDOW_S + 1).fill(0);
let bucketSecond = 0;
let dropped = { pipeline: 0, page: 0 };
// The plots' data: events per second (15 min plus the second filling) and
// runs finished per minute (15 min plus the minute filling).
const eventsHistory = new History(HISTORY_SECONDS + 1, 1000);
const runsHistory = new History(16, 60000);
const eventsPlot = makeSvg(900, 46, 'events per second over the last 15 minutes');
const runsPlot = makeSvg(160, 46, 'runs finished per minute over the last 15 minutes');
$('plot-events').append(eventsPlot);
$('plot-runs').append(runsPlot);

// ---- input -----------------------------------------------------------

function readToken() {
  const params = new URLSearchParams(location.search);
  let t = params.get('token');
  try {
    if (t) {
      // Keep it for reloads, but out of the address bar and history.
      sessionStorage.setItem('agentgate-token', t);
      params.delete('token');
      const q = params.toString();
      history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
    } else {
      t = sessionStorage.getItem('agentgate-token');
    }
  } catch (_) {
    // Storage may be disabled; the token from the URL still works.
  }
  return t || null;
}

function authHeaders() {
  return token ? { Authorization: 'Bearer ' + token } : {};
}

// ---- state -----------------------------------------------------------

// Replaces the state with a snapshot (first hello, or a reset after a gap).
// Runs that finished before it (before the page opened, or during the
// gap) go into the runs-per-minute plot at their own finishing time, each
// once. A replayed journal's times are its own: the plot shows them as if
// its last moment were now.
function loadSnapshot(list, replayed) {
  const previous = runs;
  runs = new Map();
  for (const s of list) {
    if (!s || typeof s !== 'object') continue;
    const run = fromSnapshot(s);
    const old = previous.get(run.key);
    if (old) {
      run.timeline = old.timeline;
      run.plotted = old.plotted;
    }
    runs.set(run.key, run);
  }
  const now = Date.now();
  let shift = 0;
  if (replayed) {
    let last = 0;
    for (const run of runs.values()) last = Math.max(last, run.finishedAt, run.startedAt);
    if (last) shift = now - last;
  }
  runsHistory.roll(now);
  for (const run of runs.values()) {
    if (run.plotted || run.status === 'running' || !run.finishedAt) continue;
    runsHistory.addAt(run.finishedAt + shift, 1);
    run.plotted = true;
  }
  if (selected && !runs.has(selected)) selected = null;
  orderDirty = true;
  schedule();
}

function forget() {
  if (runs.size <= MAX_RUNS) return;
  for (const [key, run] of runs) {
    if (runs.size <= MAX_RUNS) break;
    if (run.status !== 'running' && key !== selected) runs.delete(key);
  }
  orderDirty = true;
}

// ---- the stream ------------------------------------------------------

function wsUrl() {
  const q = new URLSearchParams();
  if (lastSeq !== null) {
    q.set('since', String(lastSeq));
    q.set('instance', instance);
  }
  if (token) q.set('token', token);
  const s = q.toString();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return scheme + '//' + location.host + '/ws' + (s ? '?' + s : '');
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectAt = 0;
  setConn('connecting', attempt ? 'reconnecting…' : 'connecting…');
  let socket;
  try {
    socket = new WebSocket(wsUrl());
  } catch (_) {
    scheduleReconnect();
    return;
  }
  ws = socket;
  socket.onmessage = (m) => {
    if (ws === socket) onMessage(m.data);
  };
  socket.onclose = () => {
    if (ws !== socket) return;
    ws = null;
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  // 0.5 s doubling to 10 s, with jitter so a restarted server is not hit
  // by every open page at once.
  const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
  const delay = base * (0.75 + Math.random() * 0.5);
  attempt += 1;
  reconnectAt = Date.now() + delay;
  reconnectTimer = setTimeout(connect, delay);
  updateConn();
}

// A gap in the stream: reconnect from the last event applied; the server
// replays what it still holds, or sends a fresh snapshot.
function resync() {
  const socket = ws;
  ws = null;
  if (socket) socket.close();
  connect();
}

function onMessage(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (_) {
    return;
  }
  if (!m || typeof m !== 'object' || typeof m.type !== 'string') return;
  if (m.type === 'hello') {
    attempt = 0;
    const replayed = m.source === 'replay';
    if (!m.resumed) loadSnapshot(Array.isArray(m.runs) ? m.runs : [], replayed);
    instance = str(m.instance);
    lastSeq = num(m.seq);
    if (replayed) {
      setConn('replay', 'replay');
      $('conn').title = 'a journal replayed by agentgate-obs replay, not a live engine';
    } else {
      setConn('live', 'live');
      $('conn').title = '';
    }
    return;
  }
  if (m.type === 'lagged') {
    dropped.page += num(m.missed);
    resync();
    return;
  }
  if (!m.type.includes(':')) return; // pong, subscribed, error …
  const seq = num(m.seq);
  if (lastSeq !== null && seq <= lastSeq) return;
  if (lastSeq !== null && seq > lastSeq + 1) {
    resync();
    return;
  }
  lastSeq = seq;
  countEvent();
  const applied = applyEvent(runs, m);
  if (applied.finished) {
    runsHistory.add(1);
    applied.run.plotted = true;
  }
  dirty.add(applied.run.key);
  if (applied.created) forget();
  if (applied.reordered) orderDirty = true;
  schedule();
}

// Counted into the current second; the 1 s ticker rolls the buckets,
// so an event costs no clock read.
function countEvent() {
  secondBuckets[0] += 1;
  eventsHistory.add(1);
}

function rollBuckets() {
  const now = Math.floor(Date.now() / 1000);
  const steps = Math.min(now - bucketSecond, secondBuckets.length);
  for (let i = 0; i < steps; i++) {
    secondBuckets.pop();
    secondBuckets.unshift(0);
  }
  bucketSecond = now;
}

// ---- polling ---------------------------------------------------------

async function pollSummary() {
  try {
    const r = await fetch('/api/summary', { headers: authHeaders(), cache: 'no-store' });
    if (r.ok) renderSummary(await r.json());
  } catch (_) {
    // Shown by the connection indicator; the next poll retries.
  }
  setTimeout(pollSummary, SUMMARY_EVERY_MS);
}

async function pollHealth() {
  try {
    const r = await fetch('/health', { cache: 'no-store' });
    if (r.ok) {
      const h = await r.json();
      dropped.pipeline = num(h.eventsDropped);
      renderDropped();
    }
  } catch (_) {
    // As above.
  }
  setTimeout(pollHealth, HEALTH_EVERY_MS);
}

// ---- rendering -------------------------------------------------------

function schedule() {
  if (frame) return;
  const wait = Math.max(0, lastRender + RENDER_EVERY_MS - performance.now());
  frame = setTimeout(render, wait);
}

function render() {
  clearTimeout(frame);
  frame = 0;
  lastRender = performance.now();
  renderCounts();
  if (orderDirty) {
    orderDirty = false;
    dirty.clear();
    renderRows();
  } else {
    for (const key of dirty) {
      const row = rows.get(key);
      const run = runs.get(key);
      if (row && run) updateRow(row, run, selected);
    }
  }
  if (selected && dirty.has(selected)) renderDetail();
  dirty.clear();
}

function renderCounts() {
  const counts = { running: 0, succeeded: 0, failed: 0, canceled: 0 };
  for (const run of runs.values()) counts[run.status] += 1;
  $('stat-active').textContent = counts.running;
  $('stat-succeeded').textContent = counts.succeeded;
  $('stat-failed').textContent = counts.failed;
  $('stat-canceled').textContent = counts.canceled;
}

function renderRate() {
  rollBuckets();
  // The current second is still filling: average the complete ones.
  let sum = 0;
  for (let i = 1; i < secondBuckets.length; i++) sum += secondBuckets[i];
  const rate = sum / RATE_WINDOW_S;
  $('stat-rate').textContent = rate >= 100 ? Math.round(rate) : rate.toFixed(1);
}

// Once a second: the stream only bumps counters, so a burst of events
// costs the plots nothing until then.
function renderPlots() {
  const now = Date.now();
  eventsHistory.roll(now);
  runsHistory.roll(now);
  const perSecond = eventsHistory.complete();
  const eventsPeak = drawSparkline(eventsPlot, perSecond);
  setPlotFigures('plot-events', 'peak-events', eventsPeak, perSecond, '/s');
  const perMinute = runsHistory.counts;
  const runsPeak = drawBars(runsPlot, perMinute, 'bar');
  setPlotFigures('plot-runs', 'peak-runs', runsPeak, perMinute, '/min');
}

function setPlotFigures(plotId, peakId, peak, values, unit) {
  const plot = $(plotId);
  plot.dataset.peak = String(peak);
  plot.dataset.total = String(values.reduce((a, b) => a + b, 0));
  $(peakId).textContent = 'peak ' + (peak >= 100 ? Math.round(peak) : peak) + unit;
}

function renderDropped() {
  $('stat-dropped').textContent = dropped.pipeline + dropped.page;
  $('stat-dropped').parentElement.title =
    dropped.pipeline + ' dropped by the pipeline (overflow policy), ' +
    dropped.page + ' missed by this page (it fell behind and resynchronised)';
  $('stat-dropped').parentElement.classList.toggle('warn', dropped.pipeline + dropped.page > 0);
}

function setConn(state, text) {
  const conn = $('conn');
  conn.dataset.state = state;
  $('conn-text').textContent = text;
}

function updateConn() {
  if (!reconnectAt) return;
  const left = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
  setConn('down', 'disconnected · retrying in ' + left + ' s');
}

function renderSummary(summary) {
  const list = summary && Array.isArray(summary.histograms) ? summary.histograms : [];
  for (const card of document.querySelectorAll('.phase-card')) {
    const phase = card.dataset.phase;
    const h = list.find((x) =>
      phase === 'run'
        ? str(x.name).endsWith('_run_duration_seconds')
        : str(x.name).endsWith('_phase_duration_seconds') && x.labels && x.labels.phase === phase);
    const count = h ? num(h.count) : 0;
    card.querySelector('.p50').textContent = count ? fmtMs(num(h.p50) * 1000) : '—';
    card.querySelector('.p99').textContent = count ? fmtMs(num(h.p99) * 1000) : '—';
    card.querySelector('.count').textContent = count + (count === 1 ? ' sample' : ' samples');
    renderDistribution(card, h);
  }
}

// A phase's durations as bars, one per Prometheus bucket up to the last
// one used (finer buckets on the left: 10 ms, 25 ms, … 1 h).
function renderDistribution(card, h) {
  const dist = card.querySelector('.dist');
  if (!dist) return;
  const counts = h ? bucketCounts(h.buckets) : [];
  let svg = dist.querySelector('svg');
  if (!svg) {
    svg = makeSvg(120, 26, card.dataset.phase + ' durations by bucket');
    dist.append(svg);
  }
  drawBars(svg, counts.map((b) => b.count), 'bucket');
  dist.dataset.total = String(counts.reduce((a, b) => a + b.count, 0));
  dist.title = counts.length
    ? counts.map((b) => '≤ ' + (b.le === '+Inf' ? '∞' : fmtMs(Number(b.le) * 1000)) + ': ' + b.count).join('\n')
    : '';
}

function visibleRuns() {
  const needle = search.toLowerCase();
  const list = [];
  for (const run of runs.values()) {
    if (filter !== 'all' && run.status !== filter) continue;
    if (needle && !(run.workOrderId.toLowerCase().includes(needle) ||
      run.runId.toLowerCase().includes(needle) ||
      run.goal.toLowerCase().includes(needle))) continue;
    list.push(run);
  }
  // Active runs first, oldest on top so rows stay put; then the most
  // recently finished.
  list.sort((a, b) => {
    const ar = a.status === 'running';
    const br = b.status === 'running';
    if (ar !== br) return ar ? -1 : 1;
    if (ar) return a.startedAt - b.startedAt || (a.key < b.key ? -1 : 1);
    return b.finishedAt - a.finishedAt || (a.key < b.key ? -1 : 1);
  });
  return list;
}

function renderRows() {
  const list = visibleRuns();
  const shown = list.slice(0, MAX_ROWS);
  const keep = new Set(shown.map((r) => r.key));
  for (const [key, row] of rows) {
    if (!keep.has(key)) {
      row.node.remove();
      rows.delete(key);
    }
  }
  const body = $('rows');
  let cursor = body.firstChild;
  for (const run of shown) {
    let row = rows.get(run.key);
    if (!row) {
      row = makeRow(run);
      rowKeys.set(row.node, run.key);
      rows.set(run.key, row);
    }
    updateRow(row, run, selected);
    if (row.node === cursor) cursor = cursor.nextSibling;
    else body.insertBefore(row.node, cursor);
  }
  $('shown').textContent = list.length > shown.length
    ? 'showing ' + shown.length + ' of ' + list.length + ' runs'
    : list.length + (list.length === 1 ? ' run' : ' runs');
  $('empty').hidden = runs.size > 0;
}

// ---- the timeline of one run -----------------------------------------

function renderDetail() {
  const run = selected && runs.get(selected);
  const panel = $('detail');
  if (!run) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  $('detail-title').textContent = run.runId;
  $('detail-sub').textContent = run.workOrderId + (run.goal ? ' · ' + run.goal : '');
  const facts = $('detail-facts');
  facts.replaceChildren();
  const fact = (k, v) => {
    if (v) facts.append(el('dt', '', k), el('dd', '', v));
  };
  fact('status', run.status + (run.engineResult ? ' (' + run.engineResult + ')' : ''));
  fact('strategy', run.strategy);
  fact('iteration', run.maxIterations ? run.iteration + ' / ' + run.maxIterations : String(run.iteration));
  fact('reason', run.reason);
  fact('feedback', run.status === 'running' ? run.feedback : '');
  fact('duration', run.durationMs !== null ? fmtMs(run.durationMs) + ' (engine)' : '');
  $('detail-note').textContent = run.eventsBefore
    ? run.eventsBefore + ' events happened before this page connected; later ones are listed.'
    : '';
  const list = $('timeline');
  list.replaceChildren();
  for (let i = run.timeline.length - 1; i >= 0; i--) {
    const e = run.timeline[i];
    const li = el('li', tone(e));
    li.append(el('time', '', fmtClock(time(e.timestamp))), el('span', 'type', str(e.type)),
      el('span', 'what', describe(e)));
    list.append(li);
  }
}

function select(key) {
  const previous = selected;
  selected = key === selected ? null : key;
  for (const k of [previous, selected]) {
    const row = k && rows.get(k);
    if (row) row.node.classList.toggle('selected', k === selected);
  }
  renderDetail();
}

// ---- wiring ----------------------------------------------------------

$('rows').addEventListener('click', (ev) => {
  if (ev.target.closest('a')) return;
  const row = ev.target.closest('.row');
  if (row && rowKeys.has(row)) select(rowKeys.get(row));
});
$('detail-close').addEventListener('click', () => select(selected));
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && selected) select(selected);
});
$('filters').addEventListener('click', (ev) => {
  const button = ev.target.closest('button');
  if (!button) return;
  filter = oneOf(button.dataset.filter, ['all'].concat(STATUSES), 'all');
  for (const b of $('filters').children) b.classList.toggle('on', b === button);
  orderDirty = true;
  schedule();
});
$('search').addEventListener('input', (ev) => {
  search = ev.target.value.trim();
  orderDirty = true;
  schedule();
});

setInterval(() => {
  renderRate();
  renderPlots();
  updateConn();
  for (const [key, row] of rows) {
    const run = runs.get(key);
    if (run && run.status === 'running') updateElapsed(row, run);
  }
}, 1000);

connect();
renderPlots();
pollSummary();
pollHealth();
