//! The event journal: every processed event on disk, one JSON line each,
//! exactly as `/ws` sends it, and the readers that bring it back.
//!
//! Writing ([`Builder::journal`](crate::Builder::journal)): the drain
//! thread hands batches of events (packed a word each) to a writer
//! thread, which encodes each line with the WebSocket encoder and appends
//! it to the file. The hand-off is bounded and never waits: when
//! the writer is behind, events are dropped and counted
//! (`journal_events_dropped_total{type}`), except that lifecycle events
//! (`run_*`, `delivery_completed`) have reserved room of their own, so they
//! are lost only when the writer is stuck past it. See `docs/PROTOCOL.md`
//! ("The journal") for the format and `docs/OPERATIONS.md` for rotation,
//! fsync and following it.
//!
//! ```
//! use agentgate_obs::{Observability, ProgressEvent};
//! use agentgate_obs::event::EventKind;
//! use agentgate_obs::journal::{Fsync, JournalConfig};
//!
//! let path = std::env::temp_dir().join(format!("doc-journal-{}.ndjson", std::process::id()));
//! let obs = Observability::builder()
//!     .no_log()
//!     .journal_config(JournalConfig::new(&path).max_bytes(64 << 20).keep(3).fsync(Fsync::OnRotation))
//!     .start()?;
//! obs.emitter().emit(ProgressEvent::new("wo-1", "run-1", EventKind::DeliveryStarted));
//! obs.flush(); // the line is in the file
//! let text = std::fs::read_to_string(&path).unwrap();
//! assert!(text.starts_with(r#"{"type":"delivery:started","seq":1,"#));
//! # drop(obs); let _ = std::fs::remove_file(&path);
//! # Ok::<(), agentgate_obs::Error>(())
//! ```
//!
//! Reading: [`JournalReader`] yields the events of one or more journal
//! files with their `seq`, skipping (and counting) what is not an event;
//! [`Observability::replay`](crate::Observability::replay) feeds them
//! through a running pipeline so the tracker, metrics, dashboard and `/ws`
//! are the live code paths.

mod item;
pub(crate) mod parallel;
mod parse;
mod read;
mod replay;
mod rotate;
mod scan;
#[cfg(feature = "fuzzing")]
pub(crate) use scan::assert_agrees_with_serde;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::files::DEFAULT_FILE_MODE;
pub use read::{
    DEFAULT_MAX_LINE_BYTES, ENDLESS_FACTOR, JournalReader, JournalRecord, ReadLimits, ReadReport,
    SkipReason, SkippedLine, order_files,
};
pub use replay::{ReplayReport, Speed};

use crate::stats::{EventCounts, PerType};

/// When the writer asks the kernel to put the journal on the disk itself
/// (`fsync`). Lines reach the kernel at every [`flush`](crate::Observability::flush),
/// whenever the writer has nothing more to do, and at shutdown, so a crash
/// of the process loses only what the writer had not been handed yet;
/// `fsync` matters for a crash of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// Never: the kernel writes back when it likes (tens of seconds at most
    /// on Linux by default).
    Never,
    /// Before a file is rotated away and at shutdown (the default): every
    /// rotated file is whole on disk.
    #[default]
    OnRotation,
    /// At most this long after a line is written, and at rotation and
    /// shutdown.
    Every(Duration),
}

/// Where and how the journal is written. See [`Builder::journal_config`](crate::Builder::journal_config).
#[derive(Clone)]
pub struct JournalConfig {
    pub(crate) target: Target,
    pub(crate) max_bytes: u64,
    pub(crate) keep: usize,
    pub(crate) fsync: Fsync,
    pub(crate) capacity: usize,
    pub(crate) lifecycle_reserve: usize,
    pub(crate) mode: u32,
}

/// The default size at which the journal is rotated: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
/// The default number of rotated files kept (`FILE.1` … `FILE.5`).
pub const DEFAULT_KEEP: usize = 5;
/// The default number of events that may wait for the writer.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The default room reserved for lifecycle events beyond the capacity.
pub const DEFAULT_LIFECYCLE_RESERVE: usize = 16_384;

impl JournalConfig {
    /// A journal appended to `path` (created if missing) with the defaults:
    /// rotated at [`DEFAULT_MAX_BYTES`], [`DEFAULT_KEEP`] rotated files,
    /// [`Fsync::OnRotation`], new files created with mode 0600. A path
    /// that names anything but a regular file (a FIFO, a device, a socket,
    /// a directory) makes [`start`](crate::Builder::start) fail with
    /// [`Error::NotARegularFile`](crate::Error::NotARegularFile).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JournalConfig {
            target: Target::File(path.into()),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
            fsync: Fsync::default(),
            capacity: DEFAULT_CAPACITY,
            lifecycle_reserve: DEFAULT_LIFECYCLE_RESERVE,
            mode: crate::files::DEFAULT_FILE_MODE,
        }
    }

    /// A journal written to `writer` instead of a file (a pipe to a log
    /// shipper, a test's buffer): no rotation, no reopening, no fsync;
    /// `flush` flushes it. The other settings are [`new`](Self::new)'s.
    pub fn writer(writer: impl std::io::Write + Send + 'static) -> Self {
        let boxed: Box<dyn std::io::Write + Send> = Box::new(writer);
        JournalConfig {
            target: Target::Writer(std::sync::Arc::new(parking_lot::Mutex::new(boxed))),
            ..JournalConfig::new(PathBuf::new())
        }
    }

    /// The file written to; `None` for a [`writer`](Self::writer).
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(path) => Some(path),
            Target::Writer(_) => None,
        }
    }

    /// Rotates the file before a line would take it past `bytes` (at least
    /// 1; `u64::MAX` never rotates): `FILE` becomes `FILE.1`, `FILE.1`
    /// becomes `FILE.2` … and a new `FILE` is started. A single line longer
    /// than `bytes` still goes whole into a file of its own.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How many rotated files to keep (`FILE.1` … `FILE.keep`); older ones
    /// are deleted. 0 keeps none: rotation then deletes the full file.
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }

    /// The permissions each new journal file, the first and every one a
    /// rotation starts, is created with (default
    /// [`DEFAULT_FILE_MODE`], 0600; the umask
    /// still applies). An existing file keeps its own; a rotated file keeps
    /// the one it was created with.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// The fsync policy (default [`Fsync::OnRotation`]).
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// How many events may wait for the writer (default 65,536, at least
    /// 1); past that, events other than lifecycle ones are dropped and
    /// counted.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events;
        self
    }

    /// Room for lifecycle events beyond [`capacity`](Self::capacity)
    /// (default 16,384): they are kept while the writer merely lags, and
    /// dropped (counted, with a warning) only past this too.
    pub fn lifecycle_reserve(mut self, events: usize) -> Self {
        self.lifecycle_reserve = events;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::error::Error> {
        if self.capacity == 0 {
            return Err(crate::error::Error::Config(
                "journal capacity must be at least 1".into(),
            ));
        }
        if self.max_bytes == 0 {
            return Err(crate::error::Error::Config(
                "journal max_bytes must be at least 1".into(),
            ));
        }
        if let Fsync::Every(period) = self.fsync
            && period.is_zero()
        {
            return Err(crate::error::Error::Config(
                "journal fsync period must be above zero".into(),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for JournalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalConfig")
            .field("path", &self.path())
            .field("max_bytes", &self.max_bytes)
            .field("keep", &self.keep)
            .field("fsync", &self.fsync)
            .field("capacity", &self.capacity)
            .field("lifecycle_reserve", &self.lifecycle_reserve)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A writer shared between clones of a configuration; the writer thread
/// takes the lock once per write.
pub(crate) type SharedWriter = std::sync::Arc<parking_lot::Mutex<Box<dyn std::io::Write + Send>>>;

/// Where the lines go.
#[derive(Clone)]
pub(crate) enum Target {
    File(PathBuf),
    Writer(SharedWriter),
}

/// The journal's accounting, from [`Observability::journal_stats`](crate::Observability::journal_stats).
/// Exact after [`flush`](crate::Observability::flush): every event the
/// pipeline processed is either written or dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStats {
    /// Lines written (handed to the kernel).
    pub written: u64,
    /// Events not written, by type: the writer was behind, or a write failed.
    pub dropped: EventCounts,
    /// Failed writes, opens, renames and fsyncs.
    pub write_errors: u64,
    /// Rotations done.
    pub rotations: u64,
}

/// The counters behind [`JournalStats`] and the `journal_*` metric
/// families; all zero when no journal is configured.
#[derive(Debug, Default)]
pub(crate) struct JournalCounters {
    pub(crate) written: AtomicU64,
    pub(crate) dropped: PerType,
    pub(crate) write_errors: AtomicU64,
    pub(crate) rotations: AtomicU64,
}

impl JournalCounters {
    pub(crate) fn stats(&self) -> JournalStats {
        // Relaxed: counts read for reporting; flush() orders them for readers.
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        JournalStats {
            written: load(&self.written),
            dropped: self.dropped.load(),
            write_errors: load(&self.write_errors),
            rotations: load(&self.rotations),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a count for reporting, written by one thread at a time.
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file could not be opened or read.
    #[error("could not read the journal {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line ran on past [`ENDLESS_FACTOR`] times the line cap without a
    /// newline: the input is not a journal (`/dev/zero`, a disk image).
    #[error(
        "{}:{line}: a line runs past {bytes} bytes with no end in sight: not a journal \
         (lines over the cap are skipped up to {ENDLESS_FACTOR} times the cap; \
         raise the line cap, --max-line-bytes, if it is one)",
        path.display()
    )]
    EndlessLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number in it.
        line: u64,
        /// Bytes of the line read when reading stopped.
        bytes: u64,
    },
}
