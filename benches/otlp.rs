//! The drain thread's cost of building spans for OTLP export: the same
//! bursts of whole runs through a pipeline without OTLP and one exporting
//! to a local receiver, burst for burst in turn (alternating which goes
//! first), as medians of wall time and of the drain thread's own CPU time
//! and their ratio. Each burst is queued while the drain thread is held,
//! then timed from its release to its last event; a pause after it lets
//! the exporter thread build and send its spans before the next burst.
//!
//! Run: `cargo bench --bench otlp`. `OTLP_BENCH_ROUNDS=5` runs fewer
//! bursts, for counting the drain threads' instructions under
//! `valgrind --tool=callgrind --separate-threads=yes` (the gate's own
//! spinning, `DrainGate::attach`'s closure, is then left out of each).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_obs::event::EventKind;
use agentgate_obs::metrics::OtlpConfig;
use agentgate_obs::{
    Builder, ExecutionMetrics, Observability, Overflow, Phase, PhaseTimings, RunResult, Strategy,
    TaskSpec,
};
use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;

mod support;

use support::{median, this_thread_cpu};

/// Runs per burst: 14 events and 6 spans each.
const RUNS: usize = 1000;
const EVENTS_PER_RUN: usize = 14;
/// Bursts per setup, alternating which setup goes first.
const ROUNDS: usize = 400;

fn rounds() -> usize {
    std::env::var("OTLP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}
/// The pause after each burst.
const SETTLE: Duration = Duration::from_millis(15);

/// A receiver answering every request `200` at once.
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    url
}

/// The drain thread's CPU time at the burst's first and last events.
#[derive(Default, Clone, Copy)]
struct Marks {
    first: Option<Duration>,
    last: Option<(Instant, Option<Duration>)>,
}

struct Pipeline {
    name: &'static str,
    obs: Observability,
    gate: support::DrainGate,
    marks: Arc<Mutex<Marks>>,
    _sub: agentgate_obs::Subscription,
}

fn pipeline(name: &'static str, builder: Builder) -> Pipeline {
    let obs = builder
        .queue_capacity(RUNS * EVENTS_PER_RUN * 2 + 64)
        .overflow(Overflow::Block)
        .max_runs(RUNS * 4)
        .no_log()
        .start()
        .expect("pipeline starts");
    let gate = support::DrainGate::attach(&obs);
    let marks = Arc::new(Mutex::new(Marks::default()));
    let mark = marks.clone();
    let sub = obs.emitter().subscribe(move |e| match &e.kind {
        EventKind::RunStarted { .. } if e.run_id.ends_with("-0") => {
            mark.lock().first = this_thread_cpu();
        }
        EventKind::RunCompleted { .. } if e.run_id.ends_with("-last") => {
            mark.lock().last = Some((Instant::now(), this_thread_cpu()));
        }
        _ => {}
    });
    Pipeline {
        name,
        obs,
        gate,
        marks,
        _sub: sub,
    }
}

/// Queues one burst of whole runs behind the gate; returns the wall and
/// drain-thread CPU time of processing it.
fn burst(p: &Pipeline, round: usize) -> (f64, Option<f64>) {
    *p.marks.lock() = Marks::default();
    let spec = TaskSpec::new("bench", Strategy::Fixed, 1);
    let timings = PhaseTimings {
        build: Some(5),
        snapshot: Some(1),
        verify: Some(7),
        feedback: Some(2),
    };
    p.gate.hold();
    let emitter = p.obs.emitter();
    // The gate holds the drain thread at the first event.
    let handles: Vec<_> = (0..RUNS)
        .map(|i| {
            let id = if i == RUNS - 1 {
                format!("r{round}-last")
            } else {
                format!("r{round}-{i}")
            };
            emitter.run("wo", &id)
        })
        .collect();
    for run in &handles {
        run.started(&spec);
        run.iteration_started(1, 1, None);
        for phase in Phase::ALL {
            run.phase_started(1, *phase);
            run.phase_completed(1, *phase, true, Duration::from_millis(5));
        }
        run.gate_checked(1, "lint", true);
        run.gate_checked(1, "tests", true);
        run.iteration_completed(1, true, &timings);
        run.completed(RunResult::Passed, &ExecutionMetrics::default());
    }
    let start = Instant::now();
    p.gate.release();
    let (end, cpu_end) = loop {
        if let Some(last) = p.marks.lock().last {
            break last;
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    let first = p.marks.lock().first;
    drop(handles);
    p.obs.flush();
    // The exporter thread builds, encodes and sends this burst's spans
    // now: done before the next burst, its work does not share the
    // machine with the drain thread being measured.
    std::thread::sleep(SETTLE);
    let cpu = match (first, cpu_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    ((end - start).as_secs_f64(), cpu)
}

fn drain_with_otlp(_: &mut Criterion) {
    let url = receiver();
    let pipelines = [
        pipeline("OTLP off", Observability::builder()),
        pipeline(
            "OTLP on (protobuf, local receiver)",
            Observability::builder().otlp_config(
                OtlpConfig::new(url)
                    .interval(Duration::from_millis(50))
                    .max_queue(1 << 16),
            ),
        ),
    ];
    let mut wall = vec![Vec::new(); 2];
    let mut cpu = vec![Vec::new(); 2];
    let rounds = rounds();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (w, c) = burst(&pipelines[i], round);
            wall[i].push(w);
            if let Some(c) = c {
                cpu[i].push(c);
            }
        }
    }
    let events = (RUNS * EVENTS_PER_RUN) as f64;
    for (label, times) in [
        ("wall time", &mut wall),
        ("drain-thread CPU time", &mut cpu),
    ] {
        if times.iter().any(|t| t.len() != rounds) {
            println!("drain with OTLP: no {label}");
            continue;
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        for (p, m) in pipelines.iter().zip(&medians) {
            println!(
                "drain with OTLP, medians of {rounds} alternating bursts in {label}: {}: {:.0} ns/event ({:+.1} % against OTLP off)",
                p.name,
                m / events * 1e9,
                (m / medians[0] - 1.0) * 100.0
            );
        }
    }
    pipelines[1].obs.flush();
    std::thread::sleep(Duration::from_millis(500));
    for line in pipelines[1].obs.metrics().render().lines() {
        if line.starts_with("agentgate_otlp_spans") {
            println!("drain with OTLP: {line}");
        }
    }
}

criterion_group!(benches, drain_with_otlp);
criterion_main!(benches);
