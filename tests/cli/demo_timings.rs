//! The demo's figures agree with the clock: the durations its events report
//! are the time it really spent, so the dashboard never shows a run p50 of
//! 44 s beside runs that took 3 s of wall time.
#![cfg(feature = "cli")]

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use agentgate_obs::ProgressEvent;
use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::event::EventKind;
use common::Recorder;

fn demo_events(time_scale: f64) -> Vec<ProgressEvent> {
    let obs = common::quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let config = DemoConfig {
        work_orders: 6,
        concurrency: 3,
        seed: 11,
        time_scale,
    };
    run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
    obs.flush();
    recorder.events()
}

// Regression: the demo slept `d × time_scale` but reported `d`, so with
// the default scale every duration was 20× the wall time it took.
#[test]
fn a_demo_runs_reported_duration_never_exceeds_its_wall_time() {
    let events = demo_events(0.002);
    let mut started = HashMap::new();
    let mut checked = 0;
    for e in &events {
        match &e.kind {
            EventKind::RunStarted { .. } => {
                started.insert(e.run_id.clone(), e.timestamp.as_millis());
            }
            EventKind::RunCompleted { duration_ms, .. } => {
                let wall = e.timestamp.as_millis() - started[&e.run_id];
                // Timestamps are whole milliseconds: one of rounding each.
                assert!(
                    *duration_ms <= wall + 2,
                    "{}: reports {duration_ms} ms, took {wall} ms",
                    e.run_id
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 0, "no run completed");
}

#[test]
fn a_phase_reports_the_time_between_its_start_and_completion() {
    let events = demo_events(0.002);
    let mut started = HashMap::new();
    for e in &events {
        match &e.kind {
            EventKind::PhaseStarted { iteration, phase } => {
                started.insert(
                    (e.run_id.clone(), *iteration, *phase),
                    e.timestamp.as_millis(),
                );
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                duration_ms,
                ..
            } => {
                let wall =
                    e.timestamp.as_millis() - started[&(e.run_id.clone(), *iteration, *phase)];
                assert!(
                    *duration_ms <= wall + 2,
                    "{phase:?}: {duration_ms} ms in {wall} ms"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn without_sleeping_the_demo_reports_realistic_unscaled_durations() {
    let events = demo_events(0.0);
    let builds: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PhaseCompleted { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .collect();
    assert!(!builds.is_empty());
    // Phases are drawn around seconds: far above what no sleep takes.
    assert!(builds.iter().all(|&ms| ms >= 100), "{builds:?}");
}
