//! Event accounting: emitted, processed and dropped, per event type.
//!
//! Each counter has one writer where it can: a producer thread counts what
//! it emits in its own `ProducerCounters`, the drain thread counts what it
//! processes. Only drops, which are rare, share a counter between threads.
//! At any `flush()` the three agree: emitted = processed + dropped.

use std::ops::Index;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::event::EventType;

/// A counter per event type.
#[derive(Default, Debug)]
pub(crate) struct PerType([AtomicU64; EventType::COUNT]);

impl PerType {
    /// Adds one; for counters with several writers.
    pub(crate) fn add(&self, ty: EventType) {
        // Relaxed: a count, read for reporting; flush() orders it for readers.
        self.0[ty.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one without a locked instruction; only for single-writer counters.
    pub(crate) fn add_single_writer(&self, ty: EventType) {
        let cell = &self.0[ty.index()];
        // Relaxed: this thread is the only writer, readers only need a recent value.
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> EventCounts {
        // Relaxed: a snapshot for reporting; exactness comes from flush()'s barrier.
        EventCounts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// Counts per event type, as a snapshot.
///
/// ```
/// # use agentgate_obs::{EventCounts, EventType};
/// let counts = EventCounts::default();
/// assert_eq!(counts[EventType::RunStarted], 0);
/// assert_eq!(counts.total(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts([u64; EventType::COUNT]);

impl EventCounts {
    /// The sum over all types.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(type, count)` pairs in [`EventType::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (EventType, u64)> + '_ {
        EventType::ALL.into_iter().zip(self.0.iter().copied())
    }

    pub(crate) fn plus(mut self, other: &EventCounts) -> EventCounts {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }
}

impl Index<EventType> for EventCounts {
    type Output = u64;
    fn index(&self, ty: EventType) -> &u64 {
        &self.0[ty.index()]
    }
}

impl Serialize for EventCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(ty, n)| (ty.as_str(), n)))
    }
}

/// Counters one producer thread writes alone.
#[derive(Default, Debug)]
pub(crate) struct ProducerCounters {
    pub(crate) emitted: PerType,
}

#[derive(Default)]
struct Producers {
    live: Vec<Arc<ProducerCounters>>,
    /// Totals of producer threads that have exited.
    retired: EventCounts,
}

/// All of a pipeline's counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) processed: PerType,
    pub(crate) dropped: PerType,
    /// Emits from threads whose thread-local state is gone (destructors).
    pub(crate) emitted_fallback: PerType,
    pub(crate) listener_panics: AtomicU64,
    /// Active runs the tracker evicted to stay within its bound.
    pub(crate) runs_evicted: AtomicU64,
    /// Published by the drain thread after every event.
    active_runs: AtomicU64,
    producers: Mutex<Producers>,
}

impl Counters {
    /// Registers a producer thread's counters (once per thread and pipeline).
    pub(crate) fn register_producer(&self) -> Arc<ProducerCounters> {
        let counters = Arc::new(ProducerCounters::default());
        self.producers.lock().live.push(counters.clone());
        counters
    }

    pub(crate) fn set_active_runs(&self, active: u64) {
        // Relaxed: a gauge; flush() orders it for readers that need exactness.
        self.active_runs.store(active, Ordering::Relaxed);
    }

    pub(crate) fn active_runs(&self) -> u64 {
        // Relaxed: see `set_active_runs`.
        self.active_runs.load(Ordering::Relaxed)
    }

    /// Everything emitted so far, by every producer thread.
    pub(crate) fn emitted(&self) -> EventCounts {
        let mut producers = self.producers.lock();
        let Producers { live, retired } = &mut *producers;
        // A count of one means the thread is gone: fold it into `retired`
        // so the list does not grow with thread churn.
        live.retain(|p| {
            if Arc::strong_count(p) == 1 {
                // Acquire: pairs with the Release decrement of the exiting
                // thread's `Arc`, so its last counts are visible here.
                std::sync::atomic::fence(Ordering::Acquire);
                *retired = retired.plus(&p.emitted.load());
                false
            } else {
                true
            }
        });
        live.iter()
            .fold(*retired, |sum, p| sum.plus(&p.emitted.load()))
            .plus(&self.emitted_fallback.load())
    }
}

/// A snapshot of a pipeline's accounting.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStats {
    /// Events handed to the emitter.
    pub emitted: EventCounts,
    /// Events the drain thread processed.
    pub processed: EventCounts,
    /// Events dropped by the overflow policy or because the pipeline was shut down.
    pub dropped: EventCounts,
    /// Events waiting in the ring.
    pub queue_depth: usize,
    /// The ring's capacity.
    pub queue_capacity: usize,
    /// Listener calls that panicked.
    pub listener_panics: u64,
}
