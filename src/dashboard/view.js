// Building and updating the dashboard's DOM. Every value from the stream
// goes in as text (textContent) or a checked attribute (href only for
// http(s) URLs): nothing is ever parsed as HTML, so run ids, goals, gate
// names or PR URLs cannot inject markup.

import { PHASES, STATUSES, num, oneOf, str } from './model.js';

const MAX_GATE_CHIPS = 8;

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function fmtMs(ms) {
  if (!(ms >= 0)) return '—';
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
  return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
}

export function fmtClock(t) {
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
export function makeRow(run) {
  const node = el('div', 'row');
  node.setAttribute('role', 'row');
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

export function updateRow(row, run, selected) {
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

export function updateElapsed(row, run) {
  const end = run.status === 'running' ? Date.now() : run.finishedAt;
  const text = fmtMs(Math.max(0, end - run.startedAt));
  if (changed(row, 'elapsed', text)) row.cells.elapsed.textContent = text;
}

export function describe(e) {
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

export function tone(e) {
  if (e.type === 'run:completed') return oneOf(e.result, STATUSES, 'failed');
  if (e.type === 'run:canceled') return 'canceled';
  if (e.type === 'run:failed') return 'failed';
  if ('success' in e) return e.success ? 'succeeded' : 'failed';
  if ('passed' in e) return e.passed ? 'succeeded' : 'failed';
  return '';
}
