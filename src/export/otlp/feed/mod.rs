//! The drain thread's side of trace export: each event of a traced run
//! becomes a [`Step`](super::steps::Step) in a batch handed to the exporter
//! thread, through a queue it never waits on.
//!
//! A run is found by the tracker's slot for it (no hashing of its id); a
//! slot whose generation changed means the tracker let the run go, and
//! the exporter thread ends its spans, unfinished, at the next run's first
//! step. After a run's end only its delivery events count (an engine may
//! deliver a run's pull request after the run): they make a delivery span
//! under the root already sent. Other late events are ignored, as the
//! tracker ignores them: a trace has one root.
//!
//! # Exact drops
//!
//! A batch that finds the queue full is dropped whole, and the spans its
//! steps would have ended are counted dropped: the drain thread follows
//! which spans of each run are open ([`Nesting`], a few bytes a run), as
//! the exporter thread's builder does. The runs it touched lose the rest
//! of their steps too (counted the same way), and the exporter thread
//! forgets what it held of them: a run with a gap would make spans from
//! half its events. The spans it ended before the gap were sent already:
//! a trace backend shows them without their root.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use super::steps::{Head, Step, Steps, What};
use crate::event::{EventKind, Phase, ProgressEvent, TraceId};
use crate::metrics::delivery::{DeliveryCounters, DropReason};
use crate::pipeline::drain::{EventInfo, Sink};
use crate::tracker::RunSlot;

/// Steps handed to the exporter thread at once: one channel operation
/// per batch instead of per event.
pub(crate) const BATCH: usize = 1024;

/// Steps per span the queue has room for: a run's events are about two
/// for each of its spans, with room to spare for gate checks.
pub(crate) const STEPS_PER_SPAN: usize = 4;

/// The spans of a run open on the exporter thread, as far as counting
/// them goes: what the builder ends at each event follows from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nesting {
    iteration: Option<u32>,
    phase: Option<(u32, Phase)>,
    delivery: bool,
}

impl Nesting {
    /// The spans the builder ends at `kind`: at a run's end, every open
    /// one and the root.
    #[inline]
    pub(crate) fn step(&mut self, kind: &EventKind) -> u64 {
        match *kind {
            EventKind::RunStarted { .. } | EventKind::GateChecked { .. } => 0,
            EventKind::IterationStarted { iteration, .. } => {
                u64::from(self.iteration.replace(iteration).is_some())
            }
            EventKind::IterationCompleted { iteration, .. } => {
                // An iteration of another number open ends unfinished.
                1 + u64::from(self.iteration.take().is_some_and(|i| i != iteration))
            }
            EventKind::PhaseStarted { iteration, phase } => {
                u64::from(self.phase.replace((iteration, phase)).is_some())
            }
            EventKind::PhaseCompleted {
                iteration, phase, ..
            } => 1 + u64::from(self.phase.take().is_some_and(|p| p != (iteration, phase))),
            EventKind::DeliveryStarted => u64::from(std::mem::replace(&mut self.delivery, true)),
            EventKind::DeliveryCompleted { .. } => {
                self.delivery = false;
                1
            }
            EventKind::RunCompleted { .. }
            | EventKind::RunCanceled { .. }
            | EventKind::RunFailed { .. } => std::mem::take(self).open(),
        }
    }

    /// The spans open: the root and its open children.
    pub(crate) fn open(&self) -> u64 {
        1 + self.children()
    }

    /// The root's open children.
    pub(crate) fn children(&self) -> u64 {
        u64::from(self.iteration.is_some())
            + u64::from(self.phase.is_some())
            + u64::from(self.delivery)
    }
}

/// Where a slot's run stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Empty,
    Open,
    /// Its end came: only its delivery events count (see the module's
    /// comment).
    Ended,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    generation: u32,
    state: State,
    /// Some of its steps were dropped: the rest are counted, not sent.
    lost: bool,
    /// A discard of this slot waits to cross.
    discard: bool,
    nesting: Nesting,
}

impl Slot {
    /// The spans of its run the builder has yet to end.
    fn unended(&self) -> u64 {
        match self.state {
            State::Empty => 0,
            State::Open => self.nesting.open(),
            State::Ended => self.nesting.children(),
        }
    }
}

/// The drain thread's ends of the queue to the exporter thread.
#[derive(Debug)]
pub(crate) struct HandOff {
    pub(crate) queue: Sender<Steps>,
    /// Batches the exporter thread emptied, to fill again.
    pub(crate) recycled: Receiver<Steps>,
    /// What the exporter thread sleeps on: the queue itself would wake it
    /// for every batch (a system call on the drain thread each time).
    pub(crate) doorbell: Sender<()>,
    /// Steps handed over and not yet taken by the exporter thread.
    pub(crate) queued: Arc<AtomicUsize>,
    /// Steps the queue holds at most.
    pub(crate) capacity: usize,
}

/// The drain thread's sink for trace export.
#[derive(Debug)]
pub(crate) struct TraceFeed {
    slots: Vec<Slot>,
    /// Slots whose discard waits for the next batch that crosses.
    discards: Vec<u32>,
    /// The batch being filled. It never crosses: a copy does, so that
    /// the drain thread's stores land in cache lines no other core holds
    /// (written straight into a batch the exporter thread had read, each
    /// store waited for its line to come back from that core).
    steps: Steps,
    hand_off: HandOff,
    /// Steps a batch holds before it is handed over: [`BATCH`], or half
    /// the queue when that is smaller. A run's first event adds two
    /// steps, so a batch may hold one more; with room for two, a small
    /// queue is not found full by every batch.
    batch: usize,
    /// Batches were handed over since the doorbell last rang.
    unrung: bool,
    counters: Arc<DeliveryCounters>,
}

impl TraceFeed {
    pub(crate) fn new(hand_off: HandOff, counters: Arc<DeliveryCounters>) -> TraceFeed {
        TraceFeed {
            slots: Vec::new(),
            discards: Vec::new(),
            steps: Steps::with_capacity(BATCH),
            batch: BATCH.min(hand_off.capacity / 2).max(1),
            hand_off,
            unrung: false,
            counters,
        }
    }

    /// A new run in `slot`: the one there was let go by the tracker, and
    /// the exporter thread ends what is open of it at this step.
    #[inline(never)]
    fn open(&mut self, index: usize, generation: u32, event: &ProgressEvent, info: &EventInfo) {
        let slot = &mut self.slots[index];
        let gone = slot.unended();
        if slot.lost {
            self.counters.dropped(DropReason::QueueFull, gone);
        } else {
            self.steps.closes += gone;
        }
        // Set by the tracker on every event of a run it keeps.
        let trace_id = event.trace_id.unwrap_or_else(TraceId::random);
        // The handle's root span when it chose this trace; otherwise (the
        // `&str` API, `emit`, a replay) the exporter thread makes one.
        let root = info
            .trace
            .filter(|t| t.trace_id == trace_id)
            .map(|t| (t.root, t.parent));
        let correlation_id = (!(Arc::ptr_eq(&event.correlation_id, &event.run_id)
            || event.correlation_id == event.run_id))
            .then(|| event.correlation_id.clone());
        *slot = Slot {
            generation,
            state: State::Open,
            lost: false,
            discard: slot.discard,
            nesting: Nesting::default(),
        };
        let head = Head {
            trace_id,
            root,
            work_order_id: event.work_order_id.clone(),
            run_id: event.run_id.clone(),
            correlation_id,
        };
        self.steps
            .open(index as u32, event.timestamp.as_millis(), head);
    }

    /// Hands the batch to the exporter thread, or drops it whole (counted)
    /// when the queue has no room for it. Never waits. Out of line: once a
    /// batch, not once an event.
    ///
    /// The exporter thread is woken only when the drain thread is about
    /// to rest (`resting`: its ring ran empty, or a control message came)
    /// or half the queue is taken: during a burst it would otherwise be
    /// woken for every batch, and take the other core right when the
    /// engine needs it.
    #[inline(never)]
    fn hand_off(&mut self, resting: bool) {
        if self.steps.steps.is_empty() && self.discards.is_empty() {
            if resting && self.unrung {
                self.ring();
            }
            return;
        }
        let n = self.steps.steps.len();
        // Relaxed: a bound, not a synchronisation; the exporter thread
        // takes the steps through the channel.
        let queued = self.hand_off.queued.load(Ordering::Relaxed);
        if queued + n > self.hand_off.capacity {
            self.shed();
            if resting && self.unrung {
                self.ring();
            }
            return;
        }
        let mut batch = self
            .hand_off
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Steps::with_capacity(BATCH));
        self.steps.move_to(&mut batch);
        for &index in &self.discards {
            if let Some(slot) = self.slots.get_mut(index as usize) {
                slot.discard = false;
            }
        }
        // Before the batch's steps: a run opened since in a discarded
        // slot is not forgotten with it.
        batch.discards.append(&mut self.discards);
        // Relaxed: see above.
        let backlog = self.hand_off.queued.fetch_add(n, Ordering::Relaxed) + n;
        if let Err(lost) = self.hand_off.queue.send(batch) {
            // The exporter thread is gone (shutdown): nothing takes them.
            self.hand_off.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.dropped(DropReason::QueueFull, lost.0.closes);
            return;
        }
        if resting || backlog >= self.hand_off.capacity / 2 {
            self.ring();
        } else {
            self.unrung = true;
        }
    }

    /// Drops the batch being filled: its spans are counted dropped, and
    /// the runs it touched lose their later steps too; the exporter
    /// thread is told to forget them.
    #[cold]
    fn shed(&mut self) {
        self.counters
            .dropped(DropReason::QueueFull, self.steps.closes);
        for step in &self.steps.steps {
            if step.what() == Some(What::Finish) {
                continue;
            }
            let Some(slot) = self.slots.get_mut(step.slot() as usize) else {
                continue;
            };
            if slot.state != State::Empty {
                slot.lost = true;
            }
            if !slot.discard {
                slot.discard = true;
                self.discards.push(step.slot());
            }
        }
        self.steps.clear();
    }

    /// Wakes the exporter thread; a no-op if it was rung and has not
    /// woken yet.
    fn ring(&mut self) {
        self.unrung = false;
        let _ = self.hand_off.doorbell.try_send(());
    }
}

impl TraceFeed {
    /// Any event: opens its run when it is the first, ends it when it is
    /// the last, counts it dropped when its run lost steps.
    #[inline(never)]
    fn event_slow(&mut self, event: &ProgressEvent, info: &EventInfo, at: RunSlot) {
        let index = at.index as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::default());
        }
        let slot = &self.slots[index];
        if slot.generation != at.generation || slot.state == State::Empty {
            self.open(index, at.generation, event, info);
        } else if slot.state == State::Ended
            && !matches!(
                event.kind,
                EventKind::DeliveryStarted | EventKind::DeliveryCompleted { .. }
            )
        {
            return;
        }
        let slot = &mut self.slots[index];
        let closes = slot.nesting.step(&event.kind);
        if matches!(
            event.kind,
            EventKind::RunCompleted { .. }
                | EventKind::RunCanceled { .. }
                | EventKind::RunFailed { .. }
        ) {
            slot.state = State::Ended;
        }
        if slot.lost {
            self.counters.dropped(DropReason::QueueFull, closes);
            return;
        }
        self.steps.closes += closes;
        self.steps.event(at.index, event, info.nanos);
        if self.steps.steps.len() >= self.batch {
            self.hand_off(false);
        }
    }
}

impl TraceFeed {
    #[inline]
    fn push(&mut self, step: Step) {
        self.steps.push(step);
        if self.steps.steps.len() >= self.batch {
            self.hand_off(false);
        }
    }

    /// A gate check of an open run (its name kept), else [`event_slow`].
    #[inline(never)]
    fn gate_or_slow(&mut self, event: &ProgressEvent, info: &EventInfo, at: RunSlot, at_ms: u64) {
        let EventKind::GateChecked {
            iteration,
            ref gate,
            passed,
            duration_ms,
        } = event.kind
        else {
            return self.event_slow(event, info, at);
        };
        let step = self
            .steps
            .gate_step(at.index, at_ms, iteration, gate, passed, duration_ms);
        self.push(step);
    }
}

impl Sink for TraceFeed {
    /// Events without metadata and strings (but a gate's name) of a run
    /// already open (most events) take a short path: this function stays small, so that it
    /// saves few registers and builds a small frame for every event.
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        // The pipeline says where the tracker keeps every run it tracks.
        let Some(at) = info.applied.slot else {
            return;
        };
        let slot = match self.slots.get_mut(at.index as usize) {
            Some(slot)
                if slot.generation == at.generation
                    && slot.state == State::Open
                    && !slot.lost
                    && event.metadata.is_none() =>
            {
                slot
            }
            _ => return self.event_slow(event, info, at),
        };
        let at_ms = event.timestamp.as_millis();
        let step = match Step::plain(at.index, at_ms, &event.kind, info.nanos) {
            Some(step) => {
                self.steps.closes += slot.nesting.step(&event.kind);
                if let EventKind::RunCompleted { .. } = event.kind {
                    slot.state = State::Ended;
                }
                step
            }
            // Pushed out of line: a step coming back from a call would
            // come through memory, and so would every other arm's (their
            // step was then read back as a 16-byte load of three 8-byte
            // stores, which no store forwarding serves: a stall an event).
            None => return self.gate_or_slow(event, info, at, at_ms),
        };
        self.push(step);
    }

    fn flush(&mut self) {
        self.hand_off(true);
    }

    /// The runs still open at shutdown are exported as they stand, every
    /// span of theirs marked unfinished and ended now: the final flush
    /// then carries them.
    fn finish(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for slot in &mut self.slots {
            let unended = slot.unended();
            if slot.lost && unended > 0 {
                self.counters.dropped(DropReason::QueueFull, unended);
            } else {
                self.steps.closes += unended;
            }
            slot.state = State::Ended;
            slot.nesting = Nesting::default();
        }
        self.steps.finish(now);
    }
}

#[cfg(test)]
mod tests;
