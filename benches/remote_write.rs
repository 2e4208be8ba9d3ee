//! What remote write costs the drain thread: without it, with a receiver
//! that takes every request, and with a receiver that is down (every send
//! fails to connect and is retried), burst for burst in turn through every
//! order of the three, as medians in wall time and in the drain thread's
//! own CPU time. The sends run on the exporter thread, every 10 ms here
//! (1,500 times the default rate) so that several fall inside each burst;
//! what they can cost the drain thread is a core shared with that thread
//! and the atomics it reads.
//!
//! Run: `cargo bench --bench remote_write`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use agentgate_obs::metrics::RemoteWriteConfig;
use agentgate_obs::{Builder, Observability, Overflow, Phase};
use criterion::{Criterion, criterion_group, criterion_main};

mod support;

use support::Interleaved;

const EVENTS: u64 = 100_000;

/// A receiver on a loopback port answering every request `204`; returns
/// its remote write URL and counts nothing (the benchmark checks the
/// pipeline's own counters).
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/write",
        listener.local_addr().expect("addr")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut data = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            // The head, then Content-Length bytes of body.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    break;
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    url
}

fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/api/v1/write")
}

fn builder() -> Builder {
    Observability::builder()
        .queue_capacity(EVENTS as usize + 16)
        .overflow(Overflow::Block)
        .no_log()
}

fn remote_write(url: String) -> Builder {
    builder().remote_write_config(
        RemoteWriteConfig::new(url)
            .interval(Duration::from_millis(10))
            .timeout(Duration::from_millis(200))
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .max_retries(2)
            .final_wait(Duration::from_millis(500)),
    )
}

fn drain_interleaved(_: &mut Criterion) {
    /// Bursts per setup, a multiple of the six orders.
    const ROUNDS: usize = 120;
    let setups = vec![
        ("no remote write", builder()),
        ("remote write, receiver takes all", remote_write(receiver())),
        (
            "remote write, receiver down",
            remote_write(closed_port_url()),
        ),
    ];
    let bench = Interleaved::start("remote write, interleaved", EVENTS, setups);
    bench.run(ROUNDS, |_, _| {});
    // The sends really ran beside the bursts, and each setup counted them.
    let mut counted = Vec::new();
    for (i, name) in bench.names().into_iter().enumerate() {
        let text = bench.pipeline(i).metrics().render();
        let value = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let (sent, failed, retries) = (
            value("agentgate_remote_write_samples_sent_total"),
            value("agentgate_remote_write_samples_failed_total"),
            value("agentgate_remote_write_retries_total"),
        );
        println!(
            "remote write, interleaved: {name}: samples sent {sent}, failed {failed}, retries {retries}"
        );
        counted.push((sent, failed, retries));
    }
    assert!(counted[1].0 > 0.0, "the receiver got nothing");
    assert!(counted[2].1 > 0.0 && counted[2].2 > 0.0, "nothing failed");
}

/// One send as the exporter thread makes it (render, parse, encode,
/// compress, a loopback POST answered 204), on a pipeline with the
/// built-in families and 1,000 runs behind them.
fn one_send(c: &mut Criterion) {
    let url = receiver();
    let obs = builder().start().expect("pipeline starts");
    let emitter = obs.emitter();
    for i in 0..1_000u32 {
        let run = emitter.run(&format!("wo-{i}"), &format!("run-{i}"));
        run.phase_completed(
            1,
            Phase::Build,
            i % 3 != 0,
            Duration::from_millis(u64::from(i)),
        );
    }
    obs.flush();
    let config = RemoteWriteConfig::new(url);
    c.bench_function("remote write/one send of the built-in families", |b| {
        b.iter(|| {
            let sent = obs.remote_write_once(&config, None).expect("delivered");
            assert!(sent > 0);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = drain_interleaved, one_send
}
criterion_main!(benches);
