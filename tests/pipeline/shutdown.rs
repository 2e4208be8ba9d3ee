//! `flush()` and `shutdown()`: what they promise and that they never hang.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgate_obs::{Overflow, Phase, ProgressEmitter};
use common::{Recorder, quiet, within};

#[test]
fn flush_returns_after_every_earlier_event_reached_every_listener() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    let (recorder, _sub) = Recorder::attach(&emitter);
    for round in 1..=20 {
        for i in 0..100 {
            emitter.emit_phase_started("wo", "run", i, Phase::Build);
        }
        obs.flush();
        assert_eq!(recorder.len(), round * 100);
        let stats = obs.stats();
        assert_eq!(stats.processed.total(), stats.emitted.total());
        assert_eq!(stats.queue_depth, 0);
    }
}

#[test]
fn flush_covers_events_of_threads_that_finished_before_it() {
    let obs = quiet().start().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let emitter = obs.emitter();
            std::thread::spawn(move || {
                for i in 0..1_000 {
                    emitter.emit_phase_started("wo", &format!("run-{t}"), i, Phase::Build);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    obs.flush();
    assert_eq!(recorder.len(), 4_000);
    assert_eq!(obs.stats().emitted.total(), 4_000);
}

#[test]
fn shutdown_under_load_returns_promptly_with_nothing_accepted_left_unprocessed() {
    for policy in [Overflow::DropNewest, Overflow::Block] {
        let obs = Arc::new(
            quiet()
                .queue_capacity(1_024)
                .overflow(policy)
                .start()
                .unwrap(),
        );
        let (recorder, _sub) = Recorder::attach(&obs.emitter());
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (emitter, stop) = (obs.emitter(), stop.clone());
                std::thread::spawn(move || {
                    let run = emitter.run("wo", &format!("run-{p}"));
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let o = obs.clone();
        within(Duration::from_secs(10), "shutdown under load", move || {
            o.shutdown()
        });
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        let stats = obs.stats();
        assert!(stats.processed.total() > 0);
        assert_eq!(
            stats.emitted.total(),
            stats.processed.total() + stats.dropped.total(),
            "{policy:?}"
        );
        assert_eq!(
            recorder.len() as u64,
            stats.processed.total(),
            "{policy:?}: listeners saw all processed"
        );
    }
}

#[test]
fn emits_after_shutdown_are_counted_as_dropped_and_flush_returns() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    emitter.emit_phase_started("wo", "run", 1, Phase::Build);
    obs.shutdown();
    obs.shutdown(); // idempotent
    emitter.emit_phase_started("wo", "run", 2, Phase::Build);
    emitter.run("wo", "other").phase_started(1, Phase::Build);
    obs.flush();
    let stats = obs.stats();
    assert_eq!(stats.emitted.total(), 3);
    assert_eq!(stats.processed.total(), 1);
    assert_eq!(stats.dropped.total(), 2);
    // The tracker's last state is still readable.
    assert_eq!(obs.runs().len(), 1);
}

#[test]
fn dropping_the_pipeline_processes_what_was_accepted() {
    let obs = quiet().start().unwrap();
    let (recorder, sub) = Recorder::attach(&obs.emitter());
    let emitter = obs.emitter();
    for i in 0..10_000 {
        emitter.emit_phase_started("wo", "run", i, Phase::Build);
    }
    drop(obs);
    std::mem::forget(sub);
    assert_eq!(recorder.len(), 10_000);
}

#[test]
fn a_listener_calling_flush_does_not_deadlock() {
    let obs = Arc::new(quiet().start().unwrap());
    let inner = Arc::downgrade(&obs);
    let _sub = obs.emitter().subscribe(move |_| {
        if let Some(obs) = inner.upgrade() {
            obs.flush();
        }
    });
    let o = obs.clone();
    within(
        Duration::from_secs(10),
        "flush from a listener",
        move || {
            o.emitter().emit_phase_started("wo", "run", 1, Phase::Build);
            o.flush();
        },
    );
}
