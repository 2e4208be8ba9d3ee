// The agentgate-obs dashboard: renders the hello snapshot of /ws, then
// applies every event to it.
//
// Safety rule: every value that comes from the stream reaches the DOM as
// text (textContent) or through a checked attribute (href only for http(s)
// URLs). Nothing is ever parsed as HTML, so run ids, goals, gate names or PR
// URLs cannot inject markup; the Content-Security-Policy is a second wall.
'use strict';

(() => {
  const PHASES = ['build', 'snapshot', 'verify', 'feedback'];
  const STATUSES = ['running', 'succeeded', 'failed', 'canceled'];
  const MAX_ROWS = 200; // rows in the DOM at once: keeps 1,000+ runs smooth
  const MAX_RUNS = 5000; // runs the page remembers; oldest finished go first
  const MAX_TIMELINE = 300; // events kept per run for its timeline
  const MAX_GATE_CHIPS = 8;
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

  const str = (v) => (typeof v === 'string' ? v : v == null ? '' : String(v));
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const oneOf = (v, allowed, fallback) => (allowed.includes(v) ? v : fallback);
  const time = (v) => {
    const t = Date.parse(str(v));
    return Number.isFinite(t) ? t : Date.now();
  };
  const keyOf = (w, r) => w + '\u0000' + r;

  function authHeaders() {
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  // ---- state -----------------------------------------------------------

  function newRun(workOrderId, runId, at) {
    return {
      key: keyOf(workOrderId, runId),
      workOrderId,
      runId,
      status: 'running',
      engineResult: '',
      goal: '',
      strategy: '',
      iteration: 0,
      maxIterations: 0,
      feedback: '',
      phase: '',
      phaseStatus: '',
      phaseTimings: { build: 0, snapshot: 0, verify: 0, feedback: 0 },
      gates: [],
      delivery: null,
      startedAt: at,
      finishedAt: 0,
      durationMs: null,
      reason: '',
      eventsBefore: 0,
      timeline: [],
    };
  }

  function fromSnapshot(s) {
    const run = newRun(str(s.workOrderId), str(s.runId), time(s.startedAt));
    run.status = oneOf(s.status, STATUSES, 'running');
    run.engineResult = str(s.engineResult);
    if (s.taskSpec && typeof s.taskSpec === 'object') {
      run.goal = str(s.taskSpec.goal);
      run.strategy = str(s.taskSpec.strategy);
    }
    run.iteration = num(s.iteration);
    run.maxIterations = num(s.maxIterations);
    run.phase = oneOf(s.phase, PHASES, '');
    run.phaseStatus = str(s.phaseStatus);
    const timings = s.phaseTimings || {};
    for (const p of PHASES) run.phaseTimings[p] = num(timings[p]);
    run.gates = (Array.isArray(s.gates) ? s.gates : []).map((g) => ({
      name: str(g && g.name),
      passed: !!(g && g.passed),
    }));
    if (s.delivery && typeof s.delivery === 'object') {
      run.delivery = {
        status: str(s.delivery.status),
        prUrl: str(s.delivery.prUrl),
        ciStatus: str(s.delivery.ciStatus),
      };
    }
    run.finishedAt = s.finishedAt ? time(s.finishedAt) : 0;
    run.durationMs = typeof s.durationMs === 'number' ? s.durationMs : null;
    run.reason = str(s.reason);
    run.eventsBefore = num(s.events);
    return run;
  }

  // Replaces the state with a snapshot (first hello, or a reset after a gap).
  function loadSnapshot(list) {
    const previous = runs;
    runs = new Map();
    for (const s of list) {
      if (!s || typeof s !== 'object') continue;
      const run = fromSnapshot(s);
      const old = previous.get(run.key);
      if (old) run.timeline = old.timeline;
      runs.set(run.key, run);
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

  function finish(run, status, at, reason) {
    if (run.status !== 'running') return;
    run.status = status;
    run.finishedAt = at;
    if (reason) run.reason = reason;
    orderDirty = true;
  }

  function setDelivery(run, e) {
    if (e.type === 'delivery:started') {
      run.delivery = { status: 'running', prUrl: '', ciStatus: '' };
    } else {
      run.delivery = {
        status: e.success ? 'succeeded' : 'failed',
        prUrl: str(e.prUrl),
        ciStatus: str(e.ciStatus),
      };
    }
  }

  // Mirrors the server's run tracker, so the table agrees with /api/runs.
  function applyEvent(e) {
    const workOrderId = str(e.workOrderId);
    const runId = str(e.runId);
    const key = keyOf(workOrderId, runId);
    // Parsed only where needed: most events do not need their time.
    const at = () => time(e.timestamp);
    let run = runs.get(key);
    if (!run) {
      run = newRun(workOrderId, runId, at());
      runs.set(key, run);
      orderDirty = true;
      forget();
    }
    run.timeline.push(e);
    if (run.timeline.length > MAX_TIMELINE) run.timeline.shift();
    dirty.add(key);
    const terminal = run.status !== 'running';
    switch (e.type) {
      case 'run:started':
        if (!terminal && e.taskSpec && typeof e.taskSpec === 'object') {
          run.goal = str(e.taskSpec.goal);
          run.strategy = str(e.taskSpec.strategy);
          run.maxIterations = num(e.taskSpec.maxIterations);
        }
        return;
      case 'run:completed':
        if (!terminal) {
          run.engineResult = str(e.engineResult);
          run.durationMs = num(e.durationMs);
        }
        finish(run, oneOf(e.result, STATUSES.slice(1), 'failed'), at(), '');
        return;
      case 'run:canceled':
        finish(run, 'canceled', at(), str(e.reason));
        return;
      case 'run:failed':
        finish(run, 'failed', at(), str(e.error));
        return;
      case 'delivery:started':
      case 'delivery:completed':
        setDelivery(run, e);
        return;
      default:
        break;
    }
    if (terminal) return;
    switch (e.type) {
      case 'iteration:started':
        run.iteration = num(e.iteration);
        if (num(e.maxIterations) > 0) run.maxIterations = num(e.maxIterations);
        run.feedback = str(e.feedback);
        run.phase = '';
        run.phaseStatus = '';
        run.gates = [];
        break;
      case 'iteration:completed':
        run.iteration = num(e.iteration);
        break;
      case 'phase:started':
        run.iteration = num(e.iteration);
        run.phase = oneOf(e.phase, PHASES, '');
        run.phaseStatus = 'running';
        break;
      case 'phase:completed': {
        run.iteration = num(e.iteration);
        const phase = oneOf(e.phase, PHASES, '');
        run.phase = phase;
        run.phaseStatus = e.success ? 'succeeded' : 'failed';
        if (phase) run.phaseTimings[phase] += num(e.durationMs);
        break;
      }
      case 'gate:checked': {
        const name = str(e.gate);
        const gate = run.gates.find((g) => g.name === name);
        if (gate) gate.passed = !!e.passed;
        else if (run.gates.length < 64) run.gates.push({ name, passed: !!e.passed });
        break;
      }
      default:
        break;
    }
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
      if (!m.resumed) loadSnapshot(Array.isArray(m.runs) ? m.runs : []);
      instance = str(m.instance);
      lastSeq = num(m.seq);
      setConn('live', 'live');
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
    applyEvent(m);
    schedule();
  }

  // Counted into the current second; the 1 s ticker rolls the buckets,
  // so an event costs no clock read.
  function countEvent() {
    secondBuckets[0] += 1;
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

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtMs(ms) {
    if (!(ms >= 0)) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
    return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  }

  function fmtClock(t) {
    const d = new Date(t);
    const p = (n, w) => String(n).padStart(w, '0');
    return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' + p(d.getMilliseconds(), 3);
  }

  function safeHref(url) {
    try {
      const u = new URL(url);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // Renders once for any number of events, and never more often than
  // RENDER_EVERY_MS. A timer, not requestAnimationFrame: hidden tabs get no
  // animation frames and would pile up work.
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
        if (row && run) updateRow(row, run);
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
    }
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
        rows.set(run.key, row);
      }
      updateRow(row, run);
      if (row.node === cursor) cursor = cursor.nextSibling;
      else body.insertBefore(row.node, cursor);
    }
    $('shown').textContent = list.length > shown.length
      ? 'showing ' + shown.length + ' of ' + list.length + ' runs'
      : list.length + (list.length === 1 ? ' run' : ' runs');
    $('empty').hidden = runs.size > 0;
  }

  function makeRow(run) {
    const node = el('div', 'row');
    node.setAttribute('role', 'row');
    rowKeys.set(node, run.key);
    node.setAttribute('data-run-id', run.runId);
    node.setAttribute('data-work-order-id', run.workOrderId);
    const cell = (name) => {
      const c = el('div', 'cell ' + name);
      c.setAttribute('role', 'cell');
      node.append(c);
      return c;
    };
    const cells = {};
    const wo = cell('wo');
    wo.append(el('div', 'mono', run.workOrderId));
    cells.goal = wo.appendChild(el('div', 'goal'));
    cell('run').append(el('span', 'mono', run.runId));
    cells.status = cell('status').appendChild(el('span', 'badge'));
    const iter = cell('iter');
    cells.iterText = iter.appendChild(el('div', 'iter-text'));
    cells.iterBar = iter.appendChild(el('div', 'track')).appendChild(el('div', 'fill'));
    cells.phase = cell('phase');
    cells.stack = cell('timing').appendChild(el('div', 'stack'));
    cells.segments = {};
    for (const p of PHASES) cells.segments[p] = cells.stack.appendChild(el('span', 'seg ' + p));
    cells.gates = cell('gates');
    cells.delivery = cell('delivery');
    cells.elapsed = cell('num elapsed');
    return { node, cells, memo: {} };
  }

  // Runs `paint` only when `value` differs from what the row shows: an
  // event usually changes one cell, and untouched cells cost no layout.
  function changed(row, part, value) {
    if (row.memo[part] === value) return false;
    row.memo[part] = value;
    return true;
  }

  function updateRow(row, run) {
    const c = row.cells;
    if (changed(row, 'status', run.status + '|' + run.reason + '|' + run.engineResult)) {
      row.node.dataset.status = run.status;
      c.status.textContent = run.status;
      c.status.className = 'badge ' + run.status;
      c.status.title = run.reason || run.engineResult || '';
    }
    row.node.classList.toggle('selected', run.key === selected);
    if (changed(row, 'goal', run.goal)) {
      c.goal.textContent = run.goal;
      c.goal.title = run.goal;
    }
    const max = run.maxIterations;
    if (changed(row, 'iter', run.iteration + '/' + max + '|' + run.status)) {
      c.iterText.textContent = max ? run.iteration + ' / ' + max : String(run.iteration || '—');
      c.iterBar.style.width = (max ? Math.min(100, (100 * run.iteration) / max) : 0) + '%';
      c.iterBar.className = 'fill ' + run.status;
    }
    const delivering = run.status === 'running' && run.delivery && run.delivery.status === 'running';
    if (changed(row, 'phase', [run.status, run.phase, run.phaseStatus, delivering, run.reason].join('|'))) {
      renderPhase(c.phase, run, delivering);
    }
    const timings = PHASES.map((p) => run.phaseTimings[p]);
    if (changed(row, 'timing', timings.join('|'))) {
      const total = timings.reduce((a, b) => a + b, 0);
      PHASES.forEach((p, i) => {
        c.segments[p].style.width = (total ? (100 * timings[i]) / total : 0) + '%';
      });
      c.stack.title = total
        ? PHASES.filter((p) => run.phaseTimings[p]).map((p) => p + ' ' + fmtMs(run.phaseTimings[p])).join(' · ')
        : 'no phase finished yet';
    }
    if (changed(row, 'gates', run.gates.map((g) => (g.passed ? '+' : '-') + g.name).join('\u0000'))) {
      renderGates(c.gates, run.gates);
    }
    const d = run.delivery;
    if (changed(row, 'delivery', d ? [d.status, d.prUrl, d.ciStatus].join('\u0000') : '')) {
      renderDelivery(c.delivery, d);
    }
    updateElapsed(row, run);
  }

  function renderPhase(cell, run, delivering) {
    cell.replaceChildren();
    cell.title = '';
    if (delivering) {
      cell.append(el('span', 'dot running'), el('span', '', 'delivering'));
    } else if (run.status !== 'running') {
      // A finished run's phase is history: say how it ended instead.
      const how = run.reason || run.engineResult.replace(/_/g, ' ');
      cell.append(el('span', 'reason', how || '—'));
      cell.title = how;
    } else if (run.phase) {
      cell.append(el('span', 'dot ' + run.phaseStatus), el('span', '', run.phase));
    } else {
      cell.append(el('span', 'muted', '—'));
    }
  }

  function renderGates(cell, gates) {
    cell.replaceChildren();
    for (const g of gates.slice(0, MAX_GATE_CHIPS)) {
      const chip = el('span', 'chip ' + (g.passed ? 'pass' : 'fail'), g.name);
      chip.title = g.name + (g.passed ? ' passed' : ' failed');
      cell.append(chip);
    }
    if (gates.length > MAX_GATE_CHIPS) {
      cell.append(el('span', 'chip more', '+' + (gates.length - MAX_GATE_CHIPS)));
    }
  }

  function renderDelivery(cell, d) {
    cell.replaceChildren();
    if (!d) return;
    if (d.status === 'running') cell.append(el('span', 'muted', 'opening PR…'));
    else if (d.status === 'failed') cell.append(el('span', 'chip fail', 'failed'));
    const href = d.prUrl && safeHref(d.prUrl);
    if (href) {
      const m = /\/pull\/(\d+)\/?$/.exec(href);
      const a = el('a', 'pr', m ? 'PR #' + m[1] : 'PR');
      a.href = href;
      a.title = d.prUrl;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      cell.append(a);
    } else if (d.prUrl) {
      cell.append(el('span', 'muted', d.prUrl));
    }
    if (d.ciStatus) cell.append(el('span', 'ci ' + ciClass(d.ciStatus), 'CI ' + d.ciStatus));
  }

  function ciClass(status) {
    if (status === 'success' || status === 'passed') return 'pass';
    if (status === 'pending' || status === 'running') return 'pending';
    return 'fail';
  }

  function updateElapsed(row, run) {
    const end = run.status === 'running' ? Date.now() : run.finishedAt;
    const text = fmtMs(Math.max(0, end - run.startedAt));
    if (changed(row, 'elapsed', text)) row.cells.elapsed.textContent = text;
  }

  // ---- the timeline of one run -----------------------------------------

  function describe(e) {
    switch (e.type) {
      case 'run:started': {
        const t = e.taskSpec || {};
        return str(t.strategy) + ', up to ' + num(t.maxIterations) + ' iterations: ' + str(t.goal);
      }
      case 'run:completed':
        return str(e.result) + ' (' + str(e.engineResult) + ') after ' + num(e.iterations) +
          ' iterations, ' + fmtMs(num(e.durationMs));
      case 'run:canceled':
        return str(e.reason);
      case 'run:failed':
        return str(e.error);
      case 'iteration:started':
        return 'iteration ' + num(e.iteration) + ' / ' + num(e.maxIterations) +
          (e.feedback ? ' · feedback: ' + str(e.feedback) : '');
      case 'iteration:completed':
        return 'iteration ' + num(e.iteration) + (e.success ? ' succeeded' : ' failed');
      case 'phase:started':
        return str(e.phase);
      case 'phase:completed':
        return str(e.phase) + (e.success ? ' ✓ ' : ' ✗ ') + fmtMs(num(e.durationMs));
      case 'gate:checked':
        return str(e.gate) + (e.passed ? ' passed' : ' failed') +
          (typeof e.durationMs === 'number' ? ' · ' + fmtMs(e.durationMs) : '');
      case 'delivery:started':
        return 'opening a pull request';
      case 'delivery:completed':
        return (e.success ? 'delivered' : 'delivery failed') +
          (e.prUrl ? ' · ' + str(e.prUrl) : '') + (e.ciStatus ? ' · CI ' + str(e.ciStatus) : '');
      default:
        return '';
    }
  }

  function tone(e) {
    if (e.type === 'run:completed') return oneOf(e.result, STATUSES, 'failed');
    if (e.type === 'run:canceled') return 'canceled';
    if (e.type === 'run:failed') return 'failed';
    if ('success' in e) return e.success ? 'succeeded' : 'failed';
    if ('passed' in e) return e.passed ? 'succeeded' : 'failed';
    return '';
  }

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
    updateConn();
    for (const [key, row] of rows) {
      const run = runs.get(key);
      if (run && run.status === 'running') updateElapsed(row, run);
    }
  }, 1000);

  connect();
  pollSummary();
  pollHealth();
})();
