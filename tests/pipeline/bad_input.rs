//! Odd input from the engine: every case is accepted or rejected by a
//! documented rule, nothing panics, the tracker stays consistent.

use crate::common;

use agentgate_obs::event::EventKind;
use agentgate_obs::runs::RunStatus;
use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Observability, Phase, PhaseTimings, ProgressEmitter,
    RunResult, Strategy, TaskSpec,
};
use common::{Recorder, quiet};

#[test]
fn empty_huge_and_non_ascii_ids_are_carried_as_given() {
    let obs = quiet().start().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let emitter = obs.emitter();
    let huge = "x".repeat(1 << 20);
    let ids = [
        ("", ""),
        (huge.as_str(), huge.as_str()),
        ("заказ-1", "运行-🚀"),
        ("a\"b\\c\n", "\u{0}"),
    ];
    for (wo, run) in ids {
        emitter.emit_run_started(wo, run, &TaskSpec::new("g", Strategy::Manual, 1));
        emitter.emit_run_failed(wo, run, "x");
    }
    obs.flush();
    let events = recorder.events();
    assert_eq!(events.len(), 8);
    for (event, (wo, run)) in events.chunks(2).zip(ids) {
        assert_eq!((&*event[0].work_order_id, &*event[0].run_id), (wo, run));
        let json = serde_json::to_string(&event[0]).unwrap();
        let back: agentgate_obs::ProgressEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event[0]);
    }
    assert_eq!(obs.active_runs(), 0);
}

#[test]
fn a_one_megabyte_goal_is_cut_to_100_characters_even_when_built_by_hand() {
    let obs = quiet().start().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let spec = TaskSpec {
        goal: "é".repeat(1 << 19),
        strategy: Strategy::Adaptive,
        max_iterations: 9,
    };
    obs.emitter().emit_run_started("wo", "run", &spec);
    obs.flush();
    match &recorder.events()[0].kind {
        EventKind::RunStarted { task_spec } => {
            assert_eq!(task_spec.goal.chars().count(), 100);
            assert_eq!(task_spec.max_iterations, 9);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn iteration_zero_and_huge_numbers_are_taken_as_given() {
    let obs = quiet().start().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let emitter = obs.emitter();
    emitter.emit_iteration_started("wo", "run", 0, 0, None);
    emitter.emit_phase_completed(
        "wo",
        "run",
        u32::MAX,
        Phase::Feedback,
        false,
        std::time::Duration::MAX,
    );
    emitter.emit_iteration_completed(
        "wo",
        "run",
        0,
        false,
        &PhaseTimings {
            build: Some(u64::MAX),
            ..Default::default()
        },
    );
    emitter.emit_gate_checked("wo", "run", 0, &"g".repeat(10_000), true);
    emitter.emit_delivery_completed("wo", "run", &DeliveryResult::default());
    emitter.emit_run_completed(
        "wo",
        "run",
        RunResult::FailedError,
        &ExecutionMetrics::default(),
    );
    obs.flush();
    assert_eq!(recorder.len(), 6);
    let run = &obs.runs()[0];
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.iteration, 0,
        "the latest event's iteration, taken as given"
    );
    assert_eq!(
        run.phase_timings.feedback,
        Some(u64::MAX / 1_000_000),
        "Duration::MAX saturates to u64::MAX ns"
    );
    match &recorder.events()[2].kind {
        EventKind::IterationCompleted { phase_timings, .. } => {
            assert_eq!(phase_timings.build, Some(u64::MAX))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_builder_settings_are_errors_not_panics() {
    assert!(Observability::builder().queue_capacity(0).start().is_err());
    for ns in ["", "9lives", "has space", "dash-ed"] {
        let err = Observability::builder().namespace(ns).start().unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
    }
    assert!(
        Observability::builder()
            .namespace("my_app:obs")
            .start()
            .is_ok()
    );
}
