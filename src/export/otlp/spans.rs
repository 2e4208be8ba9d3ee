//! Runs turned into spans on the drain thread: a sink like the others,
//! which keeps each open run's open spans and hands every finished span
//! to the exporter thread through a bounded queue it never waits on.
//!
//! The trace of a run: the run is the root span; iterations are its
//! children; phases the children of their iteration (`phase build`);
//! gate checks are events of the iteration's span; the delivery is a
//! child of the run. Times are the events' own: a phase's span starts at
//! its `phase_started` and lasts exactly its measured duration, so its
//! length is its `durationMs`. Status ERROR, with the message, is set on
//! failed and canceled runs and on failed phases, nowhere else.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::event::{EventKind, Metadata, Phase, ProgressEvent, RunOutcome, SpanId, TraceId};
use crate::metrics::otlp::{OtlpCounters, SpanDrop};
use crate::pipeline::drain::{EventInfo, Sink};

/// Runs open at once that the sink follows at most; the spans of runs
/// beyond are dropped and counted (`too_many_runs`).
const MAX_OPEN_RUNS: usize = 10_000;

/// Metadata entries a span takes as attributes at most.
const MAX_METADATA_ATTRIBUTES: usize = 32;

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(Arc<str>),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
}

impl From<&Arc<str>> for Value {
    fn from(s: &Arc<str>) -> Value {
        Value::Str(s.clone())
    }
}

/// A span's status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Unset,
    Error(String),
}

/// An event inside a span (a gate check).
#[derive(Clone, Debug)]
pub(crate) struct SpanEvent {
    pub(crate) time_ns: u64,
    pub(crate) name: String,
    pub(crate) attributes: Vec<(&'static str, Value)>,
}

/// A finished span, ready to encode.
#[derive(Clone, Debug)]
pub(crate) struct SpanData {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) name: String,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) attributes: Vec<(String, Value)>,
    pub(crate) events: Vec<SpanEvent>,
    pub(crate) status: Status,
}

/// A span being built.
struct Open {
    span: SpanData,
    iteration: u32,
}

/// One run's open spans.
struct RunSpans {
    trace_id: TraceId,
    root: SpanData,
    iteration: Option<Open>,
    phase: Option<(Phase, Open)>,
    delivery: Option<Open>,
}

/// The drain thread's span builder.
pub(crate) struct SpanSink {
    runs: HashMap<Arc<str>, RunSpans>,
    queue: Sender<SpanData>,
    counters: Arc<OtlpCounters>,
}

fn nanos(event: &ProgressEvent) -> u64 {
    event.timestamp.as_millis().saturating_mul(1_000_000)
}

fn attr(key: &str, value: impl Into<Value>) -> (String, Value) {
    (key.to_owned(), value.into())
}

/// The event's metadata (redacted on entry to the pipeline, like every
/// output's) as `agentgate.metadata.KEY` attributes.
fn metadata_attributes(metadata: Option<&Arc<Metadata>>, out: &mut Vec<(String, Value)>) {
    let Some(metadata) = metadata else { return };
    for (key, value) in metadata.iter().take(MAX_METADATA_ATTRIBUTES) {
        let value = match value {
            serde_json::Value::String(s) => Value::from(s.as_str()),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Double(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::Null => continue,
            other => Value::from(other.to_string().as_str()),
        };
        out.push((format!("agentgate.metadata.{key}"), value));
    }
}

impl SpanSink {
    pub(crate) fn new(queue: Sender<SpanData>, counters: Arc<OtlpCounters>) -> SpanSink {
        SpanSink {
            runs: HashMap::new(),
            queue,
            counters,
        }
    }

    /// Hands a finished span to the exporter thread, or counts it dropped.
    fn send(&self, span: SpanData) {
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped(SpanDrop::QueueFull, 1);
            }
        }
    }

    fn start_run(&mut self, event: &ProgressEvent, info: &EventInfo) -> Option<&mut RunSpans> {
        let trace_id = event.trace_id?;
        if !self.runs.contains_key(&event.run_id) {
            if self.runs.len() >= MAX_OPEN_RUNS {
                self.counters.dropped(SpanDrop::TooManyRuns, 1);
                return None;
            }
            // The handle's root span when it chose this trace; otherwise
            // (the `&str` API, `emit`, a replay) a new one.
            let chosen = info.trace.filter(|t| t.trace_id == trace_id);
            let mut attributes = vec![
                attr("agentgate.work_order.id", &event.work_order_id),
                attr("agentgate.run.id", &event.run_id),
            ];
            if event.correlation_id != event.run_id {
                attributes.push(attr("agentgate.correlation.id", &event.correlation_id));
            }
            let root = SpanData {
                trace_id,
                span_id: chosen.map_or_else(SpanId::random, |t| t.root),
                parent: chosen.and_then(|t| t.parent),
                name: "run".to_owned(),
                start_ns: nanos(event),
                end_ns: nanos(event),
                attributes,
                events: Vec::new(),
                status: Status::Unset,
            };
            self.runs.insert(
                event.run_id.clone(),
                RunSpans {
                    trace_id,
                    root,
                    iteration: None,
                    phase: None,
                    delivery: None,
                },
            );
        }
        self.runs.get_mut(&event.run_id)
    }

    fn child(run: &RunSpans, span_id: SpanId, parent: SpanId, name: String, start: u64) -> SpanData {
        SpanData {
            trace_id: run.trace_id,
            span_id,
            parent: Some(parent),
            name,
            start_ns: start,
            end_ns: start,
            attributes: Vec::new(),
            events: Vec::new(),
            status: Status::Unset,
        }
    }

    fn handle(&mut self, event: &ProgressEvent, info: &EventInfo) {
        let mut finished: Vec<SpanData> = Vec::new();
        let terminal = event.event_type().is_terminal();
        let Some(run) = self.start_run(event, info) else {
            return;
        };
        let at = nanos(event);
        let root_id = run.root.span_id;
        match &event.kind {
            EventKind::RunStarted { task_spec } => {
                run.root.start_ns = at;
                let attrs = &mut run.root.attributes;
                attrs.push(attr("agentgate.strategy", task_spec.strategy.as_str()));
                attrs.push(("agentgate.max_iterations".into(), Value::Int(i64::from(task_spec.max_iterations))));
                attrs.push(attr("agentgate.goal", task_spec.goal.as_str()));
                metadata_attributes(event.metadata.as_ref(), attrs);
            }
            EventKind::IterationStarted { iteration, .. } => {
                if let Some(open) = run.iteration.take() {
                    finished.push(unfinished(open.span, at));
                }
                let mut span = Self::child(run, root_id.child(*iteration, 0), root_id, format!("iteration {iteration}"), at);
                span.attributes.push(("agentgate.iteration".into(), Value::Int(i64::from(*iteration))));
                run.iteration = Some(Open { span, iteration: *iteration });
            }
            EventKind::IterationCompleted { iteration, success, .. } => {
                let mut open = match run.iteration.take() {
                    Some(open) if open.iteration == *iteration => open,
                    other => {
                        if let Some(open) = other {
                            finished.push(unfinished(open.span, at));
                        }
                        let mut span = Self::child(run, root_id.child(*iteration, 0), root_id, format!("iteration {iteration}"), at);
                        span.attributes.push(("agentgate.iteration".into(), Value::Int(i64::from(*iteration))));
                        Open { span, iteration: *iteration }
                    }
                };
                open.span.end_ns = at.max(open.span.start_ns);
                open.span.attributes.push(("agentgate.iteration.success".into(), Value::Bool(*success)));
                metadata_attributes(event.metadata.as_ref(), &mut open.span.attributes);
                finished.push(open.span);
            }
            EventKind::PhaseStarted { iteration, phase } => {
                if let Some((_, open)) = run.phase.take() {
                    finished.push(unfinished(open.span, at));
                }
                let parent = match &run.iteration {
                    Some(open) if open.iteration == *iteration => open.span.span_id,
                    _ => root_id,
                };
                let mut span = Self::child(run, root_id.phase_child(*iteration, *phase), parent, format!("phase {phase}"), at);
                span.attributes.push(("agentgate.iteration".into(), Value::Int(i64::from(*iteration))));
                span.attributes.push(attr("agentgate.phase", phase.as_str()));
                run.phase = Some((*phase, Open { span, iteration: *iteration }));
            }
            EventKind::PhaseCompleted { iteration, phase, success, duration_ms } => {
                let exact = info.nanos.unwrap_or(duration_ms.saturating_mul(1_000_000));
                let mut open = match run.phase.take() {
                    Some((p, open)) if p == *phase && open.iteration == *iteration => open,
                    other => {
                        if let Some((_, open)) = other {
                            finished.push(unfinished(open.span, at));
                        }
                        // No start seen: the span ends at this event.
                        let parent = match &run.iteration {
                            Some(open) if open.iteration == *iteration => open.span.span_id,
                            _ => root_id,
                        };
                        let mut span = Self::child(run, root_id.phase_child(*iteration, *phase), parent, format!("phase {phase}"), at.saturating_sub(exact));
                        span.attributes.push(("agentgate.iteration".into(), Value::Int(i64::from(*iteration))));
                        span.attributes.push(attr("agentgate.phase", phase.as_str()));
                        Open { span, iteration: *iteration }
                    }
                };
                // The measured duration, not the difference of two
                // millisecond timestamps: the span lasts its durationMs.
                open.span.end_ns = open.span.start_ns.saturating_add(exact);
                open.span.attributes.push(("agentgate.phase.success".into(), Value::Bool(*success)));
                open.span.attributes.push(("agentgate.duration_ms".into(), Value::Int(*duration_ms as i64)));
                if !success {
                    open.span.status = Status::Error(format!("phase {phase} failed"));
                }
                metadata_attributes(event.metadata.as_ref(), &mut open.span.attributes);
                finished.push(open.span);
            }
            EventKind::GateChecked { iteration, gate, passed, duration_ms } => {
                let mut attributes = vec![
                    ("agentgate.gate.name", Value::from(gate.as_str())),
                    ("agentgate.gate.passed", Value::Bool(*passed)),
                    ("agentgate.iteration", Value::Int(i64::from(*iteration))),
                ];
                if let Some(ms) = duration_ms {
                    attributes.push(("agentgate.duration_ms", Value::Int(*ms as i64)));
                }
                let gate_event = SpanEvent { time_ns: at, name: format!("gate {gate}"), attributes };
                match &mut run.iteration {
                    Some(open) if open.iteration == *iteration => open.span.events.push(gate_event),
                    _ => run.root.events.push(gate_event),
                }
            }
            EventKind::DeliveryStarted => {
                if let Some(open) = run.delivery.take() {
                    finished.push(unfinished(open.span, at));
                }
                let span = Self::child(run, root_id.child(0, SpanId::DELIVERY_SLOT), root_id, "delivery".to_owned(), at);
                run.delivery = Some(Open { span, iteration: 0 });
            }
            EventKind::DeliveryCompleted { success, pr_url, ci_status } => {
                let mut span = match run.delivery.take() {
                    Some(open) => open.span,
                    None => Self::child(run, root_id.child(0, SpanId::DELIVERY_SLOT), root_id, "delivery".to_owned(), at),
                };
                span.end_ns = at.max(span.start_ns);
                span.attributes.push(("agentgate.delivery.success".into(), Value::Bool(*success)));
                if let Some(url) = pr_url {
                    span.attributes.push(attr("agentgate.delivery.pr_url", url.as_str()));
                    run.root.attributes.push(attr("agentgate.delivery.pr_url", url.as_str()));
                }
                if let Some(ci) = ci_status {
                    span.attributes.push(attr("agentgate.delivery.ci_status", ci.as_str()));
                }
                metadata_attributes(event.metadata.as_ref(), &mut span.attributes);
                finished.push(span);
            }
            EventKind::RunCompleted { result, engine_result, iterations, duration_ms, .. } => {
                let attrs = &mut run.root.attributes;
                attrs.push(attr("agentgate.run.result", result.as_str()));
                attrs.push(attr("agentgate.run.engine_result", engine_result.as_str()));
                attrs.push(("agentgate.run.iterations".into(), Value::Int(i64::from(*iterations))));
                attrs.push(("agentgate.duration_ms".into(), Value::Int(*duration_ms as i64)));
                if *result != RunOutcome::Succeeded {
                    attrs.push(attr("error.type", engine_result.as_str()));
                    run.root.status = Status::Error(format!("run {}: {}", result.as_str(), engine_result.as_str()));
                }
            }
            EventKind::RunCanceled { reason } => {
                run.root.attributes.push(attr("agentgate.run.result", RunOutcome::Canceled.as_str()));
                run.root.attributes.push(attr("error.type", "canceled"));
                run.root.status = Status::Error(reason.clone());
            }
            EventKind::RunFailed { error } => {
                run.root.attributes.push(attr("agentgate.run.result", RunOutcome::Failed.as_str()));
                run.root.attributes.push(attr("error.type", "run_failed"));
                run.root.status = Status::Error(error.clone());
            }
        }
        if terminal {
            if let Some(mut run) = self.runs.remove(&event.run_id) {
                if let Some((_, open)) = run.phase.take() {
                    finished.push(unfinished(open.span, at));
                }
                if let Some(open) = run.iteration.take() {
                    finished.push(unfinished(open.span, at));
                }
                if let Some(open) = run.delivery.take() {
                    finished.push(unfinished(open.span, at));
                }
                metadata_attributes(event.metadata.as_ref(), &mut run.root.attributes);
                run.root.end_ns = at.max(run.root.start_ns);
                finished.push(run.root);
            }
        }
        for span in finished {
            self.send(span);
        }
    }
}

/// A span its end event never came for, ended by what came instead.
fn unfinished(mut span: SpanData, at: u64) -> SpanData {
    span.end_ns = at.max(span.start_ns);
    span.attributes.push(("agentgate.unfinished".into(), Value::Bool(true)));
    span
}

impl Sink for SpanSink {
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        self.handle(event, info);
    }
}
