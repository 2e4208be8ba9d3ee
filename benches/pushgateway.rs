//! What pushing to a Pushgateway costs the drain thread: without a push,
//! and with one every 10 ms (the shortest interval accepted, 1,500 times
//! the default) to a local receiver that answers `200` at once, burst for
//! burst in turn, as medians and their ratio, in wall time and in the
//! drain thread's own CPU time. The pushes run on the exporter's thread:
//! what the drain thread can lose is a core and cache lines, not work.
//!
//! Run: `cargo bench --bench pushgateway`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use agentgate_obs::metrics::PushGatewayConfig;
use agentgate_obs::{Builder, Observability, Overflow};
use criterion::{Criterion, criterion_group, criterion_main};

mod support;

use support::Interleaved;

const EVENTS: u64 = 100_000;
/// Bursts per setup, a multiple of the two orders.
const ROUNDS: usize = 120;

/// A receiver on a free loopback port that answers every request `200`
/// once it has read it; returns its URL.
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut request = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    url
}

fn builder() -> Builder {
    Observability::builder()
        .queue_capacity(EVENTS as usize + 16)
        .overflow(Overflow::Block)
        .no_log()
}

fn drain_interleaved(_: &mut Criterion) {
    let setups = vec![
        ("no push", builder()),
        (
            "push every 10 ms",
            builder().push_gateway_config(
                PushGatewayConfig::new(receiver())
                    .instance("bench")
                    .interval(Duration::from_millis(10)),
            ),
        ),
    ];
    let bench = Interleaved::start("drain, interleaved", EVENTS, setups);
    bench.run(ROUNDS, |_, _| {});
    let pushes = bench.pipeline(1).metrics().push_gateway_stats();
    assert_eq!(pushes.failed, 0, "{pushes:?}");
    assert!(pushes.pushes > 0, "{pushes:?}");
    println!(
        "drain, interleaved: {} pushes during the run, none failed",
        pushes.pushes
    );
}

criterion_group!(benches, drain_interleaved);
criterion_main!(benches);
