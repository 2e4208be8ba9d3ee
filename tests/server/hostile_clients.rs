//! Hostile HTTP and WebSocket clients, each kept up while a well-behaved
//! client probes the server: every hostile request is served or refused as
//! docs/SECURITY.md says, and the server keeps answering others within 100 ms
//! (the median of several probes, so one scheduling hiccup on a loaded
//! machine does not fail the test; it is a liveness guard, not a benchmark).
//!
//! `tests/server/http_server.rs` and `tests/server/websocket_hostile.rs` check each refusal
//! once; here the refusals come in a steady stream, concurrently.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::ws::Client;
use common::{http_get, http_raw};

/// How soon the server answers a well-behaved client while hostile ones are attached.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);

/// The median time of several `GET /health` round trips, each answered 200.
fn median_health_latency(addr: SocketAddr) -> Duration {
    let mut times: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            let reply = http_get(addr, "/health", &[]);
            assert_eq!(reply.status, 200, "{}", reply.body);
            let took = start.elapsed();
            std::thread::sleep(Duration::from_millis(20));
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn assert_answers_others_promptly(addr: SocketAddr) {
    let median = median_health_latency(addr);
    println!("median /health latency while hostile clients are connected: {median:?}");
    assert!(
        median < ANSWER_WITHIN,
        "median /health latency {median:?} while hostile clients are connected"
    );
}

/// Sends the same hostile request over and over on fresh connections until
/// stopped, checking every answer; returns how many it sent.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Flood {
    fn start(addr: SocketAddr, request: Vec<u8>, expected: u16) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                let reply = http_raw(addr, &request).expect("a reply to the hostile request");
                assert_eq!(reply.status, expected, "{}", reply.body);
                sent += 1;
            }
            sent
        });
        Flood { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self
            .thread
            .join()
            .expect("the flood thread checks every reply");
        assert!(sent > 0, "the hostile request was sent at least once");
        sent
    }
}

/// A raw WebSocket upgrade request.
fn upgrade(addr: SocketAddr, path: &str, extra: &str, key: bool) -> Vec<u8> {
    let key = if key {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        ""
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn slowloris_clients_trickling_bytes_hold_no_worker_and_are_served_or_timed_out() {
    let (_obs, addr) = common::served(None);
    let complete = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    // Four times as many trickling clients as the server has workers: half
    // finish their request within the request timeout, half never do.
    let trickle = |finishes: bool| {
        let complete = complete.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            // Never ends: 400 bytes at 50 ms each outlast the 5 s request timeout.
            let endless = [b"GET /health HTTP/1.1\r\nX-Slow: ".as_slice(), &[b'a'; 400]].concat();
            let bytes = if finishes { complete } else { endless };
            let gap = if finishes {
                Duration::from_millis(60)
            } else {
                Duration::from_millis(50)
            };
            for byte in bytes {
                if stream.write_all(&[byte]).is_err() {
                    break; // The server gave up on us: expected for the endless ones.
                }
                std::thread::sleep(gap);
            }
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            reply
        })
    };
    let slow: Vec<_> = (0..16).map(|i| (i % 2 == 0, trickle(i % 2 == 0))).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_answers_others_promptly(addr);
    for (finishes, thread) in slow {
        let reply = common::within(Duration::from_secs(30), "a trickling client", move || {
            thread.join().expect("client thread")
        });
        let expected = if finishes {
            "HTTP/1.1 200 "
        } else {
            "HTTP/1.1 408 "
        };
        assert!(
            reply.starts_with(expected),
            "finishes={finishes}: {reply:?}"
        );
    }
}

#[test]
fn a_stream_of_requests_with_ten_thousand_headers_gets_431_while_others_are_served() {
    let (_obs, addr) = common::served(None);
    let mut raw = String::from("GET /metrics HTTP/1.1\r\n");
    for i in 0..10_000 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let flood = Flood::start(addr, raw.into_bytes(), 431);
    assert_answers_others_promptly(addr);
    flood.finish();
}

#[test]
fn path_traversal_in_every_spelling_gets_404_while_others_are_served() {
    let (_obs, addr) = common::served(None);
    let paths = [
        "/../metrics",
        "/%2e%2e/metrics",
        "/%2E%2E%2Fetc%2Fpasswd",
        "//metrics",
        "/./metrics",
        "/metrics/..",
        "/api/runs/../../etc/passwd",
        "/metrics%00",
        "/METRICS",
        "\\metrics",
        "/..%5c..%5cetc/passwd",
    ];
    let floods: Vec<_> = paths
        .iter()
        .map(|path| {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
            (path, raw)
        })
        .collect();
    for (path, raw) in &floods {
        let reply = http_raw(addr, raw).expect("reply");
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path}: {}",
            reply.status
        );
    }
    let flood = Flood::start(
        addr,
        b"GET /api/runs/../../../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        404,
    );
    assert_answers_others_promptly(addr);
    flood.finish();
}

#[test]
fn upgrades_without_a_key_get_400_while_others_are_served() {
    let (_obs, addr) = common::served(None);
    let flood = Flood::start(addr, upgrade(addr, "/ws", "", false), 400);
    assert_answers_others_promptly(addr);
    flood.finish();
}

#[test]
fn cross_origin_upgrades_get_403_while_others_are_served() {
    let (_obs, addr) = common::served(None);
    let request = upgrade(addr, "/ws", "Origin: http://evil.example\r\n", true);
    let flood = Flood::start(addr, request, 403);
    assert_answers_others_promptly(addr);
    flood.finish();
}

#[test]
fn missing_and_wrong_tokens_get_401_while_health_and_the_right_token_are_served() {
    let (_obs, addr) = common::served(Some("s3cret"));
    let floods = [
        Flood::start(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            401,
        ),
        Flood::start(
            addr,
            b"GET /api/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cre\r\n\r\n"
                .to_vec(),
            401,
        ),
        Flood::start(addr, upgrade(addr, "/ws?token=wrong", "", true), 401),
    ];
    assert_answers_others_promptly(addr);
    assert_eq!(
        http_get(addr, "/metrics", &["Authorization: Bearer s3cret"]).status,
        200
    );
    for flood in floods {
        flood.finish();
    }
}

#[test]
fn upgrades_past_the_client_cap_get_503_while_the_connected_clients_keep_streaming() {
    let obs = common::quiet()
        .websocket_max_clients(4)
        .serve("127.0.0.1:0")
        .start()
        .expect("start");
    let addr = obs.local_addr().expect("serving");
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr, "/ws")).collect();
    for c in &mut clients {
        assert_eq!(c.next_json()["type"], "hello");
    }
    let flood = Flood::start(addr, upgrade(addr, "/ws", "", true), 503);
    assert_answers_others_promptly(addr);
    let refused = flood.finish();
    use agentgate_obs::{Phase, ProgressEmitter};
    obs.emitter().emit_phase_started("wo", "r", 1, Phase::Build);
    for c in &mut clients {
        assert_eq!(c.next_json()["runId"], "r", "after {refused} refusals");
    }
}

#[test]
fn many_half_open_connections_do_not_stop_the_server_from_answering() {
    let (_obs, addr) = common::served(None);
    // Connections that send nothing at all, far more than the workers.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    assert_answers_others_promptly(addr);
    drop(idle);
    assert_answers_others_promptly(addr);
}
