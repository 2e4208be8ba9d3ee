//! The WebSocket and journal form of an event (colon `type`, `seq`),
//! written straight into a byte buffer: the same bytes as serializing
//! [`WireEvent`](super::WireEvent) with serde_json, at a fraction of the
//! cost.
//!
//! serde_json escapes every key and value byte by byte and formats the
//! timestamp through `Display`: about 2,700 instructions an event on the
//! journal's writer thread (callgrind), where the keys here are literals,
//! a value without bytes to escape is copied whole, and a timestamp in the
//! same millisecond as the previous one on this thread is copied from
//! there. Nested values of any shape (`metadata`, `agentMetrics`) still go
//! through serde_json. A unit test and the event JSON fuzz target hold the
//! two encodings to the same bytes.

use std::cell::Cell;
use std::io::Write as _;

use serde::Serialize;

use super::{EventKind, ExecutionMetrics, GateSummary, PhaseTimings, ProgressEvent, Timestamp};

/// Appends the event's wire JSON (`{"type":"phase:completed","seq":…}`).
pub(crate) fn write_wire(out: &mut Vec<u8>, seq: u64, event: &ProgressEvent) {
    // Most events fit: one growth check instead of one per piece.
    out.reserve(512);
    let mut w = Object::open(out);
    w.key("type");
    w.name(event.event_type().colon_name());
    w.key("seq");
    w.number(seq);
    w.key("timestamp");
    w.timestamp(event.timestamp);
    w.key("workOrderId");
    w.string(&event.work_order_id);
    w.key("runId");
    w.string(&event.run_id);
    w.key("correlationId");
    w.string(&event.correlation_id);
    if let Some(trace_id) = event.trace_id {
        w.key("traceId");
        w.out.push(b'"');
        trace_id.write_hex(w.out);
        w.out.push(b'"');
    }
    payload(&mut w, &event.kind);
    if let Some(metadata) = &event.metadata {
        w.key("metadata");
        w.serde(&**metadata);
    }
    w.close();
}

fn payload(w: &mut Object<'_>, kind: &EventKind) {
    match kind {
        EventKind::RunStarted { task_spec } => {
            w.key("taskSpec");
            let mut spec = Object::open(w.out);
            spec.key("goal");
            spec.string(&task_spec.goal);
            spec.key("strategy");
            spec.name(task_spec.strategy.as_str());
            spec.key("maxIterations");
            spec.number(task_spec.max_iterations);
            spec.close();
        }
        EventKind::RunCompleted {
            result,
            engine_result,
            iterations,
            duration_ms,
            metrics,
        } => {
            w.key("result");
            w.name(result.as_str());
            w.key("engineResult");
            w.name(engine_result.as_str());
            w.key("iterations");
            w.number(*iterations);
            w.key("durationMs");
            w.number(*duration_ms);
            w.key("metrics");
            execution_metrics(w.out, metrics);
        }
        EventKind::RunCanceled { reason } => {
            w.key("reason");
            w.string(reason);
        }
        EventKind::RunFailed { error } => {
            w.key("error");
            w.string(error);
        }
        EventKind::IterationStarted {
            iteration,
            max_iterations,
            feedback,
        } => {
            w.key("iteration");
            w.number(*iteration);
            w.key("maxIterations");
            w.number(*max_iterations);
            if let Some(feedback) = feedback {
                w.key("feedback");
                w.string(feedback);
            }
        }
        EventKind::IterationCompleted {
            iteration,
            success,
            phase_timings,
            gate_results,
        } => {
            w.key("iteration");
            w.number(*iteration);
            w.key("success");
            w.boolean(*success);
            w.key("phaseTimings");
            timings(w.out, phase_timings);
            w.key("gateResults");
            gates(w.out, gate_results);
        }
        EventKind::PhaseStarted { iteration, phase } => {
            w.key("iteration");
            w.number(*iteration);
            w.key("phase");
            w.name(phase.as_str());
        }
        EventKind::PhaseCompleted {
            iteration,
            phase,
            success,
            duration_ms,
        } => {
            w.key("iteration");
            w.number(*iteration);
            w.key("phase");
            w.name(phase.as_str());
            w.key("success");
            w.boolean(*success);
            w.key("durationMs");
            w.number(*duration_ms);
        }
        EventKind::GateChecked {
            iteration,
            gate,
            passed,
            duration_ms,
        } => {
            w.key("iteration");
            w.number(*iteration);
            w.key("gate");
            w.string(gate);
            w.key("passed");
            w.boolean(*passed);
            if let Some(ms) = duration_ms {
                w.key("durationMs");
                w.number(*ms);
            }
        }
        EventKind::DeliveryStarted => {}
        EventKind::DeliveryCompleted {
            success,
            pr_url,
            ci_status,
        } => {
            w.key("success");
            w.boolean(*success);
            if let Some(url) = pr_url {
                w.key("prUrl");
                w.string(url);
            }
            if let Some(status) = ci_status {
                w.key("ciStatus");
                w.string(status);
            }
        }
    }
}

fn execution_metrics(out: &mut Vec<u8>, metrics: &ExecutionMetrics) {
    let mut w = Object::open(out);
    w.key("totalDurationMs");
    w.number(metrics.total_duration_ms);
    w.key("iterationCount");
    w.number(metrics.iteration_count);
    w.key("phaseBreakdown");
    timings(w.out, &metrics.phase_breakdown);
    if let Some(agent) = &metrics.agent_metrics {
        w.key("agentMetrics");
        w.serde(agent);
    }
    w.close();
}

fn timings(out: &mut Vec<u8>, timings: &PhaseTimings) {
    let mut w = Object::open(out);
    for (key, value) in [
        ("build", timings.build),
        ("snapshot", timings.snapshot),
        ("verify", timings.verify),
        ("feedback", timings.feedback),
    ] {
        if let Some(ms) = value {
            w.key(key);
            w.number(ms);
        }
    }
    w.close();
}

fn gates(out: &mut Vec<u8>, gates: &[GateSummary]) {
    out.push(b'[');
    for (i, gate) in gates.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut w = Object::open(out);
        w.key("name");
        w.string(&gate.name);
        w.key("passed");
        w.boolean(gate.passed);
        if let Some(ms) = gate.duration_ms {
            w.key("durationMs");
            w.number(ms);
        }
        w.close();
    }
    out.push(b']');
}

/// A JSON object being written: keys are our own literals, never escaped.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, value: &str) {
        write_string(self.out, value);
    }

    /// One of our own names (event types, enum values): nothing to escape.
    fn name(&mut self, value: &'static str) {
        debug_assert!(value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    fn number(&mut self, value: impl itoa::Integer) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn boolean(&mut self, value: bool) {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn timestamp(&mut self, timestamp: Timestamp) {
        self.out.push(b'"');
        write_timestamp(self.out, timestamp);
        self.out.push(b'"');
    }

    /// Any value, as serde_json writes it.
    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Writing into a Vec fails only if `value`'s Serialize does, and
        // JSON values and maps do not.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string, escaped exactly as serde_json escapes it: `"` and `\`,
/// the five short control escapes, other control bytes as `\u00xx`;
/// everything else (DEL and non-ASCII included) as it is.
fn write_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    // Most values have nothing to escape: one pass without an early exit,
    // which the compiler vectorizes, then one copy.
    let escapes = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escapes {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[copied..i]);
        copied = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// The RFC 3339 text of a timestamp always has this length (years 0 to 9999).
const TIMESTAMP_LEN: usize = 24;

thread_local! {
    /// The last timestamp this thread wrote, with its text: the events of
    /// a burst share their millisecond.
    /// `None` until the first one.
    static LAST_TIMESTAMP: Cell<Option<(u64, [u8; TIMESTAMP_LEN])>> = const { Cell::new(None) };
}

fn write_timestamp(out: &mut Vec<u8>, timestamp: Timestamp) {
    let millis = timestamp.as_millis();
    if let Some((last, text)) = LAST_TIMESTAMP.with(Cell::get)
        && last == millis
    {
        out.extend_from_slice(&text);
        return;
    }
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{timestamp}");
    if let Ok(text) = <[u8; TIMESTAMP_LEN]>::try_from(&out[start..]) {
        LAST_TIMESTAMP.with(|cell| cell.set(Some((millis, text))));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::{Metadata, Phase, RunOutcome, RunResult, Strategy, TaskSpec};

    fn events() -> Vec<ProgressEvent> {
        let awkward = "q\"b\\s/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é😀</script>";
        let kinds = vec![
            EventKind::RunStarted {
                task_spec: TaskSpec::new(awkward, Strategy::Hybrid, 7),
            },
            EventKind::RunCompleted {
                result: RunOutcome::Failed,
                engine_result: RunResult::FailedTimeout,
                iterations: u32::MAX,
                duration_ms: u64::MAX,
                metrics: Box::new(ExecutionMetrics {
                    total_duration_ms: 0,
                    iteration_count: 2,
                    phase_breakdown: PhaseTimings {
                        build: Some(1),
                        snapshot: None,
                        verify: Some(3),
                        feedback: None,
                    },
                    agent_metrics: Some(serde_json::json!({"b": [1.5, null, "x\"y"], "a": {}})),
                }),
            },
            EventKind::RunCompleted {
                result: RunOutcome::Succeeded,
                engine_result: RunResult::Passed,
                iterations: 1,
                duration_ms: 5,
                metrics: Box::default(),
            },
            EventKind::RunCanceled {
                reason: awkward.into(),
            },
            EventKind::RunFailed { error: "".into() },
            EventKind::IterationStarted {
                iteration: 0,
                max_iterations: 3,
                feedback: Some(awkward.into()),
            },
            EventKind::IterationStarted {
                iteration: 1,
                max_iterations: 0,
                feedback: None,
            },
            EventKind::IterationCompleted {
                iteration: 2,
                success: true,
                phase_timings: PhaseTimings::default(),
                gate_results: vec![],
            },
            EventKind::IterationCompleted {
                iteration: 2,
                success: false,
                phase_timings: PhaseTimings {
                    build: None,
                    snapshot: Some(2),
                    verify: None,
                    feedback: Some(4),
                },
                gate_results: vec![
                    GateSummary {
                        name: awkward.into(),
                        passed: true,
                        duration_ms: None,
                    },
                    GateSummary {
                        name: "lint".into(),
                        passed: false,
                        duration_ms: Some(9),
                    },
                ],
            },
            EventKind::PhaseStarted {
                iteration: 1,
                phase: Phase::Feedback,
            },
            EventKind::PhaseCompleted {
                iteration: 1,
                phase: Phase::Snapshot,
                success: false,
                duration_ms: 12_992,
            },
            EventKind::GateChecked {
                iteration: 3,
                gate: awkward.into(),
                passed: true,
                duration_ms: Some(0),
            },
            EventKind::GateChecked {
                iteration: 3,
                gate: "unit-tests".into(),
                passed: false,
                duration_ms: None,
            },
            EventKind::DeliveryStarted,
            EventKind::DeliveryCompleted {
                success: true,
                pr_url: Some("https://example.com/pr/1".into()),
                ci_status: Some(awkward.into()),
            },
            EventKind::DeliveryCompleted {
                success: false,
                pr_url: None,
                ci_status: None,
            },
        ];
        let mut metadata = Metadata::new();
        metadata.insert(awkward.into(), serde_json::json!([1, {"k": "v"}]));
        let metadata = Arc::new(metadata);
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                let mut event = ProgressEvent::new(awkward, "run-1", kind);
                event.timestamp = Timestamp::from_millis(1_796_173_200_123 + (i as u64 % 3));
                if i % 2 == 0 {
                    event.correlation_id = Arc::from("req\u{0}9");
                    event.metadata = Some(metadata.clone());
                }
                if i % 3 == 0 {
                    event.trace_id =
                        crate::event::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736");
                }
                event
            })
            .collect()
    }

    #[test]
    fn every_event_is_written_byte_for_byte_as_serde_json_writes_it() {
        for event in events() {
            for seq in [0, 7, u64::MAX] {
                let mut ours = Vec::new();
                write_wire(&mut ours, seq, &event);
                let theirs = serde_json::to_vec(&event.wire(seq)).expect("serializes");
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
            }
        }
    }

    #[test]
    fn every_control_byte_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..=0x7f {
            let text = format!("a{}b", char::from(b));
            let mut ours = Vec::new();
            write_string(&mut ours, &text);
            assert_eq!(ours, serde_json::to_vec(&text).expect("serializes"), "{b}");
        }
    }

    #[test]
    fn a_timestamp_after_another_is_written_afresh_and_a_repeated_one_the_same() {
        let mut out = Vec::new();
        for millis in [0, 0, 1, 1_796_173_200_123, 1_796_173_200_123, 0] {
            out.clear();
            write_timestamp(&mut out, Timestamp::from_millis(millis));
            assert_eq!(out, Timestamp::from_millis(millis).to_string().as_bytes());
        }
    }
}
