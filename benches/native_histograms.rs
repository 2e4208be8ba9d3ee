//! What native histograms cost. The drain thread with native buckets
//! counted beside the classic ones and without, burst for burst in turn
//! (both orders), as medians in wall time and in the drain thread's own
//! CPU time: every event of a burst is a phase completion, so each one
//! records a phase duration and a queue latency, both histograms with
//! native buckets. The protobuf render against the text render and
//! against `prometheus-client`'s encoders is in `benches/protobuf-peer/`.
//!
//! Run: `cargo bench --bench native_histograms`.

use std::time::{Duration, Instant};

use agentgate_obs::metrics::MetricsConfig;
use agentgate_obs::{Observability, Overflow, Phase};
use criterion::{Criterion, criterion_group, criterion_main};

mod support;

use support::{LastSeen, median};

const EVENTS: u64 = 100_000;

fn drain_interleaved(_: &mut Criterion) {
    /// Bursts per setup, a multiple of the two orders.
    const ROUNDS: usize = 60;
    let pipelines: Vec<_> = [("native buckets off", false), ("native buckets on", true)]
        .into_iter()
        .map(|(name, native)| {
            let obs = Observability::builder()
                .queue_capacity(EVENTS as usize + 16)
                .overflow(Overflow::Block)
                .no_log()
                .metrics(MetricsConfig::default().native_histograms(native))
                .start()
                .expect("pipeline starts");
            let gate = support::DrainGate::attach(&obs);
            let last = LastSeen::attach(&obs, EVENTS as u32 - 1);
            let run = obs.emitter().run("wo-1", "run-1");
            (name, obs, gate, last, run)
        })
        .collect();
    let mut times = vec![Vec::new(); 2];
    let mut cpu_times = vec![Vec::new(); 2];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (_, obs, gate, last, run) = &pipelines[i];
            last.reset();
            gate.hold();
            run.phase_started(0, Phase::Build);
            for n in 0..EVENTS {
                // Durations spread over four decades, so the native buckets
                // touched are many, as an engine's are.
                let micros = 50 + (n * 7_919) % 5_000_000;
                run.phase_completed(n as u32, Phase::Build, true, Duration::from_micros(micros));
            }
            let start = Instant::now();
            gate.release();
            let end = loop {
                match last.last() {
                    Some(end) => break end,
                    None => std::thread::sleep(Duration::from_micros(100)),
                }
            };
            times[i].push((end - start).as_secs_f64());
            if let Some(cpu) = last.cpu() {
                cpu_times[i].push(cpu.as_secs_f64());
            }
            obs.flush();
        }
    }
    let names: Vec<&str> = pipelines.iter().map(|(name, ..)| *name).collect();
    report(&format!("{ROUNDS} bursts"), &names, &mut times);
    if cpu_times.iter().all(|t| t.len() == ROUNDS) {
        let label = format!("{ROUNDS} bursts in drain-thread CPU time");
        report(&label, &names, &mut cpu_times);
    } else {
        println!("native, interleaved: no drain-thread CPU time (CLOCK_THREAD_CPUTIME_ID failed)");
    }
    // Both counted every observation; only one has native buckets.
    for (name, obs, ..) in &pipelines {
        let summary = obs.metrics().summary();
        let build = summary
            .histograms
            .iter()
            .find(|h| {
                h.name == "agentgate_phase_duration_seconds"
                    && h.labels.get("phase").map(String::as_str) == Some("build")
            })
            .expect("the build phase");
        assert_eq!(build.count, EVENTS * ROUNDS as u64, "{name}");
    }
}

fn report(label: &str, names: &[&str], seconds: &mut [Vec<f64>]) {
    let medians: Vec<f64> = seconds.iter_mut().map(|t| median(t)).collect();
    for (name, median) in names.iter().zip(&medians) {
        println!(
            "native, interleaved medians of {label}: {name}: {:.2} M events/s ({:+.1} % against off)",
            EVENTS as f64 / median / 1e6,
            (medians[0] / median - 1.0) * 100.0
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = drain_interleaved
}
criterion_main!(benches);
