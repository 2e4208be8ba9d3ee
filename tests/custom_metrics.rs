//! The engine's own metrics (`obs.metrics().counter(..)`, `gauge`,
//! `histogram`) on the same `/metrics`: both formats, promtool, the strict
//! parser, caps, refusals, redaction and exemplars.
#![cfg(feature = "fuzzing")]

mod common;

use agentgate_obs::fuzzing::strict;
use agentgate_obs::metrics::{MetricError, MetricsConfig, OVERFLOW};
use agentgate_obs::{LogContext, Observability, with_context};
use common::metrics::{
    OPENMETRICS, assert_promtool_accepts, scrape_text as scrape, served_with as served,
};
use common::prometheus::Prometheus;
use common::{external_tool, parse_exposition, sample_value};

/// A pipeline with one family of each type, recorded into.
fn with_one_of_each() -> Observability {
    let obs = served(MetricsConfig::default());
    let m = obs.metrics();
    let grep = m
        .counter(
            "tool_calls_total",
            "Tool calls, by tool.",
            &[("tool", "grep")],
        )
        .expect("counter");
    grep.increment(3);
    m.counter(
        "tool_calls_total",
        "Tool calls, by tool.",
        &[("tool", "sed")],
    )
    .expect("counter")
    .increment(1);
    let open = m
        .gauge("open_sandboxes", "Sandboxes open.", &[])
        .expect("gauge");
    open.set(4.0);
    open.decrement(1.5);
    let tokens = m
        .histogram_with_buckets(
            "prompt_tokens",
            "Tokens per \"prompt\",\\ counted.",
            &[("model", "m1")],
            &[100.0, 1000.0],
        )
        .expect("histogram");
    for v in [50.0, 500.0, 5000.0, 100.0] {
        tokens.record(v);
    }
    // A family with no series yet: `# HELP` and `# TYPE` alone.
    m.histogram_vec("idle_seconds", "Idle time, by worker.", &["worker"])
        .expect("histogram vector");
    obs
}

#[test]
fn handles_are_served_on_metrics_in_both_formats() {
    let obs = with_one_of_each();
    let text = scrape(&obs, None);
    let samples = parse_exposition(&text).expect("strict parse");
    let value = |name: &str, labels: &[(&str, &str)]| sample_value(&samples, name, labels);
    assert_eq!(
        value("agentgate_tool_calls_total", &[("tool", "grep")]),
        Some(3.0)
    );
    assert_eq!(
        value("agentgate_tool_calls_total", &[("tool", "sed")]),
        Some(1.0)
    );
    assert_eq!(value("agentgate_open_sandboxes", &[]), Some(2.5));
    let bucket = |le| {
        value(
            "agentgate_prompt_tokens_bucket",
            &[("model", "m1"), ("le", le)],
        )
    };
    assert_eq!(bucket("100.0"), Some(2.0));
    assert_eq!(bucket("1000.0"), Some(3.0));
    assert_eq!(bucket("+Inf"), Some(4.0));
    assert_eq!(
        value("agentgate_prompt_tokens_count", &[("model", "m1")]),
        Some(4.0)
    );
    assert_eq!(
        value("agentgate_prompt_tokens_sum", &[("model", "m1")]),
        Some(5650.0)
    );
    assert!(text.contains("# TYPE agentgate_tool_calls_total counter\n"));
    strict::parse(&text, false).expect("strict Prometheus text");

    let om = scrape(&obs, Some(OPENMETRICS));
    strict::parse(&om, true).expect("strict OpenMetrics");
    assert!(om.contains("# TYPE agentgate_tool_calls counter\n"), "{om}");
    assert!(om.contains("agentgate_tool_calls_total{tool=\"grep\"} 3\n"));
    assert!(
        om.contains("# HELP agentgate_prompt_tokens Tokens per \\\"prompt\\\",\\\\ counted.\n")
    );
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn an_exposition_with_the_engines_families_passes_promtool_check_metrics_without_a_warning() {
    let Some(promtool) = external_tool("promtool", "promtool check metrics (custom metrics)")
    else {
        return;
    };
    let obs = with_one_of_each();
    let text = scrape(&obs, None);
    assert_promtool_accepts(&promtool, &text);
}

/// The family names of `# HELP` lines, in order.
fn help_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_engines_families_render_sorted_among_the_built_in_ones_in_both_formats() {
    let obs = served(MetricsConfig::default());
    let m = obs.metrics();
    for name in ["aaa_first", "phase_x_seconds", "zzz_last", "iterations_z"] {
        m.gauge(name, "A gauge.", &[]).expect("gauge").set(1.0);
    }
    m.counter("events_y_total", "A counter.", &[])
        .expect("counter")
        .increment(1);
    let text = scrape(&obs, None);
    let names = help_names(&text);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(
        names.first().map(String::as_str),
        Some("agentgate_aaa_first")
    );
    assert_eq!(names.last().map(String::as_str), Some("agentgate_zzz_last"));
    let om = scrape(&obs, Some(OPENMETRICS));
    strict::parse(&om, true).expect("strict OpenMetrics");
    assert_eq!(help_names(&om).len(), names.len());
    assert!(
        om.trim_end().ends_with("agentgate_zzz_last 1.0\n# EOF"),
        "{om}"
    );
}

#[test]
fn label_values_past_the_series_limit_are_counted_under_other() {
    let obs = served(MetricsConfig::default().custom_series_limit(3));
    let m = obs.metrics();
    for i in 0..10 {
        let tool = format!("tool-{i}");
        m.counter(
            "tool_calls_total",
            "Tool calls.",
            &[("tool", &tool), ("ok", "true")],
        )
        .expect("counter")
        .increment(1);
    }
    let samples = parse_exposition(&scrape(&obs, None)).expect("strict parse");
    let calls: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "agentgate_tool_calls_total")
        .collect();
    assert_eq!(calls.len(), 4, "three named series and the overflow one");
    assert_eq!(
        sample_value(
            &samples,
            "agentgate_tool_calls_total",
            &[("ok", OVERFLOW), ("tool", OVERFLOW)]
        ),
        Some(7.0)
    );
    assert_eq!(
        sample_value(
            &samples,
            "agentgate_custom_series_overflow_total",
            &[("family", "agentgate_tool_calls_total")]
        ),
        Some(7.0)
    );
}

#[test]
fn invalid_clashing_and_mismatched_registrations_are_typed_errors_and_counted() {
    let obs = served(MetricsConfig::default().custom_family_limit(3));
    let m = obs.metrics();
    assert!(matches!(
        m.counter("9lives", "h", &[]),
        Err(MetricError::InvalidName { .. })
    ));
    assert!(matches!(
        m.counter("tool.calls", "h", &[]),
        Err(MetricError::InvalidName { .. })
    ));
    assert!(matches!(
        m.gauge("g", "h", &[("bad-label", "x")]),
        Err(MetricError::InvalidLabel { .. })
    ));
    assert!(matches!(
        m.histogram("wait_seconds", "h", &[("le", "1")]),
        Err(MetricError::InvalidLabel { .. })
    ));
    assert!(matches!(
        m.histogram_with_buckets("wait_seconds", "h", &[], &[2.0, 1.0]),
        Err(MetricError::InvalidBuckets { .. })
    ));
    // What `promtool check metrics` would lint.
    for result in [
        m.histogram("request_ms", "h", &[]).map(drop),
        m.gauge("uptime_minutes", "h", &[]).map(drop),
        m.gauge("queue_count", "h", &[]).map(drop),
        m.gauge("size_total", "h", &[]).map(drop),
        m.counter("calls", "h", &[("toolName", "x")]).map(drop),
    ] {
        assert!(
            matches!(
                result,
                Err(MetricError::InvalidName { .. } | MetricError::InvalidLabel { .. })
            ),
            "{result:?}"
        );
    }
    // Built-in names, and names their series imply.
    for result in [
        m.counter("runs_started_total", "h", &[]).map(drop),
        m.counter("runs_started", "h", &[]).map(drop),
        m.histogram("iterations", "h", &[]).map(drop),
        m.gauge("events", "h", &[]).map(drop),
    ] {
        assert!(
            matches!(result, Err(MetricError::BuiltinClash { .. })),
            "{result:?}"
        );
    }
    m.histogram("work_seconds", "Work.", &[("kind", "a")])
        .expect("histogram");
    assert!(matches!(
        m.counter("work_seconds_sum", "h", &[]),
        Err(MetricError::Clash { .. })
    ));
    let mismatch = |r: Result<(), MetricError>| matches!(r, Err(MetricError::Mismatch { .. }));
    assert!(mismatch(
        m.gauge("work_seconds", "Work.", &[("kind", "a")]).map(drop)
    ));
    assert!(mismatch(
        m.histogram("work_seconds", "Other help.", &[("kind", "a")])
            .map(drop)
    ));
    assert!(mismatch(
        m.histogram("work_seconds", "Work.", &[("other", "a")])
            .map(drop)
    ));
    assert!(mismatch(
        m.histogram_with_buckets("work_seconds", "Work.", &[("kind", "a")], &[1.0])
            .map(drop)
    ));
    // The same registration again is the same family.
    m.histogram("work_seconds", "Work.", &[("kind", "b")])
        .expect("same family");
    m.gauge("second", "h", &[]).expect("second family");
    m.gauge("third", "h", &[]).expect("third family");
    let err = m
        .gauge("fourth", "h", &[])
        .expect_err("past the family limit");
    assert!(matches!(err, MetricError::TooManyFamilies { limit: 3, .. }));
    assert!(err.to_string().contains("limited to 3 families"), "{err}");

    let samples = parse_exposition(&scrape(&obs, None)).expect("strict parse");
    let rejected = |reason| {
        sample_value(
            &samples,
            "agentgate_custom_metrics_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("invalid"), Some(10.0));
    assert_eq!(rejected("clash"), Some(5.0));
    assert_eq!(rejected("mismatch"), Some(4.0));
    assert_eq!(rejected("family_limit"), Some(1.0));
}

#[test]
fn a_handle_registered_twice_counts_into_one_series() {
    let obs = served(MetricsConfig::default());
    let m = obs.metrics();
    let a = m
        .counter("retries", "Retries.", &[("b", "2"), ("a", "1")])
        .expect("a");
    let b = m
        .counter("retries_total", "Retries.", &[("a", "1"), ("b", "2")])
        .expect("b");
    a.increment(2);
    b.clone().increment(5);
    assert_eq!(a.value(), 7);
    let samples = parse_exposition(&scrape(&obs, None)).expect("strict parse");
    assert_eq!(
        sample_value(
            &samples,
            "agentgate_retries_total",
            &[("a", "1"), ("b", "2")]
        ),
        Some(7.0)
    );
}

#[test]
fn label_values_are_escaped_and_pass_through_the_redaction_layer() {
    let obs = served(MetricsConfig::default());
    let m = obs.metrics();
    let odd = "quote\" back\\slash new\nline ünïcödé";
    m.counter("odd_total", "Odd.", &[("v", odd)])
        .expect("odd")
        .increment(1);
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    m.counter("auth_total", "Auth.", &[("header", token)])
        .expect("token")
        .increment(1);
    m.counter("login_total", "Logins.", &[("password", "hunter2")])
        .expect("secret key")
        .increment(1);
    for accept in [None, Some(OPENMETRICS)] {
        let text = scrape(&obs, accept);
        strict::parse(&text, accept.is_some()).expect("strict parse");
        assert!(
            !text.contains("ghp_0123456789") && !text.contains("hunter2"),
            "{text}"
        );
        let samples = strict::parse(&text, accept.is_some()).expect("strict parse");
        let odd_sample = samples
            .iter()
            .find(|s| s.name == "agentgate_odd_total")
            .expect("odd series");
        assert_eq!(odd_sample.labels, vec![("v".to_owned(), odd.to_owned())]);
        assert!(text.contains("agentgate_login_total{password=\"[REDACTED]\"} 1\n"));
    }
}

#[test]
fn a_histograms_exemplar_carries_the_correlation_id_set_by_log_context() {
    let obs = served(MetricsConfig::default());
    let latency = obs
        .metrics()
        .histogram(
            "model_request_seconds",
            "Model requests.",
            &[("model", "m1")],
        )
        .expect("histogram");
    latency.record(0.2); // outside any context: no exemplar
    with_context(
        LogContext::new().run_id("run-7").correlation_id("req-42"),
        || latency.record_duration(std::time::Duration::from_millis(30)),
    );
    let om = scrape(&obs, Some(OPENMETRICS));
    strict::parse(&om, true).expect("strict OpenMetrics");
    let line = om
        .lines()
        .find(|l| l.starts_with("agentgate_model_request_seconds_bucket") && l.contains(" # {"))
        .expect("a bucket with an exemplar");
    assert!(line.contains("le=\"0.05\""), "{line}");
    assert!(
        line.contains("# {correlation_id=\"req-42\",run_id=\"run-7\"} 0.03 "),
        "{line}"
    );
    let exemplars = om.lines().filter(|l| l.contains(" # {")).count();
    assert!(exemplars >= 1);
    assert!(
        !om.lines().any(|l| l.contains("le=\"0.25\"")
            && l.starts_with("agentgate_model_request_seconds")
            && l.contains(" # {")),
        "the observation outside a context has none"
    );
    let plain = scrape(&obs, None);
    assert!(!plain.contains(" # {"));
}

#[test]
fn a_vector_registers_its_family_by_label_names_and_picks_series_by_values() {
    let obs = served(MetricsConfig::default().custom_series_limit(2));
    let m = obs.metrics();
    let calls = m
        .counter_vec("tool_calls_total", "Tool calls.", &["tool", "exit"])
        .expect("counter vector");
    let text = scrape(&obs, None);
    assert!(text.contains("# TYPE agentgate_tool_calls_total counter\n"));
    assert!(!text.contains("agentgate_tool_calls_total{"));
    calls.with(&["grep", "0"]).expect("series").increment(2);
    // The same series as the pairs API gives, whatever the label order.
    m.counter(
        "tool_calls_total",
        "Tool calls.",
        &[("exit", "0"), ("tool", "grep")],
    )
    .expect("same family")
    .increment(1);
    calls.with(&["sed", "1"]).expect("series").increment(1);
    calls.with(&["awk", "1"]).expect("overflow").increment(1);
    assert!(matches!(
        calls.with(&["grep"]),
        Err(MetricError::LabelCount {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        m.gauge_vec("tool_calls", "Tool calls.", &["tool"]),
        Err(MetricError::Clash { .. })
    ));
    m.gauge_vec("open_sandboxes", "Sandboxes.", &["image"])
        .expect("gauge vector")
        .with(&["rust"])
        .expect("series")
        .set(2.0);
    m.histogram_vec_with_buckets("prompt_tokens", "Tokens.", &["model"], &[10.0])
        .expect("histogram vector")
        .with(&["m1"])
        .expect("series")
        .record(3.0);
    let text = scrape(&obs, None);
    let samples = parse_exposition(&text).expect("strict parse");
    let value = |name: &str, labels: &[(&str, &str)]| sample_value(&samples, name, labels);
    assert_eq!(
        value(
            "agentgate_tool_calls_total",
            &[("exit", "0"), ("tool", "grep")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            "agentgate_tool_calls_total",
            &[("exit", OVERFLOW), ("tool", OVERFLOW)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("agentgate_open_sandboxes", &[("image", "rust")]),
        Some(2.0)
    );
    assert_eq!(
        value(
            "agentgate_prompt_tokens_bucket",
            &[("model", "m1"), ("le", "10.0")]
        ),
        Some(1.0)
    );
    strict::parse(&scrape(&obs, Some(OPENMETRICS)), true).expect("strict OpenMetrics");
}

#[test]
fn a_real_prometheus_scrapes_the_engines_families() {
    let Some(binary) = external_tool("prometheus", "real Prometheus scrape (custom metrics)")
    else {
        return;
    };
    let obs = with_one_of_each();
    let latency = obs
        .metrics()
        .histogram(
            "model_request_seconds",
            "Model requests.",
            &[("model", "m1")],
        )
        .expect("histogram");
    with_context(
        LogContext::new().run_id("run-1").correlation_id("req-1"),
        || latency.record(0.3),
    );
    let prom = Prometheus::scraping(&binary, obs.local_addr().expect("serving"));
    let limit = std::time::Duration::from_secs(60);
    // Prometheus asks for OpenMetrics first: a scrape it could not parse
    // would leave `up` at 0 and these series absent.
    prom.wait_for("up{job=\"agentgate\"}", 1.0, limit);
    prom.wait_for("agentgate_tool_calls_total{tool=\"grep\"}", 3.0, limit);
    prom.wait_for("agentgate_open_sandboxes", 2.5, limit);
    prom.wait_for("agentgate_prompt_tokens_count{model=\"m1\"}", 4.0, limit);
    prom.wait_for(
        "agentgate_model_request_seconds_bucket{model=\"m1\",le=\"0.5\"}",
        1.0,
        limit,
    );
}
