//! The engine's own metrics: recording through a native handle, and the
//! `metrics` crate's macros through our recorder, side by side with
//! `metrics-exporter-prometheus`'s recorder in the same run (both used as
//! local recorders, both histograms with the same buckets); and the render
//! cost of 20 families of 10 series each.
//!
//! Run: `cargo bench --bench custom_metrics --features metrics`.
//!
//! `metrics-exporter-prometheus` keeps every raw histogram observation until
//! its upkeep drains them, so histogram runs are timed in batches with an
//! untimed `run_upkeep` between them (ours needs none; the same batching
//! applies to both).

mod support;

use std::hint::black_box;
use std::time::Duration;

use agentgate_obs::logging::{LogContext, with_context};
use agentgate_obs::metrics::Format;
use agentgate_obs::metrics::{DEFAULT_CUSTOM_BUCKETS, Metrics, MetricsConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

const BATCH: u64 = 100_000;

fn ours() -> Metrics {
    Metrics::new("agentgate", MetricsConfig::default()).expect("metrics")
}

fn exporter() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(DEFAULT_CUSTOM_BUCKETS)
        .expect("buckets")
        .build_recorder()
}

/// Times `iters` calls of `f` in batches, running `between` untimed.
fn batched(iters: u64, f: impl FnMut(u64), between: impl FnMut()) -> Duration {
    support::batched(iters, BATCH, f, between)
}

/// A value spread over the buckets, cheap to compute.
fn value(i: u64) -> f64 {
    (i % 1_000) as f64 * 0.003
}

fn handles(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle");
    let metrics = ours();
    let counter = metrics
        .counter("tool_calls_total", "Tool calls.", &[("tool", "grep")])
        .expect("counter");
    group.bench_function("agentgate-obs/counter.increment", |b| {
        b.iter(|| counter.increment(black_box(1)))
    });
    let gauge = metrics
        .gauge("open_sandboxes", "Sandboxes.", &[])
        .expect("gauge");
    group.bench_function("agentgate-obs/gauge.set", |b| {
        b.iter(|| gauge.set(black_box(3.0)))
    });
    let histogram = metrics
        .histogram("tool_seconds", "Tool time.", &[("tool", "grep")])
        .expect("histogram");
    group.bench_function("agentgate-obs/histogram.record", |b| {
        b.iter_custom(|iters| batched(iters, |i| histogram.record(value(i)), || ()))
    });
    group.bench_function("agentgate-obs/histogram.record-in-context", |b| {
        with_context(LogContext::new().correlation_id("req-1"), || {
            b.iter_custom(|iters| batched(iters, |i| histogram.record(value(i)), || ()))
        })
    });

    // The same cells behind the `metrics` crate's handle types (a dynamic call).
    let (counter, histogram) = metrics::with_local_recorder(&metrics.recorder(), || {
        (
            metrics::counter!("tool_calls_total", "tool" => "grep"),
            metrics::histogram!("tool_seconds", "tool" => "grep"),
        )
    });
    group.bench_function("agentgate-obs/metrics::Counter.increment", |b| {
        b.iter(|| counter.increment(black_box(1)))
    });
    group.bench_function("agentgate-obs/metrics::Histogram.record", |b| {
        b.iter_custom(|iters| batched(iters, |i| histogram.record(value(i)), || ()))
    });

    let recorder = exporter();
    let handle = recorder.handle();
    let (counter, histogram) = metrics::with_local_recorder(&recorder, || {
        (
            metrics::counter!("tool_calls_total", "tool" => "grep"),
            metrics::histogram!("tool_seconds", "tool" => "grep"),
        )
    });
    group.bench_function("metrics-exporter-prometheus/counter.increment", |b| {
        b.iter(|| counter.increment(black_box(1)))
    });
    group.bench_function("metrics-exporter-prometheus/histogram.record", |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                |i| histogram.record(value(i)),
                || handle.run_upkeep(),
            )
        })
    });
    group.finish();
}

fn macros(c: &mut Criterion) {
    let mut group = c.benchmark_group("macro");
    let metrics = ours();
    let recorder = metrics.recorder();
    group.bench_function("agentgate-obs/counter!.increment", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| metrics::counter!("tool_calls_total", "tool" => "grep").increment(1))
        })
    });
    group.bench_function("agentgate-obs/histogram!.record", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter_custom(|iters| {
                batched(
                    iters,
                    |i| metrics::histogram!("tool_seconds", "tool" => "grep").record(value(i)),
                    || (),
                )
            })
        })
    });

    let recorder = exporter();
    let handle = recorder.handle();
    group.bench_function("metrics-exporter-prometheus/counter!.increment", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| metrics::counter!("tool_calls_total", "tool" => "grep").increment(1))
        })
    });
    group.bench_function("metrics-exporter-prometheus/histogram!.record", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter_custom(|iters| {
                batched(
                    iters,
                    |i| metrics::histogram!("tool_seconds", "tool" => "grep").record(value(i)),
                    || handle.run_upkeep(),
                )
            })
        })
    });
    group.finish();
}

/// 10 counter, 10 histogram families of 10 series each, recorded into
/// through the `metrics` macros.
fn record_families() {
    for f in 0..10 {
        for s in 0..10 {
            let counter = format!("family_{f}_total");
            let histogram = format!("family_{f}_seconds");
            let series = format!("s{s}");
            metrics::counter!(counter, "series" => series.clone()).increment(1);
            metrics::histogram!(histogram, "series" => series).record(value(s * 97));
        }
    }
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    let metrics = ours();
    metrics::with_local_recorder(&metrics.recorder(), record_families);
    group.bench_function("agentgate-obs/200-custom-series+built-ins", |b| {
        let mut out = String::new();
        b.iter(|| {
            out.clear();
            metrics.render_into(Format::Prometheus, &mut out);
            black_box(out.len())
        })
    });
    let bare = ours();
    group.bench_function("agentgate-obs/built-ins-alone", |b| {
        let mut out = String::new();
        b.iter(|| {
            out.clear();
            bare.render_into(Format::Prometheus, &mut out);
            black_box(out.len())
        })
    });
    let recorder = exporter();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record_families);
    group.bench_function("metrics-exporter-prometheus/200-custom-series", |b| {
        b.iter(|| black_box(handle.render().len()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = handles, macros, render
}
criterion_main!(benches);
