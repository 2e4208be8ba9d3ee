//! Reading journal files with the parsing spread over threads, for
//! `replay`: one thread reads chunks of lines, [`WORKERS`] threads parse
//! them (parsing is nine tenths of a replay's time on the reading side),
//! and the caller takes the parsed chunks back in file order.
//!
//! Chunks are dealt round-robin and taken back in the same rotation, so
//! order needs no sequence numbers; every channel is bounded, and a chunk
//! ends at [`CHUNK_LINES`] lines or [`CHUNK_BYTES`] bytes (plus one line of
//! at most the line cap), so memory stays a few chunks per worker whatever
//! the lines' length; dropping the reader ends the threads (their sends
//! fail).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};

use super::parse::ParseCache;
use super::read::{READ_BUFFER, ReadLimits, Spilled, open_input, parse_line, read_long};
use super::{JournalError, JournalRecord, ReadReport, SkipReason};

/// Parsing threads.
pub(crate) const WORKERS: usize = 2;
/// Lines per chunk at most.
const CHUNK_LINES: usize = 1024;
/// Bytes per chunk past which it is dealt: lines of a usual length fill
/// [`CHUNK_LINES`] first.
pub(crate) const CHUNK_BYTES: usize = CHUNK_LINES * 256;
/// Chunks queued per worker, each way.
const QUEUED: usize = 4;

/// Lines of one file, copied out of the read buffer.
struct RawChunk {
    file: usize,
    /// Line number of the first line, from 1.
    first_line: u64,
    data: Vec<u8>,
    /// Each line in `data`, newline excluded.
    lines: Vec<RawLine>,
}

/// Where a line of a [`RawChunk`] is, and what it is.
#[derive(Clone, Copy)]
enum RawLine {
    /// `data[start..end]`; `whole` if a newline ended it.
    Text {
        start: usize,
        end: usize,
        whole: bool,
    },
    /// A line over the cap, of this many bytes, not kept.
    TooLong(u64),
}

/// What a worker hands back for a chunk.
pub(crate) struct Parsed {
    pub(crate) file: usize,
    pub(crate) lines: u64,
    /// Bytes of the chunk's lines.
    pub(crate) bytes: usize,
    pub(crate) records: Vec<JournalRecord>,
    /// Skipped lines of the chunk: line number and why.
    pub(crate) skipped: Vec<(u64, SkipReason)>,
}

type Message = Result<Parsed, JournalError>;

/// The parsed chunks of `files`, in order.
pub(crate) struct ParallelReader {
    from_workers: Vec<Receiver<Message>>,
    next: usize,
    /// Emptied record vectors going back to the workers.
    spare_records: Sender<Vec<JournalRecord>>,
}

/// Buffers in flight are recycled rather than freed: a chunk's buffers are
/// hundreds of kilobytes, which the allocator maps and unmaps afresh each
/// time (page faults and zeroing measured at a tenth of a replay's time).
const SPARES: usize = WORKERS * (QUEUED + 2);

impl ParallelReader {
    /// Starts the reading and parsing threads. `None` if a thread could not
    /// be spawned (the caller then reads sequentially).
    pub(crate) fn start(files: Vec<PathBuf>, limits: ReadLimits) -> Option<ParallelReader> {
        let mut to_workers = Vec::new();
        let mut from_workers = Vec::new();
        let (spare_raw_tx, spare_raw_rx) = crossbeam_channel::bounded(SPARES);
        let (spare_records_tx, spare_records_rx) = crossbeam_channel::bounded(SPARES);
        for i in 0..WORKERS {
            let (raw_tx, raw_rx) =
                crossbeam_channel::bounded::<Result<RawChunk, JournalError>>(QUEUED);
            let (out_tx, out_rx) = crossbeam_channel::bounded::<Message>(QUEUED);
            let spares = Spares {
                raw: spare_raw_tx.clone(),
                records: spare_records_rx.clone(),
            };
            std::thread::Builder::new()
                .name(format!("agentgate-obs-parse-{i}"))
                .spawn(move || work(&raw_rx, &out_tx, &spares))
                .ok()?;
            to_workers.push(raw_tx);
            from_workers.push(out_rx);
        }
        std::thread::Builder::new()
            .name("agentgate-obs-read".into())
            .spawn(move || read(&files, limits, &to_workers, &spare_raw_rx))
            .ok()?;
        Some(ParallelReader {
            from_workers,
            next: 0,
            spare_records: spare_records_tx,
        })
    }

    /// Hands an emptied chunk's record vector back for reuse.
    pub(crate) fn recycle(&self, mut records: Vec<JournalRecord>) {
        records.clear();
        // A full spare queue drops it: enough are in flight already.
        let _ = self.spare_records.try_send(records);
    }

    /// The next parsed chunk; `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> Option<Message> {
        let message = self.from_workers[self.next].recv().ok()?;
        self.next = (self.next + 1) % self.from_workers.len();
        Some(message)
    }
}

/// Adds a parsed chunk's skips and counts to `report`.
pub(crate) fn account(report: &mut ReadReport, files: &[PathBuf], chunk: &mut Parsed) {
    report.lines += chunk.lines;
    report.events += chunk.records.len() as u64;
    let path = files.get(chunk.file).cloned().unwrap_or_default();
    for (line, reason) in chunk.skipped.drain(..) {
        report.note_skip(&path, line, reason);
    }
}

/// The reading thread: chunks of lines, dealt to the workers in turn.
fn read(
    files: &[PathBuf],
    limits: ReadLimits,
    workers: &[Sender<Result<RawChunk, JournalError>>],
    spares: &Receiver<RawChunk>,
) {
    let mut turn = 0;
    let mut deal = |chunk: Result<RawChunk, JournalError>| {
        let sent = workers[turn].send(chunk).is_ok();
        turn = (turn + 1) % workers.len();
        sent
    };
    for (index, path) in files.iter().enumerate() {
        let error = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut reader = match open_input(path) {
            Ok(input) => BufReader::with_capacity(READ_BUFFER, input),
            Err(source) => {
                deal(Err(error(source)));
                return;
            }
        };
        let mut line_no = 0u64;
        let mut chunk = RawChunk::new(spares, index, 1);
        let mut spill = Vec::new();
        loop {
            let available = match reader.fill_buf() {
                Ok(available) => available,
                Err(source) => {
                    deal(Err(error(source)));
                    return;
                }
            };
            if available.is_empty() {
                break;
            }
            line_no += 1;
            match memchr::memchr(b'\n', available) {
                Some(end) if end <= limits.line_cap() => {
                    chunk.push(&available[..end], true);
                    reader.consume(end + 1);
                }
                // The line crosses the read buffer's end (or ends the
                // file), or is over the cap.
                _ => match read_long(&mut reader, &mut spill, &limits) {
                    Ok(Spilled::Line { whole }) => chunk.push(&spill, whole),
                    Ok(Spilled::TooLong { bytes }) => chunk.too_long(bytes),
                    Ok(Spilled::Endless { bytes }) => {
                        deal(Err(JournalError::EndlessLine {
                            path: path.clone(),
                            line: line_no,
                            bytes,
                        }));
                        return;
                    }
                    Err(source) => {
                        deal(Err(error(source)));
                        return;
                    }
                },
            }
            if chunk.lines.len() >= CHUNK_LINES || chunk.data.len() >= CHUNK_BYTES {
                let next = RawChunk::new(spares, index, line_no + 1);
                if !deal(Ok(std::mem::replace(&mut chunk, next))) {
                    return;
                }
            }
        }
        if !chunk.lines.is_empty() && !deal(Ok(chunk)) {
            return;
        }
    }
}

impl RawChunk {
    /// An empty chunk, in a spare's buffers if there is one.
    fn new(spares: &Receiver<RawChunk>, file: usize, first_line: u64) -> Self {
        match spares.try_recv() {
            // A spare grown past twice its usual size by a huge line is let
            // go, not kept in circulation for the rest of the replay.
            Ok(mut spare) if spare.data.capacity() <= 2 * CHUNK_BYTES => {
                spare.data.clear();
                spare.lines.clear();
                RawChunk {
                    file,
                    first_line,
                    ..spare
                }
            }
            _ => RawChunk {
                file,
                first_line,
                data: Vec::with_capacity(CHUNK_BYTES),
                lines: Vec::with_capacity(CHUNK_LINES),
            },
        }
    }

    fn push(&mut self, line: &[u8], whole: bool) {
        let start = self.data.len();
        self.data.extend_from_slice(line);
        self.lines.push(RawLine::Text {
            start,
            end: self.data.len(),
            whole,
        });
    }

    fn too_long(&mut self, bytes: u64) {
        self.lines.push(RawLine::TooLong(bytes));
    }
}

/// A parsing thread's ends of the recycling queues.
struct Spares {
    raw: Sender<RawChunk>,
    records: Receiver<Vec<JournalRecord>>,
}

/// A parsing thread: chunks in, parsed chunks out, in the order received.
fn work(raw: &Receiver<Result<RawChunk, JournalError>>, out: &Sender<Message>, spares: &Spares) {
    let mut cache = ParseCache::default();
    for chunk in raw.iter() {
        let message = chunk.map(|chunk| {
            let mut parsed = Parsed {
                file: chunk.file,
                lines: chunk.lines.len() as u64,
                bytes: chunk.data.len(),
                records: spares
                    .records
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(chunk.lines.len())),
                skipped: Vec::new(),
            };
            for (i, &line) in chunk.lines.iter().enumerate() {
                let line_no = chunk.first_line + i as u64;
                let (start, end, whole) = match line {
                    RawLine::Text { start, end, whole } => (start, end, whole),
                    RawLine::TooLong(bytes) => {
                        parsed
                            .skipped
                            .push((line_no, SkipReason::TooLong { bytes }));
                        continue;
                    }
                };
                match parse_line(&chunk.data[start..end], &mut cache) {
                    Ok(record) => parsed.records.push(record),
                    Err(reason) => {
                        let reason = match reason {
                            SkipReason::Blank => SkipReason::Blank,
                            _ if !whole => SkipReason::Truncated,
                            other => other,
                        };
                        parsed.skipped.push((line_no, reason));
                    }
                }
            }
            // A full spare queue drops it: enough are in flight already.
            let _ = spares.raw.try_send(chunk);
            parsed
        });
        if out.send(message).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_in_file_order_with_line_numbers_across_chunks_and_files() {
        let dir = std::env::temp_dir().join(format!("agentgate-parallel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let line = |seq: usize| {
            format!(
                r#"{{"type":"phase:started","seq":{seq},"timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"w","runId":"r","iteration":1,"phase":"build"}}"#
            )
        };
        let first: Vec<String> = (1..=3_000)
            .map(|i| {
                if i == 2_500 {
                    "garbage".to_owned()
                } else {
                    line(i)
                }
            })
            .collect();
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::write(&a, first.join("\n") + "\n").expect("write");
        std::fs::write(&b, format!("{}\n{}", line(3_001), &line(3_002)[..20])).expect("write");
        let files = vec![a.clone(), b.clone()];
        let mut reader =
            ParallelReader::start(files.clone(), ReadLimits::default()).expect("threads");
        let mut report = ReadReport::default();
        let mut seqs = Vec::new();
        while let Some(parsed) = reader.next_chunk() {
            let mut parsed = parsed.expect("readable");
            account(&mut report, &files, &mut parsed);
            seqs.extend(parsed.records.iter().filter_map(|r| r.seq));
        }
        let expected: Vec<u64> = (1..=3_001).filter(|&s| s != 2_500).collect();
        assert_eq!(seqs, expected);
        assert_eq!(
            (report.lines, report.garbage, report.truncated),
            (3_002, 1, 1)
        );
        let named: Vec<(PathBuf, u64)> = report
            .first_skipped
            .iter()
            .map(|s| (s.file.clone(), s.line))
            .collect();
        assert_eq!(named, [(a, 2_500), (b, 2)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
