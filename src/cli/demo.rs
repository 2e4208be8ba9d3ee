//! `agentgate-obs demo`: the simulated engine feeding the real pipeline.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentgate_obs::Observability;
use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::event::RunOutcome;
use agentgate_obs::logging::Level;
use clap::Args;

use super::delivery::{Targets, Traces};
use super::serve::ServeArgs;
use super::{Exit, Failure, Usage, report};

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
    /// Write the JSON log lines to stderr even when it is a terminal (there
    /// the demo otherwise shows a status line and logs errors only; when
    /// stderr is not a terminal, the lines always go there).
    #[arg(long, conflicts_with = "log_file")]
    log: bool,
    /// Append every event to FILE, one JSON line each, exactly as /ws sends
    /// it (the journal: `agentgate-obs replay FILE` and `summary FILE`
    /// read it back). Rotated at 100 MiB, five old files kept.
    #[arg(long, value_name = "FILE")]
    events_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    targets: Targets,
    #[command(flatten)]
    traces: Traces,
    /// How often to deliver to the Pushgateway or the remote write
    /// receiver (the last delivery is at exit).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration, requires = "receiver")]
    push_interval: Duration,
    /// At exit, delete the Pushgateway group instead of pushing the final
    /// figures (for a long-lived engine whose figures must not outlive it).
    #[arg(long, requires = "push_gateway")]
    push_delete_on_shutdown: bool,
}

pub(crate) fn run(args: DemoArgs) -> Result<Exit, Failure> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err(Usage("--time-scale must be a finite number >= 0".into()).into());
    }
    let (mut builder, token) = args.serve.builder()?;
    // On a terminal, a line per event would bury the URLs: a status line
    // takes their place, and errors still show.
    let status_line = args.log_file.is_none() && !args.log && std::io::stderr().is_terminal();
    if let Some(path) = &args.log_file {
        builder = builder.log_file(path);
    } else if status_line {
        builder = builder.log_level(Level::Error);
    }
    if let Some(path) = &args.events_out {
        builder = builder.journal(path);
    }
    builder = args
        .targets
        .apply(builder, args.push_interval, args.push_delete_on_shutdown)?;
    builder = args.traces.apply(builder)?;
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
    let tally = if status_line {
        eprintln!(
            "agentgate-obs: showing a status line; --log shows the JSON logs, \
             --log-file FILE keeps them"
        );
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| show_status(&obs, config.work_orders, &done));
            let tally = run_engine(&emitter, &config, &stop);
            obs.flush();
            // Relaxed: a request to stop soon; the scope joins the thread.
            done.store(true, Ordering::Relaxed);
            tally
        })
    } else {
        let tally = run_engine(&emitter, &config, &stop);
        obs.flush();
        tally
    };

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
    Ok(if !args.exit_when_done || runs.total() == runs.succeeded {
        Exit::Ok
    } else {
        Exit::RunsFailed
    })
}

/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Redraws one status line on stderr (`\r`, then erase the line) until
/// `done`, then leaves its final state on a line of its own.
fn show_status(obs: &Observability, work_orders: usize, done: &AtomicBool) {
    let mut last = (Instant::now(), obs.stats().processed.total());
    loop {
        // Relaxed: only this flag is read; the figures come from `obs`.
        let finished = done.load(Ordering::Relaxed);
        if !finished {
            std::thread::sleep(STATUS_EVERY);
        }
        let now = (Instant::now(), obs.stats().processed.total());
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
        last = now;
        let metrics = obs.metrics();
        let mut line = format!(
            "\r\x1b[2Kruns: {} active, {} succeeded, {} failed, {} canceled (of {work_orders})",
            obs.active_runs(),
            metrics.runs_completed(RunOutcome::Succeeded),
            metrics.runs_completed(RunOutcome::Failed),
            metrics.runs_completed(RunOutcome::Canceled),
        );
        if !finished {
            line.push_str(&format!(" · {rate:.0} events/s"));
        } else {
            line.push('\n');
        }
        // A closed stderr must not stop the demo.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        if finished {
            return;
        }
    }
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
