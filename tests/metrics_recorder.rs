//! The `metrics` crate's macros on our `/metrics` (feature `metrics`).
#![cfg(all(feature = "metrics", feature = "fuzzing"))]

mod common;

use agentgate_obs::fuzzing::strict;
use agentgate_obs::metrics::{MetricsConfig, OVERFLOW};
use agentgate_obs::{Error, LogContext, with_context};
use common::metrics::{OPENMETRICS, scrape_text as scrape, served_with as served};
use common::{parse_exposition, sample_value};

#[test]
fn metrics_macros_appear_on_metrics_in_both_formats() {
    let obs = served(MetricsConfig::default());
    let recorder = obs.metrics().recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("tool_calls_total", "Tool calls, by tool.");
        for _ in 0..3 {
            metrics::counter!("tool_calls_total", "tool" => "grep").increment(1);
        }
        metrics::counter!("tool_calls_total", "tool" => "sed").increment(2);
        metrics::gauge!("open_sandboxes").set(4.0);
        metrics::gauge!("open_sandboxes").decrement(1.0);
        metrics::histogram!("model.request.seconds", "model" => "m1").record(0.3);
        metrics::describe_histogram!(
            "model.request.seconds",
            metrics::Unit::Seconds,
            "Model requests."
        );
    });
    let text = scrape(&obs, None);
    strict::parse(&text, false).expect("strict Prometheus text");
    let samples = parse_exposition(&text).expect("parse");
    let value = |name: &str, labels: &[(&str, &str)]| sample_value(&samples, name, labels);
    assert_eq!(
        value("agentgate_tool_calls_total", &[("tool", "grep")]),
        Some(3.0)
    );
    assert_eq!(
        value("agentgate_tool_calls_total", &[("tool", "sed")]),
        Some(2.0)
    );
    assert_eq!(value("agentgate_open_sandboxes", &[]), Some(3.0));
    assert_eq!(
        value(
            "agentgate_model_request_seconds_bucket",
            &[("model", "m1"), ("le", "0.5")]
        ),
        Some(1.0)
    );
    assert!(text.contains("# HELP agentgate_tool_calls_total Tool calls, by tool.\n"));
    assert!(
        text.contains("# HELP agentgate_model_request_seconds Model requests. (unit: seconds)\n")
    );
    assert!(text.contains("# HELP agentgate_open_sandboxes Recorded through the metrics crate"));
    let om = scrape(&obs, Some(OPENMETRICS));
    strict::parse(&om, true).expect("strict OpenMetrics");
    assert!(om.contains("# TYPE agentgate_tool_calls counter\n"));
}

#[test]
fn a_metrics_histogram_carries_the_correlation_id_of_the_log_context_as_its_exemplar() {
    let obs = served(MetricsConfig::default());
    let recorder = obs.metrics().recorder();
    metrics::with_local_recorder(&recorder, || {
        with_context(LogContext::new().correlation_id("req-9"), || {
            metrics::histogram!("tool_seconds", "tool" => "grep").record(0.02);
        });
    });
    let om = scrape(&obs, Some(OPENMETRICS));
    strict::parse(&om, true).expect("strict OpenMetrics");
    let line = om
        .lines()
        .find(|l| l.starts_with("agentgate_tool_seconds_bucket") && l.contains(" # {"))
        .expect("a bucket with an exemplar");
    assert!(line.contains("le=\"0.025\""), "{line}");
    assert!(
        line.contains("# {correlation_id=\"req-9\"} 0.02 "),
        "{line}"
    );
}

#[test]
fn label_values_from_macros_past_the_series_limit_are_counted_under_other() {
    let obs = served(MetricsConfig::default().custom_series_limit(2));
    let recorder = obs.metrics().recorder();
    metrics::with_local_recorder(&recorder, || {
        for i in 0..5 {
            metrics::counter!("requests_total", "path" => format!("/p{i}")).increment(1);
        }
        // A refused name: a no-op handle, counted.
        metrics::counter!("runs_started_total").increment(1);
    });
    let samples = parse_exposition(&scrape(&obs, None)).expect("parse");
    assert_eq!(
        sample_value(&samples, "agentgate_requests_total", &[("path", OVERFLOW)]),
        Some(3.0)
    );
    assert_eq!(
        sample_value(
            &samples,
            "agentgate_custom_series_overflow_total",
            &[("family", "agentgate_requests_total")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample_value(
            &samples,
            "agentgate_custom_metrics_rejected_total",
            &[("reason", "clash")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&samples, "agentgate_runs_started_total", &[]),
        Some(0.0)
    );
}

#[test]
fn installing_the_recorder_twice_is_an_error() {
    let obs = served(MetricsConfig::default());
    obs.install_metrics_recorder().expect("first install");
    metrics::counter!("global_calls_total").increment(2);
    let again = obs.install_metrics_recorder();
    assert!(
        matches!(again, Err(Error::MetricsRecorderAlreadyInstalled)),
        "{again:?}"
    );
    let other = served(MetricsConfig::default());
    assert!(matches!(
        other.install_metrics_recorder(),
        Err(Error::MetricsRecorderAlreadyInstalled)
    ));
    let samples = parse_exposition(&scrape(&obs, None)).expect("parse");
    assert_eq!(
        sample_value(&samples, "agentgate_global_calls_total", &[]),
        Some(2.0)
    );
}
