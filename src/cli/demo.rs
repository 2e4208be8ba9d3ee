//! `agentgate-obs demo`: the simulated engine feeding the real pipeline.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::{EventKind, Observability, Phase, PipelineStats, ProgressEvent};
use clap::Args;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::json;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Work orders to run (one run each).
    #[arg(long, default_value_t = 40)]
    work_orders: usize,
    /// Engine worker threads.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Factor applied to simulated durations (0 runs as fast as possible).
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// Print a summary and exit when every run is done.
    #[arg(long)]
    exit_when_done: bool,
    /// With --exit-when-done: the summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Append the JSON log lines to FILE instead of writing them to stderr.
    #[arg(long, value_name = "FILE")]
    log_file: Option<std::path::PathBuf>,
}

/// Phase durations seen by the demo, for the summary.
struct PhaseDurations([Histogram<u64>; 4]);

impl PhaseDurations {
    fn new() -> Self {
        // 1 µs to 24 h at 3 significant digits: valid bounds, cannot fail.
        PhaseDurations(std::array::from_fn(|_| {
            Histogram::new_with_bounds(1, 86_400_000_000, 3).expect("valid histogram bounds")
        }))
    }

    fn record(&mut self, event: &ProgressEvent) {
        if let EventKind::PhaseCompleted {
            phase, duration_ms, ..
        } = event.kind
        {
            self.0[phase.index()].saturating_record(duration_ms.saturating_mul(1000).max(1));
        }
    }

    fn quantile_ms(&self, phase: Phase, q: f64) -> f64 {
        let h = &self.0[phase.index()];
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err("--time-scale must be a finite number >= 0".into());
    }
    let mut builder = Observability::builder();
    if let Some(path) = &args.log_file {
        builder = builder.log_file(path);
    }
    let obs = builder.start()?;
    // The demo owns the process: `log` records come out as JSON lines too.
    agentgate_obs::install_log_bridge()?;
    let emitter = obs.emitter();
    let durations = Arc::new(Mutex::new(PhaseDurations::new()));
    let sink = durations.clone();
    let _summary = emitter.subscribe(move |event| sink.lock().record(event));

    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;

    let config = DemoConfig {
        work_orders: args.work_orders,
        concurrency: args.concurrency,
        seed: args.seed,
        time_scale: args.time_scale,
    };
    let tally = run_engine(&emitter, &config, &stop);
    obs.flush();

    if !args.exit_when_done {
        println!("all {} runs done; Ctrl-C to stop", tally.total());
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    obs.shutdown();
    let stats = obs.stats();
    let durations = durations.lock();
    let phases: serde_json::Map<String, serde_json::Value> = Phase::ALL
        .iter()
        .map(|&p| {
            (
                p.as_str().to_owned(),
                json!({"p50Ms": durations.quantile_ms(p, 0.5), "p99Ms": durations.quantile_ms(p, 0.99)}),
            )
        })
        .collect();
    let summary = json!({
        "runs": {
            "total": tally.total(),
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "canceled": tally.canceled,
        },
        "events": events_json(&stats),
        "phases": phases,
    });
    if args.json {
        println!("{summary}");
    } else {
        print_human(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn events_json(stats: &PipelineStats) -> serde_json::Value {
    json!({
        "emitted": stats.emitted.total(),
        "processed": stats.processed.total(),
        "dropped": stats.dropped.total(),
    })
}

fn print_human(summary: &serde_json::Value) {
    let runs = &summary["runs"];
    println!(
        "runs: {} total, {} succeeded, {} failed, {} canceled",
        runs["total"], runs["succeeded"], runs["failed"], runs["canceled"]
    );
    let events = &summary["events"];
    println!(
        "events: {} emitted, {} processed, {} dropped",
        events["emitted"], events["processed"], events["dropped"]
    );
    for phase in Phase::ALL {
        let p = &summary["phases"][phase.as_str()];
        println!(
            "{:<9} p50 {:>9} ms   p99 {:>9} ms",
            phase.as_str(),
            p["p50Ms"],
            p["p99Ms"]
        );
    }
}
