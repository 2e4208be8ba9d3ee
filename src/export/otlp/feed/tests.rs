//! What the feed hands over, and what it counts when the queue is full.

use std::sync::atomic::Ordering;

use crate::event::{EventKind, Phase, RunOutcome, RunResult, TaskSpec};
use crate::export::otlp::spans::SpanData;
use crate::export::otlp::testing::Pipe;
use crate::tracker::RunSlot;

fn slot(index: u32, generation: u32) -> RunSlot {
    RunSlot { index, generation }
}

fn started() -> EventKind {
    EventKind::RunStarted {
        task_spec: TaskSpec::new("g", crate::event::Strategy::Fixed, 2),
    }
}

fn phase_completed(iteration: u32, phase: Phase) -> EventKind {
    EventKind::PhaseCompleted {
        iteration,
        phase,
        success: true,
        duration_ms: 1,
    }
}

fn iteration_started(iteration: u32) -> EventKind {
    EventKind::IterationStarted {
        iteration,
        max_iterations: 3,
        feedback: None,
    }
}

fn failed() -> EventKind {
    EventKind::RunFailed { error: "e".into() }
}

#[test]
fn a_batch_that_finds_the_queue_full_is_dropped_and_its_runs_later_spans_are_counted_too() {
    // Room for 400 steps.
    let mut pipe = Pipe::new(100);
    let (r, s) = (slot(0, 0), slot(1, 0));
    pipe.feed_at("r", r, 1_000, started(), None);
    pipe.flush();
    // The exporter thread takes nothing for a while: the queue fills up,
    // and the next batch is dropped, and with it the build phase's span.
    let held = 400 - 2;
    pipe.queued.fetch_add(held, Ordering::Relaxed);
    let phase_started = EventKind::PhaseStarted {
        iteration: 1,
        phase: Phase::Build,
    };
    pipe.feed_at("r", r, 1_001, phase_started, None);
    pipe.feed_at("r", r, 1_002, phase_completed(1, Phase::Build), None);
    pipe.feed_at("r", r, 1_003, iteration_started(1), None);
    pipe.flush();
    assert_eq!(pipe.dropped(), 1);
    pipe.queued.fetch_sub(held, Ordering::Relaxed);
    // The run lost steps: it makes no span from here on, and the ones it
    // would have made (its open iteration and its root) are counted.
    assert!(pipe.spans().is_empty());
    pipe.feed_at("r", r, 1_004, failed(), None);
    assert_eq!(pipe.dropped(), 3);
    // The exporter thread forgets what it held of it; another run is
    // exported whole.
    pipe.feed_at("s", s, 1_005, started(), None);
    pipe.feed_at("s", s, 1_006, failed(), None);
    let spans = pipe.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(pipe.builder.runs(), 1, "the ended s, not r");
    // Its slot, given to a new run, exports again.
    let again = slot(0, 1);
    pipe.feed_at("t", again, 1_007, started(), None);
    pipe.feed_at("t", again, 1_008, failed(), None);
    assert_eq!(pipe.spans().len(), 1);
    assert_eq!(pipe.dropped(), 3);
}

#[test]
fn a_small_queue_kept_empty_drops_nothing() {
    // Regression: batches the size of the whole queue, plus the
    // second step a run's first event adds, did not fit it even empty.
    let mut pipe = Pipe::new(1);
    let (r, s) = (slot(0, 0), slot(1, 0));
    let phase_started = EventKind::PhaseStarted {
        iteration: 1,
        phase: Phase::Build,
    };
    let events = [
        (r, started()),
        (r, iteration_started(1)),
        (s, started()),
        (r, phase_started),
        (r, phase_completed(1, Phase::Build)),
        (r, failed()),
        (s, failed()),
    ];
    let mut made = 0;
    for (i, (slot, kind)) in events.into_iter().enumerate() {
        pipe.feed_at(
            if slot == r { "r" } else { "s" },
            slot,
            1_000 + i as u64,
            kind,
            None,
        );
        // An exporter thread that takes every batch as it comes.
        made += pipe.take().len();
    }
    made += pipe.spans().len();
    assert_eq!(pipe.dropped(), 0);
    assert_eq!(made, 4, "r's phase, iteration and root, s's root");
}

#[test]
fn of_a_run_after_its_end_only_the_delivery_makes_a_span_under_its_root() {
    let mut pipe = Pipe::new(100);
    let r = slot(0, 0);
    pipe.feed_at("r", r, 1_000, started(), None);
    pipe.feed_at("r", r, 1_001, failed(), None);
    pipe.feed_at("r", r, 1_002, phase_completed(1, Phase::Verify), None);
    pipe.feed_at("r", r, 1_003, failed(), None);
    pipe.feed_at("r", r, 1_004, EventKind::DeliveryStarted, None);
    let delivered = EventKind::DeliveryCompleted {
        success: true,
        pr_url: Some("https://git.example/pr/2".into()),
        ci_status: None,
    };
    pipe.feed_at("r", r, 1_005, delivered, None);
    let spans = pipe.spans();
    let names: Vec<&str> = spans.iter().map(SpanData::name).collect();
    assert_eq!(names, ["run", "delivery"], "one root: {spans:?}");
    let (run, delivery) = (&spans[0], &spans[1]);
    assert_eq!(delivery.parent, Some(run.span_id));
    assert_eq!(delivery.trace_id, run.trace_id);
    assert_eq!(
        (delivery.start_ns, delivery.end_ns),
        (1_004_000_000, 1_005_000_000)
    );
    // A delivery started after the end and never completed ends when the
    // pipeline stops, unfinished.
    pipe.feed_at("r", r, 1_006, EventKind::DeliveryStarted, None);
    pipe.finish();
    let rest = pipe.spans();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].unfinished && rest[0].parent == Some(run.span_id));
    assert_eq!(pipe.closes, 3);
}

/// A small deterministic generator (xorshift64).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Events of a few runs in a few slots, in any order: runs that skip
/// ends, repeat starts, end twice, lose their slot to another.
fn events(seed: u64, count: usize) -> Vec<(RunSlot, EventKind)> {
    let mut random = Random(seed);
    let mut generations = [0u32; 3];
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let index = random.below(3) as usize;
        if random.below(40) == 0 {
            // The tracker evicts the run and gives its slot to another.
            generations[index] += 1;
        }
        let iteration = 1 + random.below(2) as u32;
        let phase = Phase::ALL[random.below(4) as usize];
        let kind = match random.below(13) {
            0 => started(),
            1 => iteration_started(iteration),
            2 => EventKind::IterationCompleted {
                iteration,
                success: true,
                phase_timings: Default::default(),
                gate_results: Vec::new(),
            },
            3 | 4 => EventKind::PhaseStarted { iteration, phase },
            5 | 6 => phase_completed(iteration, phase),
            7 => EventKind::GateChecked {
                iteration,
                gate: "lint".into(),
                passed: true,
                duration_ms: None,
            },
            8 => EventKind::DeliveryStarted,
            9 => EventKind::DeliveryCompleted {
                success: true,
                pr_url: None,
                ci_status: None,
            },
            10 => EventKind::RunCompleted {
                result: RunOutcome::Succeeded,
                engine_result: RunResult::Passed,
                iterations: 1,
                duration_ms: 1,
                metrics: Box::default(),
            },
            11 => EventKind::RunCanceled { reason: "r".into() },
            _ => failed(),
        };
        out.push((slot(index as u32, generations[index]), kind));
    }
    out
}

#[test]
fn the_spans_the_feed_counts_for_each_batch_are_the_spans_the_builder_makes_of_it() {
    for seed in 1..=50 {
        let mut pipe = Pipe::new(1 << 20);
        let mut made = 0;
        for (i, (slot, kind)) in events(seed, 300).into_iter().enumerate() {
            pipe.feed_at("r", slot, 1_000 + i as u64, kind, None);
            if i % 37 == 0 {
                made += pipe.spans().len() as u64;
            }
        }
        pipe.finish();
        made += pipe.spans().len() as u64;
        assert_eq!(made, pipe.closes, "seed {seed}");
        assert_eq!(pipe.builder.open_runs(), 0, "seed {seed}");
        assert_eq!(pipe.dropped(), 0);
    }
}

#[test]
fn under_a_full_queue_every_span_is_made_or_counted_dropped_once() {
    let mut with_drops = 0;
    for seed in 1..=50 {
        let events = events(seed, 300);
        let mut whole = Pipe::new(1 << 20);
        let mut all = 0;
        for (i, (slot, kind)) in events.iter().cloned().enumerate() {
            whole.feed_at("r", slot, 1_000 + i as u64, kind, None);
        }
        whole.finish();
        all += whole.spans().len() as u64;

        // Room for 8 steps; batches taken now and then.
        let mut pipe = Pipe::new(2);
        let mut random = Random(seed);
        let mut made = 0;
        for (i, (slot, kind)) in events.into_iter().enumerate() {
            pipe.feed_at("r", slot, 1_000 + i as u64, kind, None);
            match random.below(12) {
                0 => made += pipe.spans().len() as u64,
                1 => pipe.flush(),
                _ => {}
            }
        }
        pipe.finish();
        made += pipe.spans().len() as u64;
        with_drops += usize::from(pipe.dropped() > 0);
        // (A batch dropped at shutdown leaves the builder holding runs the
        // feed counted dropped: nothing reads them any more.)
        assert_eq!(made + pipe.dropped(), all, "seed {seed}");
    }
    assert!(with_drops > 25, "drops in {with_drops} of 50 sequences");
}
