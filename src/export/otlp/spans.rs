//! Runs turned into spans on the drain thread: a sink like the others,
//! which keeps each open run's open spans and hands the finished ones to
//! the exporter thread in batches, through a queue it never waits on.
//!
//! The trace of a run: the run is the root span; iterations are its
//! children; phases the children of their iteration (`phase build`);
//! gate checks are events of the iteration's span; the delivery is a
//! child of the run. Times are the events' own: a phase's span starts at
//! its `phase_started` and lasts exactly its measured duration, so its
//! length is its `durationMs`. Status ERROR, with the message, is set on
//! failed and canceled runs and on failed phases, nowhere else.
//!
//! A span here is typed data ([`What`]): what it is and the numbers and
//! ids it carries, without a string or a vector of attributes built per
//! span. The exporter thread turns it into attributes as it encodes
//! ([`SpanData::attributes`]), so the drain thread pays for a few stores
//! and a move per span rather than for allocations.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;

use crate::event::{
    EventKind, Metadata, Phase, ProgressEvent, RunOutcome, RunResult, SpanId, Strategy, TraceId,
};
use crate::metrics::delivery::{DeliveryCounters, DropReason};
use crate::pipeline::drain::{EventInfo, Sink};

/// Runs open at once that the sink follows at most. A new run beyond
/// ends the oldest open one's spans at once, marked unfinished (a run the
/// engine never ended must not keep every later run out of the traces).
const MAX_OPEN_RUNS: usize = 10_000;

/// Metadata entries a span takes as attributes at most.
const MAX_METADATA_ATTRIBUTES: usize = 32;

/// Spans handed to the exporter thread at once: one channel operation
/// per batch instead of per span.
const HAND_OFF: usize = 256;

/// An attribute's value, as the encoders write it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// A name of ours (a phase, a strategy, a result): no allocation.
    Static(&'static str),
    Str(Arc<str>),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Static(s)
    }
}

impl From<&Arc<str>> for Value {
    fn from(s: &Arc<str>) -> Value {
        Value::Str(s.clone())
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Str(Arc::from(s.as_str()))
    }
}

/// A span's status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Unset,
    Error(String),
}

/// A gate check, an event of its iteration's span.
#[derive(Clone, Debug)]
pub(crate) struct GateEvent {
    pub(crate) time_ns: u64,
    pub(crate) gate: String,
    pub(crate) passed: bool,
    pub(crate) iteration: u32,
    pub(crate) duration_ms: Option<u64>,
}

/// What a run's root span knows.
#[derive(Clone, Debug)]
pub(crate) struct RunInfo {
    pub(crate) work_order_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    /// When it is not the run id.
    pub(crate) correlation_id: Option<Arc<str>>,
    pub(crate) task: Option<(Strategy, u32, String)>,
    pub(crate) outcome: Option<RunOutcome>,
    pub(crate) engine_result: Option<RunResult>,
    pub(crate) iterations: Option<u32>,
    pub(crate) duration_ms: Option<u64>,
    /// `error.type` of a run that did not succeed.
    pub(crate) error_type: Option<&'static str>,
    pub(crate) pr_url: Option<String>,
}

/// What a span is, with what it carries.
#[derive(Clone, Debug)]
pub(crate) enum What {
    Run(Box<RunInfo>),
    Iteration {
        iteration: u32,
        success: Option<bool>,
    },
    Phase {
        iteration: u32,
        phase: Phase,
        /// `None` while open, or when its end never came.
        end: Option<(bool, u64)>,
    },
    Delivery {
        success: Option<bool>,
        pr_url: Option<String>,
        ci_status: Option<String>,
    },
}

/// A span, open on the drain thread or finished on its way out.
#[derive(Clone, Debug)]
pub(crate) struct SpanData {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) what: What,
    pub(crate) gates: Vec<GateEvent>,
    /// The end event's (the start event's, for a run) metadata, redacted
    /// on entry to the pipeline like every output's.
    pub(crate) metadata: Option<Arc<Metadata>>,
    pub(crate) status: Status,
    /// Ended by another event than its own end.
    pub(crate) unfinished: bool,
}

/// A phase span's name, a literal per phase.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Build => "phase build",
        Phase::Snapshot => "phase snapshot",
        Phase::Verify => "phase verify",
        Phase::Feedback => "phase feedback",
    }
}

type Attributes = Vec<(Cow<'static, str>, Value)>;

fn push(out: &mut Attributes, key: &'static str, value: impl Into<Value>) {
    out.push((Cow::Borrowed(key), value.into()));
}

impl SpanData {
    /// The span's name: `run`, `iteration`, `phase PHASE`, `delivery`.
    pub(crate) fn name(&self) -> &'static str {
        match &self.what {
            What::Run(_) => "run",
            What::Iteration { .. } => "iteration",
            What::Phase { phase, .. } => phase_name(*phase),
            What::Delivery { .. } => "delivery",
        }
    }

    /// The span's attributes: `agentgate.*` where OpenTelemetry has no
    /// convention, `error.type` where it has one. Built on the exporter
    /// thread.
    pub(crate) fn attributes(&self) -> Attributes {
        let mut out = Attributes::with_capacity(12);
        match &self.what {
            What::Run(run) => {
                push(&mut out, "agentgate.work_order.id", &run.work_order_id);
                push(&mut out, "agentgate.run.id", &run.run_id);
                if let Some(id) = &run.correlation_id {
                    push(&mut out, "agentgate.correlation.id", id);
                }
                if let Some((strategy, max_iterations, goal)) = &run.task {
                    push(&mut out, "agentgate.strategy", strategy.as_str());
                    push(
                        &mut out,
                        "agentgate.max_iterations",
                        Value::Int(i64::from(*max_iterations)),
                    );
                    push(&mut out, "agentgate.goal", goal);
                }
                if let Some(outcome) = run.outcome {
                    push(&mut out, "agentgate.run.result", outcome.as_str());
                }
                if let Some(result) = run.engine_result {
                    push(&mut out, "agentgate.run.engine_result", result.as_str());
                }
                if let Some(n) = run.iterations {
                    push(
                        &mut out,
                        "agentgate.run.iterations",
                        Value::Int(i64::from(n)),
                    );
                }
                if let Some(ms) = run.duration_ms {
                    push(&mut out, "agentgate.duration_ms", Value::Int(ms as i64));
                }
                if let Some(url) = &run.pr_url {
                    push(&mut out, "agentgate.delivery.pr_url", url);
                }
                if let Some(error_type) = run.error_type {
                    push(&mut out, "error.type", error_type);
                }
            }
            What::Iteration { iteration, success } => {
                push(
                    &mut out,
                    "agentgate.iteration",
                    Value::Int(i64::from(*iteration)),
                );
                if let Some(success) = success {
                    push(
                        &mut out,
                        "agentgate.iteration.success",
                        Value::Bool(*success),
                    );
                }
            }
            What::Phase {
                iteration,
                phase,
                end,
            } => {
                push(
                    &mut out,
                    "agentgate.iteration",
                    Value::Int(i64::from(*iteration)),
                );
                push(&mut out, "agentgate.phase", phase.as_str());
                if let Some((success, duration_ms)) = end {
                    push(&mut out, "agentgate.phase.success", Value::Bool(*success));
                    push(
                        &mut out,
                        "agentgate.duration_ms",
                        Value::Int(*duration_ms as i64),
                    );
                }
            }
            What::Delivery {
                success,
                pr_url,
                ci_status,
            } => {
                if let Some(success) = success {
                    push(
                        &mut out,
                        "agentgate.delivery.success",
                        Value::Bool(*success),
                    );
                }
                if let Some(url) = pr_url {
                    push(&mut out, "agentgate.delivery.pr_url", url);
                }
                if let Some(ci) = ci_status {
                    push(&mut out, "agentgate.delivery.ci_status", ci);
                }
            }
        }
        if self.unfinished {
            push(&mut out, "agentgate.unfinished", Value::Bool(true));
        }
        if let Some(metadata) = &self.metadata {
            for (key, value) in metadata.iter().take(MAX_METADATA_ATTRIBUTES) {
                let value = match value {
                    serde_json::Value::String(s) => Value::from(s),
                    serde_json::Value::Bool(b) => Value::Bool(*b),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => Value::Int(i),
                        None => Value::Double(n.as_f64().unwrap_or(0.0)),
                    },
                    serde_json::Value::Null => continue,
                    other => Value::from(&other.to_string()),
                };
                out.push((Cow::Owned(format!("agentgate.metadata.{key}")), value));
            }
        }
        out
    }
}

impl GateEvent {
    /// The event's name, `gate NAME`, and attributes.
    pub(crate) fn name_and_attributes(&self) -> (String, Attributes) {
        let mut out = Attributes::with_capacity(4);
        push(&mut out, "agentgate.gate.name", &self.gate);
        push(&mut out, "agentgate.gate.passed", Value::Bool(self.passed));
        push(
            &mut out,
            "agentgate.iteration",
            Value::Int(i64::from(self.iteration)),
        );
        if let Some(ms) = self.duration_ms {
            push(&mut out, "agentgate.duration_ms", Value::Int(ms as i64));
        }
        (format!("gate {}", self.gate), out)
    }
}

/// One run's open spans.
struct RunSpans {
    root: SpanData,
    iteration: Option<SpanData>,
    phase: Option<SpanData>,
    delivery: Option<SpanData>,
}

/// Hashes run ids with FxHash's multiply-rotate: a run's id is hashed on
/// every event, and SipHash's resistance to chosen collisions buys
/// nothing for ids the engine chose.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// The drain thread's span builder.
pub(crate) struct SpanSink {
    /// Boxed: a run's open spans move in and out of the map as a pointer.
    runs: HashMap<Arc<str>, Box<RunSpans>, BuildHasherDefault<FxHasher>>,
    /// Run ids in the order their runs opened; ids of runs ended since
    /// are skipped (and cleared out when they are half of it).
    opened: VecDeque<Arc<str>>,
    max_open_runs: usize,
    /// Finished spans not yet handed over.
    batch: Vec<SpanData>,
    queue: Sender<Vec<SpanData>>,
    /// Spans handed over and not yet taken by the exporter thread.
    queued: Arc<AtomicUsize>,
    max_queue: usize,
    counters: Arc<DeliveryCounters>,
}

fn nanos(event: &ProgressEvent) -> u64 {
    event.timestamp.as_millis().saturating_mul(1_000_000)
}

/// A span its end event never came for, ended by what came instead.
fn unfinished(mut span: SpanData, at: u64) -> SpanData {
    span.end_ns = at.max(span.start_ns);
    span.unfinished = true;
    span
}

impl RunSpans {
    fn child(&self, span_id: SpanId, parent: SpanId, what: What, start: u64) -> SpanData {
        SpanData {
            trace_id: self.root.trace_id,
            span_id,
            parent: Some(parent),
            start_ns: start,
            end_ns: start,
            what,
            gates: Vec::new(),
            metadata: None,
            status: Status::Unset,
            unfinished: false,
        }
    }

    /// The span a phase of `iteration` nests in.
    fn phase_parent(&self, iteration: u32) -> SpanId {
        match &self.iteration {
            Some(span) if matches!(span.what, What::Iteration { iteration: i, .. } if i == iteration) => {
                span.span_id
            }
            _ => self.root.span_id,
        }
    }

    fn iteration_span(&self, iteration: u32, at: u64) -> SpanData {
        let root = self.root.span_id;
        self.child(
            root.child(iteration, 0),
            root,
            What::Iteration {
                iteration,
                success: None,
            },
            at,
        )
    }

    fn phase_span(&self, iteration: u32, phase: Phase, at: u64) -> SpanData {
        self.child(
            self.root.span_id.phase_child(iteration, phase),
            self.phase_parent(iteration),
            What::Phase {
                iteration,
                phase,
                end: None,
            },
            at,
        )
    }

    fn delivery_span(&self, at: u64) -> SpanData {
        let root = self.root.span_id;
        self.child(
            root.child(0, SpanId::DELIVERY_SLOT),
            root,
            What::Delivery {
                success: None,
                pr_url: None,
                ci_status: None,
            },
            at,
        )
    }

    fn run_info(&mut self) -> &mut RunInfo {
        match &mut self.root.what {
            What::Run(info) => info,
            // The root is built as a run and never changes kind.
            _ => unreachable!("a run's root span is a run"),
        }
    }

    /// Applies `event`; ended spans go to `out`.
    fn apply(&mut self, event: &ProgressEvent, info: &EventInfo, out: &mut Vec<SpanData>) {
        let at = nanos(event);
        match &event.kind {
            EventKind::RunStarted { task_spec } => {
                self.root.start_ns = at;
                self.root.metadata = event.metadata.clone();
                self.run_info().task = Some((
                    task_spec.strategy,
                    task_spec.max_iterations,
                    task_spec.goal.clone(),
                ));
            }
            EventKind::IterationStarted { iteration, .. } => {
                if let Some(open) = self.iteration.take() {
                    out.push(unfinished(open, at));
                }
                self.iteration = Some(self.iteration_span(*iteration, at));
            }
            EventKind::IterationCompleted {
                iteration, success, ..
            } => {
                let mut span = match self.iteration.take() {
                    Some(open) if matches!(open.what, What::Iteration { iteration: i, .. } if i == *iteration) => {
                        open
                    }
                    other => {
                        if let Some(open) = other {
                            out.push(unfinished(open, at));
                        }
                        self.iteration_span(*iteration, at)
                    }
                };
                span.end_ns = at.max(span.start_ns);
                span.what = What::Iteration {
                    iteration: *iteration,
                    success: Some(*success),
                };
                span.metadata = event.metadata.clone();
                out.push(span);
            }
            EventKind::PhaseStarted { iteration, phase } => {
                if let Some(open) = self.phase.take() {
                    out.push(unfinished(open, at));
                }
                self.phase = Some(self.phase_span(*iteration, *phase, at));
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => {
                let exact = info.nanos.unwrap_or(duration_ms.saturating_mul(1_000_000));
                let mut span = match self.phase.take() {
                    Some(open) if matches!(open.what, What::Phase { iteration: i, phase: p, .. } if i == *iteration && p == *phase) => {
                        open
                    }
                    other => {
                        if let Some(open) = other {
                            out.push(unfinished(open, at));
                        }
                        // No start seen: the span ends at this event.
                        self.phase_span(*iteration, *phase, at.saturating_sub(exact))
                    }
                };
                // The measured duration, not the difference of two
                // millisecond timestamps: the span lasts its durationMs.
                span.end_ns = span.start_ns.saturating_add(exact);
                span.what = What::Phase {
                    iteration: *iteration,
                    phase: *phase,
                    end: Some((*success, *duration_ms)),
                };
                if !success {
                    span.status = Status::Error(format!("{} failed", phase_name(*phase)));
                }
                span.metadata = event.metadata.clone();
                out.push(span);
            }
            EventKind::GateChecked {
                iteration,
                gate,
                passed,
                duration_ms,
            } => {
                let gate = GateEvent {
                    time_ns: at,
                    gate: gate.clone(),
                    passed: *passed,
                    iteration: *iteration,
                    duration_ms: *duration_ms,
                };
                match &mut self.iteration {
                    Some(span) if matches!(span.what, What::Iteration { iteration: i, .. } if i == *iteration) => {
                        span.gates.push(gate)
                    }
                    _ => self.root.gates.push(gate),
                }
            }
            EventKind::DeliveryStarted => {
                if let Some(open) = self.delivery.take() {
                    out.push(unfinished(open, at));
                }
                self.delivery = Some(self.delivery_span(at));
            }
            EventKind::DeliveryCompleted {
                success,
                pr_url,
                ci_status,
            } => {
                let mut span = match self.delivery.take() {
                    Some(open) => open,
                    None => self.delivery_span(at),
                };
                span.end_ns = at.max(span.start_ns);
                span.what = What::Delivery {
                    success: Some(*success),
                    pr_url: pr_url.clone(),
                    ci_status: ci_status.clone(),
                };
                span.metadata = event.metadata.clone();
                out.push(span);
                if let Some(url) = pr_url {
                    self.run_info().pr_url = Some(url.clone());
                }
            }
            EventKind::RunCompleted {
                result,
                engine_result,
                iterations,
                duration_ms,
                ..
            } => {
                let run = self.run_info();
                run.outcome = Some(*result);
                run.engine_result = Some(*engine_result);
                run.iterations = Some(*iterations);
                run.duration_ms = Some(*duration_ms);
                if *result != RunOutcome::Succeeded {
                    run.error_type = Some(engine_result.as_str());
                    self.root.status = Status::Error(format!(
                        "run {}: {}",
                        result.as_str(),
                        engine_result.as_str()
                    ));
                }
            }
            EventKind::RunCanceled { reason } => {
                let run = self.run_info();
                run.outcome = Some(RunOutcome::Canceled);
                run.error_type = Some("canceled");
                self.root.status = Status::Error(reason.clone());
            }
            EventKind::RunFailed { error } => {
                let run = self.run_info();
                run.outcome = Some(RunOutcome::Failed);
                run.error_type = Some("run_failed");
                self.root.status = Status::Error(error.clone());
            }
        }
    }

    /// Ends every open span and the root at `event`.
    fn end(mut self: Box<Self>, event: &ProgressEvent, out: &mut Vec<SpanData>) {
        if event.metadata.is_some() {
            self.root.metadata = event.metadata.clone();
        }
        self.end_at(nanos(event), out);
    }

    /// Ends every open span and the root at `at`, in nanoseconds.
    fn end_at(mut self: Box<Self>, at: u64, out: &mut Vec<SpanData>) {
        for open in [
            self.phase.take(),
            self.iteration.take(),
            self.delivery.take(),
        ]
        .into_iter()
        .flatten()
        {
            out.push(unfinished(open, at));
        }
        self.root.end_ns = at.max(self.root.start_ns);
        out.push(self.root);
    }
}

impl SpanSink {
    pub(crate) fn new(
        queue: Sender<Vec<SpanData>>,
        queued: Arc<AtomicUsize>,
        max_queue: usize,
        counters: Arc<DeliveryCounters>,
    ) -> SpanSink {
        SpanSink {
            runs: HashMap::default(),
            opened: VecDeque::new(),
            max_open_runs: MAX_OPEN_RUNS,
            batch: Vec::with_capacity(HAND_OFF),
            queue,
            queued,
            max_queue,
            counters,
        }
    }

    /// Hands the finished spans to the exporter thread, as many as the
    /// queue has room for; the rest are dropped and counted. Never waits.
    fn hand_off(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // Relaxed: a bound, not a synchronisation; the exporter thread
        // takes the spans through the channel.
        let room = self
            .max_queue
            .saturating_sub(self.queued.load(Ordering::Relaxed));
        if room < self.batch.len() {
            let dropped = self.batch.len() - room;
            self.counters.dropped(DropReason::QueueFull, dropped as u64);
            self.batch.truncate(room);
        }
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len();
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(HAND_OFF));
        // Relaxed: see above.
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.queue.send(batch).is_err() {
            // The exporter thread is gone (shutdown): nothing takes them.
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.dropped(DropReason::QueueFull, n as u64);
        }
    }

    /// Ends the spans of the run open longest, at `event`'s time.
    fn evict_oldest(&mut self, event: &ProgressEvent) {
        while let Some(id) = self.opened.pop_front() {
            if let Some(run) = self.runs.remove(&id) {
                let mut ended = Vec::new();
                run.end(event, &mut ended);
                for mut span in ended {
                    span.unfinished = true;
                    // The other run's metadata is not this one's.
                    if matches!(span.what, What::Run(_)) && span.metadata.is_some() {
                        span.metadata = None;
                    }
                    self.batch.push(span);
                }
                return;
            }
        }
    }

    /// A new run's spans, from its first event.
    fn open_run(event: &ProgressEvent, trace_id: TraceId, info: &EventInfo) -> Box<RunSpans> {
        // The handle's root span when it chose this trace; otherwise (the
        // `&str` API, `emit`, a replay) a new one.
        let chosen = info.trace.filter(|t| t.trace_id == trace_id);
        let correlation_id =
            (event.correlation_id != event.run_id).then(|| event.correlation_id.clone());
        Box::new(RunSpans {
            root: SpanData {
                trace_id,
                span_id: chosen.map_or_else(SpanId::random, |t| t.root),
                parent: chosen.and_then(|t| t.parent),
                start_ns: nanos(event),
                end_ns: nanos(event),
                what: What::Run(Box::new(RunInfo {
                    work_order_id: event.work_order_id.clone(),
                    run_id: event.run_id.clone(),
                    correlation_id,
                    task: None,
                    outcome: None,
                    engine_result: None,
                    iterations: None,
                    duration_ms: None,
                    error_type: None,
                    pr_url: None,
                })),
                gates: Vec::new(),
                metadata: None,
                status: Status::Unset,
                unfinished: false,
            },
            iteration: None,
            phase: None,
            delivery: None,
        })
    }

    fn handle(&mut self, event: &ProgressEvent, info: &EventInfo) {
        // The pipeline gives every tracked run's events a trace id.
        let Some(trace_id) = event.trace_id else {
            return;
        };
        let before = self.batch.len();
        match self.runs.get_mut(&event.run_id) {
            Some(run) => run.apply(event, info, &mut self.batch),
            None => {
                let mut run = SpanSink::open_run(event, trace_id, info);
                run.apply(event, info, &mut self.batch);
                if event.event_type().is_terminal() {
                    run.end(event, &mut self.batch);
                } else {
                    if self.runs.len() >= self.max_open_runs {
                        self.evict_oldest(event);
                    }
                    self.runs.insert(event.run_id.clone(), run);
                    self.opened.push_back(event.run_id.clone());
                    if self.opened.len() > 2 * self.max_open_runs {
                        let runs = &self.runs;
                        self.opened.retain(|id| runs.contains_key(id));
                    }
                }
            }
        }
        if event.event_type().is_terminal()
            && let Some(run) = self.runs.remove(&event.run_id)
        {
            run.end(event, &mut self.batch);
        }
        if self.batch.len() >= HAND_OFF && self.batch.len() > before {
            self.hand_off();
        }
    }
}

impl Sink for SpanSink {
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        self.handle(event, info);
    }

    fn flush(&mut self) {
        self.hand_off();
    }

    /// The runs still open at shutdown are exported as they stand, every
    /// span of theirs marked unfinished and ended now: the final flush
    /// then carries them.
    fn finish(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut ended = Vec::new();
        for id in std::mem::take(&mut self.opened) {
            if let Some(run) = self.runs.remove(&id) {
                run.end_at(now, &mut ended);
            }
        }
        for mut span in ended {
            span.unfinished = true;
            self.batch.push(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecutionMetrics, TaskSpec, Timestamp};

    fn sink(
        max_queue: usize,
    ) -> (
        SpanSink,
        crossbeam_channel::Receiver<Vec<SpanData>>,
        Arc<DeliveryCounters>,
    ) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(DeliveryCounters::default());
        let sink = SpanSink::new(tx, Arc::default(), max_queue, counters.clone());
        (sink, rx, counters)
    }

    fn feed(sink: &mut SpanSink, run: &str, millis: u64, kind: EventKind, nanos: Option<u64>) {
        let mut event = ProgressEvent::new("wo", run, kind);
        event.timestamp = Timestamp::from_millis(millis);
        // As the tracker sets it: one trace per run.
        event.trace_id = TraceId::from_bytes([run.len() as u8 + 1; 16]);
        let info = EventInfo {
            seq: 1,
            ticks: 0,
            received: 0,
            nanos,
            applied: Default::default(),
            trace: None,
        };
        sink.event(&event, &info);
    }

    fn spans(
        sink: &mut SpanSink,
        rx: &crossbeam_channel::Receiver<Vec<SpanData>>,
    ) -> Vec<SpanData> {
        sink.flush();
        rx.try_iter().flatten().collect()
    }

    fn started() -> EventKind {
        EventKind::RunStarted {
            task_spec: TaskSpec::new("g", Strategy::Fixed, 2),
        }
    }

    #[test]
    fn a_phase_span_lasts_its_measured_duration_and_nests_in_its_iteration_under_the_run() {
        let (mut sink, rx, _) = sink(100);
        feed(&mut sink, "r", 1_000, started(), None);
        feed(
            &mut sink,
            "r",
            1_001,
            EventKind::IterationStarted {
                iteration: 1,
                max_iterations: 2,
                feedback: None,
            },
            None,
        );
        feed(
            &mut sink,
            "r",
            1_002,
            EventKind::PhaseStarted {
                iteration: 1,
                phase: Phase::Build,
            },
            None,
        );
        let done = EventKind::PhaseCompleted {
            iteration: 1,
            phase: Phase::Build,
            success: false,
            duration_ms: 7,
        };
        feed(&mut sink, "r", 1_010, done, Some(7_400_000));
        let iteration_done = EventKind::IterationCompleted {
            iteration: 1,
            success: false,
            phase_timings: Default::default(),
            gate_results: Vec::new(),
        };
        feed(&mut sink, "r", 1_011, iteration_done, None);
        let completed = EventKind::RunCompleted {
            result: RunOutcome::Failed,
            engine_result: RunResult::FailedBuild,
            iterations: 1,
            duration_ms: 12,
            metrics: Box::new(ExecutionMetrics::default()),
        };
        feed(&mut sink, "r", 1_012, completed, None);
        let spans = spans(&mut sink, &rx);
        let names: Vec<&str> = spans.iter().map(SpanData::name).collect();
        assert_eq!(names, ["phase build", "iteration", "run"]);
        let (phase, iteration, run) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(phase.start_ns, 1_002_000_000);
        assert_eq!(phase.end_ns - phase.start_ns, 7_400_000);
        assert_eq!(phase.parent, Some(iteration.span_id));
        assert_eq!(iteration.parent, Some(run.span_id));
        assert_eq!(run.parent, None);
        assert_eq!(phase.status, Status::Error("phase build failed".into()));
        assert_eq!(iteration.status, Status::Unset);
        assert_eq!(run.status, Status::Error("run failed: failed_build".into()));
        assert!(spans.iter().all(|s| s.trace_id == run.trace_id));
    }

    #[test]
    fn past_the_most_open_runs_a_new_run_ends_the_oldest_runs_spans_as_unfinished() {
        let (mut sink, rx, _) = sink(100);
        sink.max_open_runs = 2;
        for (i, run) in ["a", "bb", "ccc"].into_iter().enumerate() {
            feed(&mut sink, run, 1_000 + i as u64, started(), None);
            let iteration = EventKind::IterationStarted {
                iteration: 1,
                max_iterations: 2,
                feedback: None,
            };
            feed(&mut sink, run, 1_000 + i as u64, iteration, None);
        }
        let spans = spans(&mut sink, &rx);
        assert_eq!(spans.len(), 2, "the oldest run's iteration and root");
        assert!(spans.iter().all(|s| s.unfinished));
        assert!(matches!(&spans[1].what, What::Run(info) if &*info.run_id == "a"));
        assert_eq!(sink.runs.len(), 2);
        // At shutdown the two still open go out too, unfinished.
        sink.finish();
        let rest = self::spans(&mut sink, &rx);
        assert_eq!(rest.len(), 4);
        assert!(rest.iter().all(|s| s.unfinished && s.end_ns >= s.start_ns));
        assert!(sink.runs.is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_spans_beyond_it_and_counts_them_without_waiting() {
        let (mut sink, rx, counters) = sink(1);
        feed(&mut sink, "r", 1_000, started(), None);
        feed(&mut sink, "r", 1_001, EventKind::DeliveryStarted, None);
        let delivered = EventKind::DeliveryCompleted {
            success: true,
            pr_url: None,
            ci_status: None,
        };
        feed(&mut sink, "r", 1_002, delivered, None);
        feed(
            &mut sink,
            "r",
            1_003,
            EventKind::RunCanceled {
                reason: "user".into(),
            },
            None,
        );
        let spans = spans(&mut sink, &rx);
        assert_eq!(spans.len(), 1);
        assert_eq!(counters.stats().dropped[DropReason::QueueFull as usize], 1);
    }
}
