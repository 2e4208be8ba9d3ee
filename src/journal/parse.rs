//! Parsing one journal line into a [`ProgressEvent`] in a single pass.
//!
//! `ProgressEvent`'s own `Deserialize` (an internally tagged payload
//! flattened beside the common fields) buffers every field into serde's
//! `Content` first and allocates each id: measured, it capped a replay at
//! about 600,000 lines a second. Here one flat struct takes every field a
//! line may hold, strings borrowed from the line, and the ids are interned,
//! so a run's events share their `Arc`s as they do on the live drain
//! thread. The result is the same event: a unit test holds the two
//! parsers to each other for every event type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::JournalRecord;
use super::scan::{LastTimestamp, scan};

use crate::event::{
    EventKind, EventType, ExecutionMetrics, GateSummary, Metadata, Phase, PhaseTimings,
    ProgressEvent, RunOutcome, RunResult, TaskSpec, Timestamp, TraceId,
};

/// Every field any event line may hold.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flat<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    timestamp: Timestamp,
    #[serde(borrow)]
    work_order_id: Cow<'a, str>,
    #[serde(borrow)]
    run_id: Cow<'a, str>,
    #[serde(borrow, default)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(default)]
    trace_id: Option<TraceId>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    task_spec: Option<TaskSpec>,
    #[serde(default)]
    result: Option<RunOutcome>,
    #[serde(default)]
    engine_result: Option<RunResult>,
    #[serde(default)]
    iterations: Option<u32>,
    #[serde(default)]
    duration_ms: Option<u64>,
    /// Boxed as `run_completed` keeps it: the struct stays small to move.
    #[serde(default)]
    metrics: Option<Box<ExecutionMetrics>>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    iteration: Option<u32>,
    #[serde(default)]
    max_iterations: Option<u32>,
    #[serde(default)]
    feedback: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    phase_timings: Option<PhaseTimings>,
    #[serde(default)]
    gate_results: Option<Vec<GateSummary>>,
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default)]
    gate: Option<String>,
    #[serde(default)]
    passed: Option<bool>,
    #[serde(default)]
    pr_url: Option<String>,
    #[serde(default)]
    ci_status: Option<String>,
}

/// Why a line is not an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotAnEvent {
    /// Not JSON, not an object, or a known type with missing or bad fields.
    Malformed,
    /// An object whose `type` is no event type.
    UnknownType(String),
}

/// What earlier lines leave for later ones: the ids seen and the last
/// timestamp.
#[derive(Debug, Default)]
pub(super) struct ParseCache {
    pub(super) ids: Interner,
    pub(super) timestamps: LastTimestamp,
}

/// Ids seen so far, so that a run's events share one `Arc` per id.
#[derive(Debug, Default)]
pub(super) struct Interner {
    ids: HashMap<Box<str>, Arc<str>>,
    /// Bytes of the ids in `ids`.
    bytes: usize,
    /// The last ids handed out, oldest overwritten first.
    recent: [Arc<str>; RECENT],
    next_recent: usize,
}

/// Ids compared by value before the table is looked at.
const RECENT: usize = 8;

/// Distinct ids kept at most; past it the table starts afresh (a
/// journal of a huge fleet costs allocations, not memory).
const MAX_IDS: usize = 16_384;

/// Bytes of ids kept at most, likewise: ids are as long as a line may be,
/// and 16,384 of a megabyte each would be 16 GiB.
const MAX_ID_BYTES: usize = 4 << 20;

/// An event's three ids, interned.
pub(super) struct EventIds {
    pub(super) work_order_id: Arc<str>,
    pub(super) run_id: Arc<str>,
    pub(super) correlation_id: Arc<str>,
}

impl Interner {
    /// The ids of an event; no correlation id means the run id.
    pub(super) fn event_ids(
        &mut self,
        work_order_id: &str,
        run_id: &str,
        correlation_id: Option<&str>,
    ) -> EventIds {
        let run_id = self.get(run_id);
        let correlation_id = match correlation_id {
            // Usually the run id itself (no correlation id in context).
            Some(id) if id == &*run_id => run_id.clone(),
            Some(id) => self.get(id),
            None => run_id.clone(),
        };
        EventIds {
            work_order_id: self.get(work_order_id),
            run_id,
            correlation_id,
        }
    }

    fn get(&mut self, id: &str) -> Arc<str> {
        // Consecutive lines are mostly about the same few runs: compare with
        // the last ids handed out before hashing (SipHash, since a journal
        // file is input like any other).
        if let Some(arc) = self.recent.iter().find(|a| ***a == *id) {
            return arc.clone();
        }
        let arc = self.lookup(id);
        self.recent[self.next_recent] = arc.clone();
        self.next_recent = (self.next_recent + 1) % RECENT;
        arc
    }

    fn lookup(&mut self, id: &str) -> Arc<str> {
        if let Some(arc) = self.ids.get(id) {
            return arc.clone();
        }
        if self.ids.len() >= MAX_IDS || self.bytes + id.len() > MAX_ID_BYTES {
            self.ids.clear();
            self.bytes = 0;
        }
        let arc: Arc<str> = Arc::from(id);
        if id.len() <= MAX_ID_BYTES {
            self.ids.insert(Box::from(id), arc.clone());
            self.bytes += id.len();
        }
        arc
    }
}

/// Parses one line (without its newline).
pub(super) fn parse(line: &[u8], cache: &mut ParseCache) -> Result<JournalRecord, NotAnEvent> {
    // One validation of the whole line, then `from_str`, which trusts it:
    // `from_slice` validates every string on its own, and those many short
    // calls cost a sixth of a line's parse.
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(NotAnEvent::Malformed);
    };
    if let Some(record) = scan(text, cache) {
        return Ok(record);
    }
    Ok(JournalRecord {
        seq: seq_of(line),
        event: parse_with_serde(text, &mut cache.ids)?,
    })
}

/// Parses any line serde can read as an event.
pub(super) fn parse_with_serde(
    text: &str,
    ids: &mut Interner,
) -> Result<ProgressEvent, NotAnEvent> {
    let mut flat: Flat<'_> = match serde_json::from_str(text) {
        Ok(flat) => flat,
        Err(_) => return Err(classify(text.as_bytes())),
    };
    let Some(ty) = EventType::parse(&flat.ty) else {
        return Err(NotAnEvent::UnknownType(flat.ty.chars().take(64).collect()));
    };
    let kind = kind(ty, &mut flat)?;
    let EventIds {
        work_order_id,
        run_id,
        correlation_id,
    } = ids.event_ids(
        &flat.work_order_id,
        &flat.run_id,
        flat.correlation_id.as_deref(),
    );
    Ok(ProgressEvent {
        timestamp: flat.timestamp,
        work_order_id,
        run_id,
        correlation_id,
        trace_id: flat.trace_id,
        metadata: flat.metadata.take().map(Arc::new),
        kind,
    })
}

/// The payload of an event of type `ty`; its required fields must be there.
fn kind(ty: EventType, p: &mut Flat<'_>) -> Result<EventKind, NotAnEvent> {
    Ok(match ty {
        EventType::RunStarted => EventKind::RunStarted {
            task_spec: need(p.task_spec.take())?,
        },
        EventType::RunCompleted => EventKind::RunCompleted {
            result: need(p.result.take())?,
            engine_result: need(p.engine_result.take())?,
            iterations: need(p.iterations.take())?,
            duration_ms: need(p.duration_ms.take())?,
            metrics: need(p.metrics.take())?,
        },
        EventType::RunCanceled => EventKind::RunCanceled {
            reason: need(p.reason.take())?,
        },
        EventType::RunFailed => EventKind::RunFailed {
            error: need(p.error.take())?,
        },
        EventType::IterationStarted => EventKind::IterationStarted {
            iteration: need(p.iteration.take())?,
            max_iterations: need(p.max_iterations.take())?,
            feedback: p.feedback.take(),
        },
        EventType::IterationCompleted => EventKind::IterationCompleted {
            iteration: need(p.iteration.take())?,
            success: need(p.success.take())?,
            phase_timings: need(p.phase_timings.take())?,
            gate_results: p.gate_results.take().unwrap_or_default(),
        },
        EventType::PhaseStarted => EventKind::PhaseStarted {
            iteration: need(p.iteration.take())?,
            phase: need(p.phase.take())?,
        },
        EventType::PhaseCompleted => EventKind::PhaseCompleted {
            iteration: need(p.iteration.take())?,
            phase: need(p.phase.take())?,
            success: need(p.success.take())?,
            duration_ms: need(p.duration_ms.take())?,
        },
        EventType::GateChecked => EventKind::GateChecked {
            iteration: need(p.iteration.take())?,
            gate: need(p.gate.take())?,
            passed: need(p.passed.take())?,
            duration_ms: p.duration_ms.take(),
        },
        EventType::DeliveryStarted => EventKind::DeliveryStarted,
        EventType::DeliveryCompleted => EventKind::DeliveryCompleted {
            success: need(p.success.take())?,
            pr_url: p.pr_url.take(),
            ci_status: p.ci_status.take(),
        },
    })
}

/// A required field.
fn need<T>(value: Option<T>) -> Result<T, NotAnEvent> {
    value.ok_or(NotAnEvent::Malformed)
}

/// The `seq` of a line, read from its start, where `/ws` messages and the
/// journal put it (right after `type`).
pub(super) fn seq_of(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    let head = &line[..line.len().min(64)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Why a line that did not parse as an event is not one.
fn classify(line: &[u8]) -> NotAnEvent {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        ty: Cow<'a, str>,
    }
    match serde_json::from_slice::<Typed<'_>>(line) {
        Ok(Typed { ty }) if EventType::parse(&ty).is_none() => {
            NotAnEvent::UnknownType(ty.chars().take(64).collect())
        }
        _ => NotAnEvent::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Strategy;

    #[test]
    fn the_id_table_is_bounded_in_bytes_as_well_as_in_ids() {
        let mut ids = Interner::default();
        for i in 0..200 {
            let id = format!("{i}{}", "x".repeat(64 << 10));
            assert_eq!(&*ids.get(&id), id.as_str());
            assert!(
                ids.bytes <= MAX_ID_BYTES,
                "{} bytes after {i} ids",
                ids.bytes
            );
        }
        assert!(ids.ids.len() < 200);
    }

    fn samples() -> Vec<ProgressEvent> {
        let kinds = vec![
            EventKind::RunStarted {
                task_spec: TaskSpec::new("g\u{e9}\"\\n", Strategy::Ralph, 3),
            },
            EventKind::RunCompleted {
                result: RunOutcome::Failed,
                engine_result: RunResult::FailedBuild,
                iterations: 2,
                duration_ms: 1234,
                metrics: Box::new(ExecutionMetrics {
                    total_duration_ms: 1200,
                    iteration_count: 2,
                    phase_breakdown: PhaseTimings::default(),
                    agent_metrics: Some(serde_json::json!({"tokensIn": 5})),
                }),
            },
            EventKind::RunCanceled { reason: "r".into() },
            EventKind::RunFailed { error: "e".into() },
            EventKind::IterationStarted {
                iteration: 2,
                max_iterations: 3,
                feedback: Some("f".into()),
            },
            EventKind::IterationStarted {
                iteration: 1,
                max_iterations: 3,
                feedback: None,
            },
            EventKind::IterationCompleted {
                iteration: 1,
                success: false,
                phase_timings: PhaseTimings::default(),
                gate_results: vec![GateSummary {
                    name: "lint".into(),
                    passed: true,
                    duration_ms: Some(3),
                }],
            },
            EventKind::PhaseStarted {
                iteration: 1,
                phase: Phase::Snapshot,
            },
            EventKind::PhaseCompleted {
                iteration: 1,
                phase: Phase::Verify,
                success: false,
                duration_ms: 12,
            },
            EventKind::GateChecked {
                iteration: 1,
                gate: "unit-tests".into(),
                passed: true,
                duration_ms: None,
            },
            EventKind::GateChecked {
                iteration: 1,
                gate: "lint".into(),
                passed: false,
                duration_ms: Some(7),
            },
            EventKind::DeliveryStarted,
            EventKind::DeliveryCompleted {
                success: true,
                pr_url: Some("https://example.com/pr/1".into()),
                ci_status: None,
            },
        ];
        kinds
            .into_iter()
            .map(|kind| {
                let mut event = ProgressEvent::new("wo", "run", kind);
                event.correlation_id = Arc::from("req-1");
                event
            })
            .collect()
    }

    fn event_of(line: &str, cache: &mut ParseCache) -> Result<ProgressEvent, NotAnEvent> {
        parse(line.as_bytes(), cache).map(|record| record.event)
    }

    #[test]
    fn both_parsers_read_every_event_type_as_progress_events_own_deserialize_does() {
        // `parse` takes most of these lines by the scan; the serde parser
        // behind it is held to the same events on its own.
        let mut ids = ParseCache::default();
        let mut serde_ids = Interner::default();
        for mut event in samples() {
            for with_metadata in [false, true] {
                if with_metadata {
                    let mut m = Metadata::new();
                    m.insert("k".into(), serde_json::json!([1, "x"]));
                    event.metadata = Some(Arc::new(m));
                }
                let line = crate::ws::protocol::event_message(9, &event);
                let ours = event_of(&line, &mut ids);
                let flat = parse_with_serde(&line, &mut serde_ids);
                let theirs: Result<ProgressEvent, _> = serde_json::from_str(&line);
                assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{line}");
                assert_eq!(flat.as_ref().ok(), theirs.as_ref().ok(), "{line}");
                assert_eq!(ours.ok().as_ref(), Some(&event), "{line}");
            }
        }
    }

    #[test]
    fn the_seq_is_read_from_the_start_of_a_ws_line() {
        assert_eq!(
            seq_of(br#"{"type":"run:started","seq":12345,"timestamp":""#),
            Some(12345)
        );
        assert_eq!(seq_of(br#"{"type":"run_started","timestamp":"x"}"#), None);
    }

    #[test]
    fn a_known_type_without_its_fields_is_malformed_and_an_unknown_type_is_named() {
        let mut ids = ParseCache::default();
        let base = r#""timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"w","runId":"r""#;
        let line = format!(r#"{{"type":"phase:completed",{base},"iteration":1}}"#);
        assert_eq!(event_of(&line, &mut ids).err(), Some(NotAnEvent::Malformed));
        let line = format!(r#"{{"type":"run:paused",{base}}}"#);
        assert_eq!(
            event_of(&line, &mut ids).err(),
            Some(NotAnEvent::UnknownType("run:paused".into()))
        );
        assert_eq!(event_of("[]", &mut ids).err(), Some(NotAnEvent::Malformed));
    }
}
