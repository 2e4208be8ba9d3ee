//! What `MetricsCollector` means: a `StandaloneMetrics` counts each call
//! once and renders exactly what it was told; a pipeline's metrics are fed
//! by its drain thread alone and are not a collector at all, so nothing
//! is silently ignored and nothing is counted twice.

use crate::common;

use std::marker::PhantomData;
use std::time::Duration;

use agentgate_obs::event::RunOutcome;
use agentgate_obs::metrics::{Metrics, MetricsCollector, MetricsConfig, StandaloneMetrics};
use agentgate_obs::{ExecutionMetrics, Phase, ProgressEmitter, RunResult, Strategy, TaskSpec};
use common::{ParsedSample, parse_exposition, quiet, sample_value};

fn samples(text: &str) -> Vec<ParsedSample> {
    parse_exposition(text).expect("the exposition parses")
}

/// Whether `T` implements `MetricsCollector`, decided by method
/// resolution: the impl for `Probe<T>` wins when it applies, the one for
/// `&Probe<T>` (one autoref further) otherwise.
struct Probe<T>(PhantomData<T>);

trait Implements {
    fn is_collector(&self) -> bool {
        true
    }
}
impl<T: MetricsCollector> Implements for Probe<T> {}

trait DoesNotImplement {
    fn is_collector(&self) -> bool {
        false
    }
}
impl<T> DoesNotImplement for &Probe<T> {}

#[test]
fn the_pipelines_metrics_type_is_not_a_collector_and_the_standalone_one_is() {
    // Borrowed first: the probe's trick needs the call on `&Probe<T>`.
    let pipelines = &Probe::<Metrics>(PhantomData);
    let standalone = &Probe::<StandaloneMetrics>(PhantomData);
    assert!(!pipelines.is_collector());
    assert!(standalone.is_collector());
}

#[test]
fn a_standalone_collector_counts_each_call_once_and_renders_what_it_was_told() {
    let metrics = StandaloneMetrics::new("engine", MetricsConfig::default()).expect("valid");
    let collector: &dyn MetricsCollector = &metrics;
    collector.increment_runs_started();
    collector.increment_runs_started();
    collector.increment_runs_completed(RunOutcome::Succeeded);
    collector.increment_iterations();
    collector.record_run_duration(Duration::from_millis(1500));
    collector.record_iteration_duration(Duration::from_millis(700));
    collector.record_phase_duration(Phase::Verify, Duration::from_millis(300));
    collector.set_active_runs(1);
    metrics.record_phase_execution(Phase::Verify, true);
    metrics.record_gate_check("tests", false);
    metrics.record_delivery(true);

    let s = samples(&collector.render());
    let value = |name: &str, labels: &[(&str, &str)]| sample_value(&s, name, labels);
    assert_eq!(value("engine_runs_started_total", &[]), Some(2.0));
    assert_eq!(
        value("engine_runs_completed_total", &[("result", "succeeded")]),
        Some(1.0)
    );
    assert_eq!(value("engine_iterations_total", &[]), Some(1.0));
    assert_eq!(value("engine_active_runs", &[]), Some(1.0));
    assert_eq!(value("engine_run_duration_seconds_count", &[]), Some(1.0));
    assert_eq!(value("engine_run_duration_seconds_sum", &[]), Some(1.5));
    assert_eq!(
        value("engine_iteration_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            "engine_phase_duration_seconds_count",
            &[("phase", "verify")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "engine_phase_executions_total",
            &[("phase", "verify"), ("success", "true")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "engine_gate_checks_total",
            &[("gate", "tests"), ("passed", "false")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("engine_deliveries_total", &[("success", "true")]),
        Some(1.0)
    );
    // The pipeline's own families exist and read zero.
    assert_eq!(value("engine_event_queue_depth", &[]), Some(0.0));
}

#[test]
fn set_active_runs_on_a_standalone_collector_is_the_gauge_it_renders_every_time() {
    let metrics = StandaloneMetrics::new("engine", MetricsConfig::default()).expect("valid");
    for active in [3, 0, 7] {
        metrics.set_active_runs(active);
        let s = samples(&metrics.render());
        assert_eq!(
            sample_value(&s, "engine_active_runs", &[]),
            Some(active as f64)
        );
    }
}

#[test]
fn the_pipelines_metrics_count_each_run_once_from_its_events() {
    let obs = quiet().start().expect("pipeline starts");
    let emitter = obs.emitter();
    let spec = TaskSpec::new("g", Strategy::Fixed, 1);
    emitter.emit_run_started("wo-1", "run-1", &spec);
    emitter.emit_run_started("wo-1", "run-2", &spec);
    emitter.emit_run_completed(
        "wo-1",
        "run-1",
        RunResult::Passed,
        &ExecutionMetrics::default(),
    );
    obs.flush();
    let s = samples(&obs.metrics().render());
    let value = |name: &str, labels: &[(&str, &str)]| sample_value(&s, name, labels);
    assert_eq!(value("agentgate_runs_started_total", &[]), Some(2.0));
    assert_eq!(
        value("agentgate_runs_completed_total", &[("result", "succeeded")]),
        Some(1.0)
    );
    assert_eq!(value("agentgate_active_runs", &[]), Some(1.0));
}

#[test]
fn a_standalone_collector_beside_a_pipeline_never_changes_the_pipelines_series() {
    let obs = quiet().start().expect("pipeline starts");
    let spec = TaskSpec::new("g", Strategy::Fixed, 1);
    obs.emitter().emit_run_started("wo-1", "run-1", &spec);
    obs.flush();
    let before = obs.metrics().render();

    // Same namespace on purpose: still a registry of its own.
    let mine = StandaloneMetrics::new("agentgate", MetricsConfig::default()).expect("valid");
    mine.increment_runs_started();
    mine.set_active_runs(40);
    mine.record_phase_duration(Phase::Build, Duration::from_secs(1));

    let s = samples(&obs.metrics().render());
    assert_eq!(
        sample_value(&s, "agentgate_runs_started_total", &[]),
        Some(1.0)
    );
    assert_eq!(sample_value(&s, "agentgate_active_runs", &[]), Some(1.0));
    assert_eq!(
        sample_value(
            &s,
            "agentgate_phase_duration_seconds_count",
            &[("phase", "build")]
        ),
        Some(0.0)
    );
    let unchanged = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("agentgate_runs_") || l.starts_with("agentgate_active"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(unchanged(&before), unchanged(&obs.metrics().render()));
}
