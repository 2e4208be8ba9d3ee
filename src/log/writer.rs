//! The non-blocking output: a bounded channel to one writer thread that
//! formats, redacts and writes records in batches.
//!
//! Drop rule, when the channel is full: trace, debug and info records are
//! dropped and counted; warn and error records wait for space. A sink that
//! fails (error or panic) is counted, reported once on stderr, and tried
//! again with the next batch; the records of a failed batch are counted as
//! lost. At shutdown every accepted record is written before the thread ends.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use super::format::write_line;
use super::level::LogFilter;
use super::record::{Body, Record};
use super::{Level, LogStats};
use crate::event::Timestamp;
use crate::redact::Redactor;

/// A batch is written once it holds this many bytes, or when the channel
/// runs empty.
const BATCH_BYTES: usize = 64 * 1024;

/// The writer's shortest and longest nap when the channel is empty: the
/// longest bounds how late an idle writer notices a record, a flush or a stop.
const MIN_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(10);

/// How long a waiting sender sleeps before looking whether the writer shut down.
const WAIT_RECHECK: Duration = Duration::from_millis(20);

/// A user-supplied writer, shared so that the builder stays `Clone`.
pub(crate) type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where the lines go.
#[derive(Clone)]
pub(crate) enum Output {
    Stderr,
    File(PathBuf),
    Writer(SharedWriter),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Stderr => f.write_str("Stderr"),
            Output::File(path) => f.debug_tuple("File").field(path).finish(),
            Output::Writer(_) => f.write_str("Writer(..)"),
        }
    }
}

/// The open sink, owned by the writer thread.
enum Sink {
    Stderr,
    File(std::fs::File),
    Writer(SharedWriter),
}

impl Sink {
    fn open(output: &Output, mode: u32) -> Result<Sink, crate::files::OpenError> {
        Ok(match output {
            Output::Stderr => Sink::Stderr,
            Output::File(path) => Sink::File(crate::files::open_append(path, mode)?),
            Output::Writer(w) => Sink::Writer(w.clone()),
        })
    }

    fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(batch)?;
                err.flush()
            }
            Sink::File(file) => file.write_all(batch),
            Sink::Writer(w) => {
                let mut w = w.lock();
                w.write_all(batch)?;
                w.flush()
            }
        }
    }
}

pub(crate) enum Msg {
    Record(Record),
    /// Answered once everything before it is written.
    Flush(Sender<()>),
    Stop,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    sink_errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: counts for reporting; `LogWriter::flush` orders them
        // through the channel for readers who need exact values.
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The sending side of one writer: what loggers hold.
pub(crate) struct Dispatch {
    tx: Sender<Msg>,
    /// Kept to count records that raced with shutdown as dropped.
    rx: Receiver<Msg>,
    pub(crate) filter: LogFilter,
    closed: AtomicBool,
    counters: Counters,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDispatch")
            .field("filter", &self.filter)
            .field("queued", &self.tx.len())
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    #[inline]
    pub(crate) fn enabled(&self, level: Level, module: &str) -> bool {
        self.filter.enabled(level, module)
    }

    fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `LogWriter::shutdown`.
        self.closed.load(Ordering::Acquire)
    }

    /// Sends under the drop rule: warn and error wait, others are dropped
    /// and counted when the channel is full.
    #[inline]
    pub(crate) fn send(&self, record: Record) {
        let wait = record.level.must_wait();
        self.send_inner(record, wait);
    }

    /// Sends without ever waiting, whatever the level: for the pipeline's
    /// drain thread, which must not stall on a slow sink.
    pub(crate) fn send_nowait(&self, record: Record) {
        self.send_inner(record, false);
    }

    /// Like [`send_nowait`](Self::send_nowait), but builds the record only
    /// when the channel has room: a writer that is behind costs the
    /// drain thread a counter increment per line, not a copy of the event.
    pub(crate) fn send_nowait_with(&self, make: impl FnOnce() -> Record) {
        if self.tx.is_full() {
            return Counters::add(&self.counters.dropped, 1);
        }
        self.send_inner(make(), false);
    }

    #[inline]
    fn send_inner(&self, record: Record, wait: bool) {
        if self.is_closed() {
            return Counters::add(&self.counters.dropped, 1);
        }
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) if wait => {
                if !self.send_waiting(msg) {
                    Counters::add(&self.counters.dropped, 1);
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Counters::add(&self.counters.dropped, 1)
            }
        }
    }

    /// Waits for space; false when the writer shut down meanwhile.
    #[cold]
    fn send_waiting(&self, mut msg: Msg) -> bool {
        loop {
            match self.tx.send_timeout(msg, WAIT_RECHECK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !self.is_closed() => msg = back,
                Err(_) => return false,
            }
        }
    }

    pub(crate) fn stats(&self) -> LogStats {
        let c = &self.counters;
        // Relaxed: see `Counters::add`.
        LogStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            sink_errors: c.sink_errors.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread and its dispatch: owned by `Observability`.
pub(crate) struct LogWriter {
    dispatch: Arc<Dispatch>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.dispatch.fmt(f)
    }
}

impl LogWriter {
    /// Opens the sink and starts the writer thread.
    pub(crate) fn start(
        output: &Output,
        mode: u32,
        filter: LogFilter,
        capacity: usize,
        redactor: Arc<Redactor>,
    ) -> Result<LogWriter, StartError> {
        let sink = Sink::open(output, mode).map_err(StartError::Open)?;
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let dispatch = Arc::new(Dispatch {
            tx,
            rx: rx.clone(),
            filter,
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let shared = dispatch.clone();
        let thread = std::thread::Builder::new()
            .name("agentgate-obs-log".into())
            .spawn(move || Writer::new(sink, shared, redactor).run(rx))
            .map_err(StartError::Spawn)?;
        Ok(LogWriter {
            dispatch,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn dispatch(&self) -> &Arc<Dispatch> {
        &self.dispatch
    }

    /// Returns once every record sent before the call is written (or lost
    /// to a failing sink). Returns at once after shutdown.
    pub(crate) fn flush(&self) {
        if self.dispatch.is_closed() {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.dispatch.send_waiting(Msg::Flush(tx)) {
            // Err: the writer ended without answering (it stopped); nothing to wait for.
            let _ = rx.recv();
        }
    }

    /// Writes everything accepted, then ends the writer thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        super::global::uninstall(&self.dispatch);
        // Release: senders that see `closed` count instead of queueing.
        self.dispatch.closed.store(true, Ordering::Release);
        let mut stop = Msg::Stop;
        loop {
            match self.dispatch.tx.send_timeout(stop, WAIT_RECHECK) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if !thread.is_finished() => stop = back,
                Err(_) => break,
            }
        }
        // A panic in the writer thread was already reported by the runtime;
        // the records it held are counted below as dropped.
        let _ = thread.join();
        self.collect_leftovers();
    }

    fn collect_leftovers(&self) {
        while let Ok(msg) = self.dispatch.rx.try_recv() {
            if let Msg::Record(_) = msg {
                Counters::add(&self.dispatch.counters.dropped, 1);
            }
        }
    }

    pub(crate) fn stats(&self) -> LogStats {
        if self.thread.lock().is_none() {
            self.collect_leftovers();
        }
        self.dispatch.stats()
    }
}

/// Why the writer could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    Open(crate::files::OpenError),
    Spawn(std::io::Error),
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    dispatch: Arc<Dispatch>,
    /// The pipeline's redaction rules, for the callers' fields and messages.
    redactor: Arc<Redactor>,
    batch: Vec<u8>,
    records: u64,
    /// Records of the current batch, dropped together after it is
    /// written: their context `Arc`s are shared with the logging threads,
    /// and releasing them in a burst moves each refcount's cache line
    /// between cores once per batch instead of once per record.
    retired: Vec<Record>,
    acks: Vec<Sender<()>>,
    reported: bool,
}

impl Writer {
    fn new(sink: Sink, dispatch: Arc<Dispatch>, redactor: Arc<Redactor>) -> Self {
        Writer {
            sink,
            dispatch,
            redactor,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            records: 0,
            retired: Vec::with_capacity(1024),
            acks: Vec::new(),
            reported: false,
        }
    }

    /// Polls rather than blocks: a receiver blocked in `recv` makes every
    /// send pay for waking it (a futex call, several times the rest of a
    /// log call), so when the channel is empty the writer naps, a little
    /// longer each time up to [`MAX_NAP`], and never registers as waiting.
    fn run(mut self, rx: Receiver<Msg>) {
        let mut nap = MIN_NAP;
        let mut stopping = false;
        loop {
            let mut got_any = false;
            // After Stop, what raced in behind it is written too; senders
            // see `closed` by then, so this ends.
            while let Ok(msg) = rx.try_recv() {
                got_any = true;
                stopping |= self.take(msg);
                if self.batch.len() >= BATCH_BYTES {
                    self.write_batch();
                }
            }
            self.write_batch();
            if stopping {
                break;
            }
            if got_any {
                nap = MIN_NAP;
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(MAX_NAP);
            }
        }
    }

    /// Takes one message; true for Stop.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(mut record) => {
                write_line(&mut self.batch, &mut record, &self.redactor);
                self.records += 1;
                self.retired.push(record);
                false
            }
            Msg::Flush(ack) => {
                self.acks.push(ack);
                false
            }
            Msg::Stop => true,
        }
    }

    /// Writes the batch, then answers the flushes taken so far: everything
    /// before them is written (or lost and counted) by then.
    fn write_batch(&mut self) {
        self.write_batch_only();
        for ack in self.acks.drain(..) {
            // The asker may have stopped waiting.
            let _ = ack.send(());
        }
    }

    fn write_batch_only(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.records);
        self.retired.clear();
        let result = catch_unwind(AssertUnwindSafe(|| self.sink.write_batch(&self.batch)));
        self.batch.clear();
        let counters = &self.dispatch.counters;
        let failure = match result {
            Ok(Ok(())) => return Counters::add(&counters.written, records),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the sink panicked".to_owned(),
        };
        Counters::add(&counters.sink_errors, 1);
        Counters::add(&counters.lost, records);
        if !std::mem::replace(&mut self.reported, true) {
            report_sink_failure(&failure);
        }
    }
}

/// Tells stderr, once per writer, that the sink fails: the only way left
/// to reach a human. Later failures are only counted.
fn report_sink_failure(failure: &str) {
    let mut record = Record {
        level: Level::Error,
        module: "agentgate_obs::log".into(),
        timestamp: Timestamp::now(),
        body: Body::Message {
            message: "log sink failed; its records are lost and counted (log_stats)".into(),
            context: None,
            fields: vec![("error", failure.to_owned().into())],
        },
    };
    let mut line = Vec::new();
    write_line(&mut line, &mut record, Redactor::builtin());
    // Nothing more can be done if stderr fails too.
    let _ = std::io::stderr().write_all(&line);
}
