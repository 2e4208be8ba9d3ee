// The dashboard's model of the runs: built from the hello snapshot and
// every event, mirroring the server's run tracker so that the table agrees
// with /api/runs. Values are read leniently: a field of an unexpected type
// reads as empty, so odd input never throws.

export const PHASES = ['build', 'snapshot', 'verify', 'feedback'];
export const STATUSES = ['running', 'succeeded', 'failed', 'canceled'];
const MAX_TIMELINE = 300; // events kept per run for its timeline
const MAX_GATES = 64; // as the server's tracker

export const str = (v) => (typeof v === 'string' ? v : v == null ? '' : String(v));
export const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
export const oneOf = (v, allowed, fallback) => (allowed.includes(v) ? v : fallback);
export const time = (v) => {
  const t = Date.parse(str(v));
  return Number.isFinite(t) ? t : Date.now();
};
export const keyOf = (w, r) => w + '\u0000' + r;

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
    plotted: false, // counted in the runs-per-minute plot
  };
}

export function fromSnapshot(s) {
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

// The first terminal event wins, as on the server.
function finish(run, status, at, reason) {
  if (run.status !== 'running') return;
  run.status = status;
  run.finishedAt = at;
  if (reason) run.reason = reason;
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

// Applies one event to `runs`; returns the run, and whether the event
// created it or made it terminal (the table's order changes then).
export function applyEvent(runs, e) {
  const workOrderId = str(e.workOrderId);
  const runId = str(e.runId);
  const key = keyOf(workOrderId, runId);
  // Parsed only where needed: most events do not need their time.
  const at = () => time(e.timestamp);
  let run = runs.get(key);
  const created = !run;
  if (!run) {
    run = newRun(workOrderId, runId, at());
    runs.set(key, run);
  }
  run.timeline.push(e);
  if (run.timeline.length > MAX_TIMELINE) run.timeline.shift();
  const terminal = run.status !== 'running';
  applyTo(run, e, terminal, at);
  const finished = !terminal && run.status !== 'running';
  return { run, created, finished, reordered: created || finished };
}

function applyTo(run, e, terminal, at) {
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
      else if (run.gates.length < MAX_GATES) run.gates.push({ name, passed: !!e.passed });
      break;
    }
    default:
      break;
  }
}
