//! Faults while the pipeline is busy: each finishes without deadlock
//! (guarded by `within`) and loses no accepted event.
//!
//! The single-fault cases live elsewhere (`tests/listeners.rs`: one
//! panicking listener; `tests/shutdown.rs`: shutdown under load with a
//! listener; `tests/websocket_hostile.rs`: resets with no traffic); here the
//! faults strike under load, with the server and its clients attached.
#![cfg(feature = "fuzzing")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agentgate_obs::fuzzing::strict;
use agentgate_obs::{Observability, Overflow, Phase};
use common::ws::{Client, client_frame, raw_upgrade, wait_until};
use common::{Recorder, within};
use tungstenite::Message;

const GUARD: Duration = Duration::from_secs(60);

/// Emits `per_thread` events from each of two threads; returns when done.
fn two_producers(obs: &Observability, per_thread: u32) {
    let threads: Vec<_> = (0..2)
        .map(|p| {
            let emitter = obs.emitter();
            std::thread::spawn(move || {
                let run = emitter.run("wo", &format!("run-{p}"));
                for i in 0..per_thread {
                    run.phase_completed(i, Phase::Build, true, Duration::from_millis(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
}

#[test]
fn a_listener_panicking_on_every_event_under_load_costs_no_event_to_the_others() {
    let obs = Arc::new(
        common::quiet()
            .queue_capacity(256)
            .overflow(Overflow::Block)
            .start()
            .expect("start"),
    );
    let _bad = obs.emitter().subscribe(|_| panic!("listener bug"));
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let o = obs.clone();
    within(GUARD, "load with a panicking listener", move || {
        two_producers(&o, 2_000);
        o.flush();
    });
    let stats = obs.stats();
    assert_eq!(stats.dropped.total(), 0, "Block drops nothing");
    assert_eq!(stats.processed.total(), 4_000);
    assert_eq!(recorder.len(), 4_000, "the other listener saw every event");
    assert_eq!(stats.listener_panics, 4_000);
}

#[test]
fn clients_reset_mid_frame_while_events_flow_cost_the_reading_client_nothing() {
    let obs = Arc::new(
        common::quiet()
            .overflow(Overflow::Block)
            .serve("127.0.0.1:0")
            .start()
            .expect("start"),
    );
    let addr = obs.local_addr().expect("serving");
    let mut reader = Client::connect(addr, "/ws");
    assert_eq!(reader.next_json()["type"], "hello");
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, o) = (stop.clone(), obs.clone());
    let producer = std::thread::spawn(move || {
        let run = o.emitter().run("wo", "run");
        let mut i = 0u32;
        while !flag.load(Ordering::Relaxed) {
            run.phase_started(i, Phase::Build);
            i += 1;
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        i
    });
    for _ in 0..50 {
        let mut stream = raw_upgrade(addr, "/ws");
        let frame = client_frame(0x1, br#"{"type":"subscribe","runId":"run"}"#, true);
        let _ = stream.write_all(&frame[..7]);
        let _ = stream.shutdown(Shutdown::Both);
    }
    stop.store(true, Ordering::Relaxed);
    let emitted = u64::from(producer.join().expect("producer"));
    obs.flush();
    // Each registration is one seq before the events; the events follow in order.
    let events = reader.events_through(obs.stats().processed.total());
    let iterations: Vec<u64> = events
        .iter()
        .filter_map(|e| e["iteration"].as_u64())
        .collect();
    assert_eq!(iterations.len() as u64, emitted, "every event arrived");
    assert!(
        iterations.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap, no duplicate"
    );
    wait_until(Duration::from_secs(10), "reset clients gone", || {
        obs.metrics().ws_clients() == 1
    });
}

/// One scrape: `Ok(Some(body))` for a whole 200 answer, `Ok(None)` for a
/// refused or closed connection, `Err` for anything else (a partial body,
/// another status).
fn scrape(addr: SocketAddr) -> Result<Option<String>, String> {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Ok(None);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    if stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    if stream.read_to_end(&mut bytes).is_err() || bytes.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("a partial head")?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("status line {:?}", head.lines().next()));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    if body.len() != length {
        return Err(format!("body of {} bytes, announced {length}", body.len()));
    }
    Ok(Some(body.to_owned()))
}

#[test]
fn a_scrape_during_shutdown_gets_a_whole_answer_or_a_closed_connection() {
    for _ in 0..5 {
        let obs = Arc::new(
            common::quiet()
                .queue_capacity(1_024)
                .serve("127.0.0.1:0")
                .start()
                .expect("start"),
        );
        let addr = obs.local_addr().expect("serving");
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let scrapers: Vec<_> = (0..3)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(body) = scrape(addr)? {
                            strict::parse(&body, false)?;
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        let o = obs.clone();
        let producer = std::thread::spawn(move || two_producers(&o, 50_000));
        wait_until(Duration::from_secs(10), "a first scrape", || {
            answered.load(Ordering::Relaxed) > 0
        });
        let o = obs.clone();
        within(GUARD, "shutdown while scrapes run", move || o.shutdown());
        stop.store(true, Ordering::Relaxed);
        producer.join().expect("producer");
        for s in scrapers {
            let outcome = within(GUARD, "a scraper", move || s.join().expect("scraper"));
            if let Err(e) = outcome {
                panic!("a scrape during shutdown: {e}");
            }
        }
        let stats = obs.stats();
        assert_eq!(
            stats.emitted.total(),
            stats.processed.total() + stats.dropped.total()
        );
    }
}

#[test]
fn shutdown_during_overload_sends_websocket_clients_every_event_before_1001() {
    // Regression: a closing client sent at most one pass (512 messages) of
    // what it had not sent yet, then 1001; a client further behind lost the rest.
    let obs = Arc::new(
        common::quiet()
            .queue_capacity(1_024)
            .overflow(Overflow::Block)
            .websocket_replay(100_000)
            .serve("127.0.0.1:0")
            .start()
            .expect("start"),
    );
    let addr = obs.local_addr().expect("serving");
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr, "/ws")).collect();
    let hello_seqs: Vec<u64> = clients
        .iter_mut()
        .map(|c| c.next_json()["seq"].as_u64().expect("hello seq"))
        .collect();
    let o = obs.clone();
    within(GUARD, "overload, then shutdown", move || {
        two_producers(&o, 5_000);
        o.shutdown();
    });
    let processed = obs.stats().processed.total();
    for (client, hello) in clients.iter_mut().zip(hello_seqs) {
        let mut received = 0;
        let mut missed = 0;
        loop {
            match client.next_raw() {
                Ok(Message::Text(text)) => {
                    let value: serde_json::Value =
                        serde_json::from_str(text.as_str()).expect("JSON");
                    match value["type"].as_str() {
                        Some("lagged") => missed += value["missed"].as_u64().unwrap_or(0),
                        Some(t) if t.contains(':') => received += 1,
                        _ => {}
                    }
                }
                Ok(Message::Close(frame)) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("the connection ended without 1001: {e}"),
            }
        }
        assert_eq!(missed, 0, "the replay ring held everything");
        assert_eq!(
            received,
            processed - hello,
            "every event before the goodbye"
        );
    }
}
