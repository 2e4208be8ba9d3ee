//! `/metrics` as a scraper sees it: valid for promtool, exact counts,
//! escaped labels, OpenMetrics with exemplars, capped gate names.
#![cfg(feature = "cli")]

use crate::common;

use std::sync::atomic::AtomicBool;

use agentgate_obs::demo::{DemoConfig, RunTally, run_engine};
use agentgate_obs::metrics::MetricsConfig;
use agentgate_obs::{Observability, ProgressEmitter};
use common::{external_tool, http_get, parse_exposition, sample_value};

const ODD_GATES: &[&str] = &[
    "quote\"d",
    "back\\slash",
    "new\nline",
    "literal \\n, not a newline",
    "ünïcödé ✓ 😀",
    "",
    "{le=\"+Inf\"}",
];

/// A served pipeline after a seeded demo plus a run with odd gate names.
fn served_demo(config: MetricsConfig) -> (Observability, RunTally) {
    let obs = common::quiet()
        .metrics(config)
        .serve("127.0.0.1:0")
        .start()
        .expect("start");
    let demo = DemoConfig {
        work_orders: 12,
        concurrency: 3,
        seed: 11,
        time_scale: 0.0,
    };
    let tally = run_engine(&obs.emitter(), &demo, &AtomicBool::new(false));
    for gate in ODD_GATES {
        obs.emitter()
            .emit_gate_checked("wo-odd", "run-odd", 1, gate, true);
    }
    obs.flush();
    (obs, tally)
}

fn scrape(obs: &Observability, accept: Option<&str>) -> common::HttpReply {
    let addr = obs.local_addr().expect("serving");
    let header = accept.map(|a| format!("Accept: {a}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let reply = http_get(addr, "/metrics", &headers);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

#[test]
fn a_demo_exposition_passes_promtool_check_metrics_without_a_warning() {
    let Some(promtool) = external_tool("promtool", "promtool check metrics") else {
        return;
    };
    let (obs, _) = served_demo(MetricsConfig::default());
    let text = scrape(&obs, None).body;
    common::metrics::assert_promtool_accepts(&promtool, &text);
}

#[test]
fn counters_match_what_the_demo_produced_exactly() {
    let (obs, tally) = served_demo(MetricsConfig::default());
    let samples = parse_exposition(&scrape(&obs, None).body).expect("strict parse");
    let v = |name: &str, labels: &[(&str, &str)]| {
        sample_value(&samples, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    // The demo's runs plus the odd-gates run, which never finishes.
    assert_eq!(
        v("agentgate_runs_started_total", &[]),
        (tally.total() + 1) as f64
    );
    assert_eq!(
        v("agentgate_runs_completed_total", &[("result", "succeeded")]),
        tally.succeeded as f64
    );
    assert_eq!(
        v("agentgate_runs_completed_total", &[("result", "failed")]),
        tally.failed as f64
    );
    assert_eq!(
        v("agentgate_runs_completed_total", &[("result", "canceled")]),
        tally.canceled as f64
    );
    assert_eq!(v("agentgate_active_runs", &[]), 1.0);
    let stats = obs.stats();
    let processed: f64 = samples
        .iter()
        .filter(|s| s.name == "agentgate_events_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(processed, stats.processed.total() as f64);
    for phase in ["build", "snapshot", "verify", "feedback"] {
        let executions = v(
            "agentgate_phase_executions_total",
            &[("phase", phase), ("success", "true")],
        ) + v(
            "agentgate_phase_executions_total",
            &[("phase", phase), ("success", "false")],
        );
        let count = v(
            "agentgate_phase_duration_seconds_count",
            &[("phase", phase)],
        );
        let inf = v(
            "agentgate_phase_duration_seconds_bucket",
            &[("phase", phase), ("le", "+Inf")],
        );
        assert_eq!(executions, count, "{phase}");
        assert_eq!(inf, count, "{phase}");
    }
    assert_eq!(
        v("agentgate_run_duration_seconds_count", &[]),
        tally.total() as f64
    );
}

#[test]
fn buckets_are_cumulative_and_end_with_plus_inf() {
    let (obs, _) = served_demo(MetricsConfig::default());
    let samples = parse_exposition(&scrape(&obs, None).body).expect("strict parse");
    let buckets: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "agentgate_run_duration_seconds_bucket")
        .collect();
    assert_eq!(
        buckets.len(),
        agentgate_obs::metrics::DEFAULT_DURATION_BUCKETS.len() + 1
    );
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    let les: Vec<&str> = buckets.iter().map(|s| s.labels[0].1.as_str()).collect();
    assert_eq!(les.first(), Some(&"0.01"));
    assert!(les.contains(&"1.0") && les.contains(&"3600.0"));
    assert_eq!(les.last(), Some(&"+Inf"));
}

#[test]
fn label_values_with_quotes_backslashes_newlines_and_non_ascii_round_trip() {
    let (obs, _) = served_demo(MetricsConfig::default());
    for format in [None, Some("application/openmetrics-text; version=1.0.0")] {
        let samples = parse_exposition(&scrape(&obs, format).body).expect("strict parse");
        for gate in ODD_GATES {
            let passed = sample_value(
                &samples,
                "agentgate_gate_checks_total",
                &[("gate", gate), ("passed", "true")],
            );
            assert_eq!(passed, Some(1.0), "gate {gate:?} in {format:?}");
        }
    }
}

#[test]
fn openmetrics_is_chosen_by_accept_and_carries_exemplars_and_eof() {
    let (obs, _) = served_demo(MetricsConfig::default());
    let plain = scrape(&obs, None);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        plain
            .body
            .contains("# TYPE agentgate_runs_started_total counter\n")
    );
    assert!(!plain.body.contains("# EOF") && !plain.body.contains(" # {"));

    let om = scrape(
        &obs,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE agentgate_runs_started counter\n"));
    let exemplar = om
        .body
        .lines()
        .find(|l| l.starts_with("agentgate_run_duration_seconds_bucket") && l.contains(" # {"))
        .expect("a run duration bucket with an exemplar");
    assert!(exemplar.contains("run_id=\"run-"), "{exemplar}");
    assert!(exemplar.contains("correlation_id=\""), "{exemplar}");
}

#[test]
fn every_family_has_help_and_type_and_families_are_sorted() {
    let (obs, _) = served_demo(MetricsConfig::default());
    let text = scrape(&obs, None).body;
    let mut families = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_owned();
            let ty = lines.next().unwrap_or_default();
            assert!(ty.starts_with(&format!("# TYPE {name} ")), "{ty}");
            families.push(name);
        } else {
            assert!(!line.starts_with('#'), "stray comment {line}");
        }
    }
    let mut sorted = families.clone();
    sorted.sort();
    assert_eq!(families, sorted);
    for family in [
        "agentgate_runs_started_total",
        "agentgate_runs_completed_total",
        "agentgate_iterations_total",
        "agentgate_phase_executions_total",
        "agentgate_gate_checks_total",
        "agentgate_deliveries_total",
        "agentgate_events_total",
        "agentgate_events_dropped_total",
        "agentgate_listener_panics_total",
        "agentgate_active_runs",
        "agentgate_event_queue_depth",
        "agentgate_ws_clients",
        "agentgate_run_duration_seconds",
        "agentgate_iteration_duration_seconds",
        "agentgate_phase_duration_seconds",
        "agentgate_event_queue_latency_seconds",
    ] {
        assert!(families.iter().any(|f| f == family), "{family} missing");
    }
}

#[test]
fn gate_names_past_the_limit_are_counted_under_other() {
    let obs = common::quiet()
        .metrics(MetricsConfig::default().gate_label_limit(3))
        .start()
        .expect("start");
    for i in 0..50 {
        obs.emitter()
            .emit_gate_checked("wo", "run", 1, &format!("gate-{i:02}"), i % 2 == 0);
    }
    obs.flush();
    let samples = parse_exposition(&obs.metrics().render_as(Default::default())).expect("parse");
    let gates: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "agentgate_gate_checks_total")
        .collect();
    assert_eq!(
        gates.len(),
        4 * 2,
        "3 named gates and other, passed and not"
    );
    let other: f64 = gates
        .iter()
        .filter(|s| s.labels[0].1 == "other")
        .map(|s| s.value)
        .sum();
    assert_eq!(other, 47.0);
}

#[test]
fn the_summary_gives_quantiles_that_agree_with_the_buckets() {
    let (obs, _) = served_demo(MetricsConfig::default());
    let addr = obs.local_addr().expect("serving");
    let reply = http_get(addr, "/api/summary", &[]);
    assert_eq!(reply.status, 200);
    let summary: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    let build = summary["histograms"]
        .as_array()
        .expect("array")
        .iter()
        .find(|h| {
            h["name"] == "agentgate_phase_duration_seconds" && h["labels"]["phase"] == "build"
        })
        .expect("build series");
    let samples = parse_exposition(&scrape(&obs, None).body).expect("parse");
    let count = sample_value(
        &samples,
        "agentgate_phase_duration_seconds_count",
        &[("phase", "build")],
    );
    assert_eq!(build["count"].as_f64(), count);
    let (p50, p99, max) = (
        build["p50"].as_f64().expect("p50"),
        build["p99"].as_f64().expect("p99"),
        build["max"].as_f64().expect("max"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{build}");
    // The median lies in the first bucket whose cumulative count reaches half.
    let half = count.expect("count") / 2.0;
    let bucket = samples
        .iter()
        .filter(|s| s.name == "agentgate_phase_duration_seconds_bucket" && s.labels[0].1 == "build")
        .find(|s| s.value >= half)
        .expect("a bucket holds the median");
    let le: f64 = match bucket.labels[1].1.as_str() {
        "+Inf" => f64::INFINITY,
        v => v.parse().expect("le"),
    };
    assert!(p50 <= le * 1.001, "p50 {p50} above its bucket's bound {le}");
}

#[test]
fn the_strict_parser_the_tests_share_refuses_what_a_careful_scraper_refuses() {
    use common::exposition::parse;
    assert!(parse("a{l=\"x\\ty\"} 1\n", false).is_err(), "a \\t escape");
    assert!(parse("a{l=\"x\"} 1", false).is_err(), "no final newline");
    assert!(
        parse("a{l=\"x\"} 1\n", true).is_err(),
        "OpenMetrics without # EOF"
    );
    assert!(
        parse("a 1\n# EOF\n", false).is_err(),
        "# EOF in the Prometheus format"
    );
    assert!(
        parse("a{l=\"x\",l=\"y\"} 1\n", false).is_err(),
        "a label twice"
    );
    assert!(
        parse("a 1 # {l=\"x\"} 1\n", false).is_err(),
        "an exemplar in Prometheus"
    );
    assert!(parse("a{1l=\"x\"} 1\n", false).is_err(), "a bad label name");
    assert!(
        parse("# TYPE a widget\n", false).is_err(),
        "an unknown type"
    );
    let samples = parse("a{l=\"q\\\"\\\\\\n\"} 2.5\n", false).expect("the three escapes");
    assert_eq!(samples[0].labels[0].1, "q\"\\\n");
    let om = parse("a_total{l=\"x\"} 1 # {trace=\"t\"} 0.5 1.0\n# EOF\n", true);
    assert_eq!(om.expect("an exemplar in OpenMetrics")[0].value, 1.0);
}
