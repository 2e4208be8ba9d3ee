//! The hand-written serializer: `type` first, then the common fields, then
//! the payload, then `metadata`, in one pass with no intermediate `Value`.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::{EventKind, ProgressEvent};

/// Which spelling of `type` to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeStyle {
    /// `run_started`: logs, NDJSON, `/api/*`.
    Snake,
    /// `run:started`: WebSocket messages.
    Colon,
}

/// A borrowed event with the spelling of its `type` and an optional `seq`,
/// ready to serialize.
///
/// ```
/// use agentgate_obs::ProgressEvent;
/// use agentgate_obs::event::EventKind;
/// let event = ProgressEvent::new("wo", "run", EventKind::DeliveryStarted);
/// let json = serde_json::to_string(&event.wire(7)).unwrap();
/// assert!(json.starts_with(r#"{"type":"delivery:started","seq":7,"#));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WireEvent<'a> {
    event: &'a ProgressEvent,
    style: TypeStyle,
    seq: Option<u64>,
}

impl<'a> WireEvent<'a> {
    /// Wraps `event` for serialization.
    pub fn new(event: &'a ProgressEvent, style: TypeStyle, seq: Option<u64>) -> Self {
        WireEvent { event, style, seq }
    }
}

impl Serialize for WireEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let ty = e.event_type();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            "type",
            match self.style {
                TypeStyle::Snake => ty.as_str(),
                TypeStyle::Colon => ty.colon_name(),
            },
        )?;
        if let Some(seq) = self.seq {
            map.serialize_entry("seq", &seq)?;
        }
        map.serialize_entry("timestamp", &e.timestamp)?;
        map.serialize_entry("workOrderId", &*e.work_order_id)?;
        map.serialize_entry("runId", &*e.run_id)?;
        map.serialize_entry("correlationId", &*e.correlation_id)?;
        if let Some(trace_id) = &e.trace_id {
            map.serialize_entry("traceId", trace_id)?;
        }
        serialize_payload(&e.kind, &mut map)?;
        if let Some(metadata) = &e.metadata {
            map.serialize_entry("metadata", &**metadata)?;
        }
        map.end()
    }
}

fn opt_entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => map.serialize_entry(key, v),
        None => Ok(()),
    }
}

fn serialize_payload<M: SerializeMap>(kind: &EventKind, map: &mut M) -> Result<(), M::Error> {
    match kind {
        EventKind::RunStarted { task_spec } => map.serialize_entry("taskSpec", task_spec),
        EventKind::RunCompleted {
            result,
            engine_result,
            iterations,
            duration_ms,
            metrics,
        } => {
            map.serialize_entry("result", result)?;
            map.serialize_entry("engineResult", engine_result)?;
            map.serialize_entry("iterations", iterations)?;
            map.serialize_entry("durationMs", duration_ms)?;
            map.serialize_entry("metrics", &**metrics)
        }
        EventKind::RunCanceled { reason } => map.serialize_entry("reason", reason),
        EventKind::RunFailed { error } => map.serialize_entry("error", error),
        EventKind::IterationStarted {
            iteration,
            max_iterations,
            feedback,
        } => {
            map.serialize_entry("iteration", iteration)?;
            map.serialize_entry("maxIterations", max_iterations)?;
            opt_entry(map, "feedback", feedback)
        }
        EventKind::IterationCompleted {
            iteration,
            success,
            phase_timings,
            gate_results,
        } => {
            map.serialize_entry("iteration", iteration)?;
            map.serialize_entry("success", success)?;
            map.serialize_entry("phaseTimings", phase_timings)?;
            map.serialize_entry("gateResults", gate_results)
        }
        EventKind::PhaseStarted { iteration, phase } => {
            map.serialize_entry("iteration", iteration)?;
            map.serialize_entry("phase", phase)
        }
        EventKind::PhaseCompleted {
            iteration,
            phase,
            success,
            duration_ms,
        } => {
            map.serialize_entry("iteration", iteration)?;
            map.serialize_entry("phase", phase)?;
            map.serialize_entry("success", success)?;
            map.serialize_entry("durationMs", duration_ms)
        }
        EventKind::GateChecked {
            iteration,
            gate,
            passed,
            duration_ms,
        } => {
            map.serialize_entry("iteration", iteration)?;
            map.serialize_entry("gate", gate)?;
            map.serialize_entry("passed", passed)?;
            opt_entry(map, "durationMs", duration_ms)
        }
        EventKind::DeliveryStarted => Ok(()),
        EventKind::DeliveryCompleted {
            success,
            pr_url,
            ci_status,
        } => {
            map.serialize_entry("success", success)?;
            opt_entry(map, "prUrl", pr_url)?;
            opt_entry(map, "ciStatus", ci_status)
        }
    }
}
