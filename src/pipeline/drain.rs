//! The drain thread: the only reader of the ring. It owns the run tracker
//! and the sinks, so none of them needs a lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::Shared;
use super::clock::WallClock;
use super::envelope::{Annotated, Body, Envelope, Key, Msg, NO_CORRELATION, RunIds};
use super::listeners::{Listener, Listeners};
use super::producer;
use crate::event::{EventKind, Metadata, ProgressEvent, RunTrace};
use crate::journal::writer::JournalSink;
use crate::redact::{CleanIds, Redactor};
use crate::tracker::{Applied, RecentHints, RunTracker, SlotHint};

/// What the drain thread knows about an event beyond the event itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventInfo {
    /// The drain thread's processing number, from 1.
    pub(crate) seq: u64,
    /// Raw clock ticks when the event was emitted.
    pub(crate) ticks: u64,
    /// Raw clock ticks when the drain thread took it: the clock is read
    /// once per run of up to [`RECEIPT_EVERY`] events, and again for an
    /// event stamped after the last read, so it is never before `ticks`.
    pub(crate) received: u64,
    /// The exact duration of a `phase_completed`, in nanoseconds (the
    /// event itself carries milliseconds).
    pub(crate) nanos: Option<u64>,
    /// What the event did to its run.
    pub(crate) applied: Applied,
    /// The trace the run's handle chose (root span, caller's span), for
    /// events that came through one.
    pub(crate) trace: Option<RunTrace>,
}

#[cfg(test)]
impl EventInfo {
    /// What the drain thread says of an event whose run the tracker keeps
    /// at `slot`, for sinks fed by hand in tests.
    pub(crate) fn at_slot(slot: crate::tracker::RunSlot, nanos: Option<u64>) -> EventInfo {
        EventInfo {
            seq: 1,
            ticks: 0,
            received: 0,
            nanos,
            applied: Applied {
                slot: Some(slot),
                ..Applied::default()
            },
            trace: None,
        }
    }
}

/// A component fed by the drain thread, in processing order.
pub(crate) trait Sink: Send {
    /// Called once per processed event, before the listeners.
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo);

    /// Called when the ring runs empty and before every control message:
    /// a sink that batches publishes what it holds.
    fn flush(&mut self) {}

    /// Called once when the pipeline stops, after the last event and
    /// before the last [`flush`](Self::flush): a sink that holds state
    /// about runs still open settles it.
    fn finish(&mut self) {}
}

impl Sink for crate::log::ProgressLog {
    fn event(&mut self, event: &ProgressEvent, _info: &EventInfo) {
        self.log(event);
    }
}

/// Events per clock read on the drain thread at most (a read is ~10 ns, as
/// much as the rest of a hot event's metrics); see [`EventInfo::received`].
const RECEIPT_EVERY: u32 = 32;

/// The drain thread's idea of "now" for queue latencies.
struct Receipt {
    clock: quanta::Clock,
    ticks: u64,
    /// Events stamped with `ticks` so far.
    uses: u32,
}

impl Receipt {
    /// When the event stamped `emitted` was taken off the ring.
    #[inline]
    fn stamp(&mut self, emitted: u64) -> u64 {
        if self.uses >= RECEIPT_EVERY || emitted > self.ticks {
            self.ticks = self.clock.raw();
            self.uses = 0;
        }
        self.uses += 1;
        self.ticks
    }
}

/// Hashes the pipeline's own sequential keys: they are already well spread.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing spreads sequential keys over the table's high bits.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// A registered run: its event, reused for every event of the run so
/// that processing one clones and drops no `Arc`s.
struct RunEntry {
    event: ProgressEvent,
    trace: Option<RunTrace>,
    /// The correlation key `event.correlation_id` stands for.
    correlation: Key,
    hint: SlotHint,
}

impl RunEntry {
    fn new(ids: RunIds) -> Self {
        RunEntry {
            event: ProgressEvent {
                timestamp: Default::default(),
                correlation_id: ids.run_id.clone(),
                work_order_id: ids.work_order_id,
                run_id: ids.run_id,
                trace_id: ids.trace.map(|t| t.trace_id),
                metadata: None,
                kind: EventKind::DeliveryStarted,
            },
            trace: ids.trace,
            correlation: NO_CORRELATION,
            hint: SlotHint::default(),
        }
    }
}

/// The drain thread's state.
pub(crate) struct Drain {
    pub(crate) shared: Arc<Shared>,
    rx: Receiver<Envelope>,
    runs: KeyMap<RunEntry>,
    correlations: KeyMap<Arc<str>>,
    pub(crate) tracker: RunTracker,
    pub(crate) sinks: Vec<Box<dyn Sink>>,
    /// The journal, fed after the other sinks. Not one of them: its
    /// per-event work is packing one word, and through a virtual call
    /// each event also paid a call, a stack frame and four saved
    /// registers (see docs/ARCHITECTURE.md, "The journal").
    pub(crate) journal: Option<JournalSink>,
    /// Where the pipeline reports its own errors (listener panics).
    pub(crate) log: Option<Arc<crate::log::Dispatch>>,
    wall: WallClock,
    receipt: Receipt,
    /// Processing number of the last event.
    pub(crate) seq: u64,
    listeners: ListenerCache,
    /// Applied to every caller string as it enters: registered ids, boxed
    /// payloads, whole events from `emit`. Every consumer sees the result.
    redactor: Arc<Redactor>,
    /// Ids of whole events (`emit`, replay) already found clean.
    clean_ids: CleanIds,
    /// Where the runs of whole events were last found.
    owned_hints: RecentHints,
    stopping: bool,
}

impl Drain {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Envelope>,
        max_finished: usize,
        max_runs: usize,
        redactor: Arc<Redactor>,
    ) -> Self {
        Drain {
            wall: WallClock::new(shared.clock.clone()),
            receipt: Receipt {
                clock: shared.clock.clone(),
                ticks: 0,
                uses: RECEIPT_EVERY,
            },
            shared,
            rx,
            runs: KeyMap::default(),
            correlations: KeyMap::default(),
            tracker: RunTracker::new(max_finished, max_runs),
            sinks: Vec::new(),
            journal: None,
            log: None,
            seq: 0,
            listeners: ListenerCache {
                version: u64::MAX,
                set: Arc::default(),
            },
            redactor,
            clean_ids: CleanIds::default(),
            owned_hints: RecentHints::default(),
            stopping: false,
        }
    }

    /// Asks the loop to end once the ring is empty.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    /// Lets batching sinks publish what they hold.
    pub(crate) fn flush_sinks(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
        if let Some(journal) = &mut self.journal {
            journal.flush();
        }
    }

    /// The next envelope; flushes the sinks before waiting for one.
    fn next(&mut self) -> Option<Envelope> {
        match self.rx.try_recv() {
            Ok(envelope) => Some(envelope),
            Err(_) => {
                self.flush_sinks();
                self.rx.recv().ok()
            }
        }
    }

    /// The thread's body: runs until a stop control message and an empty ring.
    pub(crate) fn run(mut self) -> RunTracker {
        producer::mark_drain_thread(self.shared.id);
        while let Some(envelope) = self.next() {
            self.handle(envelope);
            if self.stopping {
                // The emitters see the pipeline closed; take what raced in.
                while let Ok(envelope) = self.rx.try_recv() {
                    self.handle(envelope);
                }
                for sink in &mut self.sinks {
                    sink.finish();
                }
                self.flush_sinks();
                break;
            }
        }
        self.tracker
    }

    fn handle(&mut self, envelope: Envelope) {
        self.handle_one(envelope);
        self.handle_deferred();
    }

    /// Processes what listeners emitted meanwhile, right after the event
    /// they saw.
    fn handle_deferred(&mut self) {
        while let Some(deferred) = producer::take_deferred() {
            self.handle_one(deferred);
        }
    }

    fn handle_one(&mut self, envelope: Envelope) {
        let Envelope { ticks, msg } = envelope;
        match msg {
            Msg::Event {
                run,
                correlation,
                body,
            } => self.process_keyed(ticks, run, correlation, body, None),
            Msg::Annotated(annotated) => {
                let Annotated {
                    run,
                    correlation,
                    body,
                    metadata,
                } = *annotated;
                self.process_keyed(ticks, run, correlation, body, Some(metadata));
            }
            Msg::Owned(event) => self.process_owned(*event, ticks),
            Msg::OwnedBatch(events) => {
                for event in events {
                    self.process_owned(event, ticks);
                    // As for events sent one by one: what a listener emits
                    // about this event comes before the batch's next.
                    self.handle_deferred();
                }
            }
            Msg::RegisterRun { key, mut ids } => {
                // Once per run: the keyed events reuse these ids.
                self.redactor.redact_arc(&mut ids.work_order_id);
                self.redactor.redact_arc(&mut ids.run_id);
                self.runs.insert(key, RunEntry::new(*ids));
            }
            Msg::UnregisterRun(key) => {
                self.runs.remove(&key);
            }
            Msg::RegisterCorrelation { key, mut id } => {
                self.redactor.redact_arc(&mut id);
                self.correlations.insert(key, id);
            }
            Msg::UnregisterCorrelation(key) => {
                self.correlations.remove(&key);
            }
            Msg::Control(work) => {
                self.flush_sinks();
                work(self);
            }
        }
    }

    fn process_keyed(
        &mut self,
        ticks: u64,
        run: Key,
        correlation: Key,
        body: Body,
        metadata: Option<Arc<Metadata>>,
    ) {
        // Destructured so the run's reusable event and the rest of the
        // drain state can be borrowed at once.
        let Drain {
            shared,
            runs,
            correlations,
            tracker,
            sinks,
            journal,
            wall,
            receipt,
            seq,
            listeners,
            log,
            redactor,
            ..
        } = self;
        let Some(entry) = runs.get_mut(&run) else {
            // Unreachable by construction: registration precedes use in
            // queue order and unregistration follows it. Counted, not lost.
            debug_assert!(false, "event for unregistered run key {run}");
            shared.counters.dropped.add(body.event_type());
            return;
        };
        if entry.correlation != correlation {
            // Keys are never reused, so the id only changes with the key.
            let run_id = &entry.event.run_id;
            entry.event.correlation_id = match correlation {
                NO_CORRELATION => run_id.clone(),
                key => correlations
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| run_id.clone()),
            };
            entry.correlation = correlation;
        }
        let nanos = expand_into(&mut entry.event.kind, body, redactor);
        // The reused event keeps no metadata from one event to the next.
        if metadata.is_some() || entry.event.metadata.is_some() {
            entry.event.metadata = metadata;
            if let Some(metadata) = &mut entry.event.metadata {
                redactor.redact_metadata(metadata);
            }
        }
        entry.event.timestamp = wall.timestamp(ticks);
        let info = Delivery {
            shared,
            tracker,
            sinks,
            journal,
            seq,
            listeners,
            log: log.as_deref(),
        };
        let received = receipt.stamp(ticks);
        let trace = entry.trace;
        info.deliver(
            &mut entry.event,
            &mut entry.hint,
            ticks,
            received,
            nanos,
            trace,
        );
    }

    /// A whole event (`emit`, replay): redacted here, since nothing about
    /// it was registered beforehand.
    fn process_owned(&mut self, mut event: ProgressEvent, ticks: u64) {
        self.redactor.redact_event(&mut event, &mut self.clean_ids);
        let received = self.receipt.stamp(ticks);
        let Drain {
            shared,
            tracker,
            sinks,
            journal,
            seq,
            listeners,
            log,
            owned_hints,
            ..
        } = self;
        let hint = owned_hints.hint_for(&event);
        Delivery {
            shared,
            tracker,
            sinks,
            journal,
            seq,
            listeners,
            log: log.as_deref(),
        }
        .deliver(&mut event, hint, ticks, received, None, None);
    }
}

/// The parts of the drain state that processing an event touches.
struct Delivery<'a> {
    shared: &'a Arc<Shared>,
    tracker: &'a mut RunTracker,
    sinks: &'a mut Vec<Box<dyn Sink>>,
    journal: &'a mut Option<JournalSink>,
    seq: &'a mut u64,
    listeners: &'a mut ListenerCache,
    log: Option<&'a crate::log::Dispatch>,
}

impl Delivery<'_> {
    /// Applies the event to the tracker, then hands it to the sinks and
    /// the listeners, and counts it processed.
    fn deliver(
        self,
        event: &mut ProgressEvent,
        hint: &mut SlotHint,
        ticks: u64,
        received: u64,
        nanos: Option<u64>,
        trace: Option<RunTrace>,
    ) {
        let ty = event.event_type();
        let applied = self.tracker.apply(event, hint);
        if applied.new_run || applied.finished.is_some() {
            if applied.evicted_active {
                // Relaxed: a count for reporting, ordered for readers by flush().
                self.shared
                    .counters
                    .runs_evicted
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.shared.counters.set_active_runs(self.tracker.active());
        }
        *self.seq += 1;
        let info = EventInfo {
            seq: *self.seq,
            ticks,
            received,
            nanos,
            applied,
            trace,
        };
        for sink in self.sinks.iter_mut() {
            sink.event(event, &info);
        }
        if let Some(journal) = self.journal {
            journal.event(event, info.seq);
        }
        let event = &*event;
        for listener in self.listeners.current(&self.shared.listeners).iter() {
            if !listener.is_active() {
                continue;
            }
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (listener.f)(event))) {
                // Relaxed: a count for reporting.
                self.shared
                    .counters
                    .listener_panics
                    .fetch_add(1, Ordering::Relaxed);
                crate::diagnostics::listener_panicked(self.log, event, panic_message(&panic));
            }
        }
        self.shared.counters.processed.add_single_writer(ty);
    }
}

/// The drain thread's copy of the listener set, refreshed only when the
/// set's version changes: cheaper than loading the `ArcSwap` per event.
struct ListenerCache {
    version: u64,
    set: Arc<Vec<Arc<Listener>>>,
}

impl ListenerCache {
    fn current(&mut self, listeners: &Listeners) -> &[Arc<Listener>] {
        let version = listeners.version();
        if version != self.version {
            self.set = listeners.load_full();
            self.version = version;
        }
        &self.set
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

/// Writes an envelope body into a run's reusable event; returns the exact
/// phase duration. The frequent case, a phase event after one of the same
/// type, overwrites the fields in place instead of building, moving and
/// dropping a whole `EventKind`.
fn expand_into(kind: &mut EventKind, body: Body, redactor: &Redactor) -> Option<u64> {
    match (kind, body) {
        (
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            },
            Body::PhaseCompleted {
                iteration: i,
                phase: p,
                success: ok,
                nanos,
            },
        ) => {
            (*iteration, *phase, *success) = (i, p, ok);
            *duration_ms = nanos / 1_000_000;
            Some(nanos)
        }
        (
            EventKind::PhaseStarted { iteration, phase },
            Body::PhaseStarted {
                iteration: i,
                phase: p,
            },
        ) => {
            (*iteration, *phase) = (i, p);
            None
        }
        (kind, body) => {
            let (new, nanos) = expand(body, redactor);
            *kind = new;
            nanos
        }
    }
}

/// Turns an envelope body into a public payload, with the exact phase
/// duration on the side. The bodies carrying caller strings (boxed ones,
/// gate names) are redacted; the `Copy` ones carry none.
fn expand(body: Body, redactor: &Redactor) -> (EventKind, Option<u64>) {
    match body {
        Body::IterationStarted {
            iteration,
            max_iterations,
        } => (
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            },
            None,
        ),
        Body::IterationCompleted {
            iteration,
            success,
            timings,
        } => (
            EventKind::IterationCompleted {
                iteration,
                success,
                phase_timings: timings.into(),
                gate_results: Vec::new(),
            },
            None,
        ),
        Body::PhaseStarted { iteration, phase } => {
            (EventKind::PhaseStarted { iteration, phase }, None)
        }
        Body::PhaseCompleted {
            iteration,
            phase,
            success,
            nanos,
        } => (
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms: nanos / 1_000_000,
            },
            Some(nanos),
        ),
        Body::GateChecked {
            iteration,
            gate,
            passed,
            duration_ms,
        } => (
            EventKind::GateChecked {
                iteration,
                gate: redactor.redact_str(gate.as_str()).into_owned(),
                passed,
                duration_ms: duration_ms.map(u64::from),
            },
            None,
        ),
        Body::DeliveryStarted => (EventKind::DeliveryStarted, None),
        Body::Boxed(mut kind) => {
            redactor.redact_kind(&mut kind);
            (*kind, None)
        }
    }
}
