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
pub(crate) mod drain;
pub(crate) mod envelope;
pub(crate) mod listeners;
pub(crate) mod producer;
pub(crate) mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::EventType;
use envelope::{Envelope, Key, Msg};
use listeners::Listeners;
use stats::Counters;

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
            clock: quanta::Clock::new(),
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
    /// it is not accepted.
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
            Err(TrySendError::Full(envelope)) => self.send_event_full(envelope, ty),
            Err(TrySendError::Disconnected(_)) => self.counters.dropped.add(ty),
        }
    }

    #[cold]
    fn send_event_full(&self, envelope: Envelope, ty: EventType) {
        let accepted = match self.overflow {
            _ if ty.is_lifecycle() => self.send_blocking(envelope),
            Overflow::Block => self.send_blocking(envelope),
            Overflow::DropNewest => false,
            Overflow::BlockFor(limit) => self.tx.send_timeout(envelope, limit).is_ok(),
        };
        if !accepted {
            self.counters.dropped.add(ty);
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

    fn send_blocking(&self, mut envelope: Envelope) -> bool {
        loop {
            match self.tx.send_timeout(envelope, BLOCKED_RECHECK) {
                Ok(()) => return true,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                    if self.is_closed() {
                        return false;
                    }
                    envelope = back;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
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
            if let Some(ty) = envelope.msg.event_type() {
                self.counters.dropped.add(ty);
            }
        }
    }
}
