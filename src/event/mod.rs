//! Typed progress events and their JSON wire format.
//!
//! [`ProgressEvent`] is what listeners receive and what every sink writes.
//! The JSON is fixed by the design contract: one object, camelCase, `type`
//! first, RFC 3339 UTC timestamps with milliseconds, absent options omitted.

mod encode;
mod json;
mod timestamp;
mod trace;
mod types;

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub(crate) use encode::write_wire;
pub use json::{TypeStyle, WireEvent};
pub use timestamp::{InvalidTimestamp, Timestamp};
pub(crate) use trace::RunTrace;
pub use trace::{InvalidTraceparent, SpanId, TraceId, TraceParent};
pub use types::{
    DeliveryResult, ExecutionMetrics, GOAL_MAX_CHARS, GateSummary, Phase, PhaseTimings, RunOutcome,
    RunResult, Strategy, TaskSpec, UnknownVariant,
};
pub(crate) use types::{TRUNCATION_MARKER, bound_bytes, truncate_chars};

/// Free-form fields an engine attaches to an event. They live under
/// `metadata` and never replace the event's own fields.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The eleven kinds of progress event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A run began.
    RunStarted,
    /// A run ended with a result.
    RunCompleted,
    /// A run was canceled.
    RunCanceled,
    /// A run failed with an error.
    RunFailed,
    /// An iteration began.
    IterationStarted,
    /// An iteration ended.
    IterationCompleted,
    /// A phase began.
    PhaseStarted,
    /// A phase ended.
    PhaseCompleted,
    /// A gate was checked.
    GateChecked,
    /// Delivery of the result began.
    DeliveryStarted,
    /// Delivery of the result ended.
    DeliveryCompleted,
}

impl EventType {
    /// How many event types there are.
    pub const COUNT: usize = 11;

    /// Every type, in declaration order (the order of [`EventType::index`]).
    pub const ALL: [EventType; EventType::COUNT] = [
        EventType::RunStarted,
        EventType::RunCompleted,
        EventType::RunCanceled,
        EventType::RunFailed,
        EventType::IterationStarted,
        EventType::IterationCompleted,
        EventType::PhaseStarted,
        EventType::PhaseCompleted,
        EventType::GateChecked,
        EventType::DeliveryStarted,
        EventType::DeliveryCompleted,
    ];

    /// Position in [`EventType::ALL`], for per-type counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `type` of logs, NDJSON and `/api/*`: `run_started`.
    pub const fn as_str(self) -> &'static str {
        self.names().0
    }

    /// The `type` of WebSocket messages: `run:started`.
    pub const fn colon_name(self) -> &'static str {
        self.names().1
    }

    const fn names(self) -> (&'static str, &'static str) {
        match self {
            EventType::RunStarted => ("run_started", "run:started"),
            EventType::RunCompleted => ("run_completed", "run:completed"),
            EventType::RunCanceled => ("run_canceled", "run:canceled"),
            EventType::RunFailed => ("run_failed", "run:failed"),
            EventType::IterationStarted => ("iteration_started", "iteration:started"),
            EventType::IterationCompleted => ("iteration_completed", "iteration:completed"),
            EventType::PhaseStarted => ("phase_started", "phase:started"),
            EventType::PhaseCompleted => ("phase_completed", "phase:completed"),
            EventType::GateChecked => ("gate_checked", "gate:checked"),
            EventType::DeliveryStarted => ("delivery_started", "delivery:started"),
            EventType::DeliveryCompleted => ("delivery_completed", "delivery:completed"),
        }
    }

    /// Parses either form of the name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == name || t.colon_name() == name)
    }

    /// Run lifecycle events are never dropped: when the queue is full their
    /// emitter waits for space whatever the overflow policy.
    pub const fn is_lifecycle(self) -> bool {
        matches!(
            self,
            EventType::RunStarted
                | EventType::RunCompleted
                | EventType::RunCanceled
                | EventType::RunFailed
                | EventType::DeliveryCompleted
        )
    }

    /// `run_completed`, `run_canceled` and `run_failed`.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            EventType::RunCompleted | EventType::RunCanceled | EventType::RunFailed
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of a progress event, one variant per [`EventType`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum EventKind {
    /// `run_started`
    #[serde(rename = "run_started", alias = "run:started")]
    RunStarted {
        /// What the run was asked to do.
        task_spec: TaskSpec,
    },
    /// `run_completed`
    #[serde(rename = "run_completed", alias = "run:completed")]
    RunCompleted {
        /// `succeeded | failed | canceled`.
        result: RunOutcome,
        /// The engine's own result.
        engine_result: RunResult,
        /// Iterations run.
        iterations: u32,
        /// Wall time of the run, ms.
        duration_ms: u64,
        /// The engine's measurements.
        metrics: Box<ExecutionMetrics>,
    },
    /// `run_canceled`
    #[serde(rename = "run_canceled", alias = "run:canceled")]
    RunCanceled {
        /// Why.
        reason: String,
    },
    /// `run_failed`
    #[serde(rename = "run_failed", alias = "run:failed")]
    RunFailed {
        /// What went wrong.
        error: String,
    },
    /// `iteration_started`
    #[serde(rename = "iteration_started", alias = "iteration:started")]
    IterationStarted {
        /// 1-based iteration number.
        iteration: u32,
        /// The run's iteration limit.
        max_iterations: u32,
        /// Feedback from the previous iteration.
        #[serde(default)]
        feedback: Option<String>,
    },
    /// `iteration_completed`
    #[serde(rename = "iteration_completed", alias = "iteration:completed")]
    IterationCompleted {
        /// 1-based iteration number.
        iteration: u32,
        /// Whether the iteration's gates passed.
        success: bool,
        /// Milliseconds per phase in this iteration.
        phase_timings: PhaseTimings,
        /// The gates checked in this iteration. Left empty by the emitter,
        /// the pipeline fills it from this iteration's `gate_checked` events.
        #[serde(default)]
        gate_results: Vec<GateSummary>,
    },
    /// `phase_started`
    #[serde(rename = "phase_started", alias = "phase:started")]
    PhaseStarted {
        /// 1-based iteration number.
        iteration: u32,
        /// The phase.
        phase: Phase,
    },
    /// `phase_completed`
    #[serde(rename = "phase_completed", alias = "phase:completed")]
    PhaseCompleted {
        /// 1-based iteration number.
        iteration: u32,
        /// The phase.
        phase: Phase,
        /// Whether it succeeded.
        success: bool,
        /// How long it took, ms.
        duration_ms: u64,
    },
    /// `gate_checked`
    #[serde(rename = "gate_checked", alias = "gate:checked")]
    GateChecked {
        /// 1-based iteration number.
        iteration: u32,
        /// Gate name.
        gate: String,
        /// Whether it passed.
        passed: bool,
        /// How long the check took, when the engine said.
        #[serde(default)]
        duration_ms: Option<u64>,
    },
    /// `delivery_started`
    #[serde(rename = "delivery_started", alias = "delivery:started")]
    DeliveryStarted,
    /// `delivery_completed`
    #[serde(rename = "delivery_completed", alias = "delivery:completed")]
    DeliveryCompleted {
        /// Whether delivery succeeded.
        success: bool,
        /// The pull request, when one was opened.
        #[serde(default)]
        pr_url: Option<String>,
        /// CI status, when known.
        #[serde(default)]
        ci_status: Option<String>,
    },
}

impl EventKind {
    /// The type of this payload.
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::RunStarted { .. } => EventType::RunStarted,
            EventKind::RunCompleted { .. } => EventType::RunCompleted,
            EventKind::RunCanceled { .. } => EventType::RunCanceled,
            EventKind::RunFailed { .. } => EventType::RunFailed,
            EventKind::IterationStarted { .. } => EventType::IterationStarted,
            EventKind::IterationCompleted { .. } => EventType::IterationCompleted,
            EventKind::PhaseStarted { .. } => EventType::PhaseStarted,
            EventKind::PhaseCompleted { .. } => EventType::PhaseCompleted,
            EventKind::GateChecked { .. } => EventType::GateChecked,
            EventKind::DeliveryStarted => EventType::DeliveryStarted,
            EventKind::DeliveryCompleted { .. } => EventType::DeliveryCompleted,
        }
    }
}

/// One progress event: what listeners receive and every sink writes.
///
/// Ids are shared `Arc<str>`s so that handing an event to many sinks copies
/// no strings.
///
/// ```
/// use agentgate_obs::{Phase, ProgressEvent};
/// use agentgate_obs::event::EventKind;
/// let event = ProgressEvent::new("wo-1", "run-1", EventKind::PhaseStarted { iteration: 1, phase: Phase::Build });
/// let json = serde_json::to_string(&event).unwrap();
/// assert!(json.starts_with(r#"{"type":"phase_started","timestamp":""#));
/// assert_eq!(serde_json::from_str::<ProgressEvent>(&json).unwrap().run_id.as_ref(), "run-1");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressEvent {
    /// When the engine emitted it.
    pub timestamp: Timestamp,
    /// The work order the run belongs to.
    pub work_order_id: Arc<str>,
    /// The run.
    pub run_id: Arc<str>,
    /// The emitting thread's context correlation id, else the run id.
    pub correlation_id: Arc<str>,
    /// The W3C trace of the run (`traceId`): set by the pipeline, which
    /// gives every run one at its first event (the caller's when the run
    /// was started with a [`TraceParent`]); `None` on an event the
    /// pipeline has not processed, or from a journal written without it.
    pub trace_id: Option<TraceId>,
    /// Extra fields from the engine, under `metadata`.
    pub metadata: Option<Arc<Metadata>>,
    /// The payload.
    pub kind: EventKind,
}

impl ProgressEvent {
    /// An event stamped now, correlated by its run id, without metadata.
    pub fn new(work_order_id: &str, run_id: &str, kind: EventKind) -> Self {
        let run_id: Arc<str> = Arc::from(run_id);
        ProgressEvent {
            timestamp: Timestamp::from(SystemTime::now()),
            work_order_id: Arc::from(work_order_id),
            correlation_id: run_id.clone(),
            run_id,
            trace_id: None,
            metadata: None,
            kind,
        }
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }

    /// This event as a WebSocket message: colon-form `type` and `seq`.
    pub fn wire(&self, seq: u64) -> WireEvent<'_> {
        WireEvent::new(self, TypeStyle::Colon, Some(seq))
    }
}

impl Serialize for ProgressEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireEvent::new(self, TypeStyle::Snake, None).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProgressEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Repr {
            timestamp: Timestamp,
            work_order_id: Arc<str>,
            run_id: Arc<str>,
            correlation_id: Option<Arc<str>>,
            #[serde(default)]
            trace_id: Option<TraceId>,
            #[serde(default)]
            metadata: Option<Arc<Metadata>>,
            #[serde(flatten)]
            kind: EventKind,
        }
        let repr = Repr::deserialize(deserializer)?;
        Ok(ProgressEvent {
            timestamp: repr.timestamp,
            correlation_id: repr.correlation_id.unwrap_or_else(|| repr.run_id.clone()),
            work_order_id: repr.work_order_id,
            run_id: repr.run_id,
            trace_id: repr.trace_id,
            metadata: repr.metadata,
            kind: repr.kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_survives_the_json_round_trip_in_both_spellings() {
        let kinds = [
            EventKind::RunStarted {
                task_spec: TaskSpec::new("g\u{e9}\"", Strategy::Ralph, 3),
            },
            EventKind::RunCanceled { reason: "r".into() },
            EventKind::IterationStarted {
                iteration: 1,
                max_iterations: 3,
                feedback: Some("f".into()),
            },
            EventKind::PhaseCompleted {
                iteration: 1,
                phase: Phase::Verify,
                success: false,
                duration_ms: 12,
            },
            EventKind::DeliveryStarted,
        ];
        for kind in kinds {
            let event = ProgressEvent::new("wo", "run", kind);
            let json = serde_json::to_string(&event).unwrap_or_default();
            let back: Result<ProgressEvent, _> = serde_json::from_str(&json);
            assert_eq!(back.ok().as_ref(), Some(&event), "{json}");
            let wire = serde_json::to_string(&event.wire(3)).unwrap_or_default();
            let back: Result<ProgressEvent, _> = serde_json::from_str(&wire);
            assert_eq!(back.ok().as_ref(), Some(&event), "{wire}");
        }
    }
}
