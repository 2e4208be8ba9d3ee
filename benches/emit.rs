//! The engine's side of an emit, and the drain thread's throughput, side
//! by side with the `prometheus` crate and with the original's synchronous
//! design (owned strings, a JSON log line and listeners under a mutex, all
//! on the caller's thread).
//!
//! Run: `cargo bench --bench emit`; `cargo bench --bench emit -- sustained`
//! for the end-to-end figures alone.
//!
//! Emits are timed in batches smaller than the ring, with a flush (not
//! timed) between batches, so every timed emit takes the real accepting
//! path while the drain thread works concurrently on the other core.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use agentgate_obs::{
    Metadata, Observability, Overflow, Phase, ProgressEmitter, Strategy, Subscription, TaskSpec,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parking_lot::Mutex;

mod support;

const BATCH: u64 = 4_096;

fn pipeline() -> (Observability, Subscription) {
    let obs = Observability::builder()
        .queue_capacity(65_536)
        .overflow(Overflow::DropNewest)
        .no_log()
        .start()
        .expect("pipeline starts");
    let seen = Arc::new(AtomicU64::new(0));
    let sub = obs.emitter().subscribe(move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    (obs, sub)
}

/// Times `iters` calls of `emit`, in batches separated by an untimed flush.
fn batched(obs: &Observability, iters: u64, emit: impl FnMut(u64)) -> Duration {
    support::batched(iters, BATCH, emit, || obs.flush())
}

/// The original TypeScript design, in Rust: the event built with owned
/// strings, a JSON log line written, listeners called under a mutex, all
/// on the caller's thread.
type JsonListener = Box<dyn Fn(&serde_json::Value) + Send>;

struct SynchronousEmitter {
    listeners: Mutex<Vec<JsonListener>>,
    log: Mutex<std::io::Sink>,
}

impl SynchronousEmitter {
    fn emit_phase_completed(
        &self,
        wo: &str,
        run: &str,
        iteration: u32,
        phase: Phase,
        success: bool,
        ms: u64,
    ) {
        let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let event = serde_json::json!({
            "type": "phase_completed",
            "timestamp": timestamp,
            "workOrderId": wo.to_owned(),
            "runId": run.to_owned(),
            "correlationId": run.to_owned(),
            "iteration": iteration,
            "phase": phase.as_str(),
            "success": success,
            "durationMs": ms,
        });
        let line = serde_json::to_vec(&serde_json::json!({
            "level": "info",
            "module": "progress-emitter",
            "message": "Progress: phase_completed",
            "timestamp": event["timestamp"],
            "eventType": "phase_completed",
            "workOrderId": wo,
            "runId": run,
        }))
        .unwrap_or_default();
        let _ = self.log.lock().write_all(&line);
        for listener in self.listeners.lock().iter() {
            listener(&event);
        }
    }
}

fn one_producer(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit_phase_completed/one_producer");
    group.throughput(Throughput::Elements(1));
    let d = Duration::from_millis(1234);

    let (obs, _sub) = pipeline();
    let run = obs.emitter().run("wo-1", "run-1");
    group.bench_function("agentgate RunHandle", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |i| {
                run.phase_completed(black_box(i as u32), Phase::Build, true, d)
            })
        })
    });
    // The same emit with metadata: the envelope carries a box instead of
    // the inline event. The map is shared, so this times the envelope's
    // path, not the engine building a map.
    let metadata = Arc::new(Metadata::from_iter([(
        "stdoutBytes".to_owned(),
        serde_json::Value::from(5120),
    )]));
    group.bench_function("agentgate RunHandle with_metadata", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |i| {
                run.with_metadata(metadata.clone()).phase_completed(
                    black_box(i as u32),
                    Phase::Build,
                    true,
                    d,
                )
            })
        })
    });
    let emitter = obs.emitter();
    group.bench_function("agentgate &str API", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |i| {
                emitter.emit_phase_completed(
                    black_box("wo-1"),
                    black_box("run-1"),
                    i as u32,
                    Phase::Build,
                    true,
                    d,
                )
            })
        })
    });

    let registry = prometheus::Registry::new();
    let histogram = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("phase_duration_seconds", "Phase durations"),
        &["phase"],
    )
    .expect("valid histogram");
    registry
        .register(Box::new(histogram.clone()))
        .expect("registers");
    group.bench_function("prometheus HistogramVec observe", |b| {
        b.iter(|| {
            histogram
                .with_label_values(&[black_box(Phase::Build.as_str())])
                .observe(black_box(1.234))
        })
    });

    let sync = SynchronousEmitter {
        listeners: Mutex::new(vec![Box::new(|e: &serde_json::Value| {
            black_box(e);
        })]),
        log: Mutex::new(std::io::sink()),
    };
    group.bench_function("synchronous design (original)", |b| {
        b.iter(|| {
            sync.emit_phase_completed(
                black_box("wo-1"),
                black_box("run-1"),
                2,
                Phase::Build,
                true,
                1234,
            )
        })
    });
    group.finish();
}

fn two_producers(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit_phase_completed/two_producers");
    group.throughput(Throughput::Elements(1));
    let d = Duration::from_millis(1234);
    let (obs, _sub) = pipeline();
    let emitter = obs.emitter();
    for handle in [true, false] {
        let name = if handle {
            "agentgate RunHandle"
        } else {
            "agentgate &str API"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Each producer emits `iters` events; the figure is the
                // mean of the two producers' per-emit time.
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = BATCH.min(iters - done);
                    let times: Vec<Duration> = std::thread::scope(|s| {
                        let workers: Vec<_> = (0..2)
                            .map(|p| {
                                let emitter = &emitter;
                                s.spawn(move || {
                                    let run_id = format!("run-{p}");
                                    let run = emitter.run("wo-1", &run_id);
                                    let start = Instant::now();
                                    for i in 0..n {
                                        if handle {
                                            run.phase_completed(i as u32, Phase::Build, true, d);
                                        } else {
                                            emitter.emit_phase_completed(
                                                "wo-1",
                                                &run_id,
                                                i as u32,
                                                Phase::Build,
                                                true,
                                                d,
                                            );
                                        }
                                    }
                                    start.elapsed()
                                })
                            })
                            .collect();
                        workers
                            .into_iter()
                            .map(|w| w.join().unwrap_or_default())
                            .collect()
                    });
                    total += times.iter().sum::<Duration>() / 2;
                    done += n;
                    obs.flush();
                }
                total
            })
        });
    }
    group.finish();
}

/// A phase timed by a `PhaseGuard` against the bare `RunHandle` pair it
/// wraps (with a constant duration, and with the engine timing it by hand
/// with `Instant`), on the same pipeline and run.
fn guards(c: &mut Criterion) {
    let mut group = c.benchmark_group("phase_started+phase_completed");
    group.throughput(Throughput::Elements(1));
    let (obs, _sub) = pipeline();
    let spec = TaskSpec::new("bench", Strategy::Ralph, 3);
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec);
    let handle = run.handle().clone();
    let mut iteration = run.iteration(1, 3, None);
    let d = Duration::from_millis(1234);
    group.bench_function("RunHandle pair", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |_| {
                handle.phase_started(1, black_box(Phase::Build));
                handle.phase_completed(1, Phase::Build, true, black_box(d));
            })
        })
    });
    group.bench_function("RunHandle pair timed with Instant", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |_| {
                let start = Instant::now();
                handle.phase_started(1, black_box(Phase::Build));
                handle.phase_completed(1, Phase::Build, true, start.elapsed());
            })
        })
    });
    group.bench_function("PhaseGuard start+succeed", |b| {
        b.iter_custom(|iters| {
            batched(&obs, iters, |_| {
                iteration.phase(black_box(Phase::Build)).succeed();
            })
        })
    });
    group.finish();

    // Nothing is installed in this binary: `global()` is the no-op emitter.
    let mut group = c.benchmark_group("global() before install_global");
    group.throughput(Throughput::Elements(1));
    let noop_run = agentgate_obs::global().run("wo-1", "run-1");
    group.bench_function("RunHandle phase_completed", |b| {
        b.iter(|| noop_run.phase_completed(1, black_box(Phase::Build), true, d))
    });
    group.bench_function("&str emit_phase_completed", |b| {
        b.iter(|| {
            agentgate_obs::global().emit_phase_completed(
                black_box("wo-1"),
                "run-1",
                1,
                Phase::Build,
                true,
                d,
            )
        })
    });
    group.finish();
    iteration.succeed();
    run.succeed(&Default::default());
}

fn drain_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain");
    const EVENTS: u64 = 100_000;
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    let obs = Observability::builder()
        .queue_capacity(EVENTS as usize + 16)
        .overflow(Overflow::Block)
        .no_log()
        .start()
        .expect("pipeline starts");
    let gate = support::DrainGate::attach(&obs);
    let run = obs.emitter().run("wo-1", "run-1");
    group.bench_function("events processed (tracker, metrics, one listener)", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| gate.time_drain(&obs, &run, EVENTS))
                .sum()
        })
    });
    group.finish();
    assert_eq!(obs.stats().dropped.total(), 0);
}

/// What redaction adds to the drain thread per boxed event: one scan of
/// each caller string (clean ones are returned borrowed, no allocation).
fn redaction(c: &mut Criterion) {
    let mut group = c.benchmark_group("redact");
    let goal = "Fix the flaky integration test in the payment service and make the retry loop respect the deadline";
    let error = "build failed: error[E0308]: mismatched types in src/payment/retry.rs:142:17, expected `Duration`, found `u64`; see https://ci.example.com/jobs/18234?attempt=2 for the full log, commit 3f786850e387550fdab836ed7e6dc881de23001b";
    let secret = "clone of https://bot:s3cr3t@git.example.com/x failed; token ghp_A1b2C3d4E5A1b2C3d4E5A1b2C3d4E5A1b2C3d4";
    for (name, text) in [
        ("goal, 100 chars, clean", goal),
        ("error, 220 chars, clean", error),
        ("error with two secrets", secret),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        // The redactor is internal: its fuzzing entry point is the only way in.
        #[cfg(feature = "fuzzing")]
        group.bench_function(name, |b| {
            b.iter(|| agentgate_obs::fuzzing::redact_text(std::hint::black_box(text)).len())
        });
        #[cfg(not(feature = "fuzzing"))]
        eprintln!("redact/{name}: not measured without --features fuzzing");
    }
    group.finish();
}

/// Whether a custom (printed) measurement named `name` is selected by the
/// command line's filter: criterion filters only its own benchmarks.
fn selected(name: &str) -> bool {
    const WITH_VALUE: [&str; 12] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--output-format",
        "--color",
        "--profile-time",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// End to end, as an engine sees it: producer threads emitting
/// `RunHandle::phase_completed` while the drain thread works, wall clock
/// from the first emit to `flush()` returning, with the tracker, the
/// metrics and one trivial listener live and no log. Beside it, in the same
/// run, the raw crossbeam ring the pipeline is built on, so the ratio holds
/// whatever the machine's load.
mod sustained {
    use super::*;
    use agentgate_obs::RunHandle;
    use std::sync::Barrier;

    /// Events per measured round (all producers together).
    const EVENTS: u64 = 4_000_000;
    /// Measured rounds per figure, after one warm-up round.
    const ROUNDS: usize = 5;
    const CAPACITY: usize = 65_536;

    fn pipeline(overflow: Overflow) -> (Observability, Subscription) {
        let obs = Observability::builder()
            .queue_capacity(CAPACITY)
            .overflow(overflow)
            .no_log()
            .start()
            .expect("pipeline starts");
        let seen = AtomicU64::new(0);
        let sub = obs.emitter().subscribe(move |_| {
            // Relaxed: a trivial listener's own count.
            seen.fetch_add(1, Ordering::Relaxed);
        });
        (obs, sub)
    }

    /// Median and range of `rounds` rates.
    struct Rates(Vec<f64>);

    impl std::fmt::Display for Rates {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let mut v = self.0.clone();
            v.sort_by(f64::total_cmp);
            write!(
                f,
                "{:.2} M/s (median of {}; {:.2}–{:.2})",
                v[v.len() / 2] / 1e6,
                v.len(),
                v[0] / 1e6,
                v[v.len() - 1] / 1e6
            )
        }
    }

    /// One round through the pipeline: what it processed and dropped,
    /// and the wall time from the first emit to `flush()` returning.
    struct Round {
        processed: u64,
        dropped: u64,
        wall: Duration,
    }

    /// `producers` threads emit `per_producer` events each, paced to
    /// `offered` events/s in total when given, else flat out.
    fn round(
        obs: &Observability,
        runs: &[RunHandle],
        per_producer: u64,
        offered: Option<f64>,
    ) -> Round {
        let before = obs.stats();
        let barrier = Barrier::new(runs.len() + 1);
        let wall = std::thread::scope(|s| {
            for run in runs {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let gap = offered.map(|rate| runs.len() as f64 / rate);
                    for i in 0..per_producer {
                        // Paced in steps of 64 events so the clock read is amortized.
                        if let Some(gap) = gap
                            && i % 64 == 0
                        {
                            let due = start + Duration::from_secs_f64(i as f64 * gap);
                            while Instant::now() < due {
                                std::hint::spin_loop();
                            }
                        }
                        // Durations spread over 0.5-2.5 ms, as real phases are.
                        let d = Duration::from_micros(500 + i % 2_000);
                        run.phase_completed(i as u32, Phase::Build, true, d);
                    }
                });
            }
            barrier.wait();
            let start = Instant::now();
            // Joined by the scope's end; flush once every producer is done.
            start
        });
        obs.flush();
        let wall = wall.elapsed();
        let after = obs.stats();
        Round {
            processed: after.processed.total() - before.processed.total(),
            dropped: after.dropped.total() - before.dropped.total(),
            wall,
        }
    }

    /// Runs `ROUNDS` measured rounds after a warm-up; prints processed
    /// rate and drops.
    fn measure(label: &str, overflow: Overflow, producers: usize, offered: Option<f64>) -> f64 {
        let (obs, _sub) = pipeline(overflow);
        let emitter = obs.emitter();
        let runs: Vec<RunHandle> = (0..producers)
            .map(|p| emitter.run("wo-1", &format!("run-{p}")))
            .collect();
        let per_producer = match offered {
            // Half a second of offered load.
            Some(rate) => ((rate * 0.5) as u64 / producers as u64).max(64),
            // Dropping is fast: more events, so a round is not over
            // before the drain thread is into its stride.
            None if overflow == Overflow::DropNewest => 5 * EVENTS / producers as u64,
            None => EVENTS / producers as u64,
        };
        round(&obs, &runs, per_producer / 4, offered);
        let (mut rates, mut offered_rates, mut drops) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let r = round(&obs, &runs, per_producer, offered);
            let emitted = r.processed + r.dropped;
            assert_eq!(emitted, per_producer * producers as u64, "exact accounting");
            rates.push(r.processed as f64 / r.wall.as_secs_f64());
            offered_rates.push(emitted as f64 / r.wall.as_secs_f64());
            drops.push(100.0 * r.dropped as f64 / emitted as f64);
        }
        if overflow == Overflow::Block {
            assert!(drops.iter().all(|&d| d == 0.0), "Block drops nothing");
        }
        drops.sort_by(f64::total_cmp);
        let processed = Rates(rates);
        let dropped = format!(
            "{:.1} % dropped ({:.1}–{:.1})",
            drops[drops.len() / 2],
            drops[0],
            drops[drops.len() - 1]
        );
        match offered {
            Some(rate) => println!(
                "sustained/{label}: offered {:.1} M/s (achieved {}): processed {processed}, {dropped}",
                rate / 1e6,
                Rates(offered_rates),
            ),
            None => println!("sustained/{label}: processed {processed}, {dropped}"),
        }
        let mut v = processed.0;
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// The raw ring: `producers` threads push 64-byte messages through a
    /// crossbeam `bounded(65536)` to one consumer.
    fn raw_crossbeam(producers: usize) {
        let mut rates = Vec::new();
        for round in 0..=ROUNDS {
            let (tx, rx) = crossbeam_channel::bounded::<[u64; 8]>(CAPACITY);
            let per_producer = EVENTS / producers as u64;
            let barrier = Barrier::new(producers + 1);
            let wall = std::thread::scope(|s| {
                for p in 0..producers {
                    let (tx, barrier) = (tx.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for i in 0..per_producer {
                            let _ = tx.send([i, p as u64, 0, 0, 0, 0, 0, 0]);
                        }
                    });
                }
                drop(tx);
                barrier.wait();
                let start = Instant::now();
                let mut sum = 0;
                while let Ok(m) = rx.recv() {
                    sum += m[0];
                }
                black_box(sum);
                start.elapsed()
            });
            if round > 0 {
                rates.push((per_producer * producers as u64) as f64 / wall.as_secs_f64());
            }
        }
        println!(
            "sustained/raw crossbeam bounded(65536), 64-byte messages, {producers} producer(s) -> 1 consumer: {}",
            Rates(rates)
        );
    }

    pub(super) fn run(_: &mut Criterion) {
        if !selected("sustained") {
            return;
        }
        raw_crossbeam(1);
        raw_crossbeam(2);
        measure("1 producer, Block", Overflow::Block, 1, None);
        measure("2 producers, Block", Overflow::Block, 2, None);
        measure(
            "1 producer, DropNewest, flat out",
            Overflow::DropNewest,
            1,
            None,
        );
        for m in [1.0, 2.0, 4.0, 8.0, 16.0] {
            measure(
                "1 producer, DropNewest, paced",
                Overflow::DropNewest,
                1,
                Some(m * 1e6),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = one_producer, two_producers, guards, drain_throughput, redaction, sustained::run
}
criterion_main!(benches);
