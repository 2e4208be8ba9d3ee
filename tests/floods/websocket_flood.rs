//! Clients of `/ws` cost the process the server is embedded in a bounded
//! amount of memory: a client flooding it with messages is closed, and
//! hundreds of clients, reading or not, share one `hello`. These tests
//! measure the test process's resident set, which other tests running
//! beside them would disturb: they run one at a time, alone in their binary.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use agentgate_obs::event::EventKind;
use agentgate_obs::{ProgressEmitter, ProgressEvent, Strategy, TaskSpec};
use common::ws::{
    RssPeak, ServerFrame, client_frame, clients_closed, raw_upgrade, read_server_frame, rss_bytes,
    wait_until,
};

const FLOOD: usize = 10 << 20;
const ALLOWED_GROWTH: u64 = 32 << 20;

/// One round of the flood: subscribes with the longest ids allowed, the
/// same again (duplicates), JSON pings and WebSocket pings.
fn round(round: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..16 {
        let id = format!("{:04}{}", (round * 16 + i) % 256, "x".repeat(1_020));
        let subscribe = format!(r#"{{"type":"subscribe","workOrderId":"{id}"}}"#);
        bytes.extend(client_frame(0x1, subscribe.as_bytes(), true));
        bytes.extend(client_frame(0x1, subscribe.as_bytes(), true));
        bytes.extend(client_frame(0x1, br#"{"type":"ping"}"#, true));
        bytes.extend(client_frame(0x9, &[b'p'; 125], true));
    }
    bytes
}

/// What one flooding connection saw.
#[derive(Debug)]
struct Outcome {
    sent: usize,
    texts: u64,
    rate_limited: bool,
    close_code: Option<u16>,
}

/// Floods one connection (up to [`FLOOD`] bytes) while reading what the
/// server answers, until the server closes it.
fn flood_once(addr: std::net::SocketAddr) -> Outcome {
    let mut stream = common::ws::raw_upgrade(addr, "/ws");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let flooder = std::thread::spawn(move || {
        let (mut sent, mut n) = (0, 0);
        while sent < FLOOD {
            let bytes = round(n);
            n += 1;
            if writer.write_all(&bytes).is_err() {
                break;
            }
            sent += bytes.len();
        }
        sent
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut texts, mut rate_limited, mut close_code) = (0, false, None);
    while Instant::now() < deadline {
        match read_server_frame(&mut stream) {
            Ok(ServerFrame::Text(text)) => {
                texts += 1;
                rate_limited |= text.contains("\"RATE_LIMITED\"");
            }
            Ok(ServerFrame::Close(code)) => {
                close_code = code;
                break;
            }
            Ok(ServerFrame::Other(_)) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Outcome {
        sent: flooder.join().unwrap(),
        texts,
        rate_limited,
        close_code,
    }
}

#[test]
fn a_client_flooding_ten_megabytes_of_subscribes_and_pings_is_closed_and_memory_stays_bounded() {
    let _alone = crate::ONE_AT_A_TIME.lock();
    let obs = common::quiet().serve("127.0.0.1:0").start().unwrap();
    let addr = obs.local_addr().unwrap();
    // Warm up what a connection creates once (thread stacks, buffers).
    let mut warm = common::ws::Client::connect(addr, "/ws");
    warm.next_json();
    warm.close();
    common::ws::wait_until(Duration::from_secs(10), "warm-up client gone", || {
        obs.metrics().ws_clients() == 0
    });

    let before = common::ws::rss_bytes();
    let peak = RssPeak::start();
    // Each connection floods until the server closes it; then the next.
    let (mut sent, mut connections, mut told) = (0, 0, 0);
    while sent < FLOOD {
        let outcome = flood_once(addr);
        eprintln!("{outcome:?}");
        // hello, at most a burst of answers, RATE_LIMITED.
        assert!(outcome.texts <= 66, "{outcome:?}");
        told += u64::from(outcome.rate_limited && outcome.close_code == Some(1008));
        sent += outcome.sent;
        connections += 1;
    }
    // A client that keeps sending may see the connection reset before it
    // reads the close frame; most see both.
    assert!(
        told > 0,
        "no flooder was told RATE_LIMITED and closed with 1008"
    );
    common::ws::wait_until(Duration::from_secs(10), "the flooders closed", || {
        obs.metrics().ws_clients() == 0
    });
    let peak = peak.stop();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "sent {sent} bytes over {connections} connections; resident set {} MB before, peak growth {} KB",
        before >> 20,
        growth >> 10
    );
    let closed = clients_closed(&obs, "rate") + clients_closed(&obs, "budget");
    assert_eq!(
        closed, connections,
        "each flooder is closed for its rate or its budget"
    );
    assert!(
        growth <= ALLOWED_GROWTH,
        "the server's process grew by {} MB",
        growth >> 20
    );
    let health = common::http_get(addr, "/health", &[]);
    assert_eq!(health.status, 200);
}

/// Runs in the tracker, at its default bound.
const RUNS: usize = 10_000;
/// Clients of each kind: that never read, and that read.
const CLIENTS: usize = 256;
/// What all of them together may add to the process, and what may stay
/// after they leave.
const CLIENTS_GROWTH: u64 = 64 << 20;
/// Past this the test stops connecting: the code under test has no bound.
const ABORT_GROWTH: u64 = 1 << 30;

/// A server tracking [`RUNS`] finished runs, each with a goal and an error
/// of some kilobytes, that takes `2 × CLIENTS` WebSocket clients and keeps
/// those that never read for the whole test.
fn server_with_long_runs() -> agentgate_obs::Observability {
    let obs = common::quiet()
        .finished_runs(RUNS)
        .websocket_max_clients(2 * CLIENTS)
        .websocket_stall_timeout(Duration::from_secs(300))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let emitter = obs.emitter();
    let goal = "Refactor the billing service's retry logic ".repeat(50);
    let error = "error: build failed in crates/billing/src/retry.rs ".repeat(50);
    for i in 0..RUNS {
        let run = format!("run-{i:05}");
        let task_spec = TaskSpec {
            goal: goal.clone(),
            strategy: Strategy::Ralph,
            max_iterations: 5,
        };
        emitter.emit(ProgressEvent::new(
            "wo",
            &run,
            EventKind::RunStarted { task_spec },
        ));
        emitter.emit_run_failed("wo", &run, &error);
    }
    obs.flush();
    obs
}

/// Reads the server's first frame (the `hello`) off a raw socket into a
/// small buffer, keeping only its first bytes: the client reads it all
/// without holding it. Returns its length and its start.
fn read_hello(stream: &mut TcpStream, buf: &mut [u8]) -> (u64, String) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x81, "a final text frame");
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut l = [0u8; 2];
        stream.read_exact(&mut l).unwrap();
        len = u64::from(u16::from_be_bytes(l));
    } else if len == 127 {
        let mut l = [0u8; 8];
        stream.read_exact(&mut l).unwrap();
        len = u64::from_be_bytes(l);
    }
    let (mut left, mut start) = (len, String::new());
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap());
        let n = stream.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "the hello ended early");
        if start.len() < 64 {
            start.push_str(&String::from_utf8_lossy(&buf[..n.min(64)]));
        }
        left -= n as u64;
    }
    (len, start)
}

/// Opens [`CLIENTS`] clients that never read and [`CLIENTS`] that read
/// their whole `hello`; stops early once the process has grown by
/// [`ABORT_GROWTH`]. Returns the sockets and the largest `hello`.
fn connect_all(addr: SocketAddr, baseline: u64) -> (Vec<TcpStream>, u64) {
    let mut sockets = Vec::with_capacity(2 * CLIENTS);
    let mut buf = vec![0u8; 64 * 1024];
    let mut largest = 0;
    for i in 0..2 * CLIENTS {
        let mut stream = raw_upgrade(addr, "/ws");
        if i % 2 == 1 {
            let (len, start) = read_hello(&mut stream, &mut buf);
            assert!(start.starts_with(r#"{"type":"hello""#), "{start}");
            largest = largest.max(len);
        }
        sockets.push(stream);
        let growth = rss_bytes().saturating_sub(baseline);
        if growth > ABORT_GROWTH {
            eprintln!(
                "stopped after {} clients: the process grew by {} MB",
                i + 1,
                growth >> 20
            );
            break;
        }
    }
    (sockets, largest)
}

#[test]
fn five_hundred_clients_reading_or_not_at_ten_thousand_runs_with_long_text_cost_at_most_64_mb_and_give_it_back()
 {
    // Regression: every client held its own copy of `hello` (at 10,000
    // runs, megabytes), twice when it did not read, for as long as it was
    // connected; and the tracker kept goals and errors whole.
    let _alone = crate::ONE_AT_A_TIME.lock();
    common::raise_fd_limit(4 * CLIENTS as u64 + 1_024);
    let obs = server_with_long_runs();
    let addr = obs.local_addr().unwrap();

    // The runs' text is bounded in the snapshot (`/api/runs` shows it).
    let page = common::http_get(addr, "/api/runs?limit=500", &[]);
    assert_eq!(page.status, 200);
    let runs: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let run = &runs[0];
    let goal = run["taskSpec"]["goal"].as_str().unwrap();
    let reason = run["reason"].as_str().unwrap();
    assert_eq!(goal.chars().count(), agentgate_obs::event::GOAL_MAX_CHARS);
    assert!(goal.ends_with('…') && reason.ends_with('…'));
    assert!(reason.len() <= agentgate_obs::runs::RUN_TEXT_MAX_BYTES);
    assert!(
        page.body.len() <= 500 * 2_048,
        "a page of 500 runs is {} bytes",
        page.body.len()
    );

    // Warm up what a connection creates once (thread stacks, buffers).
    let (warm, _) = connect_all_one(addr);
    drop(warm);
    wait_until(Duration::from_secs(10), "warm-up client gone", || {
        obs.metrics().ws_clients() == 0
    });

    let baseline = rss_bytes();
    let peak = RssPeak::start();
    let (sockets, hello) = connect_all(addr, baseline);
    let connected = sockets.len();
    let held = rss_bytes();
    drop(sockets);
    wait_until(Duration::from_secs(60), "the clients gone", || {
        obs.metrics().ws_clients() == 0
    });
    let peak = peak.stop();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes();
    eprintln!(
        "{connected} clients, hello {} KB: resident set {} MB before, +{} MB with them connected, \
         peak +{} MB, +{} MB after they left",
        hello >> 10,
        baseline >> 20,
        held.saturating_sub(baseline) >> 20,
        peak.saturating_sub(baseline) >> 20,
        after.saturating_sub(baseline) >> 20,
    );
    assert_eq!(connected, 2 * CLIENTS, "stopped early: no bound");
    assert!(
        peak.saturating_sub(baseline) <= CLIENTS_GROWTH,
        "the process grew by {} MB",
        peak.saturating_sub(baseline) >> 20
    );
    assert!(
        after.saturating_sub(baseline) <= CLIENTS_GROWTH,
        "{} MB stayed after the clients left",
        after.saturating_sub(baseline) >> 20
    );
}

/// One client that reads its whole `hello`.
fn connect_all_one(addr: SocketAddr) -> (TcpStream, u64) {
    let mut stream = raw_upgrade(addr, "/ws");
    let (len, _) = read_hello(&mut stream, &mut vec![0u8; 64 * 1024]);
    (stream, len)
}
