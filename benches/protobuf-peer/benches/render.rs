//! The protobuf exposition's render against our text render of the same
//! registry, at 100, 1,000 and 10,000 series, beside `prometheus-client`'s
//! protobuf and text encoders on the same gate-check series.
//!
//! Run: `cargo bench --manifest-path benches/protobuf-peer/Cargo.toml`.

use std::hint::black_box;
use std::time::Duration;

use agentgate_obs::Phase;
use agentgate_obs::metrics::MetricsCollector;
use agentgate_obs::metrics::{Format, Metrics, MetricsConfig, StandaloneMetrics};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

fn gate(i: usize) -> String {
    format!("gate-{i:05}")
}

/// `series` gate-check counters beside the built-in families, whose
/// duration histograms hold 1,000 observations each.
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
    for i in 0..1_000u64 {
        let took = Duration::from_micros(100 + i * i * 13);
        metrics.record_phase_duration(Phase::Build, took);
        metrics.record_phase_duration(Phase::Verify, took / 3);
    }
    metrics.metrics().clone()
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
    let mut group = c.benchmark_group("exposition");
    for size in SIZES {
        let metrics = ours(size);
        assert!(!metrics.render_protobuf().is_empty());
        group.bench_with_input(BenchmarkId::new("protobuf", size), &size, |b, _| {
            b.iter(|| black_box(metrics.render_protobuf()))
        });
        group.bench_with_input(BenchmarkId::new("text", size), &size, |b, _| {
            let mut out = String::new();
            b.iter(|| {
                out.clear();
                metrics.render_into(Format::Prometheus, &mut out);
                black_box(out.len())
            })
        });
        let registry = prometheus_client(size);
        let peer = prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&registry)
            .expect("encode");
        assert!(!peer.is_empty());
        group.bench_with_input(
            BenchmarkId::new("prometheus-client protobuf", size),
            &size,
            |b, _| {
                b.iter(|| {
                    black_box(
                        prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&registry)
                            .expect("encode"),
                    )
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("prometheus-client text", size),
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

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = render
}
criterion_main!(benches);
