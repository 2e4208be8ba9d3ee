//! Event accounting: emitted, processed and dropped, per event type.
//!
//! Each counter has one writer where it can: a producer thread counts what
//! it emits in its own `ProducerCounters`, the drain thread counts what it
//! processes. Drops by the overflow policy are counted by the producer that
//! drops (a producer that finds the ring full drops at its own speed, so a
//! shared counter would be a contended line); only the rare other drops
//! (shutdown, the uncached paths) share a counter between threads.
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

    /// Adds `n`; for counters with several writers.
    pub(crate) fn add_n(&self, ty: EventType, n: u64) {
        // Relaxed: a count, read for reporting; flush() orders it for readers.
        self.0[ty.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one without a locked instruction; only for single-writer counters.
    #[inline]
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
/// # use agentgate_obs::event::EventType;
/// # use agentgate_obs::stats::EventCounts;
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

/// Counters one producer thread writes alone. Aligned to two cache lines
/// (the adjacent-line prefetcher pairs them) so that two producers'
/// counters, allocated side by side, do not share a line.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct ProducerCounters {
    pub(crate) emitted: PerType,
    pub(crate) dropped: PerType,
}

#[derive(Default)]
struct Producers {
    live: Vec<Arc<ProducerCounters>>,
    /// Totals of producer threads that have exited.
    retired_emitted: EventCounts,
    retired_dropped: EventCounts,
}

impl Producers {
    /// Folds the counters of exited threads into the retired totals, so
    /// the list does not grow with thread churn.
    fn retire_exited(&mut self) {
        let Producers {
            live,
            retired_emitted,
            retired_dropped,
        } = self;
        live.retain(|p| {
            // A count of one means the thread is gone.
            if Arc::strong_count(p) == 1 {
                // Acquire: pairs with the Release decrement of the exiting
                // thread's `Arc`, so its last counts are visible here.
                std::sync::atomic::fence(Ordering::Acquire);
                *retired_emitted = retired_emitted.plus(&p.emitted.load());
                *retired_dropped = retired_dropped.plus(&p.dropped.load());
                false
            } else {
                true
            }
        });
    }
}

/// Drops: the shared counter plus every producer's own.
#[derive(Default)]
pub(crate) struct Dropped {
    shared: PerType,
    producers: Arc<Mutex<Producers>>,
}

impl Dropped {
    /// Adds one to the shared counter (drops outside a producer's cache).
    pub(crate) fn add(&self, ty: EventType) {
        self.shared.add(ty);
    }

    /// Adds `n` to the shared counter: a batch of events lost together
    /// (a replay's after shutdown) is counted at once.
    pub(crate) fn add_n(&self, ty: EventType, n: u64) {
        self.shared.add_n(ty, n);
    }

    /// Everything dropped so far.
    pub(crate) fn load(&self) -> EventCounts {
        let mut producers = self.producers.lock();
        producers.retire_exited();
        producers
            .live
            .iter()
            .fold(producers.retired_dropped, |sum, p| {
                sum.plus(&p.dropped.load())
            })
            .plus(&self.shared.load())
    }
}

/// Keeps a counter the drain thread writes per event off the lines the
/// producers read per emit.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// All of a pipeline's counters.
#[derive(Default)]
pub(crate) struct Counters {
    /// Written by the drain thread per event.
    pub(crate) processed: Padded<PerType>,
    pub(crate) dropped: Dropped,
    /// Emits from threads whose thread-local state is gone (destructors).
    pub(crate) emitted_fallback: PerType,
    pub(crate) listener_panics: AtomicU64,
    /// Active runs the tracker evicted to stay within its bound.
    pub(crate) runs_evicted: AtomicU64,
    /// Published by the drain thread after every event.
    active_runs: AtomicU64,
}

impl Counters {
    /// Registers a producer thread's counters (once per thread and pipeline).
    pub(crate) fn register_producer(&self) -> Arc<ProducerCounters> {
        let counters = Arc::new(ProducerCounters::default());
        self.dropped.producers.lock().live.push(counters.clone());
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
        let mut producers = self.dropped.producers.lock();
        producers.retire_exited();
        producers
            .live
            .iter()
            .fold(producers.retired_emitted, |sum, p| {
                sum.plus(&p.emitted.load())
            })
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
