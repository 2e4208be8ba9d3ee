//! Both sides of trace export in one thread, for tests: events go in as
//! the drain thread feeds them, spans come out as the exporter thread
//! builds them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Receiver;

use super::builder::SpanBuilder;
use super::feed::{HandOff, STEPS_PER_SPAN, TraceFeed};
use super::spans::SpanData;
use super::steps::Steps;
use crate::event::{EventKind, ProgressEvent, Timestamp, TraceId};
use crate::metrics::delivery::{DeliveryCounters, DropReason};
use crate::pipeline::drain::{EventInfo, Sink};
use crate::tracker::RunSlot;

/// A feed, its queue and a builder reading from it.
pub(crate) struct Pipe {
    pub(crate) feed: TraceFeed,
    queue: Receiver<Steps>,
    /// Steps in the queue, as the feed counts them.
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) builder: SpanBuilder,
    pub(crate) counters: Arc<DeliveryCounters>,
    /// Spans the batches taken so far were to end.
    pub(crate) closes: u64,
}

impl Pipe {
    /// A queue of `max_queue` spans' worth of steps.
    pub(crate) fn new(max_queue: usize) -> Pipe {
        let (queue, rx) = crossbeam_channel::unbounded();
        let (_, recycled) = crossbeam_channel::bounded(1);
        let (doorbell, _) = crossbeam_channel::bounded(1);
        let queued = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(DeliveryCounters::default());
        let hand_off = HandOff {
            queue,
            recycled,
            doorbell,
            queued: queued.clone(),
            capacity: max_queue * STEPS_PER_SPAN,
        };
        Pipe {
            feed: TraceFeed::new(hand_off, counters.clone()),
            queue: rx,
            queued,
            builder: SpanBuilder::new(),
            counters,
            closes: 0,
        }
    }

    /// `kind` of `run`, which the tracker keeps at `slot`, at `millis`.
    pub(crate) fn feed_at(
        &mut self,
        run: &str,
        slot: RunSlot,
        millis: u64,
        kind: EventKind,
        nanos: Option<u64>,
    ) {
        let mut event = ProgressEvent::new("wo", run, kind);
        event.timestamp = Timestamp::from_millis(millis);
        // As the tracker sets it: one trace per run.
        event.trace_id = TraceId::from_bytes([run.len() as u8 + 1; 16]);
        self.event(&event, &EventInfo::at_slot(slot, nanos));
    }

    pub(crate) fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        self.feed.event(event, info);
    }

    /// What the pipeline calls when it stops.
    pub(crate) fn finish(&mut self) {
        self.feed.finish();
    }

    /// Hands over what the feed holds, and takes nothing.
    pub(crate) fn flush(&mut self) {
        self.feed.flush();
    }

    /// The spans of every batch handed over so far.
    pub(crate) fn spans(&mut self) -> Vec<SpanData> {
        self.feed.flush();
        self.take()
    }

    /// The spans of the batches in the queue, as an exporter thread that
    /// takes each at once would make them; the batch being filled stays.
    pub(crate) fn take(&mut self) -> Vec<SpanData> {
        let mut spans = Vec::new();
        for steps in self.queue.try_iter() {
            self.queued.fetch_sub(steps.steps.len(), Ordering::Relaxed);
            self.closes += steps.closes;
            self.builder.read(&steps, &mut spans);
        }
        spans
    }

    /// Spans counted dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.counters.stats().dropped[DropReason::QueueFull as usize]
    }
}
