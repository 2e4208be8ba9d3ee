//! The producer side's thread-local state: per pipeline, the emitted
//! counters this thread writes alone and small caches that map the `&str`
//! ids of the emit API (and the context's correlation id) to keys the drain
//! thread knows.
//!
//! A miss registers the string with the drain thread through the ring
//! (once per thread and run, in queue order before the events that use it);
//! an eviction, or the thread's exit, unregisters it. The caches are small
//! because an engine thread works on one run at a time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::Shared;
use super::envelope::{Envelope, Key, Msg, NO_CORRELATION, RunIds};
use crate::context;
use crate::event::RunTrace;
use crate::stats::ProducerCounters;

/// Runs remembered per thread and pipeline.
const RUN_CACHE: usize = 16;
/// Correlation ids remembered per thread and pipeline.
const CORRELATION_CACHE: usize = 8;

thread_local! {
    static CACHES: RefCell<Vec<PipelineCache>> = const { RefCell::new(Vec::new()) };
    /// The id of the pipeline this thread drains, 0 on every other thread.
    static DRAINING: Cell<u64> = const { Cell::new(0) };
    /// Messages emitted by listeners on the drain thread: the ring may be
    /// full and only this thread empties it, so they wait here instead.
    static DEFERRED: RefCell<VecDeque<Envelope>> = const { RefCell::new(VecDeque::new()) };
    /// Whether `DEFERRED` may hold something.
    static ANY_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn is_drain_thread(pipeline: u64) -> bool {
    DRAINING.with(|d| d.get() == pipeline)
}

pub(crate) fn mark_drain_thread(pipeline: u64) {
    DRAINING.with(|d| d.set(pipeline));
    // The queue is made now, before this thread's producer caches: thread
    // locals are destroyed in the reverse order, so it outlives them, and a
    // cache's teardown can still defer its messages into it.
    DEFERRED.with(|_| ());
}

pub(crate) fn defer_on_drain_thread(envelope: Envelope) {
    DEFERRED.with_borrow_mut(|q| q.push_back(envelope));
    ANY_DEFERRED.set(true);
}

/// The next message a listener emitted on the drain thread. Asked after
/// every event, so the usual answer (none) reads a plain flag, not the
/// queue (whose thread-local has a destructor to check for).
pub(crate) fn take_deferred() -> Option<Envelope> {
    if !ANY_DEFERRED.get() {
        return None;
    }
    let (next, now_empty) = DEFERRED.with_borrow_mut(|q| (q.pop_front(), q.is_empty()));
    if now_empty {
        ANY_DEFERRED.set(false);
    }
    next
}

struct CachedRun {
    run_id: Box<str>,
    work_order_id: Box<str>,
    key: Key,
}

struct CachedCorrelation {
    id: Arc<str>,
    key: Key,
}

/// One thread's state for one pipeline.
pub(crate) struct PipelineCache {
    pipeline: u64,
    shared: Weak<Shared>,
    pub(crate) counters: Arc<ProducerCounters>,
    /// Whether this is the pipeline's drain thread (known when the cache is
    /// made: the drain thread marks itself before it runs any listener),
    /// so an emit needs no second thread-local lookup.
    pub(crate) on_drain_thread: bool,
    /// Under `DropNewest`: when (raw ticks) this thread last found the ring
    /// full. For a short while after, it drops without touching the ring,
    /// whose lines the drain thread is working on. Set through
    /// [`set_full_since`](Self::set_full_since).
    full_since: Option<u64>,
    /// `on_drain_thread` or `full_since` set: an emit tests this one flag
    /// (and the closed flag) before the ring instead of both.
    pub(crate) takes_slow_path: bool,
    /// Drops left before the hold-off looks at the clock again.
    pub(crate) holdoff_unchecked: u32,
    /// Most recently used first.
    runs: Vec<CachedRun>,
    correlations: Vec<CachedCorrelation>,
}

impl PipelineCache {
    fn new(shared: &Arc<Shared>) -> Self {
        let on_drain_thread = is_drain_thread(shared.id);
        PipelineCache {
            pipeline: shared.id,
            shared: Arc::downgrade(shared),
            counters: shared.counters.register_producer(),
            on_drain_thread,
            full_since: None,
            takes_slow_path: on_drain_thread,
            holdoff_unchecked: 0,
            runs: Vec::with_capacity(RUN_CACHE),
            correlations: Vec::with_capacity(CORRELATION_CACHE),
        }
    }

    pub(crate) fn full_since(&self) -> Option<u64> {
        self.full_since
    }

    pub(crate) fn set_full_since(&mut self, since: Option<u64>) {
        self.full_since = since;
        self.takes_slow_path = self.on_drain_thread || since.is_some();
    }

    /// The key of the run `(work_order_id, run_id)`, registering it on a miss.
    #[inline]
    pub(crate) fn run_key(&mut self, shared: &Shared, work_order_id: &str, run_id: &str) -> Key {
        let hit = self
            .runs
            .iter()
            .position(|r| &*r.run_id == run_id && &*r.work_order_id == work_order_id);
        match hit {
            Some(0) => self.runs[0].key,
            Some(i) => {
                self.runs[..=i].rotate_right(1);
                self.runs[0].key
            }
            None => self.register_run(shared, work_order_id, run_id),
        }
    }

    #[cold]
    fn register_run(&mut self, shared: &Shared, work_order_id: &str, run_id: &str) -> Key {
        let key = register_run(shared, work_order_id, run_id, None);
        if self.runs.len() == RUN_CACHE
            && let Some(evicted) = self.runs.pop()
        {
            shared.send_reliable(Msg::UnregisterRun(evicted.key));
        }
        self.runs.insert(
            0,
            CachedRun {
                run_id: run_id.into(),
                work_order_id: work_order_id.into(),
                key,
            },
        );
        key
    }

    /// The key of the context's correlation id, registering it on a miss.
    #[inline]
    pub(crate) fn correlation_key(&mut self, shared: &Shared) -> Key {
        let addr = context::current_correlation_addr();
        if addr == 0 {
            return NO_CORRELATION;
        }
        // The cache holds a clone, so the allocation is alive and address
        // equality cannot be fooled by reuse.
        if let Some(c) = self.correlations.first()
            && Arc::as_ptr(&c.id).addr() == addr
        {
            return c.key;
        }
        context::with_current_correlation(|id| match id {
            Some(id) => self.correlation_key_slow(shared, id),
            None => NO_CORRELATION,
        })
    }

    #[cold]
    fn correlation_key_slow(&mut self, shared: &Shared, id: &Arc<str>) -> Key {
        if let Some(i) = self.correlations.iter().position(|c| c.id == *id) {
            self.correlations[..=i].rotate_right(1);
            return self.correlations[0].key;
        }
        let key = shared.next_key();
        shared.send_reliable(Msg::RegisterCorrelation {
            key,
            id: id.clone(),
        });
        if self.correlations.len() == CORRELATION_CACHE
            && let Some(evicted) = self.correlations.pop()
        {
            shared.send_reliable(Msg::UnregisterCorrelation(evicted.key));
        }
        self.correlations.insert(
            0,
            CachedCorrelation {
                id: id.clone(),
                key,
            },
        );
        key
    }
}

impl Drop for PipelineCache {
    fn drop(&mut self) {
        // The thread is exiting (or the pipeline is gone): give the keys back.
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        for run in self.runs.drain(..) {
            shared.send_reliable(Msg::UnregisterRun(run.key));
        }
        for c in self.correlations.drain(..) {
            shared.send_reliable(Msg::UnregisterCorrelation(c.key));
        }
    }
}

/// Registers a run with the drain thread and returns its new key;
/// `trace` is the run's place in its trace when the caller chose it.
pub(crate) fn register_run(
    shared: &Shared,
    work_order_id: &str,
    run_id: &str,
    trace: Option<RunTrace>,
) -> Key {
    let key = shared.next_key();
    shared.send_reliable(Msg::RegisterRun {
        key,
        ids: Box::new(RunIds {
            work_order_id: Arc::from(work_order_id),
            run_id: Arc::from(run_id),
            trace,
        }),
    });
    key
}

/// Runs `f` with this thread's cache for `shared`'s pipeline. `None` when
/// the thread-local state is already destroyed (an emit from a thread-local
/// destructor); the caller then takes the uncached path.
#[inline]
pub(crate) fn with_cache<R>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut PipelineCache) -> R,
) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            // The pipeline last emitted to is first, so the common emit
            // compares one id and searches nothing.
            let cache = if caches.first().is_some_and(|c| c.pipeline == shared.id) {
                &mut caches[0]
            } else {
                move_to_front(&mut caches, shared)
            };
            Some(f(cache))
        })
        .ok()
        .flatten()
}

/// Puts `shared`'s cache first among this thread's, making it if needed.
#[cold]
fn move_to_front<'c>(
    caches: &'c mut Vec<PipelineCache>,
    shared: &Arc<Shared>,
) -> &'c mut PipelineCache {
    match caches.iter().position(|c| c.pipeline == shared.id) {
        Some(i) => caches[..=i].rotate_right(1),
        None => {
            // Forget pipelines that are gone before adding one.
            caches.retain(|c| c.shared.strong_count() > 0);
            caches.insert(0, PipelineCache::new(shared));
        }
    }
    &mut caches[0]
}
