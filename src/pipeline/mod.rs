//! The pipeline: a bounded crossbeam ring between the engine's threads and
//! one drain thread.
//!
//! Producers ([`producer`]) stamp an event with raw clock ticks, look up
//! their run's key in a thread-local cache and push a `Copy` envelope; no
//! lock, no allocation, no I/O. The drain thread ([`drain`]) turns envelopes
//! into [`ProgressEvent`](crate::ProgressEvent)s, applies them to the run
//! tracker and hands them to the sinks and listeners. Anything else that
//! must happen in queue order (flush barriers, snapshots) travels the same
//! ring as a control message.

mod clock;
pub(crate) use clock::new_clock;
pub(crate) mod drain;
pub(crate) mod envelope;
pub(crate) mod listeners;
pub(crate) mod producer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::EventType;
use crate::stats::Counters;
use envelope::{Envelope, Key, Msg};
use listeners::Listeners;

/// What an emit does when the ring is full.
///
/// Run lifecycle events (`run_started`, `run_completed`, `run_canceled`,
/// `run_failed`, `delivery_completed`) always wait for space, whatever the
/// policy. Every drop is counted per event type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the event being emitted (the default): the engine never waits.
    #[default]
    DropNewest,
    /// Wait for space: nothing is dropped, the engine may wait.
    Block,
    /// Wait up to the duration, then drop.
    BlockFor(Duration),
}

/// How long a blocked sender waits before looking whether the pipeline shut down.
const BLOCKED_RECHECK: Duration = Duration::from_millis(20);

/// Under `DropNewest`, how long a producer that found the ring full drops
/// without looking at it again: the drain thread frees a few hundred slots
/// meanwhile at full speed, far less than the ring holds.
const FULL_HOLDOFF_NANOS: u64 = 20_000;

/// Drops between two looks at the clock while holding off.
const HOLDOFF_CHECK_EVERY: u32 = 8;

/// A dropping producer (`DropNewest`) sends again once `1 / DROP_ROOM` of
/// the ring is free: less than a blocked one waits for, since every event
/// it does not send meanwhile is lost.
const DROP_ROOM: usize = 8;

/// A blocked producer sends again once `1 / ROOM` of the ring is free.
const ROOM: usize = 2;

/// One step of a full ring's back-off: spins first (the drain thread frees
/// slots within nanoseconds), then yields the core (to the drain thread if
/// they share it), then sleeps briefly (50 µs: the drain thread empties a
/// few hundred slots meanwhile, and a large ring many times that). Returns
/// whether it slept.
fn back_off(round: u32) -> bool {
    const SPINS: u32 = 6;
    const YIELDS: u32 = 16;
    if round < SPINS {
        for _ in 0..(1u32 << round) * 16 {
            std::hint::spin_loop();
        }
        false
    } else if round < SPINS + YIELDS {
        std::thread::yield_now();
        false
    } else {
        std::thread::sleep(Duration::from_micros(50));
        true
    }
}

/// Gives every pipeline a process-unique id, for the thread-local caches.
static NEXT_PIPELINE_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by the emitters, the drain thread and the `Observability` handle.
pub(crate) struct Shared {
    pub(crate) id: u64,
    tx: Sender<Envelope>,
    /// Kept so that messages sent after the drain thread stopped can still
    /// be found and counted as dropped.
    rx: Receiver<Envelope>,
    overflow: Overflow,
    closed: AtomicBool,
    pub(crate) clock: quanta::Clock,
    pub(crate) counters: Counters,
    pub(crate) listeners: Listeners,
    next_key: AtomicU64,
    pub(crate) capacity: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("id", &self.id)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> (Arc<Shared>, Receiver<Envelope>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let shared = Arc::new(Shared {
            // Relaxed: only uniqueness matters.
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            rx: rx.clone(),
            overflow,
            closed: AtomicBool::new(false),
            clock: clock::new_clock(),
            counters: Counters::default(),
            listeners: Listeners::default(),
            next_key: AtomicU64::new(1),
            capacity,
        });
        (shared, rx)
    }

    pub(crate) fn next_key(&self) -> Key {
        // Relaxed: only uniqueness matters.
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with `close`, so a thread that sees it closed also
        // sees that the drain thread is stopping.
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        // Release: see `is_closed`.
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Sends an event under the overflow policy; counts it as dropped when
    /// it is not accepted. For emits without this thread's cache (owned
    /// events, emits from thread-local destructors).
    #[inline]
    pub(crate) fn send_event(&self, envelope: Envelope, ty: EventType) {
        if producer::is_drain_thread(self.id) {
            producer::defer_on_drain_thread(envelope);
            return;
        }
        if self.is_closed() {
            self.counters.dropped.add(ty);
            return;
        }
        match self.tx.try_send(envelope) {
            Ok(()) => {}
            Err(TrySendError::Full(envelope)) => {
                if !self.send_full(envelope, ty) {
                    self.counters.dropped.add(ty);
                }
            }
            Err(TrySendError::Disconnected(_)) => self.counters.dropped.add(ty),
        }
    }

    /// [`send_event`](Self::send_event) for an emit holding this thread's
    /// cache: no thread-local lookup, drops counted in the thread's own
    /// counters, and under `DropNewest` a ring found full stays "full" for
    /// [`FULL_HOLDOFF_NANOS`], during which droppable events are dropped
    /// without touching the ring. A producer that retried per event would
    /// pull the ring's head and slot lines away from the drain thread at
    /// its own (much higher) rate and slow it down: overload would lower
    /// what gets processed.
    ///
    /// `msg` makes the message where it is sent, so that it is written
    /// once, straight into what the ring copies to its slot. The envelope
    /// is stamped after the checks that may drop it unread; a caller that
    /// timed something with its own clock read (a guard) passes it as
    /// `stamped`, so the event carries the same instant.
    #[inline]
    pub(crate) fn send_event_cached(
        &self,
        cache: &mut producer::PipelineCache,
        ty: EventType,
        stamped: Option<u64>,
        msg: impl FnOnce() -> Msg,
    ) {
        // The three rare states (drain thread, holding off, closed) cost
        // two flag tests here; the slow path tells them apart.
        if cache.takes_slow_path | self.is_closed() {
            // Stamped by the slow path.
            let envelope = Envelope {
                ticks: 0,
                msg: msg(),
            };
            self.send_event_cached_slow(cache, envelope, ty, stamped);
            return;
        }
        let ticks = stamped.unwrap_or_else(|| self.clock.raw());
        if let Err(refused) = self.tx.try_send(Envelope { ticks, msg: msg() }) {
            self.send_refused(cache, refused, ty);
        }
    }

    /// [`send_event_cached`](Self::send_event_cached) when this is the
    /// drain thread, the pipeline is closed or the ring was found full.
    #[cold]
    #[inline(never)]
    fn send_event_cached_slow(
        &self,
        cache: &mut producer::PipelineCache,
        mut envelope: Envelope,
        ty: EventType,
        stamped: Option<u64>,
    ) {
        let now = || stamped.unwrap_or_else(|| self.clock.raw());
        if cache.on_drain_thread {
            envelope.ticks = now();
            producer::defer_on_drain_thread(envelope);
            return;
        }
        if self.is_closed() {
            cache.counters.dropped.add_single_writer(ty);
            return;
        }
        let droppable = self.overflow == Overflow::DropNewest && !ty.is_lifecycle();
        if droppable && self.holding_off(cache) {
            cache.counters.dropped.add_single_writer(ty);
            return;
        }
        envelope.ticks = now();
        match self.tx.try_send(envelope) {
            Ok(()) => cache.set_full_since(None),
            Err(refused) => self.send_refused(cache, refused, ty),
        }
    }

    /// The ring refused an emit holding this thread's cache: applies the
    /// policy, counting the event as dropped when it is not sent.
    #[cold]
    #[inline(never)]
    fn send_refused(
        &self,
        cache: &mut producer::PipelineCache,
        refused: TrySendError<Envelope>,
        ty: EventType,
    ) {
        match refused {
            TrySendError::Full(envelope) => {
                if self.overflow == Overflow::DropNewest && !ty.is_lifecycle() {
                    cache.set_full_since(Some(envelope.ticks));
                    cache.holdoff_unchecked = HOLDOFF_CHECK_EVERY;
                    cache.counters.dropped.add_single_writer(ty);
                } else if !self.send_full(envelope, ty) {
                    cache.counters.dropped.add_single_writer(ty);
                }
            }
            TrySendError::Disconnected(_) => cache.counters.dropped.add_single_writer(ty),
        }
    }

    /// Whether this producer found the ring full less than
    /// [`FULL_HOLDOFF_NANOS`] ago, or since then not `1 / DROP_ROOM` of it free
    /// again. It reads the clock (and the ring's length) only every
    /// [`HOLDOFF_CHECK_EVERY`] drops: a clock read costs more than the rest
    /// of a dropped emit.
    #[inline]
    fn holding_off(&self, cache: &mut producer::PipelineCache) -> bool {
        let Some(since) = cache.full_since() else {
            return false;
        };
        if cache.holdoff_unchecked > 0 {
            cache.holdoff_unchecked -= 1;
            return true;
        }
        let now = self.clock.raw();
        if self.clock.delta_as_nanos(since, now) < FULL_HOLDOFF_NANOS {
            cache.holdoff_unchecked = HOLDOFF_CHECK_EVERY;
            return true;
        }
        // Over: sends resume once the drain thread has emptied `1 /
        // DROP_ROOM` of the ring, so that they land far from where it reads.
        // Resuming into the few slots it just freed kept both threads on the
        // same cache lines: measured, the drain thread then processed a
        // fifth less than under `Block`.
        if self.capacity - self.tx.len().min(self.capacity) < (self.capacity / DROP_ROOM).max(1) {
            cache.set_full_since(Some(now));
            cache.holdoff_unchecked = HOLDOFF_CHECK_EVERY;
            return true;
        }
        false
    }

    /// The ring was full: applies the policy. False when the event is dropped.
    #[cold]
    fn send_full(&self, envelope: Envelope, ty: EventType) -> bool {
        match self.overflow {
            _ if ty.is_lifecycle() => self.wait_and_send(envelope, None),
            Overflow::Block => self.wait_and_send(envelope, None),
            Overflow::DropNewest => false,
            Overflow::BlockFor(limit) => {
                self.wait_and_send(envelope, Some(std::time::Instant::now() + limit))
            }
        }
    }

    /// Sends a message that must not be dropped (registrations, control,
    /// lifecycle events), waiting for space. Returns false only when the
    /// pipeline is shut down.
    pub(crate) fn send_reliable(&self, msg: Msg) -> bool {
        let envelope = Envelope {
            ticks: self.clock.raw(),
            msg,
        };
        if producer::is_drain_thread(self.id) {
            producer::defer_on_drain_thread(envelope);
            return true;
        }
        !self.is_closed() && self.send_blocking(envelope)
    }

    fn send_blocking(&self, envelope: Envelope) -> bool {
        match self.tx.try_send(envelope) {
            Ok(()) => true,
            Err(TrySendError::Full(envelope)) => self.wait_and_send(envelope, None),
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The ring is full: waits until the drain thread has emptied part of
    /// it, then sends. False when the pipeline shut down, or at `deadline`.
    ///
    /// It does not block inside crossbeam: a sender parked there is woken
    /// by the drain thread after every single message it takes, so a full
    /// ring cost a wake-up per event on both sides. Instead it backs off
    /// (spin, yield, then short sleeps). While spinning and yielding it
    /// looks only at the ring's length and sends once `1 / ROOM` of the ring
    /// is free, so that it writes far behind where the drain thread reads.
    /// Under `DropNewest` (where only lifecycle events wait) it tries to
    /// send after each sleep whatever the length: producers holding off
    /// refill the ring as it frees, so it might never be that free. Under
    /// the other policies every producer waits alike.
    #[cold]
    fn wait_and_send(&self, mut envelope: Envelope, deadline: Option<std::time::Instant>) -> bool {
        let room = (self.capacity / ROOM).max(1);
        let mut round = 0u32;
        loop {
            if self.is_closed() {
                return false;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            let slept = back_off(round);
            round = round.saturating_add(1);
            let patient = !slept || self.overflow != Overflow::DropNewest;
            if patient && self.capacity - self.tx.len().min(self.capacity) < room {
                continue;
            }
            match self.tx.try_send(envelope) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => envelope = back,
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    /// Asks the drain thread to stop once it has processed everything
    /// before this message. Used after `close`, so it ignores the closed
    /// flag; gives up only if the drain thread is gone (`drain_alive` false).
    pub(crate) fn send_stop(&self, drain_alive: impl Fn() -> bool) {
        let mut envelope = Envelope {
            ticks: self.clock.raw(),
            msg: Msg::Control(Box::new(|drain: &mut drain::Drain| drain.stop())),
        };
        loop {
            match self.tx.send_timeout(envelope, BLOCKED_RECHECK) {
                Ok(()) => return,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if drain_alive() => {
                    envelope = back
                }
                Err(_) => return,
            }
        }
    }

    /// Runs `work` on the drain thread in queue order and returns its
    /// result; `None` when the pipeline is shut down, when called from the
    /// drain thread itself (it cannot wait for itself) or after `timeout`.
    /// Waits without a limit when `timeout` is `None`.
    pub(crate) fn on_drain<R: Send + 'static>(
        &self,
        timeout: Option<Duration>,
        work: impl FnOnce(&mut drain::Drain) -> R + Send + 'static,
    ) -> Option<R> {
        if producer::is_drain_thread(self.id) {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let control = Msg::Control(Box::new(move |drain: &mut drain::Drain| {
            // The asker may have given up waiting; nothing to do then.
            let _ = tx.send(work(drain));
        }));
        if !self.send_reliable(control) {
            return None;
        }
        match timeout {
            Some(limit) => rx.recv_timeout(limit).ok(),
            None => rx.recv().ok(),
        }
    }

    /// Counts as dropped the events left in the ring after the drain thread
    /// stopped (emitted concurrently with shutdown).
    pub(crate) fn collect_leftovers(&self) {
        while let Ok(envelope) = self.rx.try_recv() {
            envelope
                .msg
                .for_each_event_type(|ty| self.counters.dropped.add(ty));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The ring, the producer caches and the drain thread together, at sizes
    //! small enough for `cargo +nightly miri test` (scripts/miri) to check
    //! every interleaving it explores for data races and undefined behaviour.

    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;
    use crate::emitter::{Emitter, ProgressEmitter};
    use crate::event::Phase;
    use crate::tracker::RunTracker;

    /// Events per producer: Miri runs some thousand times slower.
    const PER_PRODUCER: u32 = if cfg!(miri) { 12 } else { 2_000 };

    fn start(capacity: usize, overflow: Overflow) -> (Arc<Shared>, JoinHandle<RunTracker>) {
        let (shared, rx) = Shared::new(capacity, overflow);
        let drain = drain::Drain::new(shared.clone(), rx, 8, 64, Default::default());
        let thread = std::thread::spawn(move || drain.run());
        (shared, thread)
    }

    fn stop(shared: &Shared, thread: JoinHandle<RunTracker>) -> RunTracker {
        shared.close();
        shared.send_stop(|| !thread.is_finished());
        let tracker = thread.join();
        assert!(tracker.is_ok(), "the drain thread panicked");
        shared.collect_leftovers();
        tracker.unwrap_or_else(|_| RunTracker::new(0, 1))
    }

    fn emitted(shared: &Shared) -> u64 {
        shared.counters.emitted().total()
    }

    /// Two threads emit through a tiny ring; returns when both are done.
    fn produce(shared: &Arc<Shared>) {
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let emitter = Emitter::new(shared.clone());
                std::thread::spawn(move || {
                    let run = emitter.run("wo", &format!("run-{p}"));
                    for i in 0..PER_PRODUCER {
                        run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
                        emitter.emit_phase_started("wo", &format!("str-{p}"), i, Phase::Verify);
                    }
                })
            })
            .collect();
        for p in producers {
            assert!(p.join().is_ok(), "a producer panicked");
        }
    }

    #[test]
    fn two_producers_through_a_tiny_blocking_ring_lose_nothing_and_flush_sees_everything() {
        let (shared, thread) = start(2, Overflow::Block);
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let _id = shared.listeners.add(Box::new(move |_| {
            // Relaxed: read after flush, which orders it.
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        produce(&shared);
        assert_eq!(shared.on_drain(None, |_| ()), Some(()), "flush");
        let expected = 4 * u64::from(PER_PRODUCER);
        assert_eq!(emitted(&shared), expected);
        assert_eq!(shared.counters.processed.load().total(), expected);
        // Relaxed: the flush above happened after every listener call.
        assert_eq!(seen.load(Ordering::Relaxed), expected);
        stop(&shared, thread);
    }

    #[test]
    fn dropping_newest_under_pressure_keeps_emitted_equal_to_processed_plus_dropped() {
        let (shared, thread) = start(2, Overflow::DropNewest);
        produce(&shared);
        shared.on_drain(None, |_| ());
        let counters = &shared.counters;
        assert_eq!(
            emitted(&shared),
            counters.processed.load().total() + counters.dropped.load().total()
        );
        stop(&shared, thread);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // waits out the hold-off in real time
    fn a_dropping_producer_resumes_only_once_an_eighth_of_the_ring_is_free() {
        let (shared, rx) = Shared::new(16, Overflow::DropNewest);
        let emitter = Emitter::new(shared.clone());
        let run = emitter.run("wo", "run"); // its registration takes a slot
        // Dropped before `run`, whose unregistration would otherwise wait
        // for room in a ring nobody drains when an assertion fails.
        struct CloseOnDrop<'a>(&'a Shared);
        impl Drop for CloseOnDrop<'_> {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let _close = CloseOnDrop(&shared);
        let emit = |n: u32| {
            for i in 0..n {
                run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
            }
        };
        let dropped = || shared.counters.dropped.load().total();
        let hold_off = || std::thread::sleep(Duration::from_nanos(5 * FULL_HOLDOFF_NANOS));
        emit(16);
        assert_eq!((rx.len(), dropped()), (16, 1), "full: the last one dropped");
        let _ = rx.try_recv();
        hold_off();
        // Drops between two looks, then one look: time is up, but a single
        // free slot is less than an eighth of the ring.
        emit(HOLDOFF_CHECK_EVERY + 1);
        assert_eq!(
            (rx.len(), dropped()),
            (15, 1 + u64::from(HOLDOFF_CHECK_EVERY) + 1)
        );
        let _ = (rx.try_recv(), rx.try_recv());
        hold_off();
        emit(HOLDOFF_CHECK_EVERY + 1);
        assert_eq!(
            (rx.len(), dropped()),
            (14, 2 + 2 * u64::from(HOLDOFF_CHECK_EVERY)),
            "three free slots: the look after the drops sends"
        );
    }

    #[test]
    fn a_batch_of_events_left_in_the_ring_at_shutdown_is_counted_dropped_event_by_event() {
        // Regression: a replay's batch still in the ring when the drain
        // thread stopped was counted emitted and never dropped.
        let (shared, _rx) = Shared::new(4, Overflow::Block);
        let event = |phase| {
            crate::ProgressEvent::new(
                "wo",
                "run",
                crate::event::EventKind::PhaseStarted {
                    iteration: 1,
                    phase,
                },
            )
        };
        let batch = vec![
            event(Phase::Build),
            event(Phase::Verify),
            event(Phase::Build),
        ];
        assert!(shared.send_reliable(Msg::OwnedBatch(batch)));
        shared.collect_leftovers();
        let dropped = shared.counters.dropped.load();
        assert_eq!(dropped.total(), 3);
    }

    #[test]
    fn shutdown_racing_producers_counts_every_event_once() {
        let (shared, thread) = start(2, Overflow::Block);
        let racing = {
            let shared = shared.clone();
            std::thread::spawn(move || produce(&shared))
        };
        stop(&shared, thread);
        assert!(racing.join().is_ok(), "producers finish after shutdown");
        shared.collect_leftovers();
        let counters = &shared.counters;
        assert_eq!(
            emitted(&shared),
            counters.processed.load().total() + counters.dropped.load().total()
        );
    }

    #[test]
    fn each_event_carries_the_correlation_id_current_when_it_was_emitted() {
        use crate::context::{LogContext, with_context};
        let (shared, thread) = start(64, Overflow::Block);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let _id = shared.listeners.add(Box::new(move |event| {
            if let Ok(mut seen) = sink.lock() {
                seen.push(event.correlation_id.to_string());
            }
        }));
        let emitter = Emitter::new(shared.clone());
        let run = emitter.run("wo", "run-1");
        run.phase_started(1, Phase::Build);
        with_context(LogContext::new().correlation_id("outer"), || {
            run.phase_started(2, Phase::Build);
            with_context(LogContext::new().correlation_id("inner"), || {
                run.phase_started(3, Phase::Build);
            });
            run.phase_started(4, Phase::Build);
            let elsewhere = run.clone();
            let job = LogContext::wrap(move || elsewhere.phase_started(5, Phase::Build));
            assert!(std::thread::spawn(job).join().is_ok());
            with_context(LogContext::new().iteration(6), || {
                emitter.emit_phase_started("wo", "run-1", 6, Phase::Build);
            });
            // The same text in a new allocation is the same id.
            with_context(LogContext::new().correlation_id("outer"), || {
                run.phase_started(7, Phase::Build);
            });
        });
        run.phase_started(8, Phase::Build);
        shared.on_drain(None, |_| ());
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            [
                "run-1", "outer", "inner", "outer", "outer", "outer", "outer", "run-1"
            ]
        );
        drop(run);
        stop(&shared, thread);
    }

    #[test]
    fn a_panicking_listener_is_counted_and_the_next_one_still_runs() {
        let (shared, thread) = start(4, Overflow::Block);
        let _bad = shared.listeners.add(Box::new(|_| panic!("listener bug")));
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let _good = shared.listeners.add(Box::new(move |_| {
            // Relaxed: read after flush.
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let emitter = Emitter::new(shared.clone());
        let run = emitter.run("wo", "run");
        for i in 0..3 {
            run.phase_started(i, Phase::Build);
        }
        shared.on_drain(None, |_| ());
        // Relaxed: ordered by the flush.
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(shared.counters.listener_panics.load(Ordering::Relaxed), 3);
        drop(run);
        stop(&shared, thread);
    }
}
