//! A full ring: the overflow policies, exact accounting, lifecycle events
//! never dropped, and per-producer ordering under pressure.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgate_obs::event::{EventKind, EventType};
use agentgate_obs::{
    ExecutionMetrics, Observability, Overflow, Phase, ProgressEmitter, RunResult, Strategy,
    TaskSpec,
};
use common::{Recorder, quiet, within};

const POLICIES: [Overflow; 3] = [
    Overflow::DropNewest,
    Overflow::Block,
    Overflow::BlockFor(Duration::from_micros(50)),
];

/// Emits `per_producer` phase events (and a run's lifecycle around them)
/// from each of `producers` threads; returns what the test itself emitted.
fn flood(obs: &Observability, producers: usize, per_producer: u32) -> HashMap<EventType, u64> {
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let emitter = obs.emitter();
            std::thread::spawn(move || {
                let run = format!("run-{p}");
                emitter.emit_run_started("wo", &run, &TaskSpec::new("g", Strategy::Fixed, 1));
                for i in 0..per_producer {
                    emitter.emit_phase_started("wo", &run, i, Phase::Build);
                }
                emitter.emit_run_completed(
                    "wo",
                    &run,
                    RunResult::Passed,
                    &ExecutionMetrics::default(),
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = producers as u64;
    HashMap::from([
        (EventType::RunStarted, n),
        (EventType::PhaseStarted, n * u64::from(per_producer)),
        (EventType::RunCompleted, n),
    ])
}

#[test]
fn accounting_is_exact_with_two_to_four_producers_and_a_tiny_ring_under_every_policy() {
    for policy in POLICIES {
        for producers in 2..=4 {
            let obs = quiet().queue_capacity(4).overflow(policy).start().unwrap();
            let (recorder, _sub) = Recorder::attach(&obs.emitter());
            let sent = flood(&obs, producers, 5_000);
            obs.flush();
            let stats = obs.stats();
            for ty in EventType::ALL {
                let expected = sent.get(&ty).copied().unwrap_or(0);
                assert_eq!(
                    stats.emitted[ty], expected,
                    "{policy:?} {producers} emitted {ty}"
                );
                assert_eq!(
                    stats.processed[ty] + stats.dropped[ty],
                    expected,
                    "{policy:?} {producers}: processed + dropped of {ty}"
                );
            }
            assert_eq!(
                recorder.len() as u64,
                stats.processed.total(),
                "{policy:?}: listener saw every processed event"
            );
            if policy == Overflow::Block {
                assert_eq!(stats.dropped.total(), 0, "Block drops nothing");
            }
        }
    }
}

#[test]
fn lifecycle_events_are_never_dropped_when_the_ring_is_full() {
    let obs = quiet()
        .queue_capacity(2)
        .overflow(Overflow::DropNewest)
        .start()
        .unwrap();
    // A slow listener keeps the ring full.
    let _slow = obs
        .emitter()
        .subscribe(|_| std::thread::sleep(Duration::from_micros(20)));
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let handles: Vec<_> = (0..3)
        .map(|p| {
            let emitter = obs.emitter();
            std::thread::spawn(move || {
                for r in 0..100 {
                    let run = format!("run-{p}-{r}");
                    emitter.emit_run_started("wo", &run, &TaskSpec::new("g", Strategy::Fixed, 1));
                    for i in 0..20 {
                        emitter.emit_phase_started("wo", &run, i, Phase::Build);
                    }
                    match r % 3 {
                        0 => emitter.emit_run_completed(
                            "wo",
                            &run,
                            RunResult::Passed,
                            &ExecutionMetrics::default(),
                        ),
                        1 => emitter.emit_run_canceled("wo", &run, "stop"),
                        _ => emitter.emit_run_failed("wo", &run, "boom"),
                    }
                    emitter.emit_delivery_completed("wo", &run, &Default::default());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    obs.flush();
    let stats = obs.stats();
    assert!(
        stats.dropped[EventType::PhaseStarted] > 0,
        "the test must actually overload the ring"
    );
    for ty in EventType::ALL.into_iter().filter(|t| t.is_lifecycle()) {
        assert_eq!(stats.dropped[ty], 0, "{ty} dropped");
    }
    let seen = recorder.events();
    let count = |ty| seen.iter().filter(|e| e.event_type() == ty).count();
    assert_eq!(count(EventType::RunStarted), 300);
    assert_eq!(count(EventType::DeliveryCompleted), 300);
    assert_eq!(
        count(EventType::RunCompleted)
            + count(EventType::RunCanceled)
            + count(EventType::RunFailed),
        300
    );
    assert_eq!(obs.active_runs(), 0);
}

#[test]
fn each_producers_events_arrive_in_emission_order_under_every_policy() {
    for policy in POLICIES {
        let obs = quiet().queue_capacity(8).overflow(policy).start().unwrap();
        let (recorder, _sub) = Recorder::attach(&obs.emitter());
        let producers = 3;
        flood(&obs, producers, 20_000);
        obs.flush();
        let mut last: HashMap<String, i64> = HashMap::new();
        let mut seen_per_run: HashMap<String, u64> = HashMap::new();
        for e in recorder.events() {
            if let EventKind::PhaseStarted { iteration, .. } = e.kind {
                let prev = last
                    .insert(e.run_id.to_string(), i64::from(iteration))
                    .unwrap_or(-1);
                assert!(
                    i64::from(iteration) > prev,
                    "{policy:?}: {} went {prev} -> {iteration}",
                    e.run_id
                );
                *seen_per_run.entry(e.run_id.to_string()).or_default() += 1;
            }
        }
        if policy == Overflow::Block {
            assert!(
                seen_per_run.values().all(|&n| n == 20_000),
                "Block delivers every event"
            );
        }
        // Lifecycle events frame each producer's stream in order too.
        for p in 0..producers {
            let run = format!("run-{p}");
            let types: Vec<_> = recorder
                .events()
                .into_iter()
                .filter(|e| *e.run_id == run && e.event_type().is_lifecycle())
                .map(|e| e.event_type())
                .collect();
            assert_eq!(
                types,
                [EventType::RunStarted, EventType::RunCompleted],
                "{policy:?}"
            );
        }
    }
}

#[test]
fn block_for_gives_up_after_its_limit_and_counts_the_drop() {
    let obs = quiet()
        .queue_capacity(1)
        .overflow(Overflow::BlockFor(Duration::from_millis(1)))
        .start()
        .unwrap();
    let gate = Arc::new(AtomicBool::new(false));
    let hold = gate.clone();
    // The listener blocks the drain thread until released.
    let _stall = obs.emitter().subscribe(move |_| {
        while !hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let emitter = obs.emitter();
    for i in 0..20 {
        emitter.emit_phase_started("wo", "run", i, Phase::Build);
    }
    gate.store(true, Ordering::Release);
    obs.flush();
    let stats = obs.stats();
    assert!(stats.dropped[EventType::PhaseStarted] >= 17, "{stats:?}");
    assert_eq!(stats.processed.total() + stats.dropped.total(), 20);
}

#[test]
fn a_blocked_emitter_returns_when_the_pipeline_shuts_down() {
    let obs = Arc::new(
        quiet()
            .queue_capacity(1)
            .overflow(Overflow::Block)
            .start()
            .unwrap(),
    );
    let _stall = obs
        .emitter()
        .subscribe(|_| std::thread::sleep(Duration::from_millis(50)));
    let emitter = obs.emitter();
    let producer = std::thread::spawn(move || {
        for i in 0..1_000 {
            emitter.emit_phase_started("wo", "run", i, Phase::Build);
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let o = obs.clone();
    within(Duration::from_secs(10), "shutdown", move || o.shutdown());
    within(Duration::from_secs(10), "the blocked producer", move || {
        producer.join().unwrap()
    });
    let stats = obs.stats();
    assert_eq!(stats.emitted.total(), 1_000);
    assert_eq!(stats.processed.total() + stats.dropped.total(), 1_000);
}

#[test]
fn a_producer_holding_off_a_full_ring_counts_every_drop_and_still_delivers_lifecycle_events() {
    let obs = quiet()
        .queue_capacity(16)
        .overflow(Overflow::DropNewest)
        .start()
        .unwrap();
    let stall = common::Stall::attach(&obs.emitter());
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let emitter = obs.emitter();
    let run = emitter.run("wo", "run");
    run.started(&TaskSpec::new("g", Strategy::Fixed, 1));
    // The ring fills while the drain thread is held; from then on the
    // producer drops without looking at the ring, and counts each drop.
    for i in 0..10_000 {
        run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
        emitter.emit_phase_started("wo", "run", i, Phase::Verify);
    }
    let stats = obs.stats();
    assert_eq!(stats.emitted.total(), 20_001);
    assert!(
        stats.dropped.total() >= 20_001 - 16 - 1,
        "every event the ring had no room for is counted at once: {stats:?}"
    );
    // A lifecycle event waits for room instead of being dropped.
    let o = Arc::new(obs);
    let releaser = {
        let o = o.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stall.release();
            o.flush();
        })
    };
    run.completed(RunResult::Passed, &ExecutionMetrics::default());
    releaser.join().unwrap();
    o.flush();
    let stats = o.stats();
    for ty in EventType::ALL {
        assert_eq!(
            stats.emitted[ty],
            stats.processed[ty] + stats.dropped[ty],
            "{ty}"
        );
        if ty.is_lifecycle() {
            assert_eq!(stats.dropped[ty], 0, "{ty} dropped");
        }
    }
    assert_eq!(stats.emitted.total(), 20_002);
    assert_eq!(recorder.len() as u64, stats.processed.total());
    let types: Vec<_> = recorder
        .events()
        .into_iter()
        .filter(|e| e.event_type().is_lifecycle())
        .map(|e| e.event_type())
        .collect();
    assert_eq!(types, [EventType::RunStarted, EventType::RunCompleted]);
}

#[test]
fn drops_counted_by_a_producer_thread_that_has_exited_stay_counted() {
    let obs = quiet()
        .queue_capacity(4)
        .overflow(Overflow::DropNewest)
        .start()
        .unwrap();
    let stall = common::Stall::attach(&obs.emitter());
    // Made here: the handle's last drop unregisters the run through the
    // ring, which must wait for room.
    let run = obs.emitter().run("wo", "run");
    let handle = run.clone();
    std::thread::spawn(move || {
        let run = handle;
        for i in 0..1_000 {
            run.phase_started(i, Phase::Build);
        }
    })
    .join()
    .unwrap();
    let before = obs.stats();
    stall.release();
    obs.flush();
    let after = obs.stats();
    assert_eq!(after.emitted.total(), 1_000);
    assert!(before.dropped.total() >= 1_000 - 4 - 1, "{before:?}");
    assert_eq!(
        after.dropped, before.dropped,
        "nothing dropped twice or lost"
    );
    assert_eq!(after.processed.total() + after.dropped.total(), 1_000);
}

#[test]
fn blocked_run_handles_keep_their_order_and_lose_nothing_on_a_small_ring() {
    let obs = quiet()
        .queue_capacity(64)
        .overflow(Overflow::Block)
        .start()
        .unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    // A listener slower than the producers keeps the ring full and the
    // producers waiting for room.
    let _slow = obs.emitter().subscribe(|e| {
        if let EventKind::PhaseCompleted { iteration, .. } = e.kind
            && iteration % 100 == 0
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let run = obs.emitter().run("wo", &format!("run-{p}"));
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    obs.flush();
    let stats = obs.stats();
    assert_eq!(stats.dropped.total(), 0);
    assert_eq!(stats.processed.total(), 40_000);
    let mut next: HashMap<String, u32> = HashMap::new();
    for e in recorder.events() {
        if let EventKind::PhaseCompleted { iteration, .. } = e.kind {
            let expected = next.entry(e.run_id.to_string()).or_default();
            assert_eq!(iteration, *expected, "{}", e.run_id);
            *expected += 1;
        }
    }
    assert_eq!(next.values().copied().collect::<Vec<_>>(), [20_000, 20_000]);
}

#[test]
fn a_lifecycle_event_gets_through_while_another_thread_keeps_the_ring_full() {
    // Regression: a waiting producer sent again only once half the ring was
    // free, and a DropNewest flood refilling every slot the drain thread
    // freed kept it from ever being half free.
    let obs = Arc::new(
        quiet()
            .queue_capacity(1_024)
            .overflow(Overflow::DropNewest)
            .start()
            .unwrap(),
    );
    // A drain thread far slower than the flood: half the ring frees only
    // every ~50 ms, and the flood refills each slot within 20 µs.
    let _slow = obs
        .emitter()
        .subscribe(|_| std::thread::sleep(Duration::from_micros(100)));
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let (obs, done) = (obs.clone(), done.clone());
        std::thread::spawn(move || {
            let run = obs.emitter().run("wo", "flood");
            let started = std::time::Instant::now();
            let mut i = 0;
            // Acquire: pairs with the Release below.
            while !done.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(60) {
                run.phase_started(i, Phase::Build);
                i += 1;
            }
        })
    };
    // The flood has filled the ring once it starts dropping.
    let o = obs.clone();
    within(
        Duration::from_secs(10),
        "the flood filling the ring",
        move || {
            while o.stats().dropped[EventType::PhaseStarted] == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        },
    );
    let emitter = obs.emitter();
    within(Duration::from_secs(30), "lifecycle emits", move || {
        for r in 0..20 {
            let run = emitter.run("wo", &format!("run-{r}"));
            run.started(&TaskSpec::new("g", Strategy::Fixed, 1));
            run.completed(RunResult::Passed, &ExecutionMetrics::default());
        }
    });
    // Release: the flood stops at its next look.
    done.store(true, Ordering::Release);
    flood.join().unwrap();
    obs.flush();
    let stats = obs.stats();
    assert_eq!(stats.processed[EventType::RunStarted], 20);
    assert_eq!(stats.processed[EventType::RunCompleted], 20);
    assert!(
        stats.dropped[EventType::PhaseStarted] > 0,
        "the ring was full"
    );
}
