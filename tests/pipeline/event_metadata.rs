//! Metadata attached to typed emits (`RunHandle::with_metadata`, the
//! guards' `with_metadata`): it reaches every output, redacted, and stays
//! on the one event it was attached to; and gate durations through the
//! `ProgressEmitter` trait.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use agentgate_obs::event::EventKind;
use agentgate_obs::redact::REDACTED;
use agentgate_obs::{Metadata, Phase, ProgressEmitter, RunResult, Strategy, TaskSpec};
use common::ws::Client;
use common::{LogBuffer, Recorder, lines_with_message, quiet};
use serde_json::{Value, json};

fn metadata(value: Value) -> Metadata {
    match value {
        Value::Object(map) => map,
        other => panic!("metadata must be an object, got {other}"),
    }
}

#[test]
fn metadata_attached_to_a_typed_emit_reaches_listeners_on_that_event_only() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let run = obs.emitter().run("wo-1", "run-1");
    run.phase_started(1, Phase::Build);
    run.with_metadata(metadata(json!({"stdoutBytes": 512, "cmd": "cargo check"})))
        .phase_completed(1, Phase::Build, true, Duration::from_millis(7));
    run.phase_started(1, Phase::Snapshot);
    run.phase_completed(1, Phase::Snapshot, true, Duration::from_millis(1));
    obs.flush();
    let events = recorder.events();
    let with: Vec<Option<Value>> = events
        .iter()
        .map(|e| e.metadata.as_ref().map(|m| Value::Object((**m).clone())))
        .collect();
    assert_eq!(
        with,
        [
            None,
            Some(json!({"stdoutBytes": 512, "cmd": "cargo check"})),
            None,
            None
        ]
    );
    assert!(matches!(
        events[1].kind,
        EventKind::PhaseCompleted {
            duration_ms: 7,
            success: true,
            ..
        }
    ));
}

#[test]
fn every_typed_emit_can_carry_metadata_and_one_arc_can_serve_several() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let run = obs.emitter().run("wo-1", "run-1");
    let shared = Arc::new(metadata(json!({"host": "ci-7"})));
    let spec = TaskSpec::new("g", Strategy::Fixed, 1);
    run.with_metadata(shared.clone()).started(&spec);
    run.with_metadata(shared.clone())
        .iteration_started(1, 1, Some("f"));
    run.with_metadata(shared.clone())
        .phase_started(1, Phase::Verify);
    run.with_metadata(shared.clone())
        .gate_checked(1, "a-gate-name-longer-than-fifteen", true);
    run.with_metadata(shared.clone()).gate_checked_timed(
        1,
        "lint",
        false,
        Duration::from_millis(3),
    );
    run.with_metadata(shared.clone())
        .iteration_completed(1, false, &Default::default());
    run.with_metadata(shared.clone()).delivery_started();
    run.with_metadata(shared.clone())
        .delivery_completed(&Default::default());
    run.with_metadata(shared.clone())
        .completed(RunResult::FailedVerification, &Default::default());
    obs.flush();
    let events = recorder.events();
    assert_eq!(events.len(), 9);
    for event in &events {
        let got = event.metadata.as_deref().expect("metadata on every event");
        assert_eq!(got["host"], "ci-7", "{}", event.event_type());
    }
    assert!(matches!(
        events[4].kind,
        EventKind::GateChecked {
            duration_ms: Some(3),
            ..
        }
    ));
}

#[test]
fn metadata_on_a_typed_emit_is_in_the_websocket_json_and_the_log_line() {
    let buffer = LogBuffer::new();
    let obs = agentgate_obs::Observability::builder()
        .log_to(buffer.clone())
        .serve("127.0.0.1:0")
        .start()
        .expect("pipeline starts");
    let mut client = Client::connect(obs.local_addr().expect("serving"), "/ws");
    assert_eq!(client.next_json()["type"], "hello");
    let run = obs.emitter().run("wo-1", "run-1");
    run.with_metadata(metadata(json!({"exitCode": 0, "stderrBytes": 3})))
        .phase_completed(1, Phase::Build, true, Duration::from_millis(5));
    obs.flush();
    let message = client.next_json();
    assert_eq!(message["type"], "phase:completed");
    assert_eq!(
        message["metadata"],
        json!({"exitCode": 0, "stderrBytes": 3})
    );
    assert_eq!(message["durationMs"], 5);
    drop(client);
    obs.shutdown();
    let lines = buffer.log_lines();
    let progress = lines_with_message(&lines, "Progress: phase_completed");
    let line = progress.first().expect("a progress line");
    assert_eq!(line["metadata"], json!({"exitCode": 0, "stderrBytes": 3}));
    assert_eq!(line["phase"], "build");
}

#[test]
fn metadata_on_a_typed_emit_is_redacted_like_everything_else() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let run = obs.emitter().run("wo-1", "run-1");
    run.with_metadata(metadata(json!({
        "apiKey": "k-123",
        "remote": "https://bot:s3cr3t@git.example.com/x",
        "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
    })))
    .gate_checked(1, "tests", true);
    obs.flush();
    let event = recorder.events().pop().expect("one event");
    let got = event.metadata.expect("metadata");
    assert_eq!(got["apiKey"], REDACTED);
    let remote = got["remote"].as_str().unwrap_or_default();
    assert!(!remote.contains("s3cr3t"), "{remote}");
    assert_eq!(got["sha"], "3f786850e387550fdab836ed7e6dc881de23001b");
}

#[test]
fn guard_metadata_lands_on_the_end_event_however_the_guard_ends() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let spec = TaskSpec::new("g", Strategy::Fixed, 1);
    {
        let run = obs.emitter().start_run("wo-1", "run-1", &spec);
        let mut run = run.with_metadata(metadata(json!({"of": "run"})));
        let mut iteration = run
            .iteration(1, 1, None)
            .with_metadata(metadata(json!({"of": "iteration"})));
        let phase = iteration.phase(Phase::Build);
        phase.with_metadata(metadata(json!({"of": "build"}))).fail();
        // Dropped, not ended: the metadata still goes with the failure.
        let _phase = iteration
            .phase(Phase::Verify)
            .with_metadata(metadata(json!({"of": "verify"})));
    }
    obs.flush();
    let seen: Vec<(&str, Option<Value>)> = recorder
        .events()
        .iter()
        .map(|e| {
            let of = e.metadata.as_ref().map(|m| m["of"].clone());
            (e.event_type().as_str(), of)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("run_started", None),
            ("iteration_started", None),
            ("phase_started", None),
            ("phase_completed", Some(json!("build"))),
            ("phase_started", None),
            ("phase_completed", Some(json!("verify"))),
            ("iteration_completed", Some(json!("iteration"))),
            ("run_failed", Some(json!("run"))),
        ]
    );
}

#[test]
fn a_timed_gate_through_the_trait_carries_its_duration_on_the_emitter() {
    let obs = quiet().start().expect("pipeline starts");
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let emitter: &dyn ProgressEmitter = &obs.emitter();
    emitter.emit_gate_checked_timed("wo-1", "run-1", 1, "lint", true, Duration::from_millis(42));
    obs.flush();
    let event = recorder.events().pop().expect("one event");
    assert!(matches!(
        event.kind,
        EventKind::GateChecked {
            duration_ms: Some(42),
            passed: true,
            ..
        }
    ));
}
