//! The fast path of journal parsing: a line in exactly the shape our own
//! encoder writes, read field by field in that order, without serde.
//!
//! serde's derived struct parser spends most of a line matching keys
//! against a flat struct of every optional field, and far more on the
//! nested payloads (an `iteration:completed` with five gates cost ten
//! thousand instructions); here each key is a fixed byte string compared
//! once. Anything else (another field order, whitespace, an escape in a
//! string, a number serde would refuse, `null`, `metadata`) makes the scan
//! give up, and the line goes to the serde parser, which decides. So the
//! scan accepts a subset of what serde accepts and must read it the same:
//! a unit test holds the two to each other.

use std::str::FromStr;

use crate::event::{
    EventKind, ExecutionMetrics, GateSummary, Phase, PhaseTimings, ProgressEvent, TaskSpec,
    Timestamp, TraceId,
};

use super::JournalRecord;
use super::parse::{EventIds, ParseCache};

/// Reads `line` if it has one of the shapes the scan knows; `None` hands
/// it to the serde parser.
pub(super) fn scan(line: &str, cache: &mut ParseCache) -> Option<JournalRecord> {
    let mut at = Cursor { line, at: 0 };
    at.expect(br#"{"type":""#)?;
    let ty = at.string()?;
    at.expect(br#","seq":"#)?;
    let seq = at.number()?;
    at.expect(br#","timestamp":""#)?;
    let timestamp = cache.timestamps.get(at.string()?)?;
    at.expect(br#","workOrderId":""#)?;
    let work_order_id = at.string()?;
    at.expect(br#","runId":""#)?;
    let run_id = at.string()?;
    at.expect(br#","correlationId":""#)?;
    let correlation_id = at.string()?;
    let trace_id = match at.optional(|at| at.string_field(br#","traceId":""#))? {
        // Anything but an id is serde's to refuse.
        Some(hex) => Some(TraceId::from_hex(hex)?),
        None => None,
    };
    let kind = match ty {
        "phase:started" => EventKind::PhaseStarted {
            iteration: at.u32_field(br#","iteration":"#)?,
            phase: at.phase()?,
        },
        "phase:completed" => EventKind::PhaseCompleted {
            iteration: at.u32_field(br#","iteration":"#)?,
            phase: at.phase()?,
            success: at.bool_field(br#","success":"#)?,
            duration_ms: at.u64_field(br#","durationMs":"#)?,
        },
        "gate:checked" => EventKind::GateChecked {
            iteration: at.u32_field(br#","iteration":"#)?,
            gate: at.string_field(br#","gate":""#)?.to_owned(),
            passed: at.bool_field(br#","passed":"#)?,
            duration_ms: at.optional(|at| at.u64_field(br#","durationMs":"#))?,
        },
        "iteration:started" => EventKind::IterationStarted {
            iteration: at.u32_field(br#","iteration":"#)?,
            max_iterations: at.u32_field(br#","maxIterations":"#)?,
            feedback: at
                .optional(|at| at.string_field(br#","feedback":""#))?
                .map(str::to_owned),
        },
        "delivery:started" => EventKind::DeliveryStarted,
        "delivery:completed" => EventKind::DeliveryCompleted {
            success: at.bool_field(br#","success":"#)?,
            pr_url: at
                .optional(|at| at.string_field(br#","prUrl":""#))?
                .map(str::to_owned),
            ci_status: at
                .optional(|at| at.string_field(br#","ciStatus":""#))?
                .map(str::to_owned),
        },
        "iteration:completed" => EventKind::IterationCompleted {
            iteration: at.u32_field(br#","iteration":"#)?,
            success: at.bool_field(br#","success":"#)?,
            phase_timings: {
                at.expect(br#","phaseTimings":"#)?;
                at.phase_timings()?
            },
            gate_results: {
                at.expect(br#","gateResults":"#)?;
                at.gate_results()?
            },
        },
        "run:started" => EventKind::RunStarted {
            task_spec: TaskSpec {
                goal: at.string_field(br#","taskSpec":{"goal":""#)?.to_owned(),
                strategy: at.wire(br#","strategy":""#)?,
                max_iterations: {
                    let max = at.u32_field(br#","maxIterations":"#)?;
                    at.expect(b"}")?;
                    max
                },
            },
        },
        "run:completed" => EventKind::RunCompleted {
            result: at.wire(br#","result":""#)?,
            engine_result: at.wire(br#","engineResult":""#)?,
            iterations: at.u32_field(br#","iterations":"#)?,
            duration_ms: at.u64_field(br#","durationMs":"#)?,
            metrics: Box::new(ExecutionMetrics {
                total_duration_ms: at.u64_field(br#","metrics":{"totalDurationMs":"#)?,
                iteration_count: at.u32_field(br#","iterationCount":"#)?,
                phase_breakdown: {
                    at.expect(br#","phaseBreakdown":"#)?;
                    at.phase_timings()?
                },
                agent_metrics: {
                    let agent = at.optional(|at| {
                        at.expect(br#","agentMetrics":"#)?;
                        at.json_value()
                    })?;
                    at.expect(b"}")?;
                    agent
                },
            }),
        },
        "run:failed" => EventKind::RunFailed {
            error: at.string_field(br#","error":""#)?.to_owned(),
        },
        "run:canceled" => EventKind::RunCanceled {
            reason: at.string_field(br#","reason":""#)?.to_owned(),
        },
        _ => return None,
    };
    // The object ends the line: trailing whitespace, a `metadata` field or
    // anything else is serde's to judge.
    at.expect(b"}")?;
    if at.at != line.len() {
        return None;
    }
    let EventIds {
        work_order_id,
        run_id,
        correlation_id,
    } = cache
        .ids
        .event_ids(work_order_id, run_id, Some(correlation_id));
    Some(JournalRecord {
        seq: Some(seq),
        event: ProgressEvent {
            timestamp,
            work_order_id,
            run_id,
            correlation_id,
            trace_id,
            metadata: None,
            kind,
        },
    })
}

/// Panics if the scan reads `line` and the serde parser, which takes every
/// line the scan gives up on, reads it otherwise or refuses it. For the
/// fuzzer and the tests.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn assert_agrees_with_serde(line: &str) {
    use super::parse::{Interner, parse_with_serde, seq_of};

    let Some(ours) = scan(line, &mut ParseCache::default()) else {
        return;
    };
    let theirs = parse_with_serde(line, &mut Interner::default());
    assert_eq!(Ok(&ours.event), theirs.as_ref(), "the scan misreads {line}");
    assert_eq!(
        ours.seq,
        seq_of(line.as_bytes()),
        "the scan misreads seq in {line}"
    );
}

/// A position in a line.
struct Cursor<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.line.as_bytes()[self.at..]
    }

    /// Steps over `literal` if the line continues with it. A fixed-size
    /// array, so the comparison is a few word compares inlined, not a call
    /// to `memcmp` (a fifth of a scanned line's instructions).
    fn expect<const N: usize>(&mut self, literal: &[u8; N]) -> Option<()> {
        let next: &[u8; N] = self.rest().first_chunk()?;
        (next == literal).then(|| {
            self.at += N;
        })
    }

    /// The rest of a string whose opening quote is behind the cursor, up
    /// to its closing quote. `None` for an escape (serde unescapes it) or a
    /// control character (serde refuses it).
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' || rest[..end].iter().any(|&b| b < 0x20) {
            return None;
        }
        let start = self.at;
        self.at += end + 1;
        // Both ends are ASCII quotes, so on character boundaries.
        self.line.get(start..start + end)
    }

    /// A JSON unsigned integer as serde reads one into a `u64`: digits,
    /// no leading zero, no overflow. Fractions and exponents are not
    /// digits, so the next `expect` fails on them and serde decides.
    fn number(&mut self) -> Option<u64> {
        let rest = self.rest();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for &digit in &rest[..digits] {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        self.at += digits;
        Some(value)
    }

    fn u64_field<const N: usize>(&mut self, key: &[u8; N]) -> Option<u64> {
        self.expect(key)?;
        self.number()
    }

    fn u32_field<const N: usize>(&mut self, key: &[u8; N]) -> Option<u32> {
        self.u64_field(key)?.try_into().ok()
    }

    fn bool_field<const N: usize>(&mut self, key: &[u8; N]) -> Option<bool> {
        self.expect(key)?;
        if self.expect(b"true").is_some() {
            Some(true)
        } else {
            self.expect(b"false").map(|()| false)
        }
    }

    fn string_field<const N: usize>(&mut self, key: &[u8; N]) -> Option<&'a str> {
        self.expect(key)?;
        self.string()
    }

    fn phase(&mut self) -> Option<Phase> {
        self.wire(br#","phase":""#)
    }

    /// A string field holding one of the wire enums.
    fn wire<T: FromStr, const N: usize>(&mut self, key: &[u8; N]) -> Option<T> {
        self.string_field(key)?.parse().ok()
    }

    /// `{"build":N,...}` with the phases the encoder writes, in its order.
    fn phase_timings(&mut self) -> Option<PhaseTimings> {
        self.expect(b"{")?;
        let mut first = true;
        let timings = PhaseTimings {
            build: self.timing(&mut first, br#""build":"#)?,
            snapshot: self.timing(&mut first, br#""snapshot":"#)?,
            verify: self.timing(&mut first, br#""verify":"#)?,
            feedback: self.timing(&mut first, br#""feedback":"#)?,
        };
        self.expect(b"}")?;
        Some(timings)
    }

    /// One phase of [`phase_timings`](Self::phase_timings): `Some(None)`
    /// if absent, `None` if present but malformed.
    fn timing<const N: usize>(&mut self, first: &mut bool, key: &[u8; N]) -> Option<Option<u64>> {
        let start = self.at;
        if (*first || self.expect(b",").is_some()) && self.expect(key).is_some() {
            *first = false;
            return self.number().map(Some);
        }
        self.at = start;
        Some(None)
    }

    /// `[{"name":"lint","passed":true,"durationMs":7},...]`.
    fn gate_results(&mut self) -> Option<Vec<GateSummary>> {
        self.expect(b"[")?;
        let mut gates = Vec::new();
        if self.expect(b"]").is_some() {
            return Some(gates);
        }
        loop {
            gates.push(GateSummary {
                name: self.string_field(br#"{"name":""#)?.to_owned(),
                passed: self.bool_field(br#","passed":"#)?,
                duration_ms: self.optional(|at| at.u64_field(br#","durationMs":"#))?,
            });
            self.expect(b"}")?;
            if self.expect(b"]").is_some() {
                return Some(gates);
            }
            self.expect(b",")?;
        }
    }

    /// Any JSON value but `null`, read by serde_json on its own. A value
    /// with more than [`MAX_NESTING`] opening brackets in all (inside
    /// strings too: a bound on its depth, not the depth) is left to the
    /// whole-line parse, whose recursion limit counts the levels around
    /// it too.
    fn json_value(&mut self) -> Option<serde_json::Value> {
        let rest = &self.line[self.at..];
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        let value = values.next()?.ok()?;
        let used = values.byte_offset();
        let nesting = rest.as_bytes()[..used]
            .iter()
            .filter(|&&b| b == b'{' || b == b'[')
            .count();
        if value.is_null() || nesting > MAX_NESTING {
            return None;
        }
        self.at += used;
        Some(value)
    }

    /// A field the encoder leaves out when it has no value: `Some(None)`
    /// if it is absent (the line goes on with something else), `None` if
    /// it is there but malformed.
    fn optional<T>(&mut self, field: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        let start = self.at;
        match field(self) {
            Some(value) => Some(Some(value)),
            // The key did not match: something else follows.
            None if self.at == start => Some(None),
            None => None,
        }
    }
}

/// Opening brackets, counted anywhere in it, that a scanned `agentMetrics`
/// may hold: a conservative bound on its depth (serde_json's own limit is
/// 128 levels for the whole line).
const MAX_NESTING: usize = 32;

/// The last timestamp read: the lines of a burst share one millisecond,
/// so most lines skip the RFC 3339 parse.
#[derive(Debug, Default)]
pub(super) struct LastTimestamp {
    text: String,
    value: Option<Timestamp>,
}

impl LastTimestamp {
    pub(super) fn get(&mut self, text: &str) -> Option<Timestamp> {
        if self.value.is_some() && self.text == text {
            return self.value;
        }
        let value: Timestamp = text.parse().ok()?;
        self.text.clear();
        self.text.push_str(text);
        self.value = Some(value);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ProgressEvent;

    /// The serde parser's reading of `line`, seq included.
    fn serde_reading(line: &str) -> Option<(Option<u64>, ProgressEvent)> {
        #[derive(serde::Deserialize)]
        struct Seq {
            seq: Option<u64>,
        }
        let event: ProgressEvent = serde_json::from_str(line).ok()?;
        let seq: Seq = serde_json::from_str(line).ok()?;
        Some((seq.seq, event))
    }

    fn lines() -> Vec<String> {
        let head = r#"{"type":"TYPE","seq":42,"timestamp":"2026-12-02T01:00:00.123Z","workOrderId":"wo-1","runId":"run-1","correlationId":"run-1""#;
        let other = head.replace(r#""correlationId":"run-1""#, r#""correlationId":"req-9""#);
        let traced = head.replace(
            r#""correlationId":"run-1""#,
            r#""correlationId":"run-1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736""#,
        );
        let bodies = [
            ("phase:started", r#","iteration":1,"phase":"build"}"#),
            (
                "phase:completed",
                r#","iteration":2,"phase":"verify","success":false,"durationMs":12992}"#,
            ),
            (
                "gate:checked",
                r#","iteration":1,"gate":"unit-tests","passed":true,"durationMs":7}"#,
            ),
            (
                "gate:checked",
                r#","iteration":1,"gate":"lint","passed":false}"#,
            ),
            ("iteration:started", r#","iteration":1,"maxIterations":3}"#),
            (
                "iteration:started",
                r#","iteration":2,"maxIterations":3,"feedback":"fix the tests"}"#,
            ),
            ("delivery:started", "}"),
            ("delivery:completed", r#","success":true}"#),
            (
                "delivery:completed",
                r#","success":true,"prUrl":"https://x/pr/1","ciStatus":"green"}"#,
            ),
            (
                "delivery:completed",
                r#","success":false,"ciStatus":"red"}"#,
            ),
            ("run:failed", r#","error":"disk full"}"#),
            (
                "run:started",
                r#","taskSpec":{"goal":"Cut cold start","strategy":"ralph","maxIterations":3}}"#,
            ),
            (
                "run:completed",
                r#","result":"failed","engineResult":"failed_build","iterations":2,"durationMs":5,"metrics":{"totalDurationMs":5,"iterationCount":2,"phaseBreakdown":{"build":1,"verify":4}}}"#,
            ),
            (
                "run:completed",
                r#","result":"succeeded","engineResult":"passed","iterations":1,"durationMs":9,"metrics":{"totalDurationMs":9,"iterationCount":1,"phaseBreakdown":{},"agentMetrics":{"tokensIn":5,"model":"x","nested":[1.5,{"a":null}]}}}"#,
            ),
            (
                "iteration:completed",
                r#","iteration":1,"success":false,"phaseTimings":{"build":12992,"snapshot":1052,"verify":34808,"feedback":4986},"gateResults":[{"name":"lint","passed":true,"durationMs":7806},{"name":"unit-tests","passed":false}]}"#,
            ),
            (
                "iteration:completed",
                r#","iteration":2,"success":true,"phaseTimings":{"snapshot":3},"gateResults":[]}"#,
            ),
            ("run:canceled", r#","reason":"user \u00e9"}"#),
        ];
        bodies
            .iter()
            .flat_map(|(ty, body)| {
                [head, other.as_str(), traced.as_str()]
                    .map(|h| format!("{}{body}", h.replace("TYPE", ty)))
            })
            .collect()
    }

    #[test]
    fn the_scan_reads_the_encoders_small_events_and_agrees_with_serde() {
        let mut cache = ParseCache::default();
        let mut scanned = 0;
        for line in lines() {
            let theirs = serde_reading(&line).expect("serde reads every sample");
            match scan(&line, &mut cache) {
                Some(ours) => {
                    scanned += 1;
                    assert_eq!((ours.seq, ours.event), theirs, "{line}");
                }
                // Only the escaped string is serde's.
                None => assert!(line.contains('\\'), "not scanned: {line}"),
            }
        }
        assert_eq!(scanned, lines().len() - 3);
    }

    #[test]
    fn a_trace_id_that_is_no_trace_id_is_refused_by_the_scan_and_by_serde_alike() {
        let mut cache = ParseCache::default();
        for bad in ["", "00000000000000000000000000000000", "4bf92f35", "zz"] {
            let line = format!(
                r#"{{"type":"delivery:started","seq":1,"timestamp":"2026-12-02T01:00:00.123Z","workOrderId":"w","runId":"r","correlationId":"r","traceId":"{bad}"}}"#
            );
            assert!(scan(&line, &mut cache).is_none(), "{line}");
            assert!(serde_reading(&line).is_none(), "{line}");
        }
    }

    #[test]
    fn the_scan_accepts_no_line_that_serde_reads_otherwise_or_refuses() {
        // Every single-byte change, deletion and insertion of each sample:
        // whatever the scan accepts, serde reads as the same event.
        let replacements: &[u8] = b"0 1 9 \" \\ , : } { a - . e \t\x01\x7f";
        let mut cache = ParseCache::default();
        let mut accepted = 0;
        let mut tried = 0;
        for line in lines() {
            let bytes = line.as_bytes();
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for i in 0..=bytes.len() {
                for &r in replacements {
                    let mut v = bytes.to_vec();
                    v.insert(i, r);
                    variants.push(v);
                    if i < bytes.len() {
                        let mut v = bytes.to_vec();
                        v[i] = r;
                        variants.push(v);
                    }
                }
                if i < bytes.len() {
                    let mut v = bytes.to_vec();
                    v.remove(i);
                    variants.push(v);
                }
            }
            for variant in variants {
                let Ok(text) = std::str::from_utf8(&variant) else {
                    continue;
                };
                tried += 1;
                if scan(text, &mut cache).is_some() {
                    accepted += 1;
                }
                assert_agrees_with_serde(text);
            }
        }
        // The changes the scan takes (digits in numbers and ids, letters in
        // strings) are many; the rest go to serde.
        assert!(
            accepted > 1_000 && accepted < tried / 2,
            "{accepted} of {tried}"
        );
    }

    #[test]
    fn deeply_nested_agent_metrics_are_left_to_serde_and_its_recursion_limit() {
        let mut cache = ParseCache::default();
        for depth in [MAX_NESTING + 1, 126, 200] {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let line = format!(
                r#"{{"type":"run:completed","seq":1,"timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"w","runId":"r","correlationId":"r","result":"failed","engineResult":"failed_build","iterations":1,"durationMs":5,"metrics":{{"totalDurationMs":5,"iterationCount":1,"phaseBreakdown":{{}},"agentMetrics":{nested}}}}}"#
            );
            assert!(scan(&line, &mut cache).is_none(), "depth {depth}");
            assert_agrees_with_serde(&line);
        }
    }

    #[test]
    fn a_repeated_timestamp_reads_the_same_and_a_new_one_is_read_afresh() {
        let mut last = LastTimestamp::default();
        let a = last.get("2026-12-02T01:00:00.123Z");
        assert_eq!(a, Some(Timestamp::from_millis(1_796_173_200_123)));
        assert_eq!(last.get("2026-12-02T01:00:00.123Z"), a);
        assert_ne!(last.get("2026-12-02T01:00:00.124Z"), a);
        assert_eq!(last.get("not a time"), None);
        assert_ne!(last.get("2026-12-02T01:00:00.124Z"), None);
    }
}
