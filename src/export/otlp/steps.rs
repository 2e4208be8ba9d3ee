//! What crosses from the drain thread to the exporter thread: each event
//! of a traced run as a 24-byte [`Step`], its strings in one text buffer
//! and its metadata in one list, read back in order as [`Event`]s.
//!
//! The drain thread only packs an event's numbers into a step; the
//! exporter thread follows the runs' open spans and builds them
//! (`builder/`). Building them on the drain thread cost it a tenth more
//! per event than without OTLP: a run's spans were a few hundred stores
//! and a state kept per run, where a step is three.

use std::sync::Arc;

use crate::event::{
    EventKind, EventType, Metadata, Phase, ProgressEvent, RunOutcome, RunResult, SpanId, Strategy,
    TraceId,
};

/// What a step is: an event of a run (by its type), or one of the two
/// steps that stand for no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    Event(EventType),
    /// A run's first step: its ids and trace are the next [`Head`].
    Open,
    /// Every open run ends here, unfinished: the pipeline stops.
    Finish,
}

/// The codes of [`What::Open`] and [`What::Finish`], after those of the
/// event types ([`EventType::index`]).
const OPEN: u64 = EventType::COUNT as u64;
const FINISH: u64 = OPEN + 1;

impl What {
    fn code(self) -> u64 {
        match self {
            What::Event(ty) => ty.index() as u64,
            What::Open => OPEN,
            What::Finish => FINISH,
        }
    }

    fn of_code(code: u64) -> Option<What> {
        match code {
            OPEN => Some(What::Open),
            FINISH => Some(What::Finish),
            code => EventType::ALL.get(code as usize).copied().map(What::Event),
        }
    }
}

/// `success` or `passed`.
const SUCCESS: u8 = 1;
/// The step's metadata is the next in [`Steps::metadata`].
const METADATA: u8 = 2;
/// A gate check's duration is known.
const TIMED: u8 = 4;
/// A phase's duration is its measured one, in nanoseconds.
const EXACT: u8 = 4;
/// A delivery's pull request, then its CI status, are the next texts.
const PR_URL: u8 = 8;
const CI_STATUS: u8 = 16;

/// One event of a traced run, in 24 bytes: three words the drain thread
/// writes with three stores.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Step {
    /// The tracker's slot for the run (low half) and an iteration, or
    /// `max_iterations` of a start, `iterations` of an end (high half).
    ids: u64,
    /// The event's time in milliseconds (the high 48 bits: until the
    /// year 10889), an engine result (4 bits), a phase, strategy or
    /// outcome (3), flags (5), what it is (4).
    head: u64,
    /// A duration: in milliseconds, or a phase's measured one in
    /// nanoseconds (flag [`EXACT`]).
    value: u64,
}

const _: () = assert!(std::mem::size_of::<Step>() == 24);
// Every code fits its bits.
const _: () = assert!(FINISH < 1 << WHAT_BITS);
const _: () = assert!(Phase::ALL.len() <= 8 && Strategy::ALL.len() <= 8);
const _: () = assert!(RunOutcome::ALL.len() <= 8 && RunResult::ALL.len() <= 16);

/// The room a batch's text keeps when emptied, at most.
const KEPT_TEXT: usize = 64 * 1024;

const WHAT_BITS: u32 = 4;
const FLAGS_SHIFT: u32 = 4;
const CODE_SHIFT: u32 = 9;
const CODE2_SHIFT: u32 = 12;
const AT_SHIFT: u32 = 16;

impl Step {
    #[inline]
    fn new(what: What, slot: u32, at_ms: u64) -> Step {
        Step {
            ids: u64::from(slot),
            head: at_ms.min(u64::MAX >> AT_SHIFT) << AT_SHIFT | what.code(),
            value: 0,
        }
    }

    #[inline]
    fn number(self, number: u32) -> Step {
        Step {
            ids: self.ids | u64::from(number) << 32,
            ..self
        }
    }

    #[inline]
    fn code(self, code: usize, code2: usize) -> Step {
        Step {
            head: self.head
                | (code as u64 & 0b111) << CODE_SHIFT
                | (code2 as u64 & 0b1111) << CODE2_SHIFT,
            ..self
        }
    }

    #[inline]
    fn flags(self, flags: u8) -> Step {
        Step {
            head: self.head | u64::from(flags & 0b1_1111) << FLAGS_SHIFT,
            ..self
        }
    }

    #[inline]
    fn value(self, value: u64) -> Step {
        Step { value, ..self }
    }

    /// The step of an event without strings (the drain thread's short
    /// path); `None` for the others. A `phase_completed` keeps its
    /// measured duration in nanoseconds when its milliseconds are those
    /// cut down, the event's milliseconds otherwise.
    #[inline]
    pub(crate) fn plain(
        slot: u32,
        at_ms: u64,
        kind: &EventKind,
        nanos: Option<u64>,
    ) -> Option<Step> {
        Some(match *kind {
            EventKind::PhaseStarted { iteration, phase } => {
                Step::new(What::Event(EventType::PhaseStarted), slot, at_ms)
                    .number(iteration)
                    .code(phase.index(), 0)
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => {
                let step = Step::new(What::Event(EventType::PhaseCompleted), slot, at_ms)
                    .number(iteration)
                    .code(phase.index(), 0);
                match nanos {
                    Some(nanos) if nanos / 1_000_000 == duration_ms => {
                        step.flags(flag(success, SUCCESS) | EXACT).value(nanos)
                    }
                    _ => step.flags(flag(success, SUCCESS)).value(duration_ms),
                }
            }
            EventKind::IterationStarted { iteration, .. } => {
                Step::new(What::Event(EventType::IterationStarted), slot, at_ms).number(iteration)
            }
            EventKind::IterationCompleted {
                iteration, success, ..
            } => Step::new(What::Event(EventType::IterationCompleted), slot, at_ms)
                .number(iteration)
                .flags(flag(success, SUCCESS)),
            EventKind::DeliveryStarted => {
                Step::new(What::Event(EventType::DeliveryStarted), slot, at_ms)
            }
            EventKind::RunCompleted {
                result,
                engine_result,
                iterations,
                duration_ms,
                ..
            } => Step::new(What::Event(EventType::RunCompleted), slot, at_ms)
                .code(result as usize, engine_result as usize)
                .number(iterations)
                .value(duration_ms),
            _ => return None,
        })
    }

    /// The tracker's slot for the run.
    pub(crate) fn slot(&self) -> u32 {
        self.ids as u32
    }

    fn get_number(&self) -> u32 {
        (self.ids >> 32) as u32
    }

    /// What it is; `None` for a code no step is written with.
    pub(crate) fn what(&self) -> Option<What> {
        What::of_code(self.head & ((1 << WHAT_BITS) - 1))
    }

    fn get_flags(&self) -> u8 {
        ((self.head >> FLAGS_SHIFT) & 0b1_1111) as u8
    }

    fn get_code(&self) -> usize {
        ((self.head >> CODE_SHIFT) & 0b111) as usize
    }

    fn get_code2(&self) -> usize {
        ((self.head >> CODE2_SHIFT) & 0b1111) as usize
    }

    fn at_ms(&self) -> u64 {
        self.head >> AT_SHIFT
    }
}

/// A run's ids and trace, for its [`What::Open`] step. Its ids cross as
/// the event's own `Arc`s: a reference count each, where copies were a
/// text each on the drain thread and an allocation each on the exporter
/// thread.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) trace_id: TraceId,
    /// The root span its handle chose, and the caller's span it nests in.
    pub(crate) root: Option<(SpanId, Option<SpanId>)>,
    pub(crate) work_order_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    /// Its correlation id, when not its run id.
    pub(crate) correlation_id: Option<Arc<str>>,
}

/// A step as the exporter thread reads it.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    Open {
        head: &'a Head,
    },
    RunStarted {
        strategy: Strategy,
        max_iterations: u32,
        goal: &'a str,
    },
    IterationStarted {
        iteration: u32,
    },
    IterationCompleted {
        iteration: u32,
        success: bool,
    },
    PhaseStarted {
        iteration: u32,
        phase: Phase,
    },
    PhaseCompleted {
        iteration: u32,
        phase: Phase,
        success: bool,
        duration_ms: u64,
        /// Nanoseconds.
        exact: u64,
    },
    GateChecked {
        iteration: u32,
        gate: &'a str,
        passed: bool,
        duration_ms: Option<u64>,
    },
    DeliveryStarted,
    DeliveryCompleted {
        success: bool,
        pr_url: Option<&'a str>,
        ci_status: Option<&'a str>,
    },
    RunCompleted {
        result: RunOutcome,
        engine_result: RunResult,
        iterations: u32,
        duration_ms: u64,
    },
    RunCanceled {
        reason: &'a str,
    },
    RunFailed {
        error: &'a str,
    },
    Finish,
}

/// One hand-off of steps.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    pub(crate) steps: Vec<Step>,
    /// Slots whose runs the exporter thread forgets before these steps:
    /// their steps were dropped (see `feed/`).
    pub(crate) discards: Vec<u32>,
    /// The spans the exporter thread ends reading these steps, counted
    /// dropped if they are.
    pub(crate) closes: u64,
    heads: Vec<Head>,
    text: String,
    /// Where each text ends in `text`; each starts where the last ended.
    text_ends: Vec<u32>,
    metadata: Vec<Arc<Metadata>>,
}

impl Steps {
    /// Empty, with room for `steps` steps.
    pub(crate) fn with_capacity(steps: usize) -> Steps {
        Steps {
            steps: Vec::with_capacity(steps),
            heads: Vec::with_capacity(steps / 8),
            text: String::with_capacity(steps * 8),
            text_ends: Vec::with_capacity(steps / 4),
            ..Steps::default()
        }
    }

    /// Empties it, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.steps.clear();
        self.discards.clear();
        self.closes = 0;
        self.heads.clear();
        // One huge reason or goal must not keep its room in every batch.
        if self.text.capacity() > KEPT_TEXT {
            self.text = String::with_capacity(KEPT_TEXT);
        }
        self.text.clear();
        self.text_ends.clear();
        self.metadata.clear();
    }

    /// Moves what it holds to `out` (emptied first), one copy a vector,
    /// and empties itself, keeping its room.
    pub(crate) fn move_to(&mut self, out: &mut Steps) {
        out.clear();
        out.steps.extend_from_slice(&self.steps);
        out.discards.append(&mut self.discards);
        out.closes = self.closes;
        out.heads.append(&mut self.heads);
        out.text.push_str(&self.text);
        out.text_ends.extend_from_slice(&self.text_ends);
        out.metadata.append(&mut self.metadata);
        self.clear();
    }

    #[inline]
    fn text(&mut self, s: &str) {
        self.text.push_str(s);
        self.text_ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    /// A run's first step, before its event's.
    pub(crate) fn open(&mut self, slot: u32, at_ms: u64, head: Head) {
        self.heads.push(head);
        self.steps.push(Step::new(What::Open, slot, at_ms));
    }

    #[inline]
    pub(crate) fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// The step of a gate check, its name kept.
    #[inline]
    pub(crate) fn gate_step(
        &mut self,
        slot: u32,
        at_ms: u64,
        iteration: u32,
        gate: &str,
        passed: bool,
        duration_ms: Option<u64>,
    ) -> Step {
        self.text(gate);
        Step::new(What::Event(EventType::GateChecked), slot, at_ms)
            .number(iteration)
            .flags(flag(passed, SUCCESS) | flag(duration_ms.is_some(), TIMED))
            .value(duration_ms.unwrap_or(0))
    }

    /// The step of any event; `nanos` is a phase's measured duration.
    pub(crate) fn event(&mut self, slot: u32, event: &ProgressEvent, nanos: Option<u64>) {
        let at_ms = event.timestamp.as_millis();
        let step = match &event.kind {
            EventKind::RunStarted { task_spec } => {
                self.text(&task_spec.goal);
                Step::new(What::Event(EventType::RunStarted), slot, at_ms)
                    .code(task_spec.strategy as usize, 0)
                    .number(task_spec.max_iterations)
            }
            EventKind::GateChecked {
                iteration,
                gate,
                passed,
                duration_ms,
            } => self.gate_step(slot, at_ms, *iteration, gate, *passed, *duration_ms),
            EventKind::DeliveryCompleted {
                success,
                pr_url,
                ci_status,
            } => {
                for s in [pr_url, ci_status].into_iter().flatten() {
                    self.text(s);
                }
                Step::new(What::Event(EventType::DeliveryCompleted), slot, at_ms).flags(
                    flag(*success, SUCCESS)
                        | flag(pr_url.is_some(), PR_URL)
                        | flag(ci_status.is_some(), CI_STATUS),
                )
            }
            EventKind::RunCanceled { reason } => {
                self.text(reason);
                Step::new(What::Event(EventType::RunCanceled), slot, at_ms)
            }
            EventKind::RunFailed { error } => {
                self.text(error);
                Step::new(What::Event(EventType::RunFailed), slot, at_ms)
            }
            EventKind::PhaseStarted { .. }
            | EventKind::PhaseCompleted { .. }
            | EventKind::IterationStarted { .. }
            | EventKind::IterationCompleted { .. }
            | EventKind::DeliveryStarted
            | EventKind::RunCompleted { .. } => {
                let Some(step) = Step::plain(slot, at_ms, &event.kind, nanos) else {
                    // `plain` makes the steps of these kinds: unreachable.
                    return;
                };
                step
            }
        };
        let step = match &event.metadata {
            Some(metadata) => {
                self.metadata.push(metadata.clone());
                step.flags(METADATA)
            }
            None => step,
        };
        self.steps.push(step);
    }

    /// The step that ends every open run at `at_ms`, unfinished.
    pub(crate) fn finish(&mut self, at_ms: u64) {
        self.steps.push(Step::new(What::Finish, 0, at_ms));
    }

    /// The steps in order: `f(slot, time in ns, metadata, event)`.
    pub(crate) fn read(&self, mut f: impl FnMut(u32, u64, Option<&Arc<Metadata>>, Event<'_>)) {
        let mut texts = Texts {
            text: &self.text,
            ends: self.text_ends.iter(),
            start: 0,
        };
        let mut heads = self.heads.iter();
        let mut metadata = self.metadata.iter();
        for step in &self.steps {
            let code = step.get_code();
            let flags = step.get_flags();
            let number = step.get_number();
            let success = flags & SUCCESS != 0;
            let Some(what) = step.what() else {
                // No step is written with such a code: unreachable.
                continue;
            };
            let event = match what {
                What::Open => {
                    let Some(head) = heads.next() else {
                        // Written with its step: unreachable.
                        continue;
                    };
                    Event::Open { head }
                }
                What::Event(EventType::RunStarted) => Event::RunStarted {
                    strategy: Strategy::ALL[code % Strategy::ALL.len()],
                    max_iterations: number,
                    goal: texts.next(),
                },
                What::Event(EventType::IterationStarted) => {
                    Event::IterationStarted { iteration: number }
                }
                What::Event(EventType::IterationCompleted) => Event::IterationCompleted {
                    iteration: number,
                    success,
                },
                What::Event(EventType::PhaseStarted) => Event::PhaseStarted {
                    iteration: number,
                    phase: Phase::ALL[code % Phase::ALL.len()],
                },
                What::Event(EventType::PhaseCompleted) => Event::PhaseCompleted {
                    iteration: number,
                    phase: Phase::ALL[code % Phase::ALL.len()],
                    success,
                    duration_ms: if flags & EXACT != 0 {
                        step.value / 1_000_000
                    } else {
                        step.value
                    },
                    exact: if flags & EXACT != 0 {
                        step.value
                    } else {
                        step.value.saturating_mul(1_000_000)
                    },
                },
                What::Event(EventType::GateChecked) => Event::GateChecked {
                    iteration: number,
                    gate: texts.next(),
                    passed: success,
                    duration_ms: (flags & TIMED != 0).then_some(step.value),
                },
                What::Event(EventType::DeliveryStarted) => Event::DeliveryStarted,
                What::Event(EventType::DeliveryCompleted) => Event::DeliveryCompleted {
                    success,
                    pr_url: (flags & PR_URL != 0).then(|| texts.next()),
                    ci_status: (flags & CI_STATUS != 0).then(|| texts.next()),
                },
                What::Event(EventType::RunCompleted) => Event::RunCompleted {
                    result: RunOutcome::ALL[code % RunOutcome::ALL.len()],
                    engine_result: RunResult::ALL[step.get_code2() % RunResult::ALL.len()],
                    iterations: number,
                    duration_ms: step.value,
                },
                What::Event(EventType::RunCanceled) => Event::RunCanceled {
                    reason: texts.next(),
                },
                What::Event(EventType::RunFailed) => Event::RunFailed {
                    error: texts.next(),
                },
                What::Finish => Event::Finish,
            };
            let metadata = if flags & METADATA != 0 {
                metadata.next()
            } else {
                None
            };
            f(
                step.slot(),
                step.at_ms().saturating_mul(1_000_000),
                metadata,
                event,
            );
        }
    }
}

fn flag(set: bool, flag: u8) -> u8 {
    if set { flag } else { 0 }
}

/// The texts of a batch, in the order they were written.
struct Texts<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, u32>,
    start: usize,
}

impl<'a> Texts<'a> {
    fn next(&mut self) -> &'a str {
        let Some(&end) = self.ends.next() else {
            // Written with their steps: unreachable.
            return "";
        };
        let end = end as usize;
        let s = self.text.get(self.start..end).unwrap_or_default();
        self.start = end;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecutionMetrics, TaskSpec, Timestamp};

    /// Writes each event as the feed does and reads it back.
    fn round_trip(events: &[(u32, EventKind, Option<u64>)]) -> Vec<String> {
        let mut steps = Steps::with_capacity(16);
        for (slot, kind, nanos) in events {
            let mut event = ProgressEvent::new("wo", "r", kind.clone());
            event.timestamp = Timestamp::from_millis(1_700_000_000_123);
            steps.event(*slot, &event, *nanos);
        }
        let mut read = Vec::new();
        steps.read(|slot, at, metadata, event| {
            assert_eq!(at, 1_700_000_000_123_000_000);
            assert!(metadata.is_none());
            read.push(format!("{slot} {event:?}"));
        });
        read
    }

    #[test]
    fn every_code_and_number_reads_back_as_written() {
        let mut events = Vec::new();
        let mut expected = Vec::new();
        for &strategy in Strategy::ALL {
            let task_spec = TaskSpec::new("goal", strategy, u32::MAX);
            events.push((u32::MAX, EventKind::RunStarted { task_spec }, None));
            expected.push(format!(
                "{} RunStarted {{ strategy: {strategy:?}, max_iterations: {}, goal: \"goal\" }}",
                u32::MAX,
                u32::MAX
            ));
        }
        for &result in RunOutcome::ALL {
            for &engine_result in RunResult::ALL {
                let kind = EventKind::RunCompleted {
                    result,
                    engine_result,
                    iterations: 7,
                    duration_ms: u64::MAX,
                    metrics: Box::new(ExecutionMetrics::default()),
                };
                events.push((3, kind, None));
                expected.push(format!(
                    "3 RunCompleted {{ result: {result:?}, engine_result: {engine_result:?}, \
                     iterations: 7, duration_ms: {} }}",
                    u64::MAX
                ));
            }
        }
        for &phase in Phase::ALL {
            let kind = EventKind::PhaseCompleted {
                iteration: u32::MAX,
                phase,
                success: false,
                duration_ms: 12,
            };
            // Measured, then not.
            events.push((1, kind.clone(), Some(12_345_678)));
            events.push((1, kind, None));
            for exact in [12_345_678, 12_000_000] {
                expected.push(format!(
                    "1 PhaseCompleted {{ iteration: {}, phase: {phase:?}, success: false, \
                     duration_ms: 12, exact: {exact} }}",
                    u32::MAX
                ));
            }
        }
        let gate = EventKind::GateChecked {
            iteration: 2,
            gate: "lint".into(),
            passed: true,
            duration_ms: Some(0),
        };
        events.push((0, gate, None));
        expected.push(
            "0 GateChecked { iteration: 2, gate: \"lint\", passed: true, duration_ms: Some(0) }"
                .to_owned(),
        );
        let delivered = EventKind::DeliveryCompleted {
            success: false,
            pr_url: None,
            ci_status: Some("red".into()),
        };
        events.push((0, delivered, None));
        expected.push(
            "0 DeliveryCompleted { success: false, pr_url: None, ci_status: Some(\"red\") }"
                .to_owned(),
        );
        assert_eq!(round_trip(&events), expected);
    }

    #[test]
    fn a_time_past_what_a_step_holds_is_clamped() {
        let mut steps = Steps::with_capacity(1);
        steps.finish(u64::MAX);
        let mut at = 0;
        steps.read(|_, t, _, _| at = t);
        assert_eq!(at, (u64::MAX >> AT_SHIFT).saturating_mul(1_000_000));
    }
}
