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
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_obs::event::EventKind;
use agentgate_obs::metrics::PushGatewayConfig;
use agentgate_obs::{Builder, Observability, Overflow, Phase, Subscription};
use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;

mod support;

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

/// The drain thread's marks of a burst: when it processed the last event,
/// and its CPU time from the release to then.
#[derive(Clone, Copy, Default)]
struct Marks {
    last: Option<Instant>,
    cpu_at_release: Option<Duration>,
    cpu_at_last: Option<Duration>,
}

fn mark(obs: &Observability) -> (Arc<Mutex<Marks>>, Subscription) {
    let marks = Arc::new(Mutex::new(Marks::default()));
    let writer = marks.clone();
    let last_iteration = EVENTS as u32 - 1;
    let sub = obs.emitter().subscribe(move |e| match e.kind {
        EventKind::PhaseStarted { iteration: 0, .. } => {
            writer.lock().cpu_at_release = support::this_thread_cpu();
        }
        EventKind::PhaseCompleted { iteration, .. } if iteration == last_iteration => {
            let cpu = support::this_thread_cpu();
            let mut marks = writer.lock();
            marks.last = Some(Instant::now());
            marks.cpu_at_last = cpu;
        }
        _ => {}
    });
    (marks, sub)
}

fn builder() -> Builder {
    Observability::builder()
        .queue_capacity(EVENTS as usize + 16)
        .overflow(Overflow::Block)
        .no_log()
}

fn drain_interleaved(_: &mut Criterion) {
    let setups = [
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
    let pipelines: Vec<_> = setups
        .into_iter()
        .map(|(name, builder)| {
            let obs = builder.start().expect("pipeline starts");
            let gate = support::DrainGate::attach(&obs);
            let (marks, sub) = mark(&obs);
            let run = obs.emitter().run("wo-1", "run-1");
            (name, obs, gate, marks, sub, run)
        })
        .collect();
    let mut wall = vec![Vec::new(); pipelines.len()];
    let mut cpu = vec![Vec::new(); pipelines.len()];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (_, obs, gate, marks, _, run) = &pipelines[i];
            *marks.lock() = Marks::default();
            gate.hold();
            run.phase_started(0, Phase::Build);
            for n in 0..EVENTS {
                run.phase_completed(n as u32, Phase::Build, true, Duration::from_millis(5));
            }
            let start = Instant::now();
            gate.release();
            obs.flush();
            let marks = *marks.lock();
            wall[i].push((marks.last.unwrap_or_else(Instant::now) - start).as_secs_f64());
            if let (Some(at_release), Some(at_last)) = (marks.cpu_at_release, marks.cpu_at_last) {
                cpu[i].push(at_last.saturating_sub(at_release).as_secs_f64());
            }
        }
    }
    let pushes = pipelines[1].1.metrics().push_gateway_stats();
    assert_eq!(pushes.failed, 0, "{pushes:?}");
    assert!(pushes.pushes > 0, "{pushes:?}");
    let names: Vec<&str> = pipelines.iter().map(|(name, ..)| *name).collect();
    report(&format!("{ROUNDS} bursts"), &names, &mut wall);
    if cpu.iter().all(|t| t.len() == ROUNDS) {
        report(
            &format!("{ROUNDS} bursts in drain-thread CPU time"),
            &names,
            &mut cpu,
        );
    }
    println!(
        "drain, interleaved: {} pushes during the run, none failed",
        pushes.pushes
    );
}

fn report(label: &str, names: &[&str], seconds: &mut [Vec<f64>]) {
    let medians: Vec<f64> = seconds
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    for (name, median) in names.iter().zip(&medians) {
        println!(
            "drain, interleaved medians of {label}: {name}: {:.2} M events/s ({:+.1} % against no push)",
            EVENTS as f64 / median / 1e6,
            (medians[0] / median - 1.0) * 100.0
        );
    }
}

criterion_group!(benches, drain_interleaved);
criterion_main!(benches);
