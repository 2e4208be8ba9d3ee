//! The JSON of every event type, exactly as docs/PROTOCOL.md fixes it, and its
//! round trip.

use std::sync::Arc;

use agentgate_obs::event::{
    EventKind, EventType, GateSummary, InvalidTimestamp, RunOutcome, Timestamp,
};
use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Phase, PhaseTimings, ProgressEvent, RunResult, Strategy,
    TaskSpec,
};
use serde_json::json;

fn event(kind: EventKind) -> ProgressEvent {
    ProgressEvent {
        timestamp: Timestamp::from_millis(1_795_477_225_123),
        work_order_id: Arc::from("wo-1"),
        run_id: Arc::from("run-1"),
        correlation_id: Arc::from("req-9"),
        trace_id: None,
        metadata: None,
        kind,
    }
}

const HEAD: &str = r#""timestamp":"2026-11-23T23:40:25.123Z","workOrderId":"wo-1","runId":"run-1","correlationId":"req-9""#;

fn golden(kind: EventKind, ty: &str, payload: &str) {
    let e = event(kind);
    let expected = if payload.is_empty() {
        format!(r#"{{"type":"{ty}",{HEAD}}}"#)
    } else {
        format!(r#"{{"type":"{ty}",{HEAD},{payload}}}"#)
    };
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(json, expected);
    let back: ProgressEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e, "round trip of {ty}");
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn run_started_carries_the_task_spec() {
    golden(
        EventKind::RunStarted {
            task_spec: TaskSpec::new("Fix the test", Strategy::Hybrid, 4),
        },
        "run_started",
        r#""taskSpec":{"goal":"Fix the test","strategy":"hybrid","maxIterations":4}"#,
    );
}

#[test]
fn run_completed_carries_the_mapped_result_and_the_engines_own() {
    golden(
        EventKind::RunCompleted {
            result: RunOutcome::Failed,
            engine_result: RunResult::FailedTimeout,
            iterations: 3,
            duration_ms: 90_000,
            metrics: Box::new(ExecutionMetrics {
                total_duration_ms: 90_000,
                iteration_count: 3,
                phase_breakdown: PhaseTimings {
                    build: Some(30_000),
                    verify: Some(60_000),
                    ..Default::default()
                },
                agent_metrics: Some(json!({"tokens": 12})),
            }),
        },
        "run_completed",
        r#""result":"failed","engineResult":"failed_timeout","iterations":3,"durationMs":90000,"metrics":{"totalDurationMs":90000,"iterationCount":3,"phaseBreakdown":{"build":30000,"verify":60000},"agentMetrics":{"tokens":12}}"#,
    );
}

#[test]
fn run_canceled_and_run_failed_carry_their_reason() {
    golden(
        EventKind::RunCanceled {
            reason: "user".into(),
        },
        "run_canceled",
        r#""reason":"user""#,
    );
    golden(
        EventKind::RunFailed {
            error: "oom".into(),
        },
        "run_failed",
        r#""error":"oom""#,
    );
}

#[test]
fn iteration_started_carries_the_real_max_iterations_and_optional_feedback() {
    golden(
        EventKind::IterationStarted {
            iteration: 2,
            max_iterations: 5,
            feedback: Some("lint failed".into()),
        },
        "iteration_started",
        r#""iteration":2,"maxIterations":5,"feedback":"lint failed""#,
    );
    golden(
        EventKind::IterationStarted {
            iteration: 1,
            max_iterations: 5,
            feedback: None,
        },
        "iteration_started",
        r#""iteration":1,"maxIterations":5"#,
    );
}

#[test]
fn iteration_completed_carries_phase_timings_and_gate_results() {
    golden(
        EventKind::IterationCompleted {
            iteration: 1,
            success: false,
            phase_timings: PhaseTimings {
                build: Some(10),
                snapshot: Some(2),
                verify: Some(30),
                feedback: Some(4),
            },
            gate_results: vec![
                GateSummary {
                    name: "lint".into(),
                    passed: true,
                    duration_ms: Some(7),
                },
                GateSummary {
                    name: "tests".into(),
                    passed: false,
                    duration_ms: None,
                },
            ],
        },
        "iteration_completed",
        r#""iteration":1,"success":false,"phaseTimings":{"build":10,"snapshot":2,"verify":30,"feedback":4},"gateResults":[{"name":"lint","passed":true,"durationMs":7},{"name":"tests","passed":false}]"#,
    );
}

#[test]
fn phase_events_carry_iteration_phase_success_and_duration() {
    golden(
        EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Snapshot,
        },
        "phase_started",
        r#""iteration":1,"phase":"snapshot""#,
    );
    golden(
        EventKind::PhaseCompleted {
            iteration: 1,
            phase: Phase::Verify,
            success: true,
            duration_ms: 1234,
        },
        "phase_completed",
        r#""iteration":1,"phase":"verify","success":true,"durationMs":1234"#,
    );
}

#[test]
fn gate_checked_carries_the_gate_and_its_verdict() {
    golden(
        EventKind::GateChecked {
            iteration: 3,
            gate: "type\"check".into(),
            passed: false,
            duration_ms: None,
        },
        "gate_checked",
        r#""iteration":3,"gate":"type\"check","passed":false"#,
    );
}

#[test]
fn delivery_events_carry_the_pull_request_and_ci_status_at_top_level() {
    golden(EventKind::DeliveryStarted, "delivery_started", "");
    golden(
        EventKind::DeliveryCompleted {
            success: true,
            pr_url: Some("https://github.com/acme/x/pull/1".into()),
            ci_status: Some("pending".into()),
        },
        "delivery_completed",
        r#""success":true,"prUrl":"https://github.com/acme/x/pull/1","ciStatus":"pending""#,
    );
    let failed = DeliveryResult::default();
    golden(
        EventKind::DeliveryCompleted {
            success: failed.success,
            pr_url: failed.pr_url,
            ci_status: failed.ci_status,
        },
        "delivery_completed",
        r#""success":false"#,
    );
}

#[test]
fn metadata_comes_last_and_cannot_overwrite_the_events_own_fields() {
    let mut e = event(EventKind::DeliveryStarted);
    let mut meta = agentgate_obs::Metadata::new();
    meta.insert("runId".into(), json!("forged"));
    meta.insert("host".into(), json!("ci-7"));
    e.metadata = Some(Arc::new(meta));
    let value: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(value["runId"], "run-1");
    assert_eq!(value["metadata"]["runId"], "forged");
    let back: ProgressEvent = serde_json::from_value(value).unwrap();
    assert_eq!(back, e);
}

#[test]
fn websocket_form_uses_colon_types_and_carries_seq() {
    for ty in EventType::ALL {
        assert_eq!(EventType::parse(ty.as_str()), Some(ty));
        assert_eq!(EventType::parse(ty.colon_name()), Some(ty));
        assert_eq!(ty.colon_name().replace(':', "_"), ty.as_str());
    }
    let e = event(EventKind::PhaseStarted {
        iteration: 1,
        phase: Phase::Build,
    });
    let json = serde_json::to_string(&e.wire(42)).unwrap();
    assert!(
        json.starts_with(r#"{"type":"phase:started","seq":42,"timestamp""#),
        "{json}"
    );
    let back: ProgressEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn engine_results_map_to_three_outcomes() {
    use RunResult::*;
    let mapped: Vec<_> = RunResult::ALL
        .iter()
        .map(|&r| (r.as_str(), RunOutcome::from(r).as_str()))
        .collect();
    assert_eq!(
        mapped,
        [
            ("passed", "succeeded"),
            ("failed_verification", "failed"),
            ("failed_build", "failed"),
            ("failed_timeout", "failed"),
            ("failed_error", "failed"),
            ("canceled", "canceled"),
        ]
    );
    assert_eq!("failed_build".parse::<RunResult>(), Ok(FailedBuild));
    assert!("nope".parse::<RunResult>().is_err());
}

#[test]
fn goals_are_cut_to_100_characters_on_a_character_boundary() {
    let goal = "ж".repeat(1_000_000);
    let spec = TaskSpec::new(&goal, Strategy::Fixed, 1);
    assert_eq!(spec.goal.chars().count(), 100);
    assert_eq!(spec.goal.len(), 200);
    assert_eq!(TaskSpec::new("short", Strategy::Fixed, 1).goal, "short");
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for bad in [
        "",
        "{}",
        r#"{"type":"run_started"}"#,
        r#"{"type":"nope","timestamp":"2026-11-23T23:40:25.123Z","workOrderId":"w","runId":"r"}"#,
        r#"{"type":"delivery_started","timestamp":"yesterday","workOrderId":"w","runId":"r"}"#,
        r#"{"type":"delivery_started","timestamp":"2026-11-23T23:40:25.123+02:00","workOrderId":"w","runId":"r"}"#,
    ] {
        assert!(serde_json::from_str::<ProgressEvent>(bad).is_err(), "{bad}");
    }
}

#[test]
fn timestamps_out_of_range_are_clamped_rather_than_failing() {
    let far = Timestamp::from_millis(u64::MAX);
    assert_eq!(far.to_string(), "9999-12-31T23:59:59.999Z");
    let before_epoch = Timestamp::from(std::time::UNIX_EPOCH - std::time::Duration::from_secs(5));
    assert_eq!(before_epoch.to_string(), "1970-01-01T00:00:00.000Z");
}

#[test]
fn a_timestamp_that_does_not_parse_is_a_nameable_error() {
    let parsed: Result<Timestamp, InvalidTimestamp> = "yesterday".parse();
    let error = parsed.expect_err("not RFC 3339");
    assert!(
        error
            .to_string()
            .starts_with("invalid RFC 3339 UTC timestamp"),
        "{error}"
    );
    let ok: Result<Timestamp, InvalidTimestamp> = "2026-12-02T01:00:00.000Z".parse();
    assert_eq!(
        ok.map(|t| t.to_string()),
        Ok("2026-12-02T01:00:00.000Z".to_owned())
    );
}
