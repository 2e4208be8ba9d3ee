//! A fleet under one Prometheus: three engine processes (the demo, with
//! different seeds) scraped by one real Prometheus through file-based
//! service discovery, with the shipped rules loaded, as
//! `docs/OPERATIONS.md` sets it up.
#![cfg(feature = "cli")]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::demo::Demo;
use common::external_tool;
use common::prometheus::Prometheus;

/// The shipped rules, evaluated every second instead of every 30 s so the
/// test need not wait.
fn shipped_rules() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/agentgate.rules.yml"
    );
    std::fs::read_to_string(path)
        .expect("the shipped rules")
        .replace("interval: 30s", "interval: 1s")
}

/// Starts a demo that runs its work orders, prints its JSON summary and
/// keeps serving so that Prometheus can scrape the final counts.
fn engine(seed: u64) -> (Demo, serde_json::Value) {
    let seed = seed.to_string();
    let mut demo = Demo::start(&[
        "--exit-when-done",
        "--json",
        "--linger",
        "5m",
        "--time-scale",
        "0",
        "--work-orders",
        "15",
        "--seed",
        &seed,
    ]);
    loop {
        let line = demo.next_line(Duration::from_secs(60));
        if line.starts_with('{') {
            let summary = serde_json::from_str(&line).expect("the JSON summary");
            return (demo, summary);
        }
    }
}

#[test]
fn one_prometheus_sums_three_engines_runs_by_result_and_evaluates_the_shipped_rules() {
    let Some(binary) = external_tool("prometheus", "a fleet under one Prometheus") else {
        return;
    };
    let engines: Vec<_> = [1, 2, 3].into_iter().map(engine).collect();
    let targets: Vec<String> = engines
        .iter()
        .map(|(demo, _)| format!("\"{}\"", demo.addr))
        .collect();
    let file_sd = format!(
        "[{{\"targets\": [{}], \"labels\": {{\"env\": \"test\"}}}}]",
        targets.join(", ")
    );
    let config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - agentgate.rules.yml\nscrape_configs:\n  - job_name: agentgate\n    file_sd_configs:\n      - files: ['engines.json']\n        refresh_interval: 1s\n";
    let prom = Prometheus::start(
        &binary,
        config,
        &[
            ("agentgate.rules.yml", &shipped_rules()),
            ("engines.json", &file_sd),
        ],
    );

    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    for (_, summary) in &engines {
        for result in ["succeeded", "failed", "canceled"] {
            *expected.entry(result).or_default() +=
                summary["runs"][result].as_f64().expect("a count");
        }
    }
    let total: f64 = expected.values().sum();
    assert_eq!(total, 45.0, "{expected:?}");

    // Every engine is its own target, told apart by `instance`.
    prom.wait_for(
        "count(up{job=\"agentgate\"} == 1)",
        3.0,
        Duration::from_secs(60),
    );
    prom.wait_for(
        "count(count by (instance) (agentgate_runs_started_total))",
        3.0,
        Duration::from_secs(30),
    );
    prom.wait_for(
        "sum(agentgate_runs_completed_total)",
        total,
        Duration::from_secs(30),
    );
    let by_result: BTreeMap<String, f64> = prom
        .query_vector("sum by (result) (agentgate_runs_completed_total)")
        .expect("a vector")
        .into_iter()
        .map(|(labels, value)| {
            (
                labels["result"].as_str().unwrap_or_default().to_owned(),
                value,
            )
        })
        .collect();
    let expected: BTreeMap<String, f64> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(by_result, expected);

    // Recording rules evaluate over the fleet: one saturation ratio per
    // engine (all idle, 0) and the fleet's completion rate by result.
    prom.wait_for(
        "count(instance:agentgate_event_queue_saturation:ratio == 0)",
        3.0,
        Duration::from_secs(60),
    );
    prom.wait_for(
        "count(job:agentgate_runs_completed:rate5m)",
        3.0,
        Duration::from_secs(60),
    );
    // And no alert fires for a healthy fleet but the Watchdog, which
    // always does while the rules are evaluated.
    prom.wait_for(
        "count(ALERTS{alertstate=\"firing\",alertname=\"Watchdog\"})",
        1.0,
        Duration::from_secs(10),
    );
    prom.wait_for(
        "count(ALERTS{alertstate=\"firing\",alertname!=\"Watchdog\"}) or vector(0)",
        0.0,
        Duration::from_secs(10),
    );
}
