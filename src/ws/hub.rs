//! The fan-out: one shared, bounded replay ring that the drain thread
//! appends to and every client reads at its own cursor.
//!
//! The drain thread's cost per event does not grow with the number of
//! clients: it clones the event into a pending batch, and publishes the
//! batch (one short lock, a doorbell per client asleep) when the batch is full or
//! the ring of envelopes runs empty; when a full batch finds a client
//! reading the ring, it stays pending rather than wait for that client's
//! thread. Each client's thread copies the batch handles it has not read
//! yet and encodes an event's frame the first time any client needs it
//! (once, shared by all). A client that falls further behind
//! than the ring holds is told how many events it missed (`lagged`) and
//! goes on from the oldest one still held. The ring is also the replay
//! buffer for `/ws?since=SEQ`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::{frame, protocol};
use crate::event::ProgressEvent;
use crate::metrics::{Metrics, WsCloseReason};
use crate::pipeline::drain::{EventInfo, Sink};

/// Events per published batch at most: bounds the latency under load.
const BATCH: usize = 256;

/// One buffered event.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) event: ProgressEvent,
    frame: OnceLock<Box<[u8]>>,
}

impl Entry {
    /// The event's whole WebSocket frame, encoded on first use.
    pub(crate) fn frame(&self) -> &[u8] {
        self.frame
            .get_or_init(|| frame::text(&protocol::event_message(self.seq, &self.event)))
    }
}

/// A published run of consecutive events, shared by every reader.
pub(crate) type Batch = Arc<Vec<Entry>>;

#[derive(Default)]
struct Ring {
    batches: VecDeque<Batch>,
    /// Events held in `batches`.
    held: usize,
}

impl Ring {
    fn first_seq(&self) -> Option<u64> {
        self.batches.front().and_then(|b| b.first()).map(|e| e.seq)
    }
}

/// How a publish wakes a client.
struct Doorbell {
    id: u64,
    bell: Sender<()>,
    /// Set while the client sleeps on `bell`. Flowing clients sleep on a
    /// timer and take everything at their next pass: ringing their bells
    /// too cost the drain thread a channel send per client per publish,
    /// and each client thread a receive.
    waiting: Arc<AtomicBool>,
}

/// Shared between the drain thread's sink, the clients and the server.
pub(crate) struct Hub {
    ring: Mutex<Ring>,
    capacity: usize,
    /// Highest published seq.
    published: AtomicU64,
    doorbells: Mutex<Vec<Doorbell>>,
    next_client: AtomicU64,
    clients: AtomicUsize,
    closing: AtomicBool,
    /// Messages not sent to slow clients, and clients closed for it.
    pub(crate) lagged_messages: AtomicU64,
    pub(crate) slow_clients_closed: AtomicU64,
    /// The `hello` snapshots handed out and still alive.
    pub(crate) snapshots: Mutex<super::hello::Snapshots>,
    /// Names this server's sequence numbers: a client resuming with the
    /// `since` of another instance (the server restarted) gets a snapshot.
    pub(crate) instance: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("capacity", &self.capacity)
            .field("clients", &self.client_count())
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub(crate) fn new(capacity: usize, metrics: Metrics) -> Arc<Hub> {
        Arc::new(Hub {
            ring: Mutex::default(),
            capacity: capacity.max(1),
            published: AtomicU64::new(0),
            doorbells: Mutex::default(),
            next_client: AtomicU64::new(1),
            clients: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            lagged_messages: AtomicU64::new(0),
            slow_clients_closed: AtomicU64::new(0),
            snapshots: Mutex::default(),
            instance: format!("{:016x}", fastrand::u64(..)),
            metrics,
        })
    }

    pub(crate) fn client_count(&self) -> usize {
        // Relaxed: a gauge.
        self.clients.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closing(&self) -> bool {
        // Acquire: pairs with `close`.
        self.closing.load(Ordering::Acquire)
    }

    /// Tells every client to say goodbye (1001) and leave.
    pub(crate) fn close(&self) {
        // Release: a client that sees it also sees everything published before.
        self.closing.store(true, Ordering::Release);
        for doorbell in self.doorbells.lock().iter() {
            // Full means already rung and not yet answered: nothing to add.
            let _ = doorbell.bell.try_send(());
        }
    }

    /// Closes every client and waits up to `limit` for them to leave.
    pub(crate) fn close_and_wait(&self, limit: std::time::Duration) {
        self.close();
        let deadline = std::time::Instant::now() + limit;
        while self.client_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Registers a client; publishes wake it while it sleeps in
    /// [`Membership::wait`]. `None` past `max_clients`.
    pub(crate) fn join(self: &Arc<Self>, max_clients: usize) -> Option<Membership> {
        let mut doorbells = self.doorbells.lock();
        if doorbells.len() >= max_clients || self.is_closing() {
            return None;
        }
        // Relaxed: only uniqueness matters.
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiting = Arc::new(AtomicBool::new(false));
        doorbells.push(Doorbell {
            id,
            bell: tx,
            waiting: waiting.clone(),
        });
        // Relaxed: a gauge; updated under the doorbell lock, so it stays in step.
        let count = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.set_ws_clients(count as u64);
        Some(Membership {
            hub: self.clone(),
            id,
            doorbell: rx,
            waiting,
        })
    }

    /// Wakes the clients sleeping on their doorbells (see
    /// [`Membership::wait`] for why none is missed).
    fn ring_doorbells(&self) {
        for doorbell in self.doorbells.lock().iter() {
            // SeqCst: with the store of `published` before it, and the
            // client's store of `waiting` before its load of `published`,
            // one side always sees the other's store.
            if doorbell.waiting.load(Ordering::SeqCst) {
                // Full means already rung and not yet answered.
                let _ = doorbell.bell.try_send(());
            }
        }
    }

    /// Appends the pending batch (drain thread only). With `wait` false
    /// it gives up when a client holds the ring's lock, leaving the batch
    /// pending for the next try: the drain thread never waits for a client
    /// thread that was preempted while reading the ring.
    fn publish(&self, pending: &mut Vec<Entry>, wait: bool) {
        let Some(last) = pending.last().map(|e| e.seq) else {
            return;
        };
        {
            let mut ring = match self.ring.try_lock() {
                Some(ring) => ring,
                None if wait => self.ring.lock(),
                None => return,
            };
            // An exact-size copy: `pending` keeps its capacity for the next
            // batch, and a batch of one event (the norm at low rates) holds
            // one slot, not the BATCH slots `pending` was made with.
            let mut batch = Vec::with_capacity(pending.len());
            batch.append(pending);
            ring.held += batch.len();
            ring.batches.push_back(Arc::new(batch));
            // The newest batch always stays, even when it alone is over
            // capacity: evicting it would leave readers nothing to resume from.
            while ring.held > self.capacity && ring.batches.len() > 1 {
                match ring.batches.pop_front() {
                    Some(old) => ring.held -= old.len(),
                    None => break,
                }
            }
        }
        // SeqCst: a client that reads this value finds the batch in the
        // ring, and see `ring_doorbells`.
        self.published.store(last, Ordering::SeqCst);
        self.ring_doorbells();
    }

    /// Counts a client the server closed, by reason
    /// (`ws_clients_closed_total{reason}`).
    pub(crate) fn client_closed(&self, reason: WsCloseReason) {
        if reason == WsCloseReason::Stalled {
            // Relaxed: a count for reporting.
            self.slow_clients_closed.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.record_ws_client_closed(reason);
    }

    /// The highest published seq.
    pub(crate) fn published(&self) -> u64 {
        // Acquire: pairs with `publish`, so the batches up to it are in the ring.
        self.published.load(Ordering::Acquire)
    }

    /// Whether events after `seq` are all still held (for `since`).
    pub(crate) fn holds_after(&self, seq: u64) -> bool {
        let ring = self.ring.lock();
        // Relaxed: read under the lock that `publish` updates the ring with.
        let published = self.published.load(Ordering::Relaxed);
        seq >= published || ring.first_seq().is_some_and(|first| first <= seq + 1)
    }

    /// Puts the batches with events after `cursor` (the next seq the client
    /// wants) into `batches` (emptied first; reused, so that the lock is
    /// never held across an allocation once it has grown). Returns how
    /// many events were skipped because the ring no longer held them.
    pub(crate) fn read_from(&self, cursor: u64, batches: &mut Vec<Batch>) -> u64 {
        batches.clear();
        let ring = self.ring.lock();
        let first = ring.first_seq().unwrap_or(cursor);
        // Batches are in seq order: skip the old ones by binary search, not
        // by a scan (at low rates the ring holds one batch per event).
        let start = ring
            .batches
            .partition_point(|b| b.last().is_none_or(|e| e.seq < cursor));
        batches.extend(ring.batches.range(start..).cloned());
        first.saturating_sub(cursor)
    }

    /// Publishes one event per seq, as the drain thread would (tests of
    /// the clients).
    #[cfg(test)]
    pub(crate) fn publish_for_test(&self, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            let kind = crate::event::EventKind::RunFailed { error: "e".into() };
            let mut pending = vec![Entry {
                seq,
                event: ProgressEvent::new("wo", "run", kind),
                frame: OnceLock::new(),
            }];
            self.publish(&mut pending, true);
        }
    }

    /// The drain-thread side of the hub.
    pub(crate) fn sink(self: &Arc<Self>) -> HubSink {
        HubSink {
            hub: self.clone(),
            pending: Vec::with_capacity(BATCH),
        }
    }
}

/// A client's place in the hub; leaves when dropped.
pub(crate) struct Membership {
    hub: Arc<Hub>,
    id: u64,
    doorbell: Receiver<()>,
    waiting: Arc<AtomicBool>,
}

impl Membership {
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Sleeps until something after `cursor` is published, the hub closes,
    /// or `limit` passes. Publishes ring only sleeping clients: the client
    /// says it sleeps before it looks at `published` a last time, and a
    /// publish stores `published` before it looks at who sleeps, so either
    /// the client sees the new seq or the publish sees the client asleep.
    pub(crate) fn wait(&self, cursor: u64, limit: Duration) {
        // SeqCst: see above.
        self.waiting.store(true, Ordering::SeqCst);
        if self.hub.published.load(Ordering::SeqCst) < cursor && !self.hub.is_closing() {
            let _ = self.doorbell.recv_timeout(limit);
        }
        // Relaxed: a publish that still sees `true` leaves one spare token,
        // which only ends the next wait early.
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Takes a token left by a ring this client did not sleep through.
    pub(crate) fn clear_doorbell(&self) {
        let _ = self.doorbell.try_recv();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut doorbells = self.hub.doorbells.lock();
        doorbells.retain(|doorbell| doorbell.id != self.id);
        // Relaxed: a gauge, updated under the doorbell lock.
        let count = self.hub.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        self.hub.metrics.set_ws_clients(count as u64);
    }
}

/// Feeds the hub from the drain thread.
pub(crate) struct HubSink {
    hub: Arc<Hub>,
    pending: Vec<Entry>,
}

impl Sink for HubSink {
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        self.pending.push(Entry {
            seq: info.seq,
            event: event.clone(),
            frame: OnceLock::new(),
        });
        if self.pending.len() >= BATCH {
            self.hub.publish(&mut self.pending, false);
        }
    }

    fn flush(&mut self) {
        self.hub.publish(&mut self.pending, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::metrics::MetricsConfig;

    fn hub(capacity: usize) -> Arc<Hub> {
        let metrics = Metrics::new("t", MetricsConfig::default()).expect("metrics");
        Hub::new(capacity, metrics)
    }

    fn entry(seq: u64) -> Entry {
        let kind = EventKind::RunFailed { error: "e".into() };
        Entry {
            seq,
            event: ProgressEvent::new("wo", "run", kind),
            frame: OnceLock::new(),
        }
    }

    fn publish_one_by_one(hub: &Hub, seqs: std::ops::RangeInclusive<u64>) {
        let mut pending = Vec::with_capacity(BATCH);
        for seq in seqs {
            pending.push(entry(seq));
            hub.publish(&mut pending, true);
        }
    }

    #[test]
    fn a_batch_of_one_event_holds_one_slot_not_a_whole_batch() {
        // Regression: each publish kept `pending`'s 256-slot allocation, so a
        // replay ring filled one event at a time held 256 times its size.
        let hub = hub(100);
        publish_one_by_one(&hub, 1..=10);
        let ring = hub.ring.lock();
        assert_eq!(ring.batches.len(), 10);
        assert!(ring.batches.iter().all(|b| b.capacity() == 1));
    }

    #[test]
    fn a_read_gets_the_batches_from_the_cursor_on_and_counts_what_was_evicted() {
        let hub = hub(100);
        publish_one_by_one(&hub, 1..=150);
        let mut batches = Vec::new();
        assert_eq!(hub.read_from(140, &mut batches), 0);
        let seqs: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, (140..=150).collect::<Vec<_>>());
        // Seqs 1..=50 were evicted to keep 100 events.
        assert_eq!(hub.read_from(20, &mut batches), 31);
        assert_eq!(
            batches.first().and_then(|b| b.first()).map(|e| e.seq),
            Some(51)
        );
        assert_eq!(hub.read_from(151, &mut batches), 0);
        assert!(batches.is_empty());
    }

    #[test]
    fn a_publish_rings_the_clients_asleep_on_their_doorbells_and_no_other() {
        let hub = hub(100);
        let asleep = hub.join(10).expect("room");
        let flowing = hub.join(10).expect("room");
        let woken = std::thread::scope(|scope| {
            let sleeper = scope.spawn(|| {
                let start = std::time::Instant::now();
                asleep.wait(1, Duration::from_secs(10));
                start.elapsed()
            });
            // Publish once the sleeper says it sleeps.
            // SeqCst: as the hub reads it.
            while !asleep.waiting.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            publish_one_by_one(&hub, 1..=1);
            sleeper.join().expect("the sleeper")
        });
        assert!(woken < Duration::from_secs(5), "{woken:?}");
        assert!(
            flowing.doorbell.try_recv().is_err(),
            "a client not asleep was rung"
        );
    }

    #[test]
    fn a_client_finding_its_event_published_does_not_sleep() {
        let hub = hub(100);
        let client = hub.join(10).expect("room");
        publish_one_by_one(&hub, 1..=3);
        let start = std::time::Instant::now();
        client.wait(3, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
