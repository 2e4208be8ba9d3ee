//! The spans of runs, fed as the pipeline feeds them: through the drain
//! thread's feed, then the builder.

use std::sync::Arc;

use crate::event::{
    EventKind, ExecutionMetrics, Metadata, Phase, ProgressEvent, RunOutcome, RunResult, Strategy,
    TaskSpec, Timestamp, TraceId,
};
use crate::export::otlp::spans::{SpanData, Status, What};
use crate::export::otlp::testing::Pipe;
use crate::pipeline::drain::EventInfo;
use crate::tracker::RunSlot;

/// As the tracker would place it: a slot per run name's length.
fn slot_of(run: &str) -> RunSlot {
    RunSlot {
        index: run.len() as u32,
        generation: 0,
    }
}

fn feed(pipe: &mut Pipe, run: &str, millis: u64, kind: EventKind, nanos: Option<u64>) {
    pipe.feed_at(run, slot_of(run), millis, kind, nanos);
}

fn started() -> EventKind {
    EventKind::RunStarted {
        task_spec: TaskSpec::new("g", Strategy::Fixed, 2),
    }
}

#[test]
fn a_phase_span_lasts_its_measured_duration_and_nests_in_its_iteration_under_the_run() {
    let mut sink = Pipe::new(100);
    feed(&mut sink, "r", 1_000, started(), None);
    feed(
        &mut sink,
        "r",
        1_001,
        EventKind::IterationStarted {
            iteration: 1,
            max_iterations: 2,
            feedback: None,
        },
        None,
    );
    feed(
        &mut sink,
        "r",
        1_002,
        EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Build,
        },
        None,
    );
    let done = EventKind::PhaseCompleted {
        iteration: 1,
        phase: Phase::Build,
        success: false,
        duration_ms: 7,
    };
    feed(&mut sink, "r", 1_010, done, Some(7_400_000));
    let iteration_done = EventKind::IterationCompleted {
        iteration: 1,
        success: false,
        phase_timings: Default::default(),
        gate_results: Vec::new(),
    };
    feed(&mut sink, "r", 1_011, iteration_done, None);
    let completed = EventKind::RunCompleted {
        result: RunOutcome::Failed,
        engine_result: RunResult::FailedBuild,
        iterations: 1,
        duration_ms: 12,
        metrics: Box::new(ExecutionMetrics::default()),
    };
    feed(&mut sink, "r", 1_012, completed, None);
    let spans = sink.spans();
    let names: Vec<&str> = spans.iter().map(SpanData::name).collect();
    assert_eq!(names, ["phase build", "iteration", "run"]);
    let (phase, iteration, run) = (&spans[0], &spans[1], &spans[2]);
    assert_eq!(phase.start_ns, 1_002_000_000);
    assert_eq!(phase.end_ns - phase.start_ns, 7_400_000);
    assert_eq!(phase.parent, Some(iteration.span_id));
    assert_eq!(iteration.parent, Some(run.span_id));
    assert_eq!(run.parent, None);
    assert_eq!(phase.status, Status::Error("phase build failed".into()));
    assert_eq!(iteration.status, Status::Unset);
    assert_eq!(run.status, Status::Error("run failed: failed_build".into()));
    assert!(spans.iter().all(|s| s.trace_id == run.trace_id));
}

#[test]
fn a_run_the_tracker_let_go_ends_unfinished_when_its_slot_takes_another_run() {
    let mut sink = Pipe::new(100);
    let iteration = || EventKind::IterationStarted {
        iteration: 1,
        max_iterations: 2,
        feedback: None,
    };
    let first = RunSlot {
        index: 0,
        generation: 0,
    };
    sink.feed_at("a", first, 1_000, started(), None);
    sink.feed_at("a", first, 1_001, iteration(), None);
    feed(&mut sink, "bb", 1_002, started(), None);
    // The tracker evicted "a" and gave its slot to "ccc".
    let reused = RunSlot {
        index: 0,
        generation: 1,
    };
    sink.feed_at("ccc", reused, 1_003, started(), None);
    let spans = sink.spans();
    assert_eq!(spans.len(), 2, "the evicted run's iteration and root");
    assert!(
        spans
            .iter()
            .all(|s| s.unfinished && s.end_ns == 1_003_000_000)
    );
    assert!(matches!(&spans[1].what, What::Run(info) if &*info.run_id == "a"));
    assert_eq!(sink.builder.open_runs(), 2);
    // At shutdown the two still open go out too, unfinished.
    sink.finish();
    let rest = sink.spans();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|s| s.unfinished && s.end_ns >= s.start_ns));
    assert_eq!(sink.builder.open_runs(), 0);
}

#[test]
fn a_runs_ids_strings_and_gates_reach_its_spans_across_hand_offs() {
    let mut sink = Pipe::new(100);
    let slot = slot_of("rr");
    let feed = |sink: &mut Pipe, millis: u64, kind: EventKind| {
        let mut event = ProgressEvent::new("wo-9", "rr", kind);
        event.correlation_id = Arc::from("corr-1");
        event.timestamp = Timestamp::from_millis(millis);
        event.trace_id = TraceId::from_bytes([7; 16]);
        if matches!(event.kind, EventKind::RunStarted { .. }) {
            let mut metadata = Metadata::new();
            metadata.insert("k".into(), serde_json::json!("v"));
            event.metadata = Some(Arc::new(metadata));
        }
        let info = EventInfo::at_slot(slot, None);
        sink.event(&event, &info);
    };
    let gate = |iteration: u32, gate: &str, passed: bool| EventKind::GateChecked {
        iteration,
        gate: gate.into(),
        passed,
        duration_ms: Some(3),
    };
    feed(
        &mut sink,
        1_000,
        EventKind::RunStarted {
            task_spec: TaskSpec::new("ship it", Strategy::Fixed, 2),
        },
    );
    let iteration = EventKind::IterationStarted {
        iteration: 1,
        max_iterations: 2,
        feedback: None,
    };
    feed(&mut sink, 1_001, iteration);
    feed(&mut sink, 1_002, gate(1, "lint", true));
    // A hand-off between a run's events: its later spans go in
    // another batch, which must carry the run's trace and root again.
    let mut spans = sink.spans();
    assert!(spans.is_empty());
    let long = "a gate whose name is longer than most";
    feed(&mut sink, 1_003, gate(1, long, false));
    feed(&mut sink, 1_004, gate(9, "orphan", true));
    let iteration_done = EventKind::IterationCompleted {
        iteration: 1,
        success: false,
        phase_timings: Default::default(),
        gate_results: Vec::new(),
    };
    feed(&mut sink, 1_005, iteration_done);
    spans.extend(sink.spans());
    feed(&mut sink, 1_006, EventKind::DeliveryStarted);
    let delivered = EventKind::DeliveryCompleted {
        success: true,
        pr_url: Some("https://git.example/pr/1".into()),
        ci_status: Some("green".into()),
    };
    feed(&mut sink, 1_007, delivered);
    let canceled = EventKind::RunCanceled {
        reason: "user asked".into(),
    };
    feed(&mut sink, 1_008, canceled);
    spans.extend(sink.spans());

    let names: Vec<&str> = spans.iter().map(SpanData::name).collect();
    assert_eq!(names, ["iteration", "delivery", "run"]);
    let (iteration, delivery, run) = (&spans[0], &spans[1], &spans[2]);
    assert!(spans.iter().all(|s| s.trace_id == run.trace_id));
    assert_eq!(iteration.parent, Some(run.span_id));
    assert_eq!(delivery.parent, Some(run.span_id));
    let gates = |s: &SpanData| -> Vec<(String, bool)> {
        s.gates.iter().map(|g| (g.gate.clone(), g.passed)).collect()
    };
    assert_eq!(
        gates(iteration),
        [("lint".to_owned(), true), (long.to_owned(), false)]
    );
    assert_eq!(gates(run), [("orphan".to_owned(), true)]);
    assert!(matches!(
        &delivery.what,
        What::Delivery { success: Some(true), pr_url: Some(url), ci_status: Some(ci) }
            if url == "https://git.example/pr/1" && ci == "green"
    ));
    let What::Run(info) = &run.what else {
        panic!("the root is the run: {run:?}")
    };
    assert_eq!(&*info.work_order_id, "wo-9");
    assert_eq!(&*info.run_id, "rr");
    assert_eq!(info.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(info.task, Some((Strategy::Fixed, 2, "ship it".to_owned())));
    assert_eq!(info.pr_url.as_deref(), Some("https://git.example/pr/1"));
    assert_eq!(info.outcome, Some(RunOutcome::Canceled));
    assert_eq!(info.error_type, Some("canceled"));
    assert_eq!(run.status, Status::Error("user asked".into()));
    let metadata = run.metadata.as_ref().expect("the run's start metadata");
    assert_eq!(metadata.get("k"), Some(&serde_json::json!("v")));
    assert!(!run.unfinished && !iteration.unfinished);
}

#[test]
fn repeated_phases_iterations_and_deliveries_get_span_ids_unique_in_their_trace() {
    let mut sink = Pipe::new(100);
    let iteration = |iteration| EventKind::IterationStarted {
        iteration,
        max_iterations: 2,
        feedback: None,
    };
    let iteration_done = |iteration| EventKind::IterationCompleted {
        iteration,
        success: false,
        phase_timings: Default::default(),
        gate_results: Vec::new(),
    };
    let verify = |sink: &mut Pipe, millis| {
        let started = EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Verify,
        };
        feed(sink, "r", millis, started, None);
        let done = EventKind::PhaseCompleted {
            iteration: 1,
            phase: Phase::Verify,
            success: false,
            duration_ms: 1,
        };
        feed(sink, "r", millis + 1, done, None);
    };
    let delivery = |sink: &mut Pipe, millis| {
        feed(sink, "r", millis, EventKind::DeliveryStarted, None);
        let done = EventKind::DeliveryCompleted {
            success: false,
            pr_url: None,
            ci_status: None,
        };
        feed(sink, "r", millis + 1, done, None);
    };
    feed(&mut sink, "r", 1_000, started(), None);
    feed(&mut sink, "r", 1_001, iteration(1), None);
    verify(&mut sink, 1_002);
    verify(&mut sink, 1_004);
    feed(&mut sink, "r", 1_006, iteration_done(1), None);
    // The engine numbers its retry of the iteration 1 again.
    feed(&mut sink, "r", 1_007, iteration(1), None);
    verify(&mut sink, 1_008);
    feed(&mut sink, "r", 1_010, iteration_done(1), None);
    delivery(&mut sink, 1_011);
    delivery(&mut sink, 1_013);
    let failed = EventKind::RunFailed {
        error: "no pull request".into(),
    };
    feed(&mut sink, "r", 1_015, failed, None);
    // A delivery after the run's end: a third try.
    delivery(&mut sink, 1_016);
    let spans = sink.spans();

    let names: Vec<&str> = spans.iter().map(SpanData::name).collect();
    assert_eq!(
        names,
        [
            "phase verify",
            "phase verify",
            "iteration",
            "phase verify",
            "iteration",
            "delivery",
            "delivery",
            "run",
            "delivery"
        ]
    );
    let mut ids: Vec<_> = spans.iter().map(|s| s.span_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "span ids repeat: {spans:?}");
    // Each phase nests in the iteration open when it ran.
    assert_eq!(spans[0].parent, Some(spans[2].span_id));
    assert_eq!(spans[1].parent, Some(spans[2].span_id));
    assert_eq!(spans[3].parent, Some(spans[4].span_id));
    let root = spans[7].span_id;
    assert!(
        [2, 4, 5, 6, 8]
            .iter()
            .all(|&i| spans[i].parent == Some(root))
    );
}
