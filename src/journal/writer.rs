//! The drain thread's journal sink and the writer thread behind it.
//!
//! The drain thread only packs each event into a word of a batch (the
//! compact form of `item.rs`); the writer thread rebuilds the event,
//! encodes its line with the WebSocket encoder and writes it. Batches
//! cross an unbounded channel whose contents are bounded by a count of
//! queued events instead: up to `capacity` for every event, then
//! `lifecycle_reserve` more for lifecycle events alone. One count both
//! keeps the lines in `seq` order (a second channel for lifecycle events
//! would need a merge) and lets the drain thread decide without waiting.
//! Events the drain thread drops leave a skip in their batch, so those
//! after them keep their `seq`; a batch left with no event does not
//! cross at all.
//!
//! The writer yields to the drain thread during a burst: a hand-off does
//! not wake it unless the drain thread is about to rest (its ring ran
//! empty, or a control message such as a flush came) or half of
//! `capacity` is queued (the lifecycle reserve aside); a doorbell, not the
//! batch channel, is what the writer sleeps on. On a machine with few
//! cores the writer's encoding and page-cache copies would otherwise take
//! the core the drain thread (or the engine) needs right when the load
//! peaks, and share its caches; once the burst ends, or its backlog grows, it
//! catches up. Control messages (flush, stop) always ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;

use super::item::{BATCH, Batch, Decoder, Encoder, Item};
use super::rotate::{CHECK_EVERY, Output};
use super::{JournalConfig, JournalCounters};
use crate::event::{EventType, ProgressEvent};
use crate::files::OpenError;
use crate::log::Dispatch;

/// Empty batches the writer hands back for reuse at most: enough for a
/// full hand-off, so that after a first burst the drain thread neither
/// allocates nor touches fresh memory (page faults cost it more than the
/// copies).
const MAX_RECYCLED: usize = 1024;

enum ToWriter {
    Batch(Batch),
    /// Write out (and fsync if due), then answer.
    Flush(Sender<()>),
    /// Write out, fsync unless the policy is `Never`, and stop.
    Stop,
}

/// The handle [`Observability`](crate::Observability) keeps: flushes, and
/// stops the writer at shutdown.
pub(crate) struct Journal {
    tx: Sender<ToWriter>,
    doorbell: Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<JournalCounters>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("stats", &self.counters.stats())
            .finish_non_exhaustive()
    }
}

/// Opens the journal and starts its writer thread; returns the handle and
/// the sink for the drain thread.
pub(crate) fn start(
    config: &JournalConfig,
    counters: Arc<JournalCounters>,
    log: Option<Arc<Dispatch>>,
) -> Result<(Journal, JournalSink), crate::error::Error> {
    let output = Output::open(config, counters.clone(), log.clone()).map_err(|error| {
        let path = config.path().map(ToOwned::to_owned).unwrap_or_default();
        match error {
            OpenError::NotRegular(kind) => crate::error::Error::NotARegularFile { path, kind },
            OpenError::Io(source) => crate::error::Error::Journal { path, source },
        }
    })?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = ((config.capacity + config.lifecycle_reserve) / BATCH + 4).min(MAX_RECYCLED);
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded(pool);
    let queued = Arc::new(AtomicUsize::new(0));
    let (doorbell, rung) = crossbeam_channel::bounded(1);
    let writer = Writer {
        rx,
        rung,
        recycle: recycle_tx,
        output,
        queued: queued.clone(),
        line: Vec::with_capacity(1024),
        decoder: Decoder::new(),
    };
    let thread = std::thread::Builder::new()
        .name("agentgate-obs-journal".into())
        .spawn(move || writer.run())
        .map_err(|source| crate::error::Error::Spawn {
            name: "journal",
            source,
        })?;
    let sink = JournalSink {
        tx: tx.clone(),
        doorbell: doorbell.clone(),
        unrung: false,
        wake_at: config.capacity / 2,
        recycled: recycle_rx,
        spare: None,
        encoder: Encoder::new(),
        queued,
        capacity: config.capacity,
        reserve: config.lifecycle_reserve,
        counters: counters.clone(),
        log,
        warned: false,
    };
    let journal = Journal {
        tx,
        doorbell,
        thread: Mutex::new(Some(thread)),
        counters,
    };
    Ok((journal, sink))
}

impl Journal {
    /// Returns once every line handed over before the call is written (or
    /// counted dropped), or after `limit`: a stuck disk must not hang the
    /// caller for ever.
    pub(crate) fn flush(&self, limit: Duration) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(ToWriter::Flush(tx)).is_ok() {
            ring(&self.doorbell);
            let _ = rx.recv_timeout(limit);
        }
    }

    /// Stops the writer after everything handed over, and joins it within
    /// `limit` (else leaves it to finish on its own).
    pub(crate) fn shutdown(&self, limit: Duration) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        let _ = self.tx.send(ToWriter::Stop);
        ring(&self.doorbell);
        let deadline = Instant::now() + limit;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }

    pub(crate) fn stats(&self) -> super::JournalStats {
        self.counters.stats()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // A pipeline that failed to start after the journal did: let the
        // writer go without waiting for it.
        let _ = self.tx.send(ToWriter::Stop);
        ring(&self.doorbell);
    }
}

/// Wakes the writer; a no-op if it has been rung and not woken yet.
fn ring(doorbell: &Sender<()>) {
    let _ = doorbell.try_send(());
}

/// The drain thread's side: batches events and hands them over.
pub(crate) struct JournalSink {
    tx: Sender<ToWriter>,
    doorbell: Sender<()>,
    /// Batches were handed over since the doorbell last rang.
    unrung: bool,
    /// Queued events past which a hand-off wakes the writer even in a burst.
    wake_at: usize,
    recycled: Receiver<Batch>,
    /// A batch shed whole, kept for the next hand-off.
    spare: Option<Batch>,
    /// Holds the batch being filled.
    encoder: Encoder,
    /// Events handed over and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    reserve: usize,
    counters: Arc<JournalCounters>,
    log: Option<Arc<Dispatch>>,
    /// A lifecycle drop was reported and no batch went through whole since.
    warned: bool,
}

impl JournalSink {
    /// Everything [`Encoder::push_fast`] leaves: new ids, events for the
    /// side list, a full batch.
    #[cold]
    #[inline(never)]
    fn event_slow(&mut self, event: &ProgressEvent, seq: u64) {
        if self.encoder.is_full() || !self.encoder.push(seq, event) {
            self.hand_off(false);
            let pushed = self.encoder.push(seq, event);
            debug_assert!(pushed, "an empty journal batch refused an event");
        }
    }

    /// Hands the batch being filled over; wakes the writer if the drain thread is
    /// `resting` or the writer's backlog passed `wake_at`.
    fn hand_off(&mut self, resting: bool) {
        if self.encoder.is_empty() {
            if resting && self.unrung {
                self.unrung = false;
                ring(&self.doorbell);
            }
            return;
        }
        // Relaxed: an admission count; the channel carries the data itself.
        let queued = self.queued.load(Ordering::Relaxed);
        // The events go out in a copy; the encoder's batch stays, and with
        // it the drain thread's per-event stores land in cache lines no
        // other core holds. Writing them straight into a batch the writer
        // had read made each store wait for its line to come back from the
        // writer's core, and the ring's next receive (a locked instruction)
        // wait for that store: measured when the two cores were far apart,
        // the drain thread went at 6.6 M events/s with a journal against
        // 13.6 without, and at 10.6-10.9 M/s with this copy, which moves
        // the lines in bulk.
        let recycled = match self.spare.take() {
            Some(spare) => spare,
            None => self.recycled.try_recv().unwrap_or_else(|_| Batch::new()),
        };
        let mut events = self.encoder.events();
        let mut batch = self.encoder.take(recycled);
        if queued + events > self.capacity {
            events = self.shed(&mut batch, queued);
            if events == 0 {
                // Nothing of it is to be written: it does not cross, and
                // the ids it carried are sent again when next needed, so a
                // stuck writer costs no memory for the events it loses.
                self.encoder.forget_ids();
                batch.clear();
                self.spare = Some(batch);
                return;
            }
        } else {
            self.warned = false;
        }
        // Relaxed: see above.
        let backlog = self.queued.fetch_add(events, Ordering::Relaxed) + events;
        if let Err(crossbeam_channel::SendError(ToWriter::Batch(lost))) =
            self.tx.send(ToWriter::Batch(batch))
        {
            // The writer thread is gone (it panicked): count, never block.
            // Relaxed: an admission count, as above.
            self.queued.fetch_sub(events, Ordering::Relaxed);
            for ty in lost.items.iter().filter_map(|item| item.event_type()) {
                self.counters.dropped.add(ty);
            }
            return;
        }
        if resting || backlog >= self.wake_at {
            self.unrung = false;
            ring(&self.doorbell);
        } else {
            self.unrung = true;
        }
    }

    /// The writer is behind: keeps what the room left holds, in order
    /// (lifecycle events first, from the reserved room when the rest is
    /// full), counts the rest as dropped. Dropped events become skips (one
    /// per run of them), so those kept keep their `seq`; slot messages
    /// stay. Returns the events kept.
    fn shed(&mut self, batch: &mut Batch, queued: usize) -> usize {
        let lifecycle = batch
            .items
            .iter()
            .filter(|item| item.event_type().is_some_and(EventType::is_lifecycle))
            .count();
        let keep_lifecycle = queued + lifecycle <= self.capacity + self.reserve;
        // What other events may take: the room not queued and not taken by
        // this batch's lifecycle events, so the kept stay within
        // `capacity`, or within `capacity + reserve` for lifecycle events.
        let mut room = if keep_lifecycle {
            self.capacity.saturating_sub(queued + lifecycle)
        } else {
            0
        };
        let mut kept = 0;
        let mut end: usize = 0;
        for read in 0..batch.items.len() {
            let item = batch.items[read];
            match item.event_type() {
                Some(ty) if keep_lifecycle && ty.is_lifecycle() => kept += 1,
                Some(_) if room > 0 => {
                    room -= 1;
                    kept += 1;
                }
                Some(ty) => {
                    self.counters.dropped.add(ty);
                    batch.release_side(item);
                    let previous = end.checked_sub(1).map(|i| batch.items[i]);
                    match previous.map(Item::skipped) {
                        Some(run) if run > 0 => batch.items[end - 1] = Item::skip(run + 1),
                        _ => {
                            batch.items[end] = Item::skip(1);
                            end += 1;
                        }
                    }
                    continue;
                }
                None => {}
            }
            batch.items[end] = item;
            end += 1;
        }
        batch.items.truncate(end);
        // It waits in the channel for a writer that is behind: only what
        // it still holds may take memory there.
        batch.compact();
        if keep_lifecycle || lifecycle == 0 {
            return kept;
        }
        if !self.warned {
            self.warned = true;
            let message = "the journal writer is stuck past the room reserved for lifecycle \
                           events: run lifecycle events are dropped from the journal \
                           (journal_events_dropped_total)";
            match &self.log {
                Some(log) => crate::log::pipeline_warning(
                    log,
                    "agentgate_obs::journal",
                    message,
                    vec![("queued", queued.into())],
                ),
                None => eprintln!("agentgate-obs: WARNING: {message}"),
            }
        }
        kept
    }
}

impl JournalSink {
    /// Called by the drain thread once per processed event, `seq` its
    /// processing number; inlined into the drain's loop.
    #[inline]
    pub(crate) fn event(&mut self, event: &ProgressEvent, seq: u64) {
        if !self.encoder.push_fast(seq, event) {
            self.event_slow(event, seq);
        }
    }

    /// Called when the ring runs empty and before every control message:
    /// hands over what is pending.
    pub(crate) fn flush(&mut self) {
        self.hand_off(true);
    }
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<ToWriter>,
    /// What the writer sleeps on (see the module's comment).
    rung: Receiver<()>,
    recycle: Sender<Batch>,
    output: Output,
    queued: Arc<AtomicUsize>,
    /// The line being encoded, reused.
    line: Vec<u8>,
    decoder: Decoder,
}

impl Writer {
    fn run(mut self) {
        loop {
            // Everything handed over so far, then sleep until rung.
            loop {
                match self.rx.try_recv() {
                    Ok(ToWriter::Batch(batch)) => {
                        self.write(batch);
                        if self.rx.is_empty() {
                            // Idle: the lines go to the kernel, so `tail -F` sees them.
                            self.output.write_out();
                        }
                        self.output.check(false);
                        self.output.sync(false);
                    }
                    Ok(ToWriter::Flush(reply)) => {
                        self.output.check(true);
                        self.output.sync(false);
                        let _ = reply.send(());
                    }
                    Ok(ToWriter::Stop) | Err(TryRecvError::Disconnected) => return self.stop(),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let wait = self
                .output
                .sync_due_in()
                .map_or(CHECK_EVERY, |due| due.min(CHECK_EVERY));
            match self.rung.recv_timeout(wait) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.output.check(false);
                    self.output.sync(false);
                }
                // Every handle is gone: what they handed over is all there is.
                Err(RecvTimeoutError::Disconnected) => return self.stop(),
            }
        }
    }

    /// Writes whatever raced in behind the stop (it was handed over too),
    /// syncs, and answers the flushes among it.
    fn stop(mut self) {
        let mut replies = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            match message {
                ToWriter::Batch(batch) => self.write(batch),
                ToWriter::Flush(reply) => replies.push(reply),
                ToWriter::Stop => {}
            }
        }
        self.output.sync(true);
        for reply in replies {
            let _ = reply.send(());
        }
    }

    fn write(&mut self, mut batch: Batch) {
        let Writer {
            decoder,
            line,
            output,
            ..
        } = self;
        let mut n = 0;
        decoder.decode(&mut batch, |event| {
            n += 1;
            match event {
                Ok((seq, event)) => {
                    line.clear();
                    crate::event::write_wire(line, seq, event);
                    line.push(b'\n');
                    output.push(line, event.event_type());
                }
                Err(ty) => output.count_dropped(ty),
            }
        });
        // Relaxed: an admission count (see `JournalSink::hand_off`).
        self.queued.fetch_sub(n, Ordering::Relaxed);
        // Full means enough spares already: this one is freed here.
        let _ = self.recycle.try_send(batch);
    }
}
