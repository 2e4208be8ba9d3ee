//! The caller's cost of one info line with a context and three fields,
//! side by side with `tracing` + `tracing-subscriber`'s JSON formatter
//! behind `tracing-appender`'s non-blocking writer doing the same (the
//! context as an entered span with the same four fields).
//!
//! Run: `cargo bench --bench logging`.
//!
//! Both sides write to `io::sink()` from a background thread and both are
//! lossy when their queue is full, so lines are timed in batches smaller
//! than either queue with a flush (not timed) between batches: every timed
//! line takes the accepting path. The queue sizes and drop counts are
//! printed at the end so the comparison can be checked.

mod support;

use std::hint::black_box;
use std::time::Duration;

use agentgate_obs::logging::{LogContext, Logger};
use agentgate_obs::{Observability, Phase};
use criterion::{Criterion, criterion_group, criterion_main};

/// Lines per timed batch: below both queues (ours 16,384 by default,
/// tracing-appender's 128,000).
const BATCH: u64 = 8_192;

fn ours(c: &mut Criterion, group_name: &str) {
    let obs = Observability::builder()
        .log_to(std::io::sink())
        .start()
        .expect("pipeline starts");
    let log: Logger = obs.logger("executor");
    let _ctx = LogContext::new()
        .work_order_id("wo-0001")
        .run_id("run-0001-5f3a2c")
        .iteration(2)
        .phase(Phase::Build)
        .correlation_id("req-8c1d0e7f")
        .enter();
    let mut group = c.benchmark_group(group_name);
    group.bench_function("agentgate_obs", |b| {
        b.iter_custom(|iters| {
            timed_in_batches(
                iters,
                || obs.flush_logs(),
                |i| {
                    log.info(
                        "Phase completed",
                        [
                            ("durationMs", black_box(i).into()),
                            ("success", true.into()),
                            ("gate", "unit-tests".into()),
                        ],
                    );
                },
            )
        })
    });
    group.finish();
    drop(_ctx);
    obs.shutdown();
    eprintln!("agentgate_obs: {:?}", obs.log_stats());
}

fn tracing_pair(c: &mut Criterion, group_name: &str) {
    let (writer, guard) = tracing_appender::non_blocking(std::io::sink());
    let dropped = writer.error_counter();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "run",
            workOrderId = "wo-0001",
            runId = "run-0001-5f3a2c",
            iteration = 2u32,
            phase = "build",
            correlationId = "req-8c1d0e7f"
        );
        let _entered = span.enter();
        let mut group = c.benchmark_group(group_name);
        group.bench_function("tracing_json_non_blocking", |b| {
            b.iter_custom(|iters| {
                // tracing-appender has no flush: wait for its worker to
                // catch up by sleeping, outside the timed part.
                timed_in_batches(
                    iters,
                    || std::thread::sleep(Duration::from_millis(5)),
                    |i| {
                        tracing::info!(
                            durationMs = black_box(i),
                            success = true,
                            gate = "unit-tests",
                            "Phase completed"
                        );
                    },
                )
            })
        });
        group.finish();
    });
    drop(guard);
    eprintln!(
        "tracing-appender: {} lines dropped",
        dropped.dropped_lines()
    );
}

/// Times `iters` calls of `line`, in batches of [`BATCH`] separated by an
/// untimed `settle`.
fn timed_in_batches(iters: u64, settle: impl Fn(), line: impl Fn(u64)) -> Duration {
    support::batched(iters, BATCH, line, settle)
}

/// What logging every event as a `Progress: <type>` line costs the
/// pipeline: emit 100,000 events and flush, with logging off and with the
/// progress lines going to `io::sink()`. (When the log writer falls
/// behind, progress lines are dropped and counted, never waited for.)
fn pipeline_with_and_without_progress_lines(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let mut group = c.benchmark_group("pipeline_100k_events");
    group.throughput(criterion::Throughput::Elements(EVENTS));
    group.sample_size(20);
    for (name, logging) in [("no_log", false), ("progress_lines_to_sink", true)] {
        let builder = Observability::builder()
            .queue_capacity(EVENTS as usize + 16)
            .overflow(agentgate_obs::Overflow::Block);
        let builder = if logging {
            builder.log_to(std::io::sink())
        } else {
            builder.no_log()
        };
        let obs = builder.start().expect("pipeline starts");
        let run = obs.emitter().run("wo-1", "run-1");
        group.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..EVENTS {
                    run.phase_started(black_box(i as u32), Phase::Build);
                }
                obs.flush();
            })
        });
        drop(run);
        obs.shutdown();
        eprintln!("{name}: {:?}", obs.log_stats());
    }
    group.finish();
}

fn info_line_with_context_and_three_fields(c: &mut Criterion) {
    let name = "info_line_with_context_and_three_fields";
    ours(c, name);
    tracing_pair(c, name);
}

criterion_group!(
    benches,
    info_line_with_context_and_three_fields,
    pipeline_with_and_without_progress_lines
);
criterion_main!(benches);
