//! Reading journal files back: events with their `seq`, in file order;
//! whatever is not an event is skipped and counted, never a panic.
//!
//! Input is bounded: a line longer than [`ReadLimits::max_line_bytes`] is
//! read in pieces and thrown away up to its newline (skipped and counted
//! as [`SkipReason::TooLong`]), never held whole; one that has not ended
//! after [`ENDLESS_FACTOR`] times the cap is not a journal line at all
//! (`/dev/zero`, a disk image) and ends the reading with
//! [`JournalError::EndlessLine`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::JournalError;
use super::parse::{self, NotAnEvent, ParseCache};
use crate::event::ProgressEvent;

/// How many skipped lines a [`ReadReport`] names (the rest are counted).
const NAMED_SKIPS: usize = 5;

/// The default [`ReadLimits::max_line_bytes`]: 1 MiB, far above any line
/// the journal writer produces for a run's usual events.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// A line still going after this many times [`ReadLimits::max_line_bytes`]
/// (1 GiB at the default) ends the reading with [`JournalError::EndlessLine`]:
/// skipping it byte by byte would never end on `/dev/zero`.
pub const ENDLESS_FACTOR: u64 = 1024;

/// The path that names standard input.
const STDIN: &str = "-";

/// Bounds on what a [`JournalReader`] or [`Observability::replay_with`](crate::Observability::replay_with)
/// reads.
///
/// ```
/// use agentgate_obs::journal::{JournalReader, ReadLimits, SkipReason};
/// let path = std::env::temp_dir().join(format!("doc-limits-{}.ndjson", std::process::id()));
/// std::fs::write(&path, format!("{}\n", "x".repeat(5_000))).unwrap();
/// let mut reader = JournalReader::open_with(&[&path], ReadLimits::default().max_line_bytes(4_096))?;
/// assert_eq!(reader.by_ref().count(), 0);
/// assert_eq!(reader.report().too_long, 1);
/// assert_eq!(reader.report().first_skipped[0].reason, SkipReason::TooLong { bytes: 5_000 });
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), agentgate_obs::journal::JournalError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    max_line_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl ReadLimits {
    /// The longest line read (newline excluded; at least 1, default
    /// [`DEFAULT_MAX_LINE_BYTES`]); a longer one is skipped without being
    /// held whole, and counted as [`SkipReason::TooLong`].
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// The line cap in force.
    pub fn line_cap(&self) -> usize {
        self.max_line_bytes
    }

    /// Bytes of one line after which it counts as endless.
    fn endless_after(&self) -> u64 {
        (self.max_line_bytes as u64).saturating_mul(ENDLESS_FACTOR)
    }
}

/// One event read from a journal.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalRecord {
    /// The `seq` the writing process gave it (`None` for a line without
    /// one, such as a `type`-first NDJSON event from elsewhere).
    pub seq: Option<u64>,
    /// The event.
    pub event: ProgressEvent,
}

/// Why a line was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Empty or whitespace only.
    Blank,
    /// The last line of a file, without its newline, not a whole event:
    /// the writer stopped mid-line (a crash).
    Truncated,
    /// Not a JSON event: a torn line, text, a known type with bad fields.
    Garbage,
    /// A JSON object whose `type` is not an event type (this name, cut
    /// to 64 characters): a newer writer's event, or a `/ws` capture's
    /// `hello`.
    UnknownType(String),
    /// Longer than [`ReadLimits::max_line_bytes`]: read in pieces and
    /// thrown away, never parsed.
    TooLong {
        /// The line's length, newline excluded.
        bytes: u64,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Blank => f.write_str("blank"),
            SkipReason::Truncated => f.write_str("truncated"),
            SkipReason::Garbage => f.write_str("not an event"),
            SkipReason::UnknownType(ty) => write!(f, "unknown type {ty:?}"),
            SkipReason::TooLong { bytes } => write!(f, "{bytes} bytes, over the line cap"),
        }
    }
}

/// A skipped line: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number in it.
    pub line: u64,
    /// Why.
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({})", self.file.display(), self.line, self.reason)
    }
}

/// What a [`JournalReader`] has read so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadReport {
    /// Files opened.
    pub files: usize,
    /// Lines read.
    pub lines: u64,
    /// Events yielded.
    pub events: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// Truncated last lines skipped.
    pub truncated: u64,
    /// Lines that were not events.
    pub garbage: u64,
    /// Objects of a type that is not an event type.
    pub unknown_type: u64,
    /// Lines longer than the line cap.
    pub too_long: u64,
    /// The first few skipped lines (the others are only counted).
    pub first_skipped: Vec<SkippedLine>,
}

impl ReadReport {
    /// Lines skipped, whatever the reason.
    pub fn skipped(&self) -> u64 {
        self.blank + self.truncated + self.garbage + self.unknown_type + self.too_long
    }
}

/// The events of one or more journal files, in order.
///
/// ```
/// use agentgate_obs::journal::JournalReader;
/// let path = std::env::temp_dir().join(format!("doc-reader-{}.ndjson", std::process::id()));
/// std::fs::write(&path, concat!(
///     r#"{"type":"delivery:started","seq":7,"timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"wo","runId":"r","correlationId":"r"}"#, "\n",
///     "garbage\n",
///     r#"{"type":"run:star"#,
/// )).unwrap();
/// let mut reader = JournalReader::open(&[&path])?;
/// let records: Vec<_> = reader.by_ref().collect::<Result<_, _>>()?;
/// assert_eq!(records.len(), 1);
/// assert_eq!(records[0].seq, Some(7));
/// assert_eq!((reader.report().garbage, reader.report().truncated), (1, 1));
/// assert_eq!(reader.report().first_skipped[0].line, 2);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), agentgate_obs::journal::JournalError>(())
/// ```
pub struct JournalReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<Input>)>,
    line_no: u64,
    buf: Vec<u8>,
    limits: ReadLimits,
    /// Bytes of the last line yielded or skipped, newline excluded.
    pub(crate) last_line_bytes: usize,
    report: ReadReport,
    cache: ParseCache,
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader")
            .field("current", &self.current.as_ref().map(|(path, _)| path))
            .field("line_no", &self.line_no)
            .field("limits", &self.limits)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl JournalReader {
    /// Opens `paths` in the order of [`order_files`], with the default
    /// [`ReadLimits`]. Fails if one of them cannot be opened (before
    /// anything is read). `-` is standard input. A FIFO or other
    /// non-regular file is read as `cat` would, until its writer closes
    /// it: it is checked to exist here but opened only when its turn
    /// comes (opening a FIFO waits for a writer).
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<JournalReader, JournalError> {
        JournalReader::open_with(paths, ReadLimits::default())
    }

    /// [`open`](Self::open) with `limits`.
    pub fn open_with<P: AsRef<Path>>(
        paths: &[P],
        limits: ReadLimits,
    ) -> Result<JournalReader, JournalError> {
        let files = order_files(paths);
        for path in &files {
            check_input(path)?;
        }
        Ok(JournalReader {
            files: files.into_iter(),
            current: None,
            line_no: 0,
            buf: Vec::with_capacity(1024),
            limits,
            last_line_bytes: 0,
            report: ReadReport::default(),
            cache: ParseCache::default(),
        })
    }

    /// What was read so far; complete once the iterator is exhausted.
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.report.note_skip(path, self.line_no, reason);
    }
}

impl ReadReport {
    /// Counts a skipped line, and names it if it is among the first few.
    pub(super) fn note_skip(&mut self, path: &Path, line: u64, reason: SkipReason) {
        let r = self;
        match reason {
            SkipReason::Blank => r.blank += 1,
            SkipReason::Truncated => r.truncated += 1,
            SkipReason::Garbage => r.garbage += 1,
            SkipReason::UnknownType(_) => r.unknown_type += 1,
            SkipReason::TooLong { .. } => r.too_long += 1,
        }
        if r.first_skipped.len() < NAMED_SKIPS {
            r.first_skipped.push(SkippedLine {
                file: path.to_owned(),
                line,
                reason,
            });
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<JournalRecord, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.next()?;
                let input = match open_input(&path) {
                    Ok(input) => input,
                    Err(source) => return Some(Err(JournalError::Io { path, source })),
                };
                self.report.files += 1;
                self.line_no = 0;
                self.current = Some((path, BufReader::with_capacity(READ_BUFFER, input)));
            }
            let Some((path, reader)) = self.current.as_mut() else {
                continue;
            };
            // A line wholly in the reader's buffer is parsed where it lies;
            // only one that crosses the buffer's end is copied out first.
            let available = match reader.fill_buf() {
                Ok(available) => available,
                Err(source) => {
                    let path = path.clone();
                    self.current = None;
                    return Some(Err(JournalError::Io { path, source }));
                }
            };
            if available.is_empty() {
                self.current = None;
                continue;
            }
            self.line_no += 1;
            self.report.lines += 1;
            let max = self.limits.max_line_bytes;
            let (parsed, whole) = match memchr::memchr(b'\n', available) {
                Some(end) if end <= max => {
                    self.last_line_bytes = end;
                    let parsed = parse_line(&available[..end], &mut self.cache);
                    reader.consume(end + 1);
                    (parsed, true)
                }
                _ => match read_long(reader, &mut self.buf, &self.limits) {
                    Ok(Spilled::Line { whole }) => {
                        self.last_line_bytes = self.buf.len();
                        (parse_line(&self.buf, &mut self.cache), whole)
                    }
                    Ok(Spilled::TooLong { bytes }) => {
                        self.last_line_bytes = 0;
                        (Err(SkipReason::TooLong { bytes }), true)
                    }
                    Ok(Spilled::Endless { bytes }) => {
                        let path = path.clone();
                        self.current = None;
                        self.files = Vec::new().into_iter();
                        return Some(Err(JournalError::EndlessLine {
                            path,
                            line: self.line_no,
                            bytes,
                        }));
                    }
                    Err(source) => {
                        let path = path.clone();
                        self.current = None;
                        return Some(Err(JournalError::Io { path, source }));
                    }
                },
            };
            match parsed {
                Ok(record) => {
                    self.report.events += 1;
                    return Some(Ok(record));
                }
                Err(reason) => {
                    let reason = match reason {
                        SkipReason::Blank => SkipReason::Blank,
                        _ if !whole => SkipReason::Truncated,
                        other => other,
                    };
                    let path = path.clone();
                    self.skip(&path, reason);
                }
            }
        }
    }
}

/// The read buffer of each input.
pub(super) const READ_BUFFER: usize = 256 * 1024;

/// An open input: a file, or standard input for `-`.
pub(super) type Input = Box<dyn Read + Send>;

/// Opens `path` for reading; `-` is standard input.
pub(super) fn open_input(path: &Path) -> io::Result<Input> {
    if path.as_os_str() == STDIN {
        return Ok(Box::new(io::stdin()));
    }
    if std::fs::metadata(path)?.is_dir() {
        return Err(not_a_file());
    }
    Ok(Box::new(File::open(path)?))
}

fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::IsADirectory, "a directory, not a journal")
}

/// Checks that `path` can be read, before anything is: a regular file is
/// opened (and closed); a FIFO, a device or standard input only has to
/// exist, because opening a FIFO waits for its writer and it must be
/// opened once only, when it is read.
pub(super) fn check_input(path: &Path) -> Result<(), JournalError> {
    let error = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    if path.as_os_str() == STDIN {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(error)?;
    if meta.is_dir() {
        return Err(error(not_a_file()));
    }
    if meta.is_file() {
        File::open(path).map_err(error)?;
    }
    Ok(())
}

/// A line that did not end within the read buffer, as [`read_long`] left it.
pub(super) enum Spilled {
    /// In the buffer, newline excluded; `whole` if a newline ended it
    /// (else the input ended).
    Line { whole: bool },
    /// Over the cap, discarded up to its newline (or the end of the input).
    TooLong { bytes: u64 },
    /// Over [`ENDLESS_FACTOR`] times the cap with no newline yet; the
    /// input is left mid-line.
    Endless { bytes: u64 },
}

/// Reads one line into `buf` if it is within the cap, else reads it in
/// the reader's buffer-sized pieces and throws them away: memory is the
/// cap and the read buffer whatever the line's length.
pub(super) fn read_long<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limits: &ReadLimits,
) -> io::Result<Spilled> {
    buf.clear();
    // A buffer grown by an earlier long line is not kept at that size.
    if buf.capacity() > 2 * limits.max_line_bytes.min(READ_BUFFER) {
        buf.shrink_to(1024);
    }
    // Bytes of a line found over the cap; 0 while it is within.
    let mut over: u64 = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(match over {
                0 => Spilled::Line { whole: false },
                bytes => Spilled::TooLong { bytes },
            });
        }
        let newline = memchr::memchr(b'\n', available);
        let piece = newline.unwrap_or(available.len());
        if over == 0 && buf.len() + piece <= limits.max_line_bytes {
            buf.extend_from_slice(&available[..piece]);
        } else {
            if over == 0 {
                over = buf.len() as u64;
                buf.clear();
            }
            over += piece as u64;
        }
        reader.consume(piece + usize::from(newline.is_some()));
        if newline.is_some() {
            return Ok(match over {
                0 => Spilled::Line { whole: true },
                bytes => Spilled::TooLong { bytes },
            });
        }
        if over > limits.endless_after() {
            return Ok(Spilled::Endless { bytes: over });
        }
    }
}

/// Parses one line (with or without its newline).
pub(super) fn parse_line(line: &[u8], cache: &mut ParseCache) -> Result<JournalRecord, SkipReason> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(SkipReason::Blank);
    }
    match parse::parse(line, cache) {
        Ok(record) => Ok(record),
        Err(NotAnEvent::Malformed) => Err(SkipReason::Garbage),
        Err(NotAnEvent::UnknownType(ty)) => Err(SkipReason::UnknownType(ty)),
    }
}

/// Puts journal files in reading order: the files of a rotated set
/// (`FILE.3`, `FILE.2`, `FILE.1`, `FILE`) oldest first whatever order they
/// were given in (a shell's `FILE*` sorts `FILE.10` before `FILE.2`);
/// sets, and unrelated files, in the order they were first named.
/// Duplicates are read once.
///
/// ```
/// use agentgate_obs::journal::order_files;
/// use std::path::PathBuf;
/// let given: Vec<PathBuf> = ["j", "j.1", "j.10", "j.2", "other"].iter().map(PathBuf::from).collect();
/// let ordered: Vec<PathBuf> = ["j.10", "j.2", "j.1", "j", "other"].iter().map(PathBuf::from).collect();
/// assert_eq!(order_files(&given), ordered);
/// ```
pub fn order_files<P: AsRef<Path>>(paths: &[P]) -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    let mut keyed: Vec<(usize, std::cmp::Reverse<u64>, PathBuf)> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if keyed.iter().any(|(_, _, p)| p == path) {
            continue;
        }
        let (base, n) = split_rotation(path);
        let group = match bases.iter().position(|b| *b == base) {
            Some(i) => i,
            None => {
                bases.push(base);
                bases.len() - 1
            }
        };
        keyed.push((group, std::cmp::Reverse(n), path.to_owned()));
    }
    keyed.sort_by_key(|k| (k.0, k.1));
    keyed.into_iter().map(|(_, _, p)| p).collect()
}

/// `FILE.n` → (`FILE`, n); anything else → (itself, 0).
fn split_rotation(path: &Path) -> (PathBuf, u64) {
    let text = path.as_os_str().to_string_lossy();
    if let Some((base, n)) = text.rsplit_once('.')
        && !base.is_empty()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = n.parse::<u64>()
    {
        return (PathBuf::from(base), n);
    }
    (path.to_owned(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_read_in_pieces_within_the_cap_and_thrown_away_past_it() {
        let limits = ReadLimits::default().max_line_bytes(10);
        let text = b"0123456789\n0123456789A\nshort\n0123456789ABC";
        // A read buffer smaller than the lines: every line crosses it.
        let mut reader = BufReader::with_capacity(4, &text[..]);
        let mut buf = Vec::new();
        let mut read = || match read_long(&mut reader, &mut buf, &limits).expect("reads") {
            Spilled::Line { whole } => format!("{} {whole}", String::from_utf8_lossy(&buf)),
            Spilled::TooLong { bytes } => format!("too long {bytes}"),
            Spilled::Endless { bytes } => format!("endless {bytes}"),
        };
        assert_eq!(read(), "0123456789 true");
        assert_eq!(read(), "too long 11");
        assert_eq!(read(), "short true");
        assert_eq!(read(), "too long 13");
        assert!(buf.capacity() <= 64, "{}", buf.capacity());
    }

    #[test]
    fn a_line_past_1024_times_the_cap_is_endless() {
        let limits = ReadLimits::default().max_line_bytes(8);
        let mut zeros = BufReader::with_capacity(64, std::io::repeat(0));
        let mut buf = Vec::new();
        match read_long(&mut zeros, &mut buf, &limits).expect("reads") {
            Spilled::Endless { bytes } => assert!((8 * 1024..8 * 1024 + 64).contains(&(bytes - 1))),
            _ => panic!("not endless"),
        }
    }

    #[test]
    fn lines_that_are_not_events_are_classified() {
        let parse_line = |line: &[u8]| parse_line(line, &mut ParseCache::default());
        assert_eq!(parse_line(b"  \n").err(), Some(SkipReason::Blank));
        assert_eq!(
            parse_line(b"{\"type\":\"hello\",\"seq\":0}\n").err(),
            Some(SkipReason::UnknownType("hello".into()))
        );
        assert_eq!(
            parse_line(b"{\"type\":\"run:started\"}\n").err(),
            Some(SkipReason::Garbage)
        );
        assert_eq!(parse_line(b"\xff\xfe\n").err(), Some(SkipReason::Garbage));
        assert_eq!(parse_line(b"[1,2]\n").err(), Some(SkipReason::Garbage));
    }
}
