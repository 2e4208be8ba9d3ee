//! The writer thread's output: a buffer of whole lines, the file they go
//! to, size-based rotation, fsync, and recovery from failed writes.
//!
//! Lines are buffered here rather than in a `BufWriter` so that a failed
//! write knows exactly which events it lost (counted by type as dropped),
//! and so that a line is never split between two files.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Fsync, JournalConfig, JournalCounters, SharedWriter, Target};
use crate::event::EventType;
use crate::log::{Dispatch, Logger};

/// Bytes buffered before they are written out.
const BUFFER: usize = 64 * 1024;

/// How often the writer checks that its path still names its file, and
/// retries opening it after an error.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(500);

enum Sink {
    /// `None` after an error, until the file is opened again.
    File(Option<File>),
    Writer(SharedWriter),
}

/// Where the writer thread's lines go.
pub(super) struct Output {
    sink: Sink,
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    fsync: Fsync,
    /// The mode new files are created with.
    mode: u32,
    /// Bytes in the current file (as far as this writer wrote them).
    len: u64,
    buf: Vec<u8>,
    /// Events per type in `buf`, counted as dropped if it cannot be written.
    buf_types: [u64; EventType::COUNT],
    counters: Arc<JournalCounters>,
    log: Option<Arc<Dispatch>>,
    /// In a run of failures: one warning per run, one note when it ends.
    failing: bool,
    last_check: Instant,
    /// Data written since the last fsync.
    unsynced: Option<Instant>,
    /// A write failed and may have left part of a line in the file.
    torn: bool,
}

impl Output {
    /// Opens the journal (appending to an existing file).
    pub(super) fn open(
        config: &JournalConfig,
        counters: Arc<JournalCounters>,
        log: Option<Arc<Dispatch>>,
    ) -> Result<Output, crate::files::OpenError> {
        let (sink, path, len) = match &config.target {
            Target::File(path) => {
                let file = crate::files::open_append(path, config.mode)?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                (Sink::File(Some(file)), path.clone(), len)
            }
            Target::Writer(writer) => (Sink::Writer(writer.clone()), PathBuf::new(), 0),
        };
        Ok(Output {
            sink,
            path,
            max_bytes: config.max_bytes,
            keep: config.keep,
            fsync: config.fsync,
            mode: config.mode,
            len,
            buf: Vec::with_capacity(BUFFER + 4096),
            buf_types: [0; EventType::COUNT],
            counters,
            log,
            failing: false,
            last_check: Instant::now(),
            unsynced: None,
            torn: false,
        })
    }

    /// Appends one encoded line (with its newline) of an event of type `ty`.
    pub(super) fn push(&mut self, line: &[u8], ty: EventType) {
        if let Sink::File(None) = self.sink {
            self.reopen_if_due();
            if let Sink::File(None) = self.sink {
                self.counters.dropped.add(ty);
                return;
            }
        }
        let size = self.len + self.buf.len() as u64;
        if matches!(self.sink, Sink::File(_))
            && size > 0
            && size + line.len() as u64 > self.max_bytes
        {
            self.write_out();
            self.rotate();
            if let Sink::File(None) = self.sink {
                self.counters.dropped.add(ty);
                return;
            }
        }
        self.buf.extend_from_slice(line);
        self.buf_types[ty.index()] += 1;
        if self.buf.len() >= BUFFER {
            self.write_out();
        }
    }

    /// Counts an event that will not be written.
    pub(super) fn count_dropped(&self, ty: EventType) {
        self.counters.dropped.add(ty);
    }

    /// Hands the buffered lines to the kernel.
    pub(super) fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // A stat per write (one per 64 KiB, or per idle moment): cheap
        // beside the write, and it keeps lines out of a deleted file.
        self.verify_path();
        let result = match &mut self.sink {
            Sink::File(Some(file)) => file.write_all(&self.buf),
            Sink::File(None) => Err(io::Error::other("the journal file is not open")),
            Sink::Writer(writer) => {
                let mut writer = writer.lock();
                writer.write_all(&self.buf).and_then(|()| writer.flush())
            }
        };
        let lines: u64 = self.buf_types.iter().sum();
        match result {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                JournalCounters::add(&self.counters.written, lines);
                self.unsynced.get_or_insert_with(Instant::now);
                if self.failing {
                    self.failing = false;
                    self.note("journal writes succeed again");
                }
            }
            Err(error) => {
                self.discard();
                self.torn = true;
                self.failed("write", &error);
                if let Sink::File(file) = &mut self.sink {
                    // A half-written buffer leaves a torn line: start afresh
                    // (readers skip the torn line and count it).
                    *file = None;
                }
            }
        }
        self.buf.clear();
        self.buf_types = [0; EventType::COUNT];
    }

    /// Writes out, then syncs when the policy says so now; `forced` syncs
    /// under every policy but [`Fsync::Never`] (shutdown).
    pub(super) fn sync(&mut self, forced: bool) {
        self.write_out();
        let Some(since) = self.unsynced else {
            return;
        };
        let due = match self.fsync {
            Fsync::Never => false,
            Fsync::OnRotation => forced,
            Fsync::Every(period) => forced || since.elapsed() >= period,
        };
        if due {
            self.fsync_now();
        }
    }

    /// When the next periodic fsync is due, if one is pending.
    pub(super) fn sync_due_in(&self) -> Option<Duration> {
        match (self.fsync, self.unsynced) {
            (Fsync::Every(period), Some(since)) => Some(period.saturating_sub(since.elapsed())),
            _ => None,
        }
    }

    fn fsync_now(&mut self) {
        if let Sink::File(Some(file)) = &self.sink {
            let result = file.sync_data();
            self.unsynced = None;
            if let Err(error) = result {
                self.failed("fsync", &error);
            }
        } else {
            self.unsynced = None;
        }
    }

    /// Every [`CHECK_EVERY`] (and at every flush with `now`): reopens a
    /// file that failed, and notices one removed or moved under the writer.
    pub(super) fn check(&mut self, now: bool) {
        if !now && self.last_check.elapsed() < CHECK_EVERY {
            return;
        }
        self.last_check = Instant::now();
        match &self.sink {
            Sink::File(None) => self.reopen(),
            Sink::File(Some(_)) => self.verify_path(),
            Sink::Writer(_) => {}
        }
    }

    /// A file removed or moved under the writer would take its lines
    /// where nobody looks (a deleted file's are lost for good): a new file
    /// is started at the path, and the buffered lines go there.
    fn verify_path(&mut self) {
        let Sink::File(Some(file)) = &self.sink else {
            return;
        };
        if same_file(file, &self.path) {
            return;
        }
        self.note("the journal file was removed or moved; starting a new one at its path");
        self.reopen();
    }

    /// Counts the buffered lines as dropped and forgets them.
    fn discard(&mut self) {
        for ty in EventType::ALL {
            let n = self.buf_types[ty.index()];
            if n > 0 {
                self.counters.dropped.add_n(ty, n);
            }
        }
        self.buf.clear();
        self.buf_types = [0; EventType::COUNT];
    }

    fn reopen_if_due(&mut self) {
        if self.last_check.elapsed() >= CHECK_EVERY {
            self.last_check = Instant::now();
            self.reopen();
        }
    }

    fn reopen(&mut self) {
        match crate::files::open_append(&self.path, self.mode) {
            Ok(mut file) => {
                self.len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if std::mem::take(&mut self.torn) && self.len > 0 && file.write_all(b"\n").is_ok() {
                    // Ends a torn line, so the next one stays whole.
                    self.len += 1;
                }
                self.sink = Sink::File(Some(file));
            }
            Err(error) => {
                self.sink = Sink::File(None);
                self.failed("open", &error.into());
            }
        }
    }

    /// `FILE.(keep-1)` → `FILE.keep` … `FILE` → `FILE.1`, then a new `FILE`.
    fn rotate(&mut self) {
        if !matches!(self.fsync, Fsync::Never) {
            self.fsync_now();
        }
        self.sink = Sink::File(None);
        let result = (|| {
            for i in (1..self.keep).rev() {
                match std::fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            if self.keep == 0 {
                std::fs::remove_file(&self.path)
            } else {
                std::fs::rename(&self.path, numbered(&self.path, 1))
            }
        })();
        match result {
            Ok(()) => JournalCounters::add(&self.counters.rotations, 1),
            Err(error) => self.failed("rotate", &error),
        }
        // Even after a failed rename: a fresh start at the path.
        self.reopen();
    }

    fn failed(&mut self, what: &str, error: &io::Error) {
        JournalCounters::add(&self.counters.write_errors, 1);
        if self.failing {
            return;
        }
        self.failing = true;
        let message = "journal write failed; events are dropped (journal_events_dropped_total) until it succeeds again";
        match &self.log {
            Some(log) => Logger::bound("agentgate_obs::journal", log.clone()).warn(
                message,
                [
                    ("operation", what.to_owned().into()),
                    ("path", self.path.display().to_string().into()),
                    ("error", error.to_string().into()),
                ],
            ),
            None => eprintln!(
                "agentgate-obs: WARNING: {message}: {what} {}: {error}",
                self.path.display()
            ),
        }
    }

    fn note(&self, message: &'static str) {
        if let Some(log) = &self.log {
            Logger::bound("agentgate_obs::journal", log.clone())
                .info(message, [("path", self.path.display().to_string().into())]);
        }
    }
}

/// `FILE.n`.
pub(super) fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}
