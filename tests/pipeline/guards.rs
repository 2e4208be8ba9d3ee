//! The scoped guards: `start_run` → `RunGuard`, `iteration` →
//! `IterationGuard`, `phase` → `PhaseGuard`.

use crate::common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::sleep;
use std::time::Duration;

use agentgate_obs::event::EventKind;
use agentgate_obs::runs::RunStatus;
use agentgate_obs::{
    ExecutionMetrics, IterationGuard, Observability, Phase, PhaseGuard, PhaseTimings, RunGuard,
    Strategy, TaskSpec,
};
use common::{LogBuffer, Recorder, lines_with_message, quiet};

fn spec() -> TaskSpec {
    TaskSpec::new("fix the flaky test", Strategy::Ralph, 3)
}

/// The events a run produced, as `(type, kind)` pairs.
fn kinds(recorder: &Recorder) -> Vec<EventKind> {
    recorder.events().into_iter().map(|e| e.kind).collect()
}

fn run_failed_error(kinds: &[EventKind]) -> String {
    kinds
        .iter()
        .find_map(|k| match k {
            EventKind::RunFailed { error } => Some(error.clone()),
            _ => None,
        })
        .expect("a run_failed event")
}

#[test]
fn guards_are_send() {
    fn send<T: Send>() {}
    send::<RunGuard>();
    send::<IterationGuard<'static>>();
    send::<PhaseGuard<'static>>();
}

#[test]
fn a_run_guard_dropped_without_an_end_emits_run_failed_saying_so() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    fn engine(obs: &Observability) -> Result<(), String> {
        let _run = obs.emitter().start_run("wo-1", "run-1", &spec());
        Err("workspace missing".to_owned())?;
        Ok(())
    }
    assert!(engine(&obs).is_err());
    obs.flush();
    let kinds = kinds(&recorder);
    assert!(matches!(kinds[0], EventKind::RunStarted { .. }));
    let error = run_failed_error(&kinds);
    assert!(
        error.contains("without succeed, finish, fail or cancel"),
        "{error}"
    );
    assert_eq!(obs.runs()[0].status, RunStatus::Failed);
}

#[test]
fn dropped_phase_and_iteration_guards_fail_in_order_phase_iteration_run() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    {
        let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
        let mut iteration = run.iteration(1, 3, None);
        let _phase = iteration.phase(Phase::Build);
    }
    obs.flush();
    let kinds = kinds(&recorder);
    let types = recorder.types();
    assert_eq!(
        types,
        [
            "run_started",
            "iteration_started",
            "phase_started",
            "phase_completed",
            "iteration_completed",
            "run_failed"
        ]
    );
    assert!(matches!(
        kinds[3],
        EventKind::PhaseCompleted {
            success: false,
            phase: Phase::Build,
            ..
        }
    ));
    assert!(matches!(
        kinds[4],
        EventKind::IterationCompleted { success: false, .. }
    ));
}

#[test]
fn a_panic_inside_a_run_fails_it_with_the_panic_message() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let emitter = obs.emitter();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let mut run = emitter.start_run("wo-1", "run-1", &spec());
        let mut iteration = run.iteration(1, 3, None);
        let _phase = iteration.phase(Phase::Verify);
        panic!("the verifier fell over");
    }));
    assert!(caught.is_err());
    obs.flush();
    let kinds = kinds(&recorder);
    let error = run_failed_error(&kinds);
    assert!(
        error.starts_with("the run panicked: the verifier fell over at tests/pipeline/guards.rs:"),
        "{error}"
    );
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::PhaseCompleted {
            success: false,
            phase: Phase::Verify,
            ..
        }
    )));
}

#[test]
fn phase_timings_are_measured_and_summed_into_iteration_completed() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
    let mut iteration = run.iteration(1, 3, None);
    let build = iteration.phase(Phase::Build);
    sleep(Duration::from_millis(30));
    build.succeed();
    for _ in 0..2 {
        let verify = iteration.phase(Phase::Verify);
        sleep(Duration::from_millis(10));
        verify.succeed();
    }
    let collected = iteration.timings();
    iteration.succeed();
    run.succeed(&ExecutionMetrics::default());
    obs.flush();

    let kinds = kinds(&recorder);
    let phase_ms: Vec<(Phase, u64)> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::PhaseCompleted {
                phase,
                duration_ms,
                success: true,
                ..
            } => Some((*phase, *duration_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(phase_ms.len(), 3);
    assert!(phase_ms[0].1 >= 30, "{phase_ms:?}");
    assert!(phase_ms[1].1 >= 10 && phase_ms[2].1 >= 10, "{phase_ms:?}");
    let timings = kinds
        .iter()
        .find_map(|k| match k {
            EventKind::IterationCompleted {
                phase_timings,
                success: true,
                ..
            } => Some(*phase_timings),
            _ => None,
        })
        .expect("iteration_completed");
    assert_eq!(timings, collected);
    assert_eq!(timings.build, Some(phase_ms[0].1));
    assert_eq!(timings.verify, Some(phase_ms[1].1 + phase_ms[2].1));
    assert_eq!(timings.snapshot, None);
}

#[test]
fn a_completed_run_fills_the_execution_metrics_the_caller_left_at_zero() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
    for n in 1..=2 {
        let mut iteration = run.iteration(n, 3, None);
        let build = iteration.phase(Phase::Build);
        sleep(Duration::from_millis(5));
        build.succeed();
        iteration.finish(n == 2);
    }
    sleep(Duration::from_millis(10));
    let agent = serde_json::json!({"toolCalls": 4});
    run.succeed(&ExecutionMetrics {
        agent_metrics: Some(agent.clone()),
        ..ExecutionMetrics::default()
    });
    obs.flush();
    let kinds = kinds(&recorder);
    let Some(EventKind::RunCompleted {
        iterations,
        duration_ms,
        metrics,
        ..
    }) = kinds.last()
    else {
        panic!("run_completed last: {kinds:?}");
    };
    assert_eq!(*iterations, 2);
    assert_eq!(metrics.iteration_count, 2);
    assert!(*duration_ms >= 20, "{duration_ms}");
    assert_eq!(metrics.total_duration_ms, *duration_ms);
    assert!(metrics.phase_breakdown.build.is_some_and(|ms| ms >= 10));
    assert_eq!(metrics.agent_metrics.as_ref(), Some(&agent));
}

#[test]
fn completed_keeps_the_execution_metrics_the_caller_filled_in() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
    run.iteration(1, 3, None).succeed();
    let given = ExecutionMetrics {
        total_duration_ms: 9_999,
        iteration_count: 7,
        phase_breakdown: PhaseTimings {
            build: Some(1),
            ..PhaseTimings::default()
        },
        agent_metrics: None,
    };
    run.succeed(&given);
    obs.flush();
    let kinds = kinds(&recorder);
    let Some(EventKind::RunCompleted { metrics, .. }) = kinds.last() else {
        panic!("run_completed last: {kinds:?}");
    };
    assert_eq!(**metrics, given);
}

#[test]
fn logs_inside_a_phase_carry_the_run_the_iteration_and_the_phase() {
    let buffer = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(buffer.clone())
        .start()
        .expect("pipeline starts");
    let log = obs.logger("executor");
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
    let mut iteration = run.iteration(2, 3, None);
    let phase = iteration.phase(Phase::Build);
    phase.in_context(|| log.info("compiling", []));
    phase.succeed();
    iteration.in_context(|| log.info("between phases", []));
    iteration.succeed();
    run.succeed(&ExecutionMetrics::default());
    obs.flush_logs();
    let lines = buffer.log_lines();
    let inside = lines_with_message(&lines, "compiling");
    assert_eq!(inside.len(), 1, "{lines:?}");
    assert_eq!(inside[0]["workOrderId"], "wo-1");
    assert_eq!(inside[0]["runId"], "run-1");
    assert_eq!(inside[0]["iteration"], 2);
    assert_eq!(inside[0]["phase"], "build");
    let between = lines_with_message(&lines, "between phases");
    assert_eq!(between[0]["iteration"], 2);
    assert!(between[0].get("phase").is_none(), "{:?}", between[0]);
}

#[test]
fn a_gate_checked_through_a_guard_carries_its_measured_duration() {
    let obs = quiet().start().expect("pipeline starts");
    let mut run = obs.emitter().start_run("wo-1", "run-1", &spec());
    let mut iteration = run.iteration(1, 3, None);
    let verify = iteration.phase(Phase::Verify);
    let passed = verify.check_gate("tests", || {
        sleep(Duration::from_millis(15));
        true
    });
    assert!(passed);
    verify.succeed();
    iteration.gate_timed("lint", false, Duration::from_millis(3));
    iteration.fail();
    obs.flush();
    let snapshot = &obs.runs()[0];
    let gates = &snapshot.gates;
    assert_eq!(gates[0].name, "tests");
    assert!(gates[0].passed && gates[0].duration_ms.is_some_and(|ms| ms >= 15));
    assert_eq!((gates[1].passed, gates[1].duration_ms), (false, Some(3)));
    drop(run);
}
