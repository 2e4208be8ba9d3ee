//! The run tracker: state of each run, terminal exactly once, exact
//! `active_runs`, bounded memory, and what it does with odd input.

use crate::common;

use std::time::Duration;

use agentgate_obs::event::EventType;
use agentgate_obs::runs::{RunStatus, StepStatus};
use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Overflow, Phase, PhaseTimings, ProgressEmitter, RunResult,
    Strategy, TaskSpec,
};
use common::{Recorder, quiet};

#[test]
fn a_run_is_tracked_through_iterations_phases_gates_and_delivery() {
    let obs = quiet().start().unwrap();
    let run = obs.emitter().run("wo-7", "run-7");
    run.started(&TaskSpec::new("Fix it", Strategy::Ralph, 3));
    run.iteration_started(1, 3, None);
    run.phase_started(1, Phase::Build);
    run.phase_completed(1, Phase::Build, true, Duration::from_millis(120));
    run.phase_started(1, Phase::Verify);
    obs.flush();
    let live = &obs.runs()[0];
    assert_eq!(live.status, RunStatus::Running);
    assert_eq!((live.iteration, live.max_iterations), (1, 3));
    assert_eq!(
        (live.phase, live.phase_status),
        (Some(Phase::Verify), Some(StepStatus::Running))
    );
    assert_eq!(obs.active_runs(), 1);

    run.gate_checked_timed(1, "lint", true, Duration::from_millis(9));
    run.gate_checked(1, "a-rather-long-gate-name-that-does-not-fit-inline", false);
    run.phase_completed(1, Phase::Verify, false, Duration::from_millis(300));
    run.iteration_completed(
        1,
        false,
        &PhaseTimings {
            build: Some(120),
            verify: Some(300),
            ..Default::default()
        },
    );
    run.iteration_started(2, 3, Some("lint failed"));
    run.phase_completed(2, Phase::Build, true, Duration::from_millis(80));
    run.delivery_started();
    run.delivery_completed(&DeliveryResult {
        success: true,
        pr_url: Some("https://example.com/pr/1".into()),
        ci_status: Some("pending".into()),
    });
    run.completed(RunResult::Passed, &ExecutionMetrics::default());
    obs.flush();

    let done = &obs.runs()[0];
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.engine_result, Some(RunResult::Passed));
    assert_eq!(done.iteration, 2);
    assert_eq!(done.phase_timings.build, Some(200));
    assert_eq!(done.phase_timings.verify, Some(300));
    let delivery = done.delivery.as_ref().unwrap();
    assert_eq!(delivery.status, StepStatus::Succeeded);
    assert_eq!(delivery.pr_url.as_deref(), Some("https://example.com/pr/1"));
    assert!(done.finished_at.is_some());
    assert_eq!(obs.active_runs(), 0);
}

#[test]
fn iteration_completed_reports_the_gates_checked_in_that_iteration() {
    let obs = quiet().start().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let run = obs.emitter().run("wo", "run");
    run.iteration_started(1, 2, None);
    run.gate_checked_timed(1, "lint", true, Duration::from_millis(5));
    run.gate_checked(1, "tests", false);
    run.iteration_completed(1, false, &PhaseTimings::default());
    run.iteration_started(2, 2, None);
    run.gate_checked(2, "tests", true);
    run.iteration_completed(2, true, &PhaseTimings::default());
    obs.flush();
    let gates: Vec<Vec<(String, bool)>> = recorder
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            agentgate_obs::event::EventKind::IterationCompleted { gate_results, .. } => Some(
                gate_results
                    .into_iter()
                    .map(|g| (g.name, g.passed))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        gates,
        [
            vec![("lint".to_owned(), true), ("tests".to_owned(), false)],
            vec![("tests".to_owned(), true)]
        ]
    );
}

#[test]
fn active_runs_returns_to_zero_whatever_mix_of_terminal_events_arrives_duplicates_included() {
    let obs = quiet()
        .queue_capacity(256)
        .overflow(Overflow::Block)
        .start()
        .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let emitter = obs.emitter();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for r in 0..500 {
                    let run = format!("run-{t}-{r}");
                    if rng.bool() {
                        emitter.emit_run_started(
                            "wo",
                            &run,
                            &TaskSpec::new("g", Strategy::Fixed, 2),
                        );
                    }
                    emitter.emit_phase_started("wo", &run, 1, Phase::Build);
                    for _ in 0..rng.usize(1..=3) {
                        match rng.u8(0..3) {
                            0 => emitter.emit_run_completed(
                                "wo",
                                &run,
                                RunResult::ALL[rng.usize(..RunResult::ALL.len())],
                                &ExecutionMetrics::default(),
                            ),
                            1 => emitter.emit_run_canceled("wo", &run, "x"),
                            _ => emitter.emit_run_failed("wo", &run, "y"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    obs.flush();
    assert_eq!(obs.active_runs(), 0);
    assert!(obs.runs().iter().all(|r| r.is_terminal()));
}

#[test]
fn the_first_terminal_event_wins_and_later_ones_change_nothing() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    emitter.emit_run_started("wo", "r", &TaskSpec::new("g", Strategy::Fixed, 1));
    emitter.emit_run_canceled("wo", "r", "user");
    emitter.emit_run_completed("wo", "r", RunResult::Passed, &ExecutionMetrics::default());
    emitter.emit_run_failed("wo", "r", "late");
    emitter.emit_run_canceled("wo", "r", "again");
    obs.flush();
    let run = &obs.runs()[0];
    assert_eq!(run.status, RunStatus::Canceled);
    assert_eq!(run.reason.as_deref(), Some("user"));
    assert_eq!(run.engine_result, None);
    assert_eq!(obs.active_runs(), 0);
    // Every emitted event is still delivered and counted.
    assert_eq!(obs.stats().processed.total(), 5);
}

#[test]
fn events_for_unknown_runs_create_them_and_a_terminal_first_event_is_never_active() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    emitter.emit_phase_started("wo", "no-start", 1, Phase::Build);
    emitter.emit_run_failed("wo", "only-terminal", "boom");
    obs.flush();
    assert_eq!(obs.active_runs(), 1);
    let runs = obs.runs();
    assert_eq!(runs.len(), 2);
    let only_terminal = runs.iter().find(|r| &*r.run_id == "only-terminal").unwrap();
    assert_eq!(only_terminal.status, RunStatus::Failed);
    emitter.emit_run_completed(
        "wo",
        "no-start",
        RunResult::FailedBuild,
        &ExecutionMetrics::default(),
    );
    obs.flush();
    assert_eq!(obs.active_runs(), 0);
}

#[test]
fn finished_runs_are_kept_up_to_the_bound_and_late_events_do_not_resurrect_them() {
    let obs = quiet().finished_runs(10).start().unwrap();
    let emitter = obs.emitter();
    for r in 0..100 {
        let run = format!("run-{r:03}");
        emitter.emit_run_started("wo", &run, &TaskSpec::new("g", Strategy::Fixed, 1));
        emitter.emit_run_completed("wo", &run, RunResult::Passed, &ExecutionMetrics::default());
    }
    emitter.emit_run_started(
        "wo",
        "still-running",
        &TaskSpec::new("g", Strategy::Fixed, 1),
    );
    obs.flush();
    let runs = obs.runs();
    assert_eq!(runs.len(), 11);
    assert!(runs.iter().any(|r| &*r.run_id == "run-099"));
    assert!(!runs.iter().any(|r| &*r.run_id == "run-000"));
    // A late event for an evicted run is ignored, not counted active.
    emitter.emit_phase_started("wo", "run-000", 1, Phase::Build);
    obs.flush();
    assert_eq!(obs.active_runs(), 1);
    assert_eq!(obs.runs().len(), 11);
}

#[test]
fn the_same_run_through_the_str_api_and_a_run_handle_is_one_run() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    emitter.emit_run_started("wo", "r", &TaskSpec::new("g", Strategy::Fixed, 1));
    emitter.run("wo", "r").phase_started(1, Phase::Build);
    emitter.emit_run_canceled("wo", "r", "stop");
    obs.flush();
    assert_eq!(obs.runs().len(), 1);
    assert_eq!(obs.active_runs(), 0);
    // Same run id under another work order is another run.
    emitter.emit_run_started("wo-2", "r", &TaskSpec::new("g", Strategy::Fixed, 1));
    obs.flush();
    assert_eq!(obs.runs().len(), 2);
    assert_eq!(obs.stats().processed[EventType::RunStarted], 2);
}

#[test]
fn more_runs_per_thread_than_the_id_cache_holds_keep_their_identity() {
    let obs = quiet().overflow(Overflow::Block).start().unwrap();
    let emitter = obs.emitter();
    // Cycle through 40 runs so every emit misses the 16-entry thread cache.
    for round in 0..5 {
        for r in 0..40 {
            emitter.emit_phase_started("wo", &format!("run-{r}"), round, Phase::Build);
        }
    }
    obs.flush();
    let runs = obs.runs();
    assert_eq!(runs.len(), 40);
    assert!(runs.iter().all(|r| r.events == 5 && r.iteration == 4));
}
