//! What one WebSocket client may cost the process the server is embedded
//! in: replies within a byte budget, messages within a rate, subscriptions
//! idempotent and answered briefly, and a pong deadline that only the
//! client's own frames satisfy (docs/SECURITY.md, "Bounds").

use crate::common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgate_obs::{Observability, Overflow, Phase, ProgressEmitter};
use common::ws::{Client, client_frame, clients_closed, raw_upgrade, wait_until};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// Emits events of `size` bytes as fast as the pipeline takes them until
/// stopped, so that a client that does not read soon has a full socket.
struct Producer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Producer {
    /// Emits `per_ms` lifecycle events a millisecond (never dropped: the
    /// producer waits for room), each carrying `size` bytes of text.
    fn start(obs: &Observability, size: usize, per_ms: usize) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let (emitter, flag) = (obs.emitter(), stop.clone());
        let big = "x".repeat(size);
        let thread = std::thread::spawn(move || {
            // Relaxed: a stop flag.
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..per_ms {
                    emitter.emit_run_canceled("wo", "run", &big);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Producer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn long_id(i: usize) -> String {
    format!("{i:04}{}", "i".repeat(1_020))
}

#[test]
fn a_duplicate_subscribe_is_answered_briefly_and_changes_nothing() {
    let obs = common::quiet().serve("127.0.0.1:0").start().unwrap();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    for i in 0..40 {
        client.send_json(&format!(
            r#"{{"type":"subscribe","runId":"{}"}}"#,
            long_id(i)
        ));
        let reply = client.next_json();
        assert_eq!(reply["type"], "subscribed");
        assert_eq!(reply["count"], i + 1);
    }
    for _ in 0..2 {
        client.send_json(r#"{"type":"subscribe","runId":"r"}"#);
        let reply = client.next_json();
        assert_eq!(reply["type"], "subscribed");
        assert_eq!(reply["target"], serde_json::json!({"runId": "r"}));
        assert_eq!(reply["count"], 41, "a duplicate adds nothing");
        assert!(
            reply.get("subscriptions").is_none(),
            "the reply does not list every subscription: {reply}"
        );
        assert!(reply.to_string().len() < 200, "{reply}");
    }
    obs.emitter().emit_phase_started("wo", "r", 1, Phase::Build);
    obs.emitter()
        .emit_phase_started("wo", "other", 1, Phase::Build);
    obs.emitter().emit_phase_started("wo", "r", 2, Phase::Build);
    let first = client.next_json();
    let second = client.next_json();
    assert_eq!(
        (first["runId"].as_str(), first["iteration"].as_u64()),
        (Some("r"), Some(1))
    );
    assert_eq!(
        (second["runId"].as_str(), second["iteration"].as_u64()),
        (Some("r"), Some(2))
    );
    for _ in 0..2 {
        client.send_json(r#"{"type":"unsubscribe","runId":"r"}"#);
        let reply = client.next_json();
        assert_eq!(reply["type"], "unsubscribed");
        assert_eq!(reply["count"], 40);
    }
    client.send_json(r#"{"type":"unsubscribe"}"#);
    let reply = client.next_json();
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["count"], 0);
    assert!(reply["target"].is_null());
}

#[test]
fn a_silent_socket_is_closed_within_the_keepalive_deadline_and_frees_its_slot() {
    let obs = common::quiet()
        .websocket_max_clients(2)
        .websocket_keepalive(Duration::from_millis(200), Duration::from_secs(1))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    // Completes the handshake, then never reads and never answers a ping.
    let silent: Vec<_> = (0..2).map(|_| raw_upgrade(addr, "/ws")).collect();
    let started = Instant::now();
    match tungstenite::connect(format!("ws://{addr}/ws")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503 while the silent sockets hold both slots, got {other:?}"),
    }
    wait_until(Duration::from_secs(20), "silent sockets closed", || {
        obs.metrics().ws_clients() == 0
    });
    eprintln!("silent sockets closed after {:?}", started.elapsed());
    assert_eq!(clients_closed(&obs, "pong_timeout"), 2);
    let mut client = Client::connect(addr, "/ws");
    assert_eq!(client.next_json()["type"], "hello");
    obs.emitter()
        .emit_phase_started("wo", "after", 1, Phase::Build);
    assert_eq!(client.next_json()["runId"], "after");
    drop(silent);
}

/// The next text message; failing, says why the server closed the client.
fn next_or_why(client: &mut Client, obs: &Observability) -> serde_json::Value {
    loop {
        match client.next_raw() {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).unwrap(),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => {
                let reasons = ["budget", "pong_timeout", "rate", "stalled"]
                    .map(|r| (r, clients_closed(obs, r)));
                panic!("{other:?}; closed by the server: {reasons:?}");
            }
        }
    }
}

#[test]
fn a_client_that_stops_reading_for_longer_than_the_pong_deadline_but_answers_pings_is_kept() {
    // While its socket is full, the server cannot get a ping to the client
    // nor expect its pong: that is the stall timeout's business, not the
    // pong deadline's. (Until the kernel's buffers are full, which may take
    // tens of megabytes on loopback, a client that does not read is silent:
    // big events fill them well within the deadline.)
    let obs = common::quiet()
        .overflow(Overflow::DropNewest)
        .websocket_replay(1_000)
        .websocket_keepalive(Duration::from_millis(200), Duration::from_secs(3))
        .websocket_stall_timeout(Duration::from_secs(60))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    let producer = Producer::start(&obs, 20_000, 100);
    std::thread::sleep(Duration::from_secs(7));
    // Reads (answering pings as it goes) for a while, still behind.
    let until = Instant::now() + Duration::from_millis(1_500);
    let mut read = 0u64;
    while Instant::now() < until {
        next_or_why(&mut client, &obs);
        read += 1;
    }
    client.send_json(r#"{"type":"ping"}"#);
    let answered = (0..1_000_000).any(|_| next_or_why(&mut client, &obs)["type"] == "pong");
    let still_connected = obs.metrics().ws_clients() == 1;
    drop(producer);
    assert!(answered, "no pong");
    assert!(read > 0);
    assert!(still_connected, "the client was closed");
    assert_eq!(clients_closed(&obs, "pong_timeout"), 0);
    assert_eq!(clients_closed(&obs, "stalled"), 0);
}

#[test]
fn a_client_sending_faster_than_the_rate_limit_is_told_once_and_closed_with_1008() {
    let obs = common::quiet().serve("127.0.0.1:0").start().unwrap();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    for _ in 0..200 {
        client.send_json(r#"{"type":"ping"}"#);
    }
    let (mut pongs, mut limited) = (0, 0);
    let code = loop {
        match client.next_raw() {
            Ok(Message::Text(text)) => {
                let reply: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                match reply["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(reply["code"], "RATE_LIMITED", "{reply}");
                        limited += 1;
                    }
                    _ => panic!("unexpected {reply}"),
                }
            }
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Policy));
    assert_eq!(limited, 1, "told once");
    assert!((64..200).contains(&pongs), "{pongs} pongs");
    assert_eq!(clients_closed(&obs, "rate"), 1);
    // Others are served as before.
    let mut other = Client::connect(obs.local_addr().unwrap(), "/ws");
    other.next_json();
    other.send_json(r#"{"type":"ping"}"#);
    assert_eq!(other.next_json()["type"], "pong");
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_when_they_pass_its_budget() {
    let obs = common::quiet()
        .overflow(Overflow::DropNewest)
        .websocket_stall_timeout(Duration::from_secs(120))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    let mut stream = raw_upgrade(addr, "/ws");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Subscriptions add up: the producer's events keep coming.
    let frame = client_frame(0x1, br#"{"type":"subscribe","workOrderId":"wo"}"#, true);
    stream.write_all(&frame).unwrap();
    // Few enough that the drain thread, which redacts each event's text,
    // keeps up even in a debug build: a ring full of lifecycle events
    // would hold the next client's `hello` past its 5 s deadline.
    let producer = Producer::start(&obs, 2_000, 5);
    // Half a burst, then a pace the rate limit allows (a burst of 64, 32 a
    // second sustained): each reply is over a kilobyte and none is read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while clients_closed(&obs, "budget") == 0 && Instant::now() < deadline {
        let id = long_id(sent % 200);
        let frame = client_frame(
            0x1,
            format!(r#"{{"type":"subscribe","runId":"{id}"}}"#).as_bytes(),
            true,
        );
        if stream.write_all(&frame).is_err() {
            break;
        }
        sent += 1;
        if sent >= 32 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    wait_until(Duration::from_secs(10), "the client closed", || {
        obs.metrics().ws_clients() == 0
    });
    drop(producer);
    eprintln!("closed over budget after {sent} subscribes");
    assert_eq!(clients_closed(&obs, "budget"), 1);
    assert_eq!(clients_closed(&obs, "rate"), 0);
    assert_eq!(clients_closed(&obs, "stalled"), 0);
    let mut client = Client::connect(addr, "/ws");
    assert_eq!(client.next_json()["type"], "hello");
}

#[test]
fn a_client_sending_endless_empty_fragments_is_closed_for_its_rate() {
    // Fragments that never complete a message are no message to count:
    // the bytes read are.
    let obs = common::quiet().serve("127.0.0.1:0").start().unwrap();
    let addr = obs.local_addr().unwrap();
    let mut stream = raw_upgrade(addr, "/ws");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&client_frame(0x1, b"", false)).unwrap();
    let fragments: Vec<u8> = (0..10_000)
        .flat_map(|_| client_frame(0x0, b"", false))
        .collect();
    let mut sent = 0;
    while sent < 200 << 20 && stream.write_all(&fragments).is_ok() {
        sent += fragments.len();
    }
    eprintln!("closed after {} KB of empty fragments", sent >> 10);
    wait_until(Duration::from_secs(10), "the client closed", || {
        obs.metrics().ws_clients() == 0
    });
    assert_eq!(clients_closed(&obs, "rate"), 1);
    assert!(sent < 200 << 20, "the server took 200 MB of fragments");
}
