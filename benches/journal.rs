//! The journal's cost and speed, beside its peers in the same run:
//!
//! - the drain thread's throughput without a journal, with a file journal,
//!   and with the progress log lines going to a file (the other sink that
//!   writes every event), timed up to the last event the drain thread
//!   processed (not until the writers are done: they work behind it), and
//!   the first setup again as a control; then without and with a journal
//!   burst for burst in turn, as medians and their ratio, in wall time and
//!   in the drain thread's own CPU time, since the load of a shared machine
//!   drifts between the groups (the control shows by how much);
//! - how fast the journal's writer thread turns events into lines on disk;
//! - how fast `replay --speed max` loads a journal (events parsed and fed
//!   through a whole pipeline), beside reading and parsing alone.
//!
//! Run: `cargo bench --bench journal`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::journal::{JournalConfig, JournalReader, Speed};
use agentgate_obs::{Builder, Observability, Overflow, Phase, RunHandle};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

mod support;

use support::{Interleaved, LastSeen};

const EVENTS: u64 = 100_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentgate-bench-journal-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

fn remove_journal(path: &Path) {
    let _ = std::fs::remove_file(path);
    for n in 1..=10 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Queues `EVENTS` phase events behind the gate, releases the drain
/// thread and returns the time until it processed the last one; then
/// waits (untimed) for every writer.
fn time_drain(
    obs: &Observability,
    gate: &support::DrainGate,
    run: &RunHandle,
    last: &LastSeen,
) -> Duration {
    last.reset();
    gate.hold();
    run.phase_started(0, Phase::Build);
    for i in 0..EVENTS {
        run.phase_completed(i as u32, Phase::Build, true, Duration::from_millis(5));
    }
    let start = Instant::now();
    gate.release();
    obs.flush();
    let end = last.last().unwrap_or_else(Instant::now);
    obs.flush_logs();
    end - start
}

fn drain_builder() -> Builder {
    Observability::builder()
        .queue_capacity(EVENTS as usize + 16)
        .overflow(Overflow::Block)
        .no_log()
}

fn drain_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain with a journal");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    let journal_path = scratch("drain.ndjson");
    let log_path = scratch("drain-log.jsonl");
    let setups: Vec<(&str, Builder)> = vec![
        ("no journal", drain_builder()),
        (
            "file journal",
            drain_builder().journal_config(
                JournalConfig::new(&journal_path)
                    .max_bytes(256 << 20)
                    .keep(1)
                    .capacity(2 * EVENTS as usize),
            ),
        ),
        (
            "peer: progress log lines to a file",
            Observability::builder()
                .queue_capacity(EVENTS as usize + 16)
                .overflow(Overflow::Block)
                .log_file(&log_path)
                .log_capacity(2 * EVENTS as usize),
        ),
        // The first setup again: how far two groups of one setup fall
        // apart on this machine, the noise any comparison of these groups
        // carries.
        ("control: no journal again", drain_builder()),
    ];
    for (name, builder) in setups {
        remove_journal(&journal_path);
        let _ = std::fs::remove_file(&log_path);
        let obs = builder.start().expect("pipeline starts");
        let gate = support::DrainGate::attach(&obs);
        let last = LastSeen::attach(&obs, EVENTS as u32 - 1);
        let run = obs.emitter().run("wo-1", "run-1");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| time_drain(&obs, &gate, &run, &last))
                    .sum()
            })
        });
        if let Some(stats) = obs.journal_stats() {
            assert_eq!(stats.dropped.total(), 0, "{stats:?}");
        }
        drop(obs);
    }
    group.finish();
    remove_journal(&journal_path);
    let _ = std::fs::remove_file(&log_path);
}

/// A journal sink whose writes wait while `held` is set: the writer
/// thread then sits idle during a burst, so the drain thread's own cost
/// shows apart from the competition of a busy writer for the cores.
struct HeldWriter(Arc<AtomicBool>);

impl std::io::Write for HeldWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // Acquire: pairs with the Release that lets it go.
        while self.0.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Without a journal, with one whose writer is held during the burst, and
/// with a file journal, burst for burst in turn: the medians and how they
/// compare to the first.
fn drain_interleaved(_: &mut Criterion) {
    /// Bursts per setup, a multiple of the six orders: a round of three
    /// takes about 0.1 s.
    const ROUNDS: usize = 120;
    let path = scratch("interleaved.ndjson");
    remove_journal(&path);
    let held = Arc::new(AtomicBool::new(false));
    let journal = |config: JournalConfig| {
        drain_builder().journal_config(
            config
                .max_bytes(256 << 20)
                .keep(1)
                .capacity(2 * EVENTS as usize),
        )
    };
    let setups = vec![
        ("no journal", drain_builder()),
        (
            "journal, writer idle during the burst",
            journal(JournalConfig::writer(HeldWriter(held.clone()))),
        ),
        ("file journal", journal(JournalConfig::new(&path))),
    ];
    let bench = Interleaved::start("drain, interleaved", EVENTS, setups);
    // Release: the writer sees it before the burst's first batch; it lets
    // go once the drain thread processed the burst.
    bench.run(ROUNDS, |_, before| held.store(before, Ordering::Release));
    drop(bench);
    remove_journal(&path);
}

/// Lines per second the writer thread puts on disk when it has a backlog.
fn writer_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal writer");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let path = scratch("writer.ndjson");
    remove_journal(&path);
    let obs = drain_builder()
        .journal_config(
            JournalConfig::new(&path)
                .max_bytes(256 << 20)
                .keep(1)
                .capacity(2 * EVENTS as usize),
        )
        .start()
        .expect("pipeline starts");
    let gate = support::DrainGate::attach(&obs);
    let run = obs.emitter().run("wo-1", "run-1");
    group.bench_function("phase events encoded and written (drain included)", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| gate.time_drain(&obs, &run, EVENTS))
                .sum()
        })
    });
    group.finish();
    drop(obs);
    remove_journal(&path);
}

/// A journal of the demo engine's traffic, `events` lines or a few more.
fn demo_journal(events: u64) -> (PathBuf, u64) {
    let path = scratch("replay.ndjson");
    remove_journal(&path);
    let obs = Observability::builder()
        .no_log()
        .overflow(Overflow::Block)
        .journal_config(JournalConfig::new(&path).max_bytes(u64::MAX))
        .start()
        .expect("pipeline starts");
    let config = DemoConfig {
        // About 24 events per run.
        work_orders: (events / 24) as usize + 1,
        concurrency: 2,
        seed: 1,
        time_scale: 0.0,
    };
    run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
    obs.flush();
    let written = obs.journal_stats().map_or(0, |s| s.written);
    drop(obs);
    (path, written)
}

fn replay_load(c: &mut Criterion) {
    let (path, events) = demo_journal(100_000);
    let mut group = c.benchmark_group("replay --speed max");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("journal read and parsed only", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let reader = JournalReader::open(&[&path]).expect("readable");
                assert_eq!(reader.filter(Result::is_ok).count() as u64, events);
            }
            start.elapsed()
        })
    });
    group.bench_function("journal loaded into a pipeline (tracker, metrics)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let obs = Observability::builder()
                    .no_log()
                    .overflow(Overflow::Block)
                    .start()
                    .expect("pipeline starts");
                let start = Instant::now();
                let report = obs
                    .replay(&[&path], Speed::Max, &AtomicBool::new(false))
                    .expect("readable");
                total += start.elapsed();
                assert_eq!(report.events, events);
            }
            total
        })
    });
    group.finish();
    remove_journal(&path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = drain_throughput, drain_interleaved, writer_throughput, replay_load
}
criterion_main!(benches);
