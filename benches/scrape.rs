//! Render time of one scrape at 100, 1,000 and 10,000 series, side by side
//! with the `prometheus` crate's `TextEncoder`, `metrics-exporter-prometheus`
//! and `prometheus-client` on the same series (a counter family with `gate`
//! and `passed` labels); and the drain thread's throughput with and
//! without a tight `/metrics` scrape loop.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgate_obs::metrics::Format;
use agentgate_obs::metrics::{Metrics, MetricsConfig, StandaloneMetrics};
use agentgate_obs::{Observability, Overflow};

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

fn gate(i: usize) -> String {
    format!("gate-{i:05}")
}

fn ours(series: usize) -> Metrics {
    let metrics = StandaloneMetrics::new(
        "agentgate",
        MetricsConfig::default().gate_label_limit(series / 2),
    )
    .expect("metrics");
    for i in 0..series / 2 {
        metrics.record_gate_check(&gate(i), true);
        metrics.record_gate_check(&gate(i), false);
    }
    metrics.metrics().clone()
}

fn prometheus_crate(series: usize) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new("agentgate_gate_checks_total", "Gate checks."),
        &["gate", "passed"],
    )
    .expect("counter");
    registry
        .register(Box::new(counter.clone()))
        .expect("register");
    for i in 0..series / 2 {
        for passed in ["true", "false"] {
            counter.with_label_values(&[gate(i).as_str(), passed]).inc();
        }
    }
    registry
}

fn metrics_exporter(series: usize) -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("agentgate_gate_checks_total", "Gate checks.");
        for i in 0..series / 2 {
            for passed in ["true", "false"] {
                metrics::counter!("agentgate_gate_checks_total", "gate" => gate(i), "passed" => passed)
                    .increment(1);
            }
        }
    });
    // The handle keeps the registry alive after the recorder is dropped.
    handle
}

fn prometheus_client(series: usize) -> prometheus_client::registry::Registry {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    let mut registry = prometheus_client::registry::Registry::default();
    let family = Family::<Vec<(String, String)>, Counter>::default();
    registry.register("agentgate_gate_checks", "Gate checks.", family.clone());
    for i in 0..series / 2 {
        for passed in ["true", "false"] {
            family
                .get_or_create(&vec![
                    ("gate".into(), gate(i)),
                    ("passed".into(), passed.into()),
                ])
                .inc();
        }
    }
    registry
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrape");
    for size in SIZES {
        let metrics = ours(size);
        group.bench_with_input(BenchmarkId::new("agentgate-obs", size), &size, |b, _| {
            let mut out = String::new();
            b.iter(|| {
                out.clear();
                metrics.render_into(Format::Prometheus, &mut out);
                black_box(out.len())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("agentgate-obs-openmetrics", size),
            &size,
            |b, _| {
                let mut out = String::new();
                b.iter(|| {
                    out.clear();
                    metrics.render_into(Format::OpenMetrics, &mut out);
                    black_box(out.len())
                })
            },
        );
        let registry = prometheus_crate(size);
        group.bench_with_input(BenchmarkId::new("prometheus", size), &size, |b, _| {
            let encoder = prometheus::TextEncoder::new();
            b.iter(|| {
                black_box(
                    encoder
                        .encode_to_string(&registry.gather())
                        .map(|s| s.len()),
                )
            })
        });
        let handle = metrics_exporter(size);
        group.bench_with_input(
            BenchmarkId::new("metrics-exporter-prometheus", size),
            &size,
            |b, _| b.iter(|| black_box(handle.render().len())),
        );
        let registry = prometheus_client(size);
        group.bench_with_input(
            BenchmarkId::new("prometheus-client", size),
            &size,
            |b, _| {
                let mut out = String::new();
                b.iter(|| {
                    out.clear();
                    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
}

/// Events per iteration of the drain benchmark.
const EVENTS: u64 = 20_000;

fn scrape_loop(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut scrapes = 0;
        let mut buf = Vec::new();
        // Relaxed: a stop flag polled in a loop.
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
                buf.clear();
                let _ = s.read_to_end(&mut buf);
                scrapes += 1;
            }
        }
        scrapes
    })
}

fn drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain");
    group.throughput(criterion::Throughput::Elements(EVENTS));
    for scraped in [false, true] {
        let obs = Observability::builder()
            .queue_capacity(EVENTS as usize + 16)
            .overflow(Overflow::Block)
            .serve("127.0.0.1:0")
            .no_log()
            .start()
            .expect("start");
        let addr = obs.local_addr().expect("addr");
        let gate = support::DrainGate::attach(&obs);
        let stop = Arc::new(AtomicBool::new(false));
        let scraper = scraped.then(|| scrape_loop(addr, stop.clone()));
        let run = obs.emitter().run("wo-bench", "run-bench");
        let name = if scraped {
            "with-scrape-loop"
        } else {
            "without-scrapes"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| gate.time_drain(&obs, &run, EVENTS))
                    .sum()
            })
        });
        stop.store(true, Ordering::Relaxed);
        if let Some(scraper) = scraper {
            let scrapes = scraper.join().unwrap_or(0);
            println!("drain/{name}: {scrapes} scrapes during the measurement");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = render, drain
}
criterion_main!(benches);
