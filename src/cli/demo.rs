//! `agentgate-obs demo`: the simulated engine feeding the real pipeline.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgate_obs::Observability;
use agentgate_obs::demo::{DemoConfig, run_engine};
use clap::Args;

use super::report;
use super::serve::ServeArgs;

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
    /// With --exit-when-done: after the summary, keep serving for this long
    /// (e.g. `30s`, so Prometheus can scrape the final counts), or until
    /// Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "exit_when_done")]
    linger: Option<std::time::Duration>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Append the JSON log lines to FILE instead of writing them to stderr.
    #[arg(long, value_name = "FILE")]
    log_file: Option<std::path::PathBuf>,
    /// Append every event to FILE, one JSON line each, exactly as /ws sends
    /// it (the journal: `agentgate-obs replay FILE` and `summary FILE`
    /// read it back). Rotated at 100 MiB, five old files kept.
    #[arg(long, value_name = "FILE")]
    events_out: Option<std::path::PathBuf>,
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err("--time-scale must be a finite number >= 0".into());
    }
    let (mut builder, token) = args.serve.builder()?;
    if let Some(path) = &args.log_file {
        builder = builder.log_file(path);
    }
    if let Some(path) = &args.events_out {
        builder = builder.journal(path);
    }
    let obs = builder.start()?;
    // The demo owns the process: `log` records come out as JSON lines too.
    agentgate_obs::logging::install_log_bridge()?;
    print_urls(&obs, token.is_some());
    let emitter = obs.emitter();

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
        say!("all {} runs done; Ctrl-C to stop", tally.total());
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // Every run is done and flushed: the figures below are final.
    let runs = report::Runs {
        succeeded: tally.succeeded,
        failed: tally.failed,
        canceled: tally.canceled,
        unfinished: None,
    };
    let stats = obs.stats();
    let events = report::Events {
        emitted: stats.emitted.total(),
        processed: stats.processed.total(),
        dropped: stats.dropped.total(),
    };
    report::print(
        &report::summary(&runs, &events, &obs.metrics().summary()),
        args.json,
    );
    if let Some(linger) = args.linger {
        let until = std::time::Instant::now() + linger;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    obs.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// Prints the server's URLs (never the token: stdout ends up in
/// terminals' scrollback, CI logs and screen shares).
pub(crate) fn print_urls(obs: &Observability, has_token: bool) {
    if let Some(addr) = obs.local_addr() {
        say!("dashboard: http://{addr}/");
        if has_token {
            say!(
                "  the dashboard needs the token: open http://{addr}/?token=YOUR_TOKEN \
                 (the page takes it out of the address bar and keeps it for the tab)"
            );
        }
        say!("metrics: http://{addr}/metrics");
        say!("websocket: ws://{addr}/ws");
    }
}
