//! The fan-out: one shared, bounded replay ring that the drain thread
//! appends to and every client reads at its own cursor.
//!
//! The drain thread's cost per event does not grow with the number of
//! clients: it clones the event into a pending batch, and publishes the
//! batch (one short lock, one doorbell per client) when the batch is full or
//! the ring of envelopes runs empty. Each client's thread copies the batch
//! handles it has not read yet and serializes an event the first time any
//! client needs it (once, shared by all). A client that falls further behind
//! than the ring holds is told how many events it missed (`lagged`) and
//! goes on from the oldest one still held. The ring is also the replay
//! buffer for `/ws?since=SEQ`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tungstenite::Utf8Bytes;

use super::protocol;
use crate::event::ProgressEvent;
use crate::metrics::Metrics;
use crate::pipeline::drain::{EventInfo, Sink};

/// Events per published batch at most: bounds the latency under load.
const BATCH: usize = 256;

/// One buffered event.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) event: ProgressEvent,
    json: OnceLock<Utf8Bytes>,
}

impl Entry {
    /// The event's WebSocket message, serialized on first use.
    pub(crate) fn message(&self) -> &Utf8Bytes {
        self.json
            .get_or_init(|| protocol::event_message(self.seq, &self.event))
    }
}

type Batch = Arc<Vec<Entry>>;

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

/// What a client gets from one read of the ring.
pub(crate) struct Read {
    /// Events skipped because the ring no longer held them.
    pub(crate) missed: u64,
    pub(crate) batches: Vec<Batch>,
}

/// Shared between the drain thread's sink, the clients and the server.
pub(crate) struct Hub {
    ring: Mutex<Ring>,
    capacity: usize,
    /// Highest published seq.
    published: AtomicU64,
    doorbells: Mutex<Vec<(u64, Sender<()>)>>,
    next_client: AtomicU64,
    clients: AtomicUsize,
    closing: AtomicBool,
    /// Messages not sent to slow clients, and clients closed for it.
    pub(crate) lagged_messages: AtomicU64,
    pub(crate) slow_clients_closed: AtomicU64,
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
        self.ring_doorbells();
    }

    /// Closes every client and waits up to `limit` for them to leave.
    pub(crate) fn close_and_wait(&self, limit: std::time::Duration) {
        self.close();
        let deadline = std::time::Instant::now() + limit;
        while self.client_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Registers a client; it is woken through the returned receiver
    /// whenever something is published. `None` past `max_clients`.
    pub(crate) fn join(self: &Arc<Self>, max_clients: usize) -> Option<Membership> {
        let mut doorbells = self.doorbells.lock();
        if doorbells.len() >= max_clients || self.is_closing() {
            return None;
        }
        // Relaxed: only uniqueness matters.
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        doorbells.push((id, tx));
        // Relaxed: a gauge; updated under the doorbell lock, so it stays in step.
        let count = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.set_ws_clients(count as u64);
        Some(Membership {
            hub: self.clone(),
            id,
            doorbell: rx,
        })
    }

    fn ring_doorbells(&self) {
        for (_, bell) in self.doorbells.lock().iter() {
            // Full means already rung and not yet answered: nothing to add.
            let _ = bell.try_send(());
        }
    }

    /// Appends a batch (drain thread only).
    fn publish(&self, batch: Vec<Entry>) {
        let Some(last) = batch.last().map(|e| e.seq) else {
            return;
        };
        {
            let mut ring = self.ring.lock();
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
        // Release: a client that reads this value finds the batch in the ring.
        self.published.store(last, Ordering::Release);
        self.ring_doorbells();
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

    /// The batches with events after `cursor` (the next seq the client wants).
    pub(crate) fn read_from(&self, cursor: u64) -> Read {
        let ring = self.ring.lock();
        let first = ring.first_seq().unwrap_or(cursor);
        let missed = first.saturating_sub(cursor);
        let batches = ring
            .batches
            .iter()
            .filter(|b| b.last().is_some_and(|e| e.seq >= cursor))
            .cloned()
            .collect();
        Read { missed, batches }
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
    pub(crate) doorbell: Receiver<()>,
}

impl Membership {
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut doorbells = self.hub.doorbells.lock();
        doorbells.retain(|(id, _)| *id != self.id);
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
            json: OnceLock::new(),
        });
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
            self.hub.publish(batch);
        }
    }
}
