//! Spans as the exporter thread encodes them: typed data ([`What`]),
//! what a span is and the numbers and ids it carries, turned into
//! attributes only as it is encoded ([`SpanData::attributes`]). The
//! builder (`super::builder`) makes them.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::{Metadata, Phase, RunOutcome, RunResult, SpanId, Strategy, TraceId};

/// Metadata entries a span takes as attributes at most.
const MAX_METADATA_ATTRIBUTES: usize = 32;

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
#[derive(Clone, Debug, Default)]
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

/// A finished span, on the exporter thread.
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
pub(super) fn phase_name(phase: Phase) -> &'static str {
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
