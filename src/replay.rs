//! Replaying a journal through a running pipeline: the tracker, the
//! metrics, the dashboard and `/ws` then show the journal's runs through
//! the live code paths.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::emitter::Emitter;
use crate::event::ProgressEvent;
use crate::journal::parallel::{CHUNK_BYTES, ParallelReader, account};
use crate::journal::{
    JournalError, JournalReader, JournalRecord, ReadLimits, ReplayReport, Speed, order_files,
};
use crate::observability::Observability;

impl Observability {
    /// Feeds the events of the journal files `paths` (put in order by
    /// [`order_files`](crate::journal::order_files)) to this pipeline, at `speed`, until they
    /// run out or `stop` is set; returns once every fed event is processed.
    ///
    /// Events are emitted with their own timestamps and ids, waiting for room
    /// in the ring whatever the overflow policy, so nothing is lost. While the
    /// journal's `seq` and the pipeline's agree (a fresh pipeline and a
    /// journal that starts at 1), a gap in the journal is reproduced, so `/ws`
    /// clients of the replay see the journal's own `seq` numbers.
    ///
    /// ```
    /// use agentgate_obs::Observability;
    /// use agentgate_obs::journal::Speed;
    /// use std::sync::atomic::AtomicBool;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-replay-{}.ndjson", std::process::id()));
    /// std::fs::write(&path, concat!(
    ///     r#"{"type":"run:started","seq":1,"timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"wo","runId":"r","correlationId":"r","taskSpec":{"goal":"g","strategy":"ralph","maxIterations":3}}"#, "\n",
    /// )).unwrap();
    /// let obs = Observability::builder().no_log().start()?;
    /// let report = obs.replay(&[&path], Speed::Max, &AtomicBool::new(false)).unwrap();
    /// assert_eq!(report.events, 1);
    /// assert_eq!(obs.active_runs(), 1);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn replay<P: AsRef<Path>>(
        &self,
        paths: &[P],
        speed: Speed,
        stop: &AtomicBool,
    ) -> Result<ReplayReport, JournalError> {
        self.replay_with(paths, speed, ReadLimits::default(), stop)
    }

    /// [`replay`](Self::replay) with the input bounded by `limits` rather
    /// than the default ones. Memory is bounded whatever the input: lines
    /// over the cap are skipped without being held, and the events parsed
    /// but not yet handed to the pipeline are bounded in bytes of their
    /// lines.
    pub fn replay_with<P: AsRef<Path>>(
        &self,
        paths: &[P],
        speed: Speed,
        limits: ReadLimits,
        stop: &AtomicBool,
    ) -> Result<ReplayReport, JournalError> {
        let files = order_files(paths);
        // Every file opens, or nothing is replayed.
        let sequential = JournalReader::open_with(&files, limits)?;
        let emitter = self.emitter();
        let mut feeder = Feeder {
            // The pipeline's seq before the first event; `None` if unknown.
            pipeline_seq: emitter.shared().on_drain(None, |drain| drain.seq),
            emitter,
            speed,
            stop,
            report: ReplayReport::default(),
            previous: None,
            clock: None,
            chunk: Vec::with_capacity(CHUNK),
            chunk_bytes: 0,
        };
        match ParallelReader::start(files.clone(), limits) {
            Some(mut reader) => {
                feeder.report.read.files = files.len();
                'chunks: while let Some(parsed) = reader.next_chunk() {
                    let mut parsed = parsed?;
                    account(&mut feeder.report.read, &files, &mut parsed);
                    // Per line, the chunk's average: exact enough for a bound.
                    let per_record = parsed.bytes / parsed.records.len().max(1);
                    for record in parsed.records.drain(..) {
                        if !feeder.feed(record, per_record) {
                            break 'chunks;
                        }
                    }
                    reader.recycle(parsed.records);
                }
            }
            None => {
                let mut reader = sequential;
                while let Some(record) = reader.next() {
                    if !feeder.feed(record?, reader.last_line_bytes) {
                        break;
                    }
                }
                feeder.report.read = reader.report().clone();
            }
        }
        feeder.emit_chunk();
        self.flush();
        Ok(feeder.report)
    }
}

/// Feeds records to the pipeline in order, keeping the report.
struct Feeder<'a> {
    emitter: Emitter,
    speed: Speed,
    stop: &'a AtomicBool,
    report: ReplayReport,
    pipeline_seq: Option<u64>,
    /// The previous record's `seq`.
    previous: Option<u64>,
    /// When the first record was fed, and its timestamp (paced replays).
    clock: Option<(Instant, u64)>,
    chunk: Vec<ProgressEvent>,
    /// Bytes of the lines of the events in `chunk`.
    chunk_bytes: usize,
}

impl Feeder<'_> {
    /// Feeds one record, read from a line of `bytes`; false once `stop` is set.
    fn feed(&mut self, record: JournalRecord, bytes: usize) -> bool {
        // Relaxed: a request to stop soon.
        if self.stop.load(Ordering::Relaxed) {
            self.report.stopped = true;
            return false;
        }
        if let Speed::Scaled(factor) = self.speed
            && !pace(
                &mut self.clock,
                record.event.timestamp.as_millis(),
                factor,
                self.stop,
            )
        {
            self.report.stopped = true;
            return false;
        }
        if let Some(seq) = record.seq {
            self.follow_seq(seq);
        }
        self.chunk.push(record.event);
        self.chunk_bytes += bytes;
        if self.chunk.len() >= CHUNK || self.chunk_bytes >= CHUNK_BYTES || self.speed != Speed::Max
        {
            self.emit_chunk();
        }
        self.report.events += 1;
        self.pipeline_seq = self.pipeline_seq.map(|s| s + 1);
        true
    }

    /// Counts gaps and restarts; while the pipeline's numbering matches the
    /// journal's, makes it skip the same gaps.
    fn follow_seq(&mut self, seq: u64) {
        let report = &mut self.report;
        match self.previous {
            Some(prev) if seq <= prev => {
                report.restarts += 1;
                // The numbering restarted: it no longer matches the pipeline's.
                self.pipeline_seq = None;
            }
            previous => {
                let expected = previous.map_or(1, |p| p + 1);
                report.missing += seq.saturating_sub(expected);
                if let Some(current) = self.pipeline_seq
                    && seq > current + 1
                    && previous.is_none_or(|p| p == current)
                {
                    // Keep the journal's numbers: skip the pipeline's ahead
                    // too, after the events before the gap.
                    self.emit_chunk();
                    self.emitter
                        .shared()
                        .on_drain(None, move |drain| drain.seq = drain.seq.max(seq - 1));
                    self.pipeline_seq = Some(seq - 1);
                }
            }
        }
        let report = &mut self.report;
        report.seqs = Some(report.seqs.map_or((seq, seq), |(first, _)| (first, seq)));
        self.previous = Some(seq);
    }

    fn emit_chunk(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        // The chunk goes to the drain thread whole; a paced replay sends
        // its events one by one.
        let room = if self.speed == Speed::Max { CHUNK } else { 1 };
        self.chunk_bytes = 0;
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(room));
        self.emitter.emit_all_reliably(chunk);
    }
}

/// Events parsed before they are emitted together, as one message (at
/// `Speed::Max`): a drain thread that keeps up would otherwise park
/// between two events and cost a wake-up, a system call, per event.
const CHUNK: usize = 512;

/// Sleeps until the event stamped `millis` is due at `factor` times the
/// original pace (the first event sets the origin). Never goes backwards
/// for events out of order, and wakes for `stop`: false if it did.
fn pace(clock: &mut Option<(Instant, u64)>, millis: u64, factor: f64, stop: &AtomicBool) -> bool {
    let (start, origin) = *clock.get_or_insert((Instant::now(), millis));
    // A factor built by hand may be tiny, zero or not a number: a wait that
    // cannot be represented is a wait until `stop`, never a panic.
    let due = Duration::try_from_secs_f64(millis.saturating_sub(origin) as f64 / 1e3 / factor)
        .ok()
        .and_then(|offset| start.checked_add(offset));
    loop {
        let now = Instant::now();
        // Relaxed: see `replay`.
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if due.is_some_and(|due| now >= due) {
            return true;
        }
        let left = due.map_or(Duration::MAX, |due| due - now);
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Phase};

    fn phase_started(i: u32) -> ProgressEvent {
        ProgressEvent::new(
            "wo",
            "run",
            EventKind::PhaseStarted {
                iteration: i,
                phase: Phase::Build,
            },
        )
    }

    #[test]
    fn a_batch_of_whole_events_is_processed_in_order_and_counted_per_event() {
        let obs = Observability::builder().no_log().start().expect("starts");
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let _subscription = obs.emitter().subscribe({
            let seen = seen.clone();
            move |event| {
                if let EventKind::PhaseStarted { iteration, .. } = event.kind {
                    seen.lock().push(iteration);
                }
            }
        });
        obs.emitter()
            .emit_all_reliably((1..=600).map(phase_started).collect());
        obs.flush();
        assert_eq!(*seen.lock(), (1..=600).collect::<Vec<_>>());
        let stats = obs.stats();
        assert_eq!(stats.emitted.total(), 600);
        assert_eq!(stats.processed.total(), 600);
    }

    #[test]
    fn what_a_listener_emits_about_a_batched_event_comes_right_after_it() {
        // Regression: events a listener emitted while a replayed batch was
        // processed came after the whole batch, not after their event.
        let obs = Observability::builder().no_log().start().expect("starts");
        let emitter = obs.emitter();
        let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let _subscription = obs.emitter().subscribe({
            let order = order.clone();
            move |event| match event.kind {
                EventKind::PhaseStarted { iteration, .. } => {
                    order.lock().push(format!("started {iteration}"));
                    emitter.emit(ProgressEvent::new(
                        "wo",
                        "run",
                        EventKind::PhaseCompleted {
                            iteration,
                            phase: Phase::Build,
                            success: true,
                            duration_ms: 1,
                        },
                    ));
                }
                EventKind::PhaseCompleted { iteration, .. } => {
                    order.lock().push(format!("completed {iteration}"));
                }
                _ => {}
            }
        });
        obs.emitter()
            .emit_all_reliably((1..=3).map(phase_started).collect());
        obs.flush();
        assert_eq!(
            *order.lock(),
            [
                "started 1",
                "completed 1",
                "started 2",
                "completed 2",
                "started 3",
                "completed 3"
            ]
        );
    }

    #[test]
    fn a_batch_after_shutdown_is_counted_dropped_per_event() {
        let obs = Observability::builder().no_log().start().expect("starts");
        let emitter = obs.emitter();
        obs.shutdown();
        emitter.emit_all_reliably((1..=3).map(phase_started).collect());
        let stats = obs.stats();
        assert_eq!(stats.emitted.total(), 3);
        assert_eq!(stats.dropped.total(), 3);
    }
}
