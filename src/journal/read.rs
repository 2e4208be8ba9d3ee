//! Reading journal files back: events with their `seq`, in file order;
//! whatever is not an event is skipped and counted, never a panic.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::JournalError;
use super::parse::{self, NotAnEvent, ParseCache};
use crate::event::ProgressEvent;

/// How many skipped lines a [`ReadReport`] names (the rest are counted).
const NAMED_SKIPS: usize = 5;

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
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Blank => f.write_str("blank"),
            SkipReason::Truncated => f.write_str("truncated"),
            SkipReason::Garbage => f.write_str("not an event"),
            SkipReason::UnknownType(ty) => write!(f, "unknown type {ty:?}"),
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
    /// The first few skipped lines (the others are only counted).
    pub first_skipped: Vec<SkippedLine>,
}

impl ReadReport {
    /// Lines skipped, whatever the reason.
    pub fn skipped(&self) -> u64 {
        self.blank + self.truncated + self.garbage + self.unknown_type
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
#[derive(Debug)]
pub struct JournalReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<File>)>,
    line_no: u64,
    buf: Vec<u8>,
    report: ReadReport,
    cache: ParseCache,
}

impl JournalReader {
    /// Opens `paths` in the order of [`order_files`]. Fails if one of them
    /// cannot be opened (before anything is read).
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<JournalReader, JournalError> {
        let files = order_files(paths);
        for path in &files {
            File::open(path).map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(JournalReader {
            files: files.into_iter(),
            current: None,
            line_no: 0,
            buf: Vec::with_capacity(1024),
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
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(source) => return Some(Err(JournalError::Io { path, source })),
                };
                self.report.files += 1;
                self.line_no = 0;
                self.current = Some((path, BufReader::with_capacity(256 * 1024, file)));
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
            let (parsed, whole) = match memchr::memchr(b'\n', available) {
                Some(end) => {
                    let parsed = parse_line(&available[..end], &mut self.cache);
                    reader.consume(end + 1);
                    (parsed, true)
                }
                None => {
                    self.buf.clear();
                    if let Err(source) = reader.read_until(b'\n', &mut self.buf) {
                        let path = path.clone();
                        self.current = None;
                        return Some(Err(JournalError::Io { path, source }));
                    }
                    let whole = self.buf.last() == Some(&b'\n');
                    let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    (parse_line(line, &mut self.cache), whole)
                }
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
