//! Runs turned into spans on the exporter thread: the builder follows
//! each open run's open spans through its [`Steps`] and writes the
//! finished ones as [`Records`].
//!
//! The trace of a run: the run is the root span; iterations are its
//! children; phases the children of their iteration (`phase build`);
//! gate checks are events of the iteration's span; the delivery is a
//! child of the run. Times are the events' own: a phase's span starts at
//! its `phase_started` and lasts exactly its measured duration, so its
//! length is its `durationMs`. Status ERROR, with the message, is set on
//! failed and canceled runs and on failed phases, nowhere else.
//!
//! Which spans each event ends is also what the drain thread counts when
//! it drops steps ([`Nesting`](super::feed::Nesting)): the two must agree,
//! and a test holds them to it.

use std::ops::Range;
use std::sync::Arc;

use super::records::{GateRecord, Kind, Record, Records, RunRecord, RunStatus, Text};
use super::spans::SpanData;
use super::steps::{Event, Head, Steps};
use crate::event::{Metadata, Phase, RunOutcome, RunResult, SpanId, Strategy, TraceId};

/// Boxes of ended runs kept for the next ones: enough for the runs that
/// end and begin between two hand-offs, without holding one per slot the
/// tracker ever used.
const SPARE: usize = 64;

/// The room a spare box keeps for its run's text, and for gate checks.
const SPARE_TEXT: usize = 1024;
const SPARE_GATES: usize = 32;

/// A gate check of an open span, its name in the run's `text`.
#[derive(Clone, Debug)]
struct Gate {
    time_ns: u64,
    name: Range<usize>,
    passed: bool,
    iteration: u32,
    duration_ms: Option<u64>,
}

/// An open phase span.
#[derive(Clone, Copy, Debug)]
struct OpenPhase {
    iteration: u32,
    phase: Phase,
    start_ns: u64,
    /// Whether it nests in its iteration's span (open when it started).
    in_iteration: bool,
}

/// What a run learns from its events, and its open spans; text as
/// ranges of its [`OpenRun::text`].
#[derive(Debug, Default)]
struct RunState {
    task: Option<(Strategy, u32, Range<usize>)>,
    outcome: Option<RunOutcome>,
    engine_result: Option<RunResult>,
    iterations: Option<u32>,
    duration_ms: Option<u64>,
    pr_url: Option<Range<usize>>,
    /// Set on a canceled or failed run: its reason.
    message: Option<Range<usize>>,
    metadata: Option<Arc<Metadata>>,
    /// The open iteration: its number and start.
    iteration: Option<(u32, u64)>,
    phase: Option<OpenPhase>,
    /// The open delivery's start.
    delivery: Option<u64>,
}

/// One open run: its root span's state and its open spans.
#[derive(Debug)]
struct OpenRun {
    trace_id: TraceId,
    root: SpanId,
    parent: Option<SpanId>,
    /// Where the run's trace and root span are in the batch being
    /// filled: `(seq, index)`, once written there.
    head: Option<(u64, u32)>,
    start_ns: u64,
    /// The run's strings, one after the other: its ids (copied, see
    /// [`RunRecord`]), goal, reason, pull request and the names of gate
    /// checks of no open iteration. The exporter thread gets them in one
    /// copy.
    text: String,
    work_order_id: Range<usize>,
    run_id: Range<usize>,
    correlation_id: Option<Range<usize>>,
    /// All the rest, `Default` when the run opens.
    state: RunState,
    /// Gate checks of the open iteration, and of the run itself (those
    /// of no open iteration).
    iteration_gates: Vec<Gate>,
    root_gates: Vec<Gate>,
    /// The names of the open iteration's gate checks: emptied with it, so
    /// that a long run's text does not keep every name it ever checked.
    iteration_text: String,
}

impl OpenRun {
    fn new() -> OpenRun {
        OpenRun {
            trace_id: TraceId::random(),
            root: SpanId::random(),
            parent: None,
            head: None,
            start_ns: 0,
            text: String::new(),
            work_order_id: 0..0,
            run_id: 0..0,
            correlation_id: None,
            state: RunState::default(),
            iteration_gates: Vec::new(),
            root_gates: Vec::new(),
            iteration_text: String::new(),
        }
    }

    /// Keeps `s` in the run's text; where it went.
    fn keep(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    /// Makes it the run of an [`Event::Open`] at `at`; its strings and
    /// vectors keep their room.
    fn open(&mut self, head: Head, ids: [&str; 2], correlation_id: Option<&str>, at: u64) {
        self.trace_id = head.trace_id;
        // The handle's root span when it chose this trace; otherwise (the
        // `&str` API, `emit`, a replay) a new one.
        self.root = head.root.map_or_else(SpanId::random, |(root, _)| root);
        self.parent = head.root.and_then(|(_, parent)| parent);
        self.head = None;
        self.start_ns = at;
        self.text.clear();
        self.work_order_id = self.keep(ids[0]);
        self.run_id = self.keep(ids[1]);
        self.correlation_id = correlation_id.map(|c| self.keep(c));
        self.state = RunState::default();
        self.iteration_gates.clear();
        self.iteration_text.clear();
        self.root_gates.clear();
    }

    /// A record of a span of this run, in `out`'s batch.
    fn record(&mut self, out: &mut Records, (start_ns, end_ns): (u64, u64), kind: Kind) -> Record {
        let head = match self.head {
            Some((seq, head)) if seq == out.seq => head,
            _ => {
                let head = out.head(self.trace_id, self.root);
                self.head = Some((out.seq, head));
                head
            }
        };
        Record {
            head,
            metadata: 0,
            start_ns,
            end_ns: end_ns.max(start_ns),
            kind,
        }
    }

    /// Writes `gates` to `out`, their names from the text their ranges
    /// refer to, kept at `base` (see [`Records::texts`]); the range of
    /// them a span refers to.
    fn gates(out: &mut Records, base: u32, gates: &mut Vec<Gate>) -> (u32, u32) {
        let start = out.gate_count();
        for gate in gates.drain(..) {
            out.gate(GateRecord {
                time_ns: gate.time_ns,
                gate: Text::part(base, gate.name),
                passed: gate.passed,
                iteration: gate.iteration,
                duration_ms: gate.duration_ms.unwrap_or(0),
                timed: gate.duration_ms.is_some(),
            });
        }
        (start, out.gate_count())
    }

    /// Ends the open iteration `(iteration, start)` at `end`, with its gate
    /// checks; `success` when its own end came.
    fn end_iteration(
        &mut self,
        (iteration, start): (u32, u64),
        end: u64,
        success: Option<bool>,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Records,
    ) {
        let base = out.texts(&self.iteration_text);
        let gates = OpenRun::gates(out, base, &mut self.iteration_gates);
        self.iteration_text.clear();
        let kind = Kind::Iteration {
            iteration,
            success,
            gates,
        };
        let mut record = self.record(out, (start, end), kind);
        record.metadata = out.metadata(metadata);
        out.spans.push(record);
    }

    /// A phase span whose end never came, ended at `at`.
    fn end_phase_unfinished(&mut self, open: OpenPhase, at: u64, out: &mut Records) {
        let kind = Kind::Phase {
            iteration: open.iteration,
            phase: open.phase,
            success: None,
            in_iteration: open.in_iteration,
            duration_ms: 0,
        };
        let record = self.record(out, (open.start_ns, at), kind);
        out.spans.push(record);
    }

    /// Whether a phase of `iteration` nests in the open iteration's span.
    fn in_iteration(&self, iteration: u32) -> bool {
        matches!(self.state.iteration, Some((i, _)) if i == iteration)
    }

    /// Applies `event`; ended spans go to `out`. Returns whether the
    /// event ends the run.
    fn apply(
        &mut self,
        event: Event<'_>,
        at: u64,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Records,
    ) -> bool {
        match event {
            Event::RunStarted {
                strategy,
                max_iterations,
                goal,
            } => {
                self.start_ns = at;
                self.state.metadata = metadata.cloned();
                let goal = self.keep(goal);
                self.state.task = Some((strategy, max_iterations, goal));
            }
            Event::IterationStarted { iteration } => {
                if let Some(open) = self.state.iteration.take() {
                    self.end_iteration(open, at, None, None, out);
                }
                self.state.iteration = Some((iteration, at));
            }
            Event::IterationCompleted { iteration, success } => {
                let start = match self.state.iteration.take() {
                    Some((i, start)) if i == iteration => start,
                    other => {
                        if let Some(open) = other {
                            self.end_iteration(open, at, None, None, out);
                        }
                        at
                    }
                };
                self.end_iteration((iteration, start), at, Some(success), metadata, out);
            }
            Event::PhaseStarted { iteration, phase } => {
                if let Some(open) = self.state.phase.take() {
                    self.end_phase_unfinished(open, at, out);
                }
                self.state.phase = Some(OpenPhase {
                    iteration,
                    phase,
                    start_ns: at,
                    in_iteration: self.in_iteration(iteration),
                });
            }
            Event::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
                exact,
            } => {
                let open = match self.state.phase.take() {
                    Some(open) if open.iteration == iteration && open.phase == phase => open,
                    other => {
                        if let Some(open) = other {
                            self.end_phase_unfinished(open, at, out);
                        }
                        // No start seen: the span ends at this event.
                        OpenPhase {
                            iteration,
                            phase,
                            start_ns: at.saturating_sub(exact),
                            in_iteration: self.in_iteration(iteration),
                        }
                    }
                };
                // The measured duration, not the difference of two
                // millisecond timestamps: the span lasts its durationMs.
                let kind = Kind::Phase {
                    iteration,
                    phase,
                    success: Some(success),
                    in_iteration: open.in_iteration,
                    duration_ms,
                };
                let end = open.start_ns.saturating_add(exact);
                let mut record = self.record(out, (open.start_ns, end), kind);
                record.metadata = out.metadata(metadata);
                out.spans.push(record);
            }
            Event::GateChecked {
                iteration,
                gate,
                passed,
                duration_ms,
            } => {
                let of_iteration = self.in_iteration(iteration);
                let name = if of_iteration {
                    let start = self.iteration_text.len();
                    self.iteration_text.push_str(gate);
                    start..self.iteration_text.len()
                } else {
                    self.keep(gate)
                };
                let gate = Gate {
                    time_ns: at,
                    name,
                    passed,
                    iteration,
                    duration_ms,
                };
                if of_iteration {
                    self.iteration_gates.push(gate);
                } else {
                    self.root_gates.push(gate);
                }
            }
            Event::DeliveryStarted => {
                if let Some(start) = self.state.delivery.take() {
                    self.end_delivery_unfinished(start, at, out);
                }
                self.state.delivery = Some(at);
            }
            Event::DeliveryCompleted {
                success,
                pr_url,
                ci_status,
            } => {
                let start = self.state.delivery.take().unwrap_or(at);
                let pr = pr_url.map(|url| out.text(url));
                let ci = ci_status.map(|ci| out.text(ci));
                let texts = out.delivery(pr, ci);
                let kind = Kind::Delivery {
                    success: Some(success),
                    texts,
                };
                let mut record = self.record(out, (start, at), kind);
                record.metadata = out.metadata(metadata);
                out.spans.push(record);
                if let Some(url) = pr_url {
                    self.state.pr_url = Some(self.keep(url));
                }
            }
            Event::RunCompleted {
                result,
                engine_result,
                iterations,
                duration_ms,
            } => {
                self.state.outcome = Some(result);
                self.state.engine_result = Some(engine_result);
                self.state.iterations = Some(iterations);
                self.state.duration_ms = Some(duration_ms);
                return true;
            }
            Event::RunCanceled { reason } => {
                self.state.outcome = Some(RunOutcome::Canceled);
                self.state.message = Some(self.keep(reason));
                return true;
            }
            Event::RunFailed { error } => {
                self.state.outcome = Some(RunOutcome::Failed);
                self.state.message = Some(self.keep(error));
                return true;
            }
            // Read by the builder itself.
            Event::Open { .. } | Event::Finish => {}
        }
        false
    }

    fn end_delivery_unfinished(&mut self, start: u64, at: u64, out: &mut Records) {
        let kind = Kind::Delivery {
            success: None,
            texts: out.delivery(None, None),
        };
        let record = self.record(out, (start, at), kind);
        out.spans.push(record);
    }

    /// Ends every open span and the root at `at`; every one of them
    /// `unfinished` when the run's own end did not come.
    fn end_at(&mut self, at: u64, unfinished: bool, out: &mut Records) {
        if let Some(open) = self.state.phase.take() {
            self.end_phase_unfinished(open, at, out);
        }
        if let Some(open) = self.state.iteration.take() {
            self.end_iteration(open, at, None, None, out);
        }
        if let Some(start) = self.state.delivery.take() {
            self.end_delivery_unfinished(start, at, out);
        }
        let base = out.texts(&self.text);
        let gates = OpenRun::gates(out, base, &mut self.root_gates);
        let part = |range: &Range<usize>| Text::part(base, range.clone());
        let status = match (&self.state.message, self.state.outcome) {
            (Some(message), _) => RunStatus::Message(part(message)),
            (None, Some(outcome)) if outcome != RunOutcome::Succeeded => RunStatus::Completed,
            (None, _) => RunStatus::Unset,
        };
        let run = RunRecord {
            parent: self.parent,
            work_order_id: part(&self.work_order_id),
            run_id: part(&self.run_id),
            correlation_id: self.correlation_id.as_ref().map(part),
            task: self
                .state
                .task
                .as_ref()
                .map(|(strategy, max, goal)| (*strategy, *max, part(goal))),
            outcome: self.state.outcome,
            engine_result: self.state.engine_result,
            iterations: self.state.iterations,
            duration_ms: self.state.duration_ms,
            pr_url: self.state.pr_url.as_ref().map(part),
            status,
        };
        let metadata = out.metadata(self.state.metadata.take().as_ref());
        let kind = Kind::Run {
            run: out.run(run),
            gates,
            unfinished,
        };
        let mut record = self.record(out, (self.start_ns, at), kind);
        record.metadata = metadata;
        out.spans.push(record);
    }
}

/// Keeps an ended run's box for the next run, its room cut back when a
/// long run grew it: the spare boxes hold a few KiB each at most.
#[allow(clippy::vec_box)]
fn release(spare: &mut Vec<Box<OpenRun>>, mut run: Box<OpenRun>) {
    if spare.len() >= SPARE {
        return;
    }
    // Checked here first: most runs never grow past these.
    if run.text.capacity() > SPARE_TEXT || run.iteration_text.capacity() > SPARE_TEXT {
        run.text.shrink_to(SPARE_TEXT);
        run.iteration_text.shrink_to(SPARE_TEXT);
    }
    if run.iteration_gates.capacity() > SPARE_GATES || run.root_gates.capacity() > SPARE_GATES {
        run.iteration_gates.shrink_to(SPARE_GATES);
        run.root_gates.shrink_to(SPARE_GATES);
    }
    spare.push(run);
}

/// The exporter thread's span builder.
pub(crate) struct SpanBuilder {
    /// Per tracker slot, the run open there.
    slots: Vec<Option<Box<OpenRun>>>,
    /// Boxes of ended runs, for the next runs: boxed, so that a run
    /// moves between its slot and here as a pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<OpenRun>>,
    /// Finished spans of the batch being read.
    records: Records,
}

impl std::fmt::Debug for SpanBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBuilder")
            .field("open_runs", &self.open_runs())
            .finish_non_exhaustive()
    }
}

impl SpanBuilder {
    pub(crate) fn new() -> SpanBuilder {
        SpanBuilder {
            slots: Vec::new(),
            spare: Vec::new(),
            records: Records::with_capacity(256),
        }
    }

    /// How many runs it follows.
    pub(crate) fn open_runs(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Reads a batch of steps; the spans they end go to `out`.
    pub(crate) fn read(&mut self, steps: &Steps, out: &mut Vec<SpanData>) {
        for &index in &steps.discards {
            // Some of this run's steps were dropped: none of its spans
            // is made (the drain thread counted them dropped).
            if let Some(run) = self.slots.get_mut(index as usize).and_then(Option::take) {
                release(&mut self.spare, run);
            }
        }
        steps.read(|slot, at, metadata, event| self.apply(slot, at, metadata, event));
        self.records.to_spans(out);
        self.records.clear();
        // Its heads are gone: no run may find its own there any more.
        self.records.seq = self.records.seq.wrapping_add(1);
    }

    fn apply(&mut self, index: u32, at: u64, metadata: Option<&Arc<Metadata>>, event: Event<'_>) {
        let index = index as usize;
        let SpanBuilder {
            slots,
            spare,
            records,
        } = self;
        match event {
            Event::Open {
                head,
                work_order_id,
                run_id,
                correlation_id,
            } => {
                if index >= slots.len() {
                    slots.resize_with(index + 1, || None);
                }
                if let Some(mut gone) = slots[index].take() {
                    // The tracker let that run go (evicted it to make
                    // room) and gave its slot to this one.
                    gone.end_at(at, true, records);
                    release(spare, gone);
                }
                let mut run = spare.pop().unwrap_or_else(|| Box::new(OpenRun::new()));
                run.open(head, [work_order_id, run_id], correlation_id, at);
                slots[index] = Some(run);
            }
            // The runs still open at shutdown are exported as they stand,
            // every span of theirs marked unfinished.
            Event::Finish => {
                for mut run in slots.iter_mut().filter_map(Option::take) {
                    run.end_at(at, true, records);
                }
            }
            event => {
                // The drain thread opens every run it sends steps of.
                let Some(entry) = slots.get_mut(index) else {
                    return;
                };
                let Some(run) = entry else {
                    return;
                };
                if run.apply(event, at, metadata, records) {
                    if let Some(metadata) = metadata {
                        run.state.metadata = Some(Arc::clone(metadata));
                    }
                    run.end_at(at, false, records);
                    if let Some(ended) = entry.take() {
                        release(spare, ended);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
