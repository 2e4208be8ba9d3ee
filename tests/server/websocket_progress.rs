//! The WebSocket stream against a running server and real tungstenite
//! clients: all eleven events in order, snapshot on connect, resume with
//! `since`, filters, slow clients, and connection churn.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Observability, Overflow, Phase, PhaseTimings,
    ProgressEmitter, RunResult, Strategy, TaskSpec,
};
use common::ws::{Client, wait_until};
use serde_json::Value;

fn server() -> Observability {
    common::quiet().serve("127.0.0.1:0").start().unwrap()
}

/// Emits one full run that uses every event type, plus a canceled and a
/// failed run.
fn every_event(emitter: &agentgate_obs::Emitter) {
    emitter.emit_run_started(
        "wo-1",
        "run-1",
        &TaskSpec::new("Fix <it>", Strategy::Ralph, 3),
    );
    emitter.emit_iteration_started("wo-1", "run-1", 1, 3, Some("first try"));
    emitter.emit_phase_started("wo-1", "run-1", 1, Phase::Build);
    emitter.emit_phase_completed(
        "wo-1",
        "run-1",
        1,
        Phase::Build,
        true,
        Duration::from_millis(42),
    );
    emitter.emit_gate_checked("wo-1", "run-1", 1, "lint", true);
    emitter.emit_iteration_completed(
        "wo-1",
        "run-1",
        1,
        true,
        &PhaseTimings {
            build: Some(42),
            ..Default::default()
        },
    );
    emitter.emit_delivery_started("wo-1", "run-1");
    emitter.emit_delivery_completed(
        "wo-1",
        "run-1",
        &DeliveryResult {
            success: true,
            pr_url: Some("https://example.com/pr/1".into()),
            ci_status: Some("pending".into()),
        },
    );
    emitter.emit_run_completed(
        "wo-1",
        "run-1",
        RunResult::Passed,
        &ExecutionMetrics::default(),
    );
    emitter.emit_run_canceled("wo-2", "run-2", "user");
    emitter.emit_run_failed("wo-3", "run-3", "oom");
}

#[test]
fn all_eleven_event_types_arrive_in_order_with_their_fields() {
    let obs = server();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    let hello = client.next_json();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["runs"], Value::Array(vec![]));
    let start = hello["seq"].as_u64().unwrap();

    every_event(&obs.emitter());
    let events: Vec<Value> = (0..11).map(|_| client.next_json()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "run:started",
            "iteration:started",
            "phase:started",
            "phase:completed",
            "gate:checked",
            "iteration:completed",
            "delivery:started",
            "delivery:completed",
            "run:completed",
            "run:canceled",
            "run:failed"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(start + 1 + i as u64),
            "seq has no gap"
        );
        for field in ["timestamp", "workOrderId", "runId", "correlationId"] {
            assert!(e[field].is_string(), "{field} in {e}");
        }
    }
    assert_eq!(events[0]["taskSpec"]["goal"], "Fix <it>");
    assert_eq!(events[1]["maxIterations"], 3);
    assert_eq!(events[1]["feedback"], "first try");
    assert_eq!(events[3]["durationMs"], 42);
    assert_eq!(events[4]["gate"], "lint");
    assert_eq!(events[5]["gateResults"][0]["name"], "lint");
    assert_eq!(events[7]["prUrl"], "https://example.com/pr/1");
    assert_eq!(events[8]["result"], "succeeded");
    assert_eq!(events[8]["engineResult"], "passed");
    assert_eq!(events[9]["reason"], "user");
    assert_eq!(events[10]["error"], "oom");
}

/// A server whose emitters wait rather than drop, so every client can
/// account for every event.
fn blocking_server() -> (Observability, std::net::SocketAddr) {
    let obs = common::quiet()
        .overflow(Overflow::Block)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    (obs, addr)
}

fn seqs<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<u64> {
    events
        .into_iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// Emits events for a few runs continuously until `stop`.
fn keep_emitting(obs: &Observability, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let emitter = obs.emitter();
    std::thread::spawn(move || {
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let run = format!("run-{}", n / 50);
            if n.is_multiple_of(50) {
                emitter.emit_run_started("wo", &run, &TaskSpec::new("g", Strategy::Fixed, 5));
            }
            emitter.emit_phase_started("wo", &run, n % 50, Phase::Build);
            if n % 50 == 49 {
                emitter.emit_run_completed(
                    "wo",
                    &run,
                    RunResult::Passed,
                    &ExecutionMetrics::default(),
                );
            }
            n += 1;
            // About 20,000 events/s: well within the replay buffer for the
            // tests' waits, so no client is lagged.
            if n.is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

#[test]
fn a_client_joining_mid_run_gets_a_snapshot_and_then_exactly_the_later_events() {
    let (obs, addr) = blocking_server();
    let mut early = Client::connect(addr, "/ws");
    early.next_json();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = keep_emitting(&obs, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let mut late = Client::connect(addr, "/ws");
    let hello = late.next_json();
    let joined_at = hello["seq"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    obs.flush();
    let last = obs.stats().processed.total();

    let early_events = early.events_through(last);
    let late_events = late.events_through(last);
    let expected: Vec<&Value> = early_events
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > joined_at)
        .collect();
    assert!(!late_events.is_empty());
    assert_eq!(
        seqs(&late_events),
        seqs(expected.iter().copied()),
        "no gap, no duplicate"
    );
    assert!(
        late_events.iter().zip(&expected).all(|(a, b)| a == *b),
        "the same messages"
    );

    // The snapshot holds exactly the runs started before the join.
    let started_before: BTreeSet<&str> = early_events
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() <= joined_at)
        .filter_map(|e| e["runId"].as_str())
        .collect();
    let in_snapshot: BTreeSet<&str> = hello["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["runId"].as_str())
        .collect();
    assert_eq!(in_snapshot, started_before);
}

#[test]
fn a_client_that_reconnects_with_since_ends_with_what_an_uninterrupted_client_saw() {
    let (obs, addr) = blocking_server();
    let mut steady = Client::connect(addr, "/ws");
    steady.next_json();
    let mut flaky = Client::connect(addr, "/ws");
    flaky.next_json();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = keep_emitting(&obs, stop.clone());

    let mut collected = Vec::new();
    while collected.len() < 300 {
        collected.push(flaky.next_json());
    }
    let last_seen = collected.last().unwrap()["seq"].as_u64().unwrap();
    drop(flaky);
    std::thread::sleep(Duration::from_millis(50));
    let mut back = Client::connect(addr, &format!("/ws?since={last_seen}"));
    let hello = back.next_json();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["resumed"], true);
    assert!(hello.get("runs").is_none());

    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    obs.flush();
    let last = obs.stats().processed.total();
    collected.extend(back.events_through(last));
    let uninterrupted = steady.events_through(last);
    assert_eq!(seqs(&collected), seqs(&uninterrupted));
    assert!(collected == uninterrupted, "the same messages");
}

#[test]
fn a_since_older_than_the_replay_buffer_gets_a_fresh_hello_with_reset() {
    let obs = common::quiet()
        .websocket_replay(100)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let emitter = obs.emitter();
    for i in 0..1_000 {
        emitter.emit_phase_started("wo", "run", i, Phase::Build);
    }
    obs.flush();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws?since=5");
    let hello = client.next_json();
    assert_eq!(hello["reset"], true);
    assert_eq!(hello["runs"].as_array().unwrap().len(), 1);
    assert_eq!(hello["seq"].as_u64(), Some(1_000));
}

#[test]
fn subscriptions_filter_by_work_order_or_run_and_add_up() {
    let obs = server();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    client.send_json(r#"{"type":"subscribe","runId":"run-2"}"#);
    assert_eq!(client.next_json()["type"], "subscribed");
    client.send_json(r#"{"type":"subscribe","workOrderId":"wo-3"}"#);
    let confirmed = client.next_json();
    assert_eq!(confirmed["type"], "subscribed");
    assert_eq!(confirmed["count"], 2);
    every_event(&obs.emitter());
    assert_eq!(client.next_json()["type"], "run:canceled");
    assert_eq!(client.next_json()["type"], "run:failed");
    client.send_json(r#"{"type":"unsubscribe"}"#);
    assert_eq!(client.next_json()["type"], "unsubscribed");
    obs.emitter().emit_delivery_started("wo-9", "run-9");
    assert_eq!(client.next_json()["runId"], "run-9");
}

#[test]
fn ping_gets_pong_and_garbage_gets_an_error_while_the_connection_stays() {
    let obs = server();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    for garbage in [
        "not json",
        "{}",
        r#"{"type":"subscribe"}"#,
        r#"{"type":"launch"}"#,
        "[1,2]",
    ] {
        client.send_json(garbage);
        let reply = client.next_json();
        assert_eq!(reply["type"], "error", "{garbage}");
        assert_eq!(reply["code"], "INVALID_MESSAGE");
    }
    client.send_binary(&[1, 2, 3]);
    assert_eq!(client.next_json()["code"], "INVALID_MESSAGE");
    client.send_json(r#"{"type":"ping"}"#);
    let pong = client.next_json();
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].is_string());
}

#[test]
fn a_client_that_never_reads_is_closed_while_a_reading_client_receives_everything() {
    let obs = common::quiet()
        .overflow(Overflow::Block)
        // Room for the whole test, so the reading client is never lagged.
        .websocket_replay(50_000)
        .websocket_stall_timeout(Duration::from_millis(300))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    let mut reader = Client::connect(addr, "/ws");
    reader.next_json();
    let sleeper = common::ws::raw_upgrade(addr, "/ws");
    let emitter = obs.emitter();
    let big = "x".repeat(2_000);
    let events = 20_000u64;
    let consumer = std::thread::spawn(move || {
        let got = reader.events_through(events);
        (
            got.len(),
            got.windows(2)
                .all(|w| w[1]["seq"].as_u64() == w[0]["seq"].as_u64().map(|s| s + 1)),
        )
    });
    for _ in 0..events {
        emitter.emit_run_canceled("wo", "run", &big);
    }
    obs.flush();
    let (received, contiguous) = consumer.join().unwrap();
    assert_eq!(received as u64, events);
    assert!(contiguous);
    wait_until(
        Duration::from_secs(10),
        "the sleeping client is closed",
        || obs.metrics().ws_clients() == 0,
    );
    drop(sleeper);
}

#[test]
fn connecting_and_disconnecting_two_thousand_times_leaves_threads_and_descriptors_at_baseline() {
    let obs = server();
    let addr = obs.local_addr().unwrap();
    // Warm up whatever is created once.
    Client::connect(addr, "/ws").next_json();
    wait_until(Duration::from_secs(5), "warm-up client gone", || {
        obs.metrics().ws_clients() == 0
    });
    let (threads, fds) = (common::ws::thread_count(), common::ws::fd_count());
    for i in 0..2_000 {
        let mut client = Client::connect(addr, "/ws");
        client.next_json();
        if i % 2 == 0 {
            client.close();
        }
    }
    wait_until(Duration::from_secs(20), "every client gone", || {
        obs.metrics().ws_clients() == 0
    });
    wait_until(Duration::from_secs(10), "threads back to baseline", || {
        common::ws::thread_count() <= threads
    });
    wait_until(
        Duration::from_secs(10),
        "descriptors back to baseline",
        || common::ws::fd_count() <= fds,
    );
}

#[test]
fn a_client_that_falls_behind_the_replay_buffer_is_told_exactly_how_many_events_it_missed() {
    let obs = common::quiet()
        .overflow(Overflow::Block)
        .websocket_replay(100)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    let emitter = obs.emitter();
    let padding = "p".repeat(500);
    let total = 50_000u64;
    for _ in 0..total {
        emitter.emit_run_failed("wo", "run", &padding); // the client reads nothing meanwhile
    }
    obs.flush();
    let (mut last_seq, mut missed_total, mut lagged_notices, mut received) = (0u64, 0u64, 0, 0u64);
    let mut pending_missed = None;
    while last_seq < total {
        let message = client.next_json();
        if message["type"] == "lagged" {
            lagged_notices += 1;
            pending_missed = message["missed"].as_u64();
            continue;
        }
        let seq = message["seq"].as_u64().unwrap();
        let gap = seq - last_seq - 1;
        assert_eq!(
            gap,
            pending_missed.take().unwrap_or(0),
            "a gap is announced by a lagged notice of its exact size"
        );
        missed_total += gap;
        last_seq = seq;
        received += 1;
    }
    assert!(lagged_notices > 0, "the client fell behind");
    assert_eq!(received + missed_total, total);
}

#[test]
fn a_client_that_reads_slower_than_events_arrive_is_still_answered_and_kept() {
    // Regression: the server read a client's messages only when all of its
    // frames had gone out, so a client that was always a little behind was
    // never read: its ping went unanswered and, hearing nothing, the server
    // took it for dead.
    let obs = common::quiet()
        .overflow(Overflow::DropNewest)
        .websocket_keepalive(Duration::from_millis(200), Duration::from_millis(800))
        .websocket_stall_timeout(Duration::from_secs(5))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    let mut client = Client::connect(addr, "/ws");
    client.next_json();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (emitter, stop) = (obs.emitter(), stop.clone());
        let big = "x".repeat(2_000);
        std::thread::spawn(move || {
            // Relaxed: a stop flag.
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    emitter.emit_run_canceled("wo", "run", &big);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // Let the backlog build up before asking.
    std::thread::sleep(Duration::from_millis(300));
    client.send_json(r#"{"type":"ping"}"#);
    let started = std::time::Instant::now();
    let mut read = 0u64;
    let answered = loop {
        let message = client.next_json();
        read += 1;
        if message["type"] == "pong" {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if read.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Still slow, for longer than the dead-peer timeout.
    let until = std::time::Instant::now() + Duration::from_millis(1_500);
    while std::time::Instant::now() < until {
        client.next_json();
        std::thread::sleep(Duration::from_micros(200));
    }
    let still_connected = obs.metrics().ws_clients() == 1;
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert!(answered, "no pong after {read} messages");
    assert!(still_connected, "the slow client was closed");
}
