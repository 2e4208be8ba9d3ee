//! Runs turned into spans on the exporter thread: the builder follows
//! each open run's open spans through its [`Steps`] and makes the
//! finished ones.
//!
//! The trace of a run: the run is the root span; iterations are its
//! children; phases the children of their iteration (`phase build`);
//! gate checks are events of the iteration's span; the delivery is a
//! child of the run. Times are the events' own: a phase's span starts at
//! its `phase_started` and lasts exactly its measured duration, so its
//! length is its `durationMs`. Status ERROR, with the message, is set on
//! failed and canceled runs and on failed phases, nowhere else. Span ids
//! below the root follow from it and what the span is
//! ([`SpanId::child`]), as the guards' log contexts derive them; a span
//! that would repeat one of its run (a phase run twice in an iteration,
//! an iteration number not above every earlier one, a delivery retried)
//! gets a random id instead: ids are unique in a trace, and only log
//! lines inside such a span name another.
//!
//! A run's delivery events after its end (an engine may deliver a run's
//! pull request after the run) make a delivery span under the root
//! already made: the builder keeps the trace and root of an ended run
//! until its slot takes another run.
//!
//! Which spans each event ends is also what the drain thread counts when
//! it drops steps ([`Nesting`](super::feed::Nesting)): the two must agree,
//! and a test holds them to it.

use std::sync::Arc;

use super::spans::{GateEvent, RunInfo, SpanData, Status, What, phase_name};
use super::steps::{Event, Head, Steps};
use crate::event::{Metadata, Phase, RunOutcome, RunResult, SpanId, TraceId};

/// An open phase span.
#[derive(Clone, Copy, Debug)]
struct OpenPhase {
    iteration: u32,
    phase: Phase,
    start_ns: u64,
    span_id: SpanId,
    /// Its iteration's span when that was open at its start, else the root.
    parent: SpanId,
}

/// An open iteration span.
#[derive(Clone, Copy, Debug)]
struct OpenIteration {
    iteration: u32,
    start_ns: u64,
    span_id: SpanId,
}

/// An open delivery span.
#[derive(Clone, Copy, Debug)]
struct OpenDelivery {
    start_ns: u64,
    span_id: SpanId,
}

/// One open run: what its root span learns from its events, and its open
/// spans.
#[derive(Debug)]
struct OpenRun {
    ids: RunIds,
    start_ns: u64,
    info: RunInfo,
    /// The caller's span the run nests in, when it joined a trace.
    parent: Option<SpanId>,
    /// Set on a canceled or failed run: its reason.
    message: Option<String>,
    metadata: Option<Arc<Metadata>>,
    iteration: Option<OpenIteration>,
    phase: Option<OpenPhase>,
    delivery: Option<OpenDelivery>,
    /// The derived ids its spans took, to keep them unique.
    taken: Taken,
    /// Gate checks of the open iteration, and of the run itself (those
    /// of no open iteration).
    iteration_gates: Vec<GateEvent>,
    root_gates: Vec<GateEvent>,
}

/// A run's trace and root span: what its spans' ids follow from.
#[derive(Clone, Copy, Debug)]
struct RunIds {
    trace_id: TraceId,
    root: SpanId,
}

/// Which derived span ids a run's spans took, in a few bytes however
/// long the run: those of the highest iteration number seen so far, and
/// the delivery's. An iteration number below it is never given a derived
/// id again (its spans get random ones), so every derived id is given at
/// most once.
#[derive(Clone, Copy, Debug, Default)]
struct Taken {
    /// The highest iteration number seen, when one was.
    iteration: Option<u32>,
    /// Its iteration span's id was given.
    iteration_span: bool,
    /// Its phases' ids given, a bit per phase.
    phases: u8,
    delivery: bool,
}

// A bit per phase in `Taken::phases`.
const _: () = assert!(Phase::ALL.len() <= 8);

impl Taken {
    /// Whether `iteration`'s derived ids are still to be given; moves on
    /// to it when it is the highest yet.
    fn current(&mut self, iteration: u32) -> bool {
        match self.iteration {
            Some(highest) if iteration < highest => false,
            Some(highest) if iteration == highest => true,
            _ => {
                *self = Taken {
                    iteration: Some(iteration),
                    iteration_span: false,
                    phases: 0,
                    delivery: self.delivery,
                };
                true
            }
        }
    }

    /// The id of `iteration`'s span: `derived` unless it was given.
    fn iteration(&mut self, iteration: u32, derived: SpanId) -> SpanId {
        let fresh = self.current(iteration) && !std::mem::replace(&mut self.iteration_span, true);
        if fresh { derived } else { SpanId::random() }
    }

    /// The id of `phase`'s span in `iteration`: `derived` unless it was
    /// given.
    fn phase(&mut self, iteration: u32, phase: Phase, derived: SpanId) -> SpanId {
        let bit = 1u8 << phase.index();
        let fresh = self.current(iteration) && self.phases & bit == 0;
        if fresh {
            self.phases |= bit;
            derived
        } else {
            SpanId::random()
        }
    }

    /// The id of a delivery span: `derived` for the first one.
    fn delivery(&mut self, derived: SpanId) -> SpanId {
        if std::mem::replace(&mut self.delivery, true) {
            SpanId::random()
        } else {
            derived
        }
    }
}

impl RunIds {
    fn push(self, out: &mut Vec<SpanData>, span: EndedSpan) {
        out.push(SpanData {
            trace_id: self.trace_id,
            span_id: span.span_id,
            parent: span.parent,
            start_ns: span.start_ns,
            end_ns: span.end_ns.max(span.start_ns),
            what: span.what,
            gates: span.gates,
            metadata: span.metadata,
            status: span.status,
            unfinished: span.unfinished,
        });
    }

    /// Ends the delivery span `open` at `end`; `success` and what it
    /// delivered when its own end came.
    fn end_delivery(
        self,
        open: OpenDelivery,
        end: u64,
        success: Option<bool>,
        (pr_url, ci_status): (Option<&str>, Option<&str>),
        metadata: Option<&Arc<Metadata>>,
        out: &mut Vec<SpanData>,
    ) {
        let span = EndedSpan {
            span_id: open.span_id,
            parent: Some(self.root),
            start_ns: open.start_ns,
            end_ns: end,
            what: What::Delivery {
                success,
                pr_url: pr_url.map(str::to_owned),
                ci_status: ci_status.map(str::to_owned),
            },
            gates: Vec::new(),
            metadata: metadata.cloned(),
            status: Status::Unset,
            unfinished: success.is_none(),
        };
        self.push(out, span);
    }

    /// A delivery event (of a run open or ended): the delivery `open`
    /// ends at it; `taken`, the ids its run's spans took.
    fn delivery(
        self,
        (open, taken): (&mut Option<OpenDelivery>, &mut Taken),
        event: &Event<'_>,
        at: u64,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Vec<SpanData>,
    ) {
        let mut start = |at| OpenDelivery {
            start_ns: at,
            span_id: taken.delivery(self.root.child(0, SpanId::DELIVERY_SLOT)),
        };
        match *event {
            Event::DeliveryStarted => {
                if let Some(open) = open.replace(start(at)) {
                    self.end_delivery(open, at, None, (None, None), None, out);
                }
            }
            Event::DeliveryCompleted {
                success,
                pr_url,
                ci_status,
            } => {
                let open = open.take().unwrap_or_else(|| start(at));
                let texts = (pr_url, ci_status);
                self.end_delivery(open, at, Some(success), texts, metadata, out);
            }
            _ => {}
        }
    }
}

/// A span of a run ended.
struct EndedSpan {
    span_id: SpanId,
    parent: Option<SpanId>,
    start_ns: u64,
    end_ns: u64,
    what: What,
    gates: Vec<GateEvent>,
    metadata: Option<Arc<Metadata>>,
    status: Status,
    unfinished: bool,
}

impl OpenRun {
    fn open(head: &Head, at: u64) -> OpenRun {
        OpenRun {
            ids: RunIds {
                trace_id: head.trace_id,
                // The handle's root span when it chose this trace;
                // otherwise (the `&str` API, `emit`, a replay) a new one.
                root: head.root.map_or_else(SpanId::random, |(root, _)| root),
            },
            parent: head.root.and_then(|(_, parent)| parent),
            start_ns: at,
            info: RunInfo {
                work_order_id: head.work_order_id.clone(),
                run_id: head.run_id.clone(),
                correlation_id: head.correlation_id.clone(),
                ..RunInfo::default()
            },
            message: None,
            metadata: None,
            iteration: None,
            phase: None,
            delivery: None,
            taken: Taken::default(),
            iteration_gates: Vec::new(),
            root_gates: Vec::new(),
        }
    }

    /// An iteration span starting at `at`.
    fn start_iteration(&mut self, iteration: u32, at: u64) -> OpenIteration {
        OpenIteration {
            iteration,
            start_ns: at,
            span_id: self
                .taken
                .iteration(iteration, self.ids.root.child(iteration, 0)),
        }
    }

    /// A phase span starting at `at`.
    fn start_phase(&mut self, iteration: u32, phase: Phase, at: u64) -> OpenPhase {
        let parent = match self.iteration {
            Some(open) if open.iteration == iteration => open.span_id,
            _ => self.ids.root,
        };
        OpenPhase {
            iteration,
            phase,
            start_ns: at,
            span_id: self.taken.phase(
                iteration,
                phase,
                self.ids.root.phase_child(iteration, phase),
            ),
            parent,
        }
    }

    /// Ends the iteration span `open` at `end`, with its gate checks;
    /// `success` when its own end came.
    fn end_iteration(
        &mut self,
        open: OpenIteration,
        end: u64,
        success: Option<bool>,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Vec<SpanData>,
    ) {
        let iteration = open.iteration;
        let span = EndedSpan {
            span_id: open.span_id,
            parent: Some(self.ids.root),
            start_ns: open.start_ns,
            end_ns: end,
            what: What::Iteration { iteration, success },
            gates: std::mem::take(&mut self.iteration_gates),
            metadata: metadata.cloned(),
            status: Status::Unset,
            unfinished: success.is_none(),
        };
        self.ids.push(out, span);
    }

    /// Ends the phase span `open` at `end`: `(success, duration_ms)` when
    /// its own end came.
    fn end_phase(
        &mut self,
        open: OpenPhase,
        end_ns: u64,
        end: Option<(bool, u64)>,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Vec<SpanData>,
    ) {
        let OpenPhase {
            iteration, phase, ..
        } = open;
        let status = match end {
            Some((false, _)) => Status::Error(format!("{} failed", phase_name(phase))),
            _ => Status::Unset,
        };
        let span = EndedSpan {
            span_id: open.span_id,
            parent: Some(open.parent),
            start_ns: open.start_ns,
            end_ns,
            what: What::Phase {
                iteration,
                phase,
                end,
            },
            gates: Vec::new(),
            metadata: metadata.cloned(),
            status,
            unfinished: end.is_none(),
        };
        self.ids.push(out, span);
    }

    /// Whether a phase or gate check of `iteration` nests in the open
    /// iteration's span.
    fn in_iteration(&self, iteration: u32) -> bool {
        matches!(self.iteration, Some(open) if open.iteration == iteration)
    }

    /// Applies `event`; ended spans go to `out`. Returns whether the
    /// event ends the run.
    fn apply(
        &mut self,
        event: Event<'_>,
        at: u64,
        metadata: Option<&Arc<Metadata>>,
        out: &mut Vec<SpanData>,
    ) -> bool {
        match event {
            Event::RunStarted {
                strategy,
                max_iterations,
                goal,
            } => {
                self.start_ns = at;
                self.metadata = metadata.cloned();
                self.info.task = Some((strategy, max_iterations, goal.to_owned()));
            }
            Event::IterationStarted { iteration } => {
                if let Some(open) = self.iteration.take() {
                    self.end_iteration(open, at, None, None, out);
                }
                self.iteration = Some(self.start_iteration(iteration, at));
            }
            Event::IterationCompleted { iteration, success } => {
                let open = match self.iteration.take() {
                    Some(open) if open.iteration == iteration => open,
                    other => {
                        if let Some(open) = other {
                            self.end_iteration(open, at, None, None, out);
                        }
                        self.start_iteration(iteration, at)
                    }
                };
                self.end_iteration(open, at, Some(success), metadata, out);
            }
            Event::PhaseStarted { iteration, phase } => {
                if let Some(open) = self.phase.take() {
                    self.end_phase(open, at, None, None, out);
                }
                self.phase = Some(self.start_phase(iteration, phase, at));
            }
            Event::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
                exact,
            } => {
                let open = match self.phase.take() {
                    Some(open) if open.iteration == iteration && open.phase == phase => open,
                    other => {
                        if let Some(open) = other {
                            self.end_phase(open, at, None, None, out);
                        }
                        // No start seen: the span ends at this event.
                        self.start_phase(iteration, phase, at.saturating_sub(exact))
                    }
                };
                // The measured duration, not the difference of two
                // millisecond timestamps: the span lasts its durationMs.
                let end = open.start_ns.saturating_add(exact);
                self.end_phase(open, end, Some((success, duration_ms)), metadata, out);
            }
            Event::GateChecked {
                iteration,
                gate,
                passed,
                duration_ms,
            } => {
                let gate = GateEvent {
                    time_ns: at,
                    gate: gate.to_owned(),
                    passed,
                    iteration,
                    duration_ms,
                };
                if self.in_iteration(iteration) {
                    self.iteration_gates.push(gate);
                } else {
                    self.root_gates.push(gate);
                }
            }
            Event::DeliveryStarted => {
                let open = (&mut self.delivery, &mut self.taken);
                self.ids.delivery(open, &event, at, metadata, out);
            }
            Event::DeliveryCompleted { pr_url, .. } => {
                let open = (&mut self.delivery, &mut self.taken);
                self.ids.delivery(open, &event, at, metadata, out);
                if let Some(url) = pr_url {
                    self.info.pr_url = Some(url.to_owned());
                }
            }
            Event::RunCompleted {
                result,
                engine_result,
                iterations,
                duration_ms,
            } => {
                self.info.outcome = Some(result);
                self.info.engine_result = Some(engine_result);
                self.info.iterations = Some(iterations);
                self.info.duration_ms = Some(duration_ms);
                return true;
            }
            Event::RunCanceled { reason } => {
                self.info.outcome = Some(RunOutcome::Canceled);
                self.message = Some(reason.to_owned());
                return true;
            }
            Event::RunFailed { error } => {
                self.info.outcome = Some(RunOutcome::Failed);
                self.message = Some(error.to_owned());
                return true;
            }
            // Read by the builder itself.
            Event::Open { .. } | Event::Finish => {}
        }
        false
    }

    /// Ends every open span and the root at `at`; every one of them
    /// `unfinished` when the run's own end did not come. Returns what a
    /// delivery after its end needs.
    fn end_at(mut self, at: u64, unfinished: bool, out: &mut Vec<SpanData>) -> EndedRun {
        if let Some(open) = self.phase.take() {
            self.end_phase(open, at, None, None, out);
        }
        if let Some(open) = self.iteration.take() {
            self.end_iteration(open, at, None, None, out);
        }
        if let Some(open) = self.delivery.take() {
            self.ids
                .end_delivery(open, at, None, (None, None), None, out);
        }
        let outcome = self.info.outcome;
        let engine_result = self.info.engine_result;
        // `error.type`, as OpenTelemetry has it, of a run that did not
        // succeed: the engine's result, or how it ended otherwise.
        let (status, error_type) = match (self.message.take(), outcome) {
            (Some(message), Some(RunOutcome::Canceled)) => {
                (Status::Error(message), Some("canceled"))
            }
            (Some(message), _) => (Status::Error(message), Some("run_failed")),
            (None, Some(outcome)) if outcome != RunOutcome::Succeeded => {
                let message = format!(
                    "run {}: {}",
                    outcome.as_str(),
                    engine_result.map_or("unknown", RunResult::as_str)
                );
                (Status::Error(message), engine_result.map(RunResult::as_str))
            }
            (None, _) => (Status::Unset, None),
        };
        self.info.error_type = error_type;
        let span = EndedSpan {
            span_id: self.ids.root,
            parent: self.parent,
            start_ns: self.start_ns,
            end_ns: at,
            gates: std::mem::take(&mut self.root_gates),
            metadata: self.metadata.take(),
            status,
            unfinished,
            what: What::Run(Box::new(std::mem::take(&mut self.info))),
        };
        self.ids.push(out, span);
        EndedRun {
            ids: self.ids,
            delivery: None,
            taken: self.taken,
        }
    }
}

/// A run whose root is made: its delivery may still come.
#[derive(Debug)]
struct EndedRun {
    ids: RunIds,
    delivery: Option<OpenDelivery>,
    /// Whether its delivery's derived id was given.
    taken: Taken,
}

/// What the builder keeps of a run in its slot.
#[derive(Debug)]
enum Run {
    /// Boxed: the slots stay small.
    Open(Box<OpenRun>),
    Ended(Box<EndedRun>),
}

impl Run {
    /// Ends what is open of it at `at`, unfinished: its slot takes
    /// another run, or the pipeline stops.
    fn let_go(self, at: u64, out: &mut Vec<SpanData>) {
        match self {
            Run::Open(run) => {
                run.end_at(at, true, out);
            }
            Run::Ended(run) => {
                if let Some(open) = run.delivery {
                    run.ids
                        .end_delivery(open, at, None, (None, None), None, out);
                }
            }
        }
    }
}

/// The exporter thread's span builder.
#[derive(Debug, Default)]
pub(crate) struct SpanBuilder {
    /// Per tracker slot, the run there.
    slots: Vec<Option<Run>>,
}

impl SpanBuilder {
    pub(crate) fn new() -> SpanBuilder {
        SpanBuilder::default()
    }

    /// How many runs it follows, open or ended.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// How many open runs it follows.
    #[cfg(test)]
    pub(crate) fn open_runs(&self) -> usize {
        let open = |run: &&Run| match run {
            Run::Open(_) => true,
            Run::Ended(run) => run.delivery.is_some(),
        };
        self.slots.iter().flatten().filter(open).count()
    }

    /// Reads a batch of steps; the spans they end go to `out`.
    pub(crate) fn read(&mut self, steps: &Steps, out: &mut Vec<SpanData>) {
        for &index in &steps.discards {
            // Some of this run's steps were dropped: none of its spans
            // is made from here on (the drain thread counted them dropped).
            if let Some(slot) = self.slots.get_mut(index as usize) {
                *slot = None;
            }
        }
        steps.read(|slot, at, metadata, event| self.apply(slot, at, metadata, event, out));
    }

    fn apply(
        &mut self,
        index: u32,
        at: u64,
        metadata: Option<&Arc<Metadata>>,
        event: Event<'_>,
        out: &mut Vec<SpanData>,
    ) {
        let index = index as usize;
        match event {
            Event::Open { head } => {
                if index >= self.slots.len() {
                    self.slots.resize_with(index + 1, || None);
                }
                let run = OpenRun::open(head, at);
                if let Some(gone) = self.slots[index].replace(Run::Open(Box::new(run))) {
                    // The tracker let that run go (evicted it to make
                    // room) and gave its slot to this one.
                    gone.let_go(at, out);
                }
            }
            // The runs still open at shutdown are exported as they stand,
            // every span of theirs marked unfinished.
            Event::Finish => {
                for run in self.slots.iter_mut().filter_map(Option::take) {
                    run.let_go(at, out);
                }
            }
            event => {
                // The drain thread opens every run it sends steps of.
                let Some(entry) = self.slots.get_mut(index) else {
                    return;
                };
                match entry {
                    Some(Run::Open(run)) => {
                        if run.apply(event, at, metadata, out)
                            && let Some(Run::Open(mut ended)) = entry.take()
                        {
                            if let Some(metadata) = metadata {
                                ended.metadata = Some(Arc::clone(metadata));
                            }
                            let ended = ended.end_at(at, false, out);
                            *entry = Some(Run::Ended(Box::new(ended)));
                        }
                    }
                    // Only its delivery events come after its end.
                    Some(Run::Ended(run)) => {
                        let open = (&mut run.delivery, &mut run.taken);
                        run.ids.delivery(open, &event, at, metadata, out);
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
