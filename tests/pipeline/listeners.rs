//! Listeners: isolation from panics, unsubscribing, subscribing mid-stream.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use agentgate_obs::event::EventKind;
use agentgate_obs::{Overflow, Phase, ProgressEmitter, Subscription};
use common::{Recorder, quiet};
use parking_lot::Mutex;

#[test]
fn a_panicking_listener_does_not_disturb_the_others_and_is_counted() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    let before = Recorder::attach(&emitter);
    let _bad = emitter.subscribe(|e| {
        if let EventKind::PhaseStarted { iteration, .. } = e.kind
            && iteration % 2 == 0
        {
            panic!("listener bug on iteration {iteration}");
        }
    });
    let after = Recorder::attach(&emitter);
    for i in 0..100 {
        emitter.emit_phase_started("wo", "run", i, Phase::Build);
    }
    obs.flush();
    assert_eq!(before.0.len(), 100);
    assert_eq!(after.0.len(), 100);
    assert_eq!(obs.stats().listener_panics, 50);
    // The pipeline goes on after the panics.
    emitter.emit_phase_started("wo", "run", 1, Phase::Build);
    obs.flush();
    assert_eq!(after.0.len(), 101);
}

#[test]
fn a_listener_can_unsubscribe_itself_from_inside_its_call() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    let calls = Arc::new(AtomicU32::new(0));
    let slot: Arc<Mutex<Option<Subscription>>> = Arc::default();
    let (c, s) = (calls.clone(), slot.clone());
    let sub = emitter.subscribe(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
        drop(s.lock().take());
    });
    *slot.lock() = Some(sub);
    for i in 0..50 {
        emitter.emit_phase_started("wo", "run", i, Phase::Build);
    }
    obs.flush();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn a_dropped_subscription_stops_its_listener() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    let (recorder, sub) = Recorder::attach(&emitter);
    emitter.emit_phase_started("wo", "run", 1, Phase::Build);
    obs.flush();
    drop(sub);
    emitter.emit_phase_started("wo", "run", 2, Phase::Build);
    obs.flush();
    assert_eq!(recorder.len(), 1);
}

#[test]
fn a_listener_subscribed_while_events_flow_sees_a_gapless_suffix() {
    let obs = quiet()
        .queue_capacity(64)
        .overflow(Overflow::Block)
        .start()
        .unwrap();
    let emitter = obs.emitter();
    let stop = Arc::new(AtomicBool::new(false));
    let (producer_emitter, producer_stop) = (emitter.clone(), stop.clone());
    let producer = std::thread::spawn(move || {
        let run = producer_emitter.run("wo", "run");
        let mut i = 0;
        while !producer_stop.load(Ordering::Relaxed) {
            run.phase_started(i, Phase::Build);
            i += 1;
        }
        i
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (recorder, _sub) = Recorder::attach(&emitter);
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let emitted = producer.join().unwrap();
    obs.flush();
    let seen: Vec<u32> = recorder
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::PhaseStarted { iteration, .. } => Some(iteration),
            _ => None,
        })
        .collect();
    assert!(!seen.is_empty(), "the listener saw events");
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap and no duplicate"
    );
    assert_eq!(
        *seen.last().unwrap(),
        emitted - 1,
        "everything up to the last event"
    );
}

#[test]
fn events_a_listener_emits_are_processed_and_never_dropped() {
    let obs = quiet().queue_capacity(1).start().unwrap();
    let emitter = obs.emitter();
    let echo = emitter.clone();
    let _echo = emitter.subscribe(move |e| {
        if let EventKind::PhaseStarted { iteration, .. } = e.kind
            && e.run_id.as_ref() == "run"
        {
            echo.emit_phase_started("wo", "echo", iteration, Phase::Verify);
        }
    });
    let (recorder, _sub) = Recorder::attach(&emitter);
    let run = emitter.run("wo", "run");
    obs.flush(); // the registration leaves the one-slot ring empty
    for i in 0..200 {
        run.phase_started(i, Phase::Build);
        obs.flush(); // keep the ring from dropping the originals
    }
    let echoes = recorder
        .events()
        .iter()
        .filter(|e| e.run_id.as_ref() == "echo")
        .count();
    assert_eq!(echoes, 200);
    assert_eq!(obs.stats().dropped.total(), 0);
}

#[test]
fn listeners_run_on_the_drain_thread_not_the_engines() {
    let obs = quiet().start().unwrap();
    let emitter = obs.emitter();
    let caller = std::thread::current().id();
    let on_caller = Arc::new(AtomicU64::new(0));
    let flag = on_caller.clone();
    let _sub = emitter.subscribe(move |_| {
        if std::thread::current().id() == caller {
            flag.fetch_add(1, Ordering::Relaxed);
        }
    });
    emitter.emit_phase_started("wo", "run", 1, Phase::Build);
    obs.flush();
    assert_eq!(on_caller.load(Ordering::Relaxed), 0);
}
