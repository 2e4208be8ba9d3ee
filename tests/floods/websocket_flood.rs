//! A client flooding `/ws` with messages costs the process the server is
//! embedded in a bounded amount of memory, and is closed. It runs alone: it
//! measures the test process's resident set, which other tests running
//! beside it would disturb.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::ws::{RssPeak, ServerFrame, client_frame, clients_closed, read_server_frame};

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
