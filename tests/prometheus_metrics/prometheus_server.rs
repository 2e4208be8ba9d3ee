//! A real Prometheus server scrapes the demo and agrees with it.
#![cfg(feature = "cli")]

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use agentgate_obs::demo::{DemoConfig, run_engine};
use common::prometheus::Prometheus;
use common::{external_tool, http_get, parse_exposition};

/// Bucket bounds and counts of the build phase, from our own exposition.
fn build_buckets(addr: SocketAddr) -> Vec<(f64, f64)> {
    let samples = parse_exposition(&http_get(addr, "/metrics", &[]).body).expect("parse");
    samples
        .iter()
        .filter(|s| s.name == "agentgate_phase_duration_seconds_bucket" && s.labels[0].1 == "build")
        .map(|s| {
            let le = match s.labels[1].1.as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("le"),
            };
            (le, s.value)
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_demo_and_agrees_with_it() {
    let Some(binary) = external_tool("prometheus", "real Prometheus scrape") else {
        return;
    };
    let obs = common::quiet().serve("127.0.0.1:0").start().expect("start");
    let addr = obs.local_addr().expect("serving");
    let stop = AtomicBool::new(false);
    let config = |seed, work_orders| DemoConfig {
        work_orders,
        concurrency: 2,
        seed,
        time_scale: 0.0,
    };
    let first = run_engine(&obs.emitter(), &config(1, 5), &stop);
    obs.flush();
    let before = build_buckets(addr);

    let prom = Prometheus::scraping(&binary, addr);
    // A scrape that saw only the first batch, so rate() has a starting point.
    prom.wait_for(
        "agentgate_runs_started_total",
        first.total() as f64,
        Duration::from_secs(60),
    );

    let second = run_engine(&obs.emitter(), &config(2, 30), &stop);
    obs.flush();
    let after = build_buckets(addr);
    let total = (first.total() + second.total()) as f64;
    prom.wait_for(
        "agentgate_runs_started_total",
        total,
        Duration::from_secs(30),
    );
    for (result, n) in [
        ("succeeded", first.succeeded + second.succeeded),
        ("failed", first.failed + second.failed),
        ("canceled", first.canceled + second.canceled),
    ] {
        let promql = format!("agentgate_runs_completed_total{{result=\"{result}\"}}");
        prom.wait_for(&promql, n as f64, Duration::from_secs(10));
    }
    prom.wait_for(
        "sum(agentgate_runs_completed_total)",
        total,
        Duration::from_secs(10),
    );
    prom.wait_for("agentgate_active_runs", 0.0, Duration::from_secs(10));

    let median = prom
        .query(
        "histogram_quantile(0.5, sum by (le) (rate(agentgate_phase_duration_seconds_bucket{phase=\"build\"}[5m])))",
    )
    .expect("a median from Prometheus");
    // The second batch's build phases, bucket by bucket: the median must
    // fall into the bucket where their cumulative count crosses half.
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|((le, a), (_, b))| (*le, a - b))
        .collect();
    let half = delta.last().expect("+Inf").1 / 2.0;
    let index = delta
        .iter()
        .position(|(_, c)| *c >= half)
        .expect("median bucket");
    let upper = delta[index].0;
    let lower = if index == 0 { 0.0 } else { delta[index - 1].0 };
    assert!(
        lower <= median && median <= upper,
        "Prometheus' median {median} outside [{lower}, {upper}] ({delta:?})"
    );
}
