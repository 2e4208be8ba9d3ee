//! `agentgate-obs push FILE... --push-gateway URL | --remote-write URL`:
//! the metrics of a journal, rebuilt through the replay pipeline,
//! delivered once. For an engine that died before its last delivery
//! (SIGKILL, out of memory): its journal holds every run. Delivering twice
//! counts nothing twice: a Pushgateway `PUT` replaces the group, and remote
//! write sends the same cumulative values again.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgate_obs::event::RunOutcome;
use agentgate_obs::journal::Speed;
use agentgate_obs::logging::Level;
use agentgate_obs::metrics::PushFailure;
use agentgate_obs::{Observability, Overflow};
use clap::Args;

use super::delivery::Targets;
use super::replay::{InputArgs, note_missing_rotations, warn_about};
use super::{Exit, Failure};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["push_gateway", "remote_write"])))]
pub(crate) struct PushArgs {
    /// Journal files (`demo --events-out`, `Builder::journal`); a rotated
    /// set may be given in any order (`FILE*`). `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    targets: Targets,
}

/// No periodic push while the journal loads: the one push is at the end.
const NO_PERIODIC_PUSH: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn run(args: PushArgs) -> Result<Exit, Failure> {
    note_missing_rotations(&args.files);
    // Warnings only, as JSON lines on stderr: a failed delivery says why there.
    let mut builder = Observability::builder()
        .overflow(Overflow::Block)
        .log_level(Level::Warn);
    // The Pushgateway's one push is the exporter's final one, at shutdown;
    // remote write is sent once below, not by an exporter.
    let push_gateway = args.targets.push_gateway_config()?;
    if let Some(config) = push_gateway.clone() {
        builder = builder.push_gateway_config(config.interval(NO_PERIODIC_PUSH));
    }
    let remote_write = args.targets.remote_write_config();
    // Unreadable files are an error before anything is set up.
    agentgate_obs::journal::JournalReader::open_with(&args.files, args.input.limits())?;
    let obs = builder.start()?;
    let report = obs.replay_with(
        &args.files,
        Speed::Max,
        args.input.limits(),
        &AtomicBool::new(false),
    )?;
    warn_about(&report);
    if report.events == 0 {
        // Pushing zeros would replace whatever the group holds, such as
        // the figures the engine pushed before it died; and shutting the
        // pipeline down pushes. The process exits right after this: its
        // threads end with it, nothing is sent.
        std::mem::forget(obs);
        return Err(Failure::new(
            Exit::Input,
            "the journal holds no event: nothing delivered (zeros would replace what the engine delivered before it died)",
        ));
    }
    let metrics = obs.metrics();
    let runs = [
        RunOutcome::Succeeded,
        RunOutcome::Failed,
        RunOutcome::Canceled,
    ]
    .map(|outcome| metrics.runs_completed(outcome));
    let figures = format!(
        "the figures of {} events ({} runs started: {} succeeded, {} failed, {} canceled)",
        report.events,
        metrics.runs_started(),
        runs[0],
        runs[1],
        runs[2],
    );
    let mut failures = Vec::new();
    if let Some(config) = &remote_write {
        // Stamped with the time of this delivery, not of the journal's
        // last event: an engine that sent its own figures before it died
        // left newer points, and Prometheus refuses older ones as out of
        // order (or out of bounds, for a journal hours old). The same
        // cumulative values again a second time count nothing twice.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Without its query, which may hold an API key: stdout is not redacted.
        let url = config.url().split('?').next().unwrap_or_default();
        match obs.remote_write_once(config, Some(now_ms)) {
            Ok(samples) => {
                say!("sent {figures} to the remote write receiver at {url}: {samples} samples")
            }
            Err(error) => failures.push(Failure::from(error)),
        }
    }
    // The push happens here, after the last event is processed.
    obs.shutdown();
    if let Some(config) = &push_gateway {
        let url = config.url();
        match obs.metrics().push_gateway_stats().last {
            Some(Ok(())) => say!("pushed {figures} to the Pushgateway at {url}"),
            // A redirect (`unexpected_status`) is a wrong URL as much as a 4xx.
            Some(Err(
                reason @ (PushFailure::Unauthorized
                | PushFailure::Rejected
                | PushFailure::UnexpectedStatus),
            )) => {
                failures.push(Failure::new(
                    Exit::Input,
                    format_args!(
                        "the Pushgateway at {url} refused the push ({reason}): check the URL, the token, and what else pushes to it (the log line above has its answer)"
                    ),
                ))
            }
            Some(Err(reason)) => failures.push(Failure::new(
                Exit::Unavailable,
                format_args!(
                    "could not push to the Pushgateway at {url} ({reason}); nothing was lost: push the journal again later"
                ),
            )),
            None => failures.push(Failure::new(
                Exit::Unavailable,
                format_args!(
                    "the push to the Pushgateway at {url} did not end within --push-wait; push the journal again later"
                ),
            )),
        }
    }
    // Every failure is told; the exit code is that of the one a retry
    // cannot mend, if any (2 before 3).
    failures.sort_by_key(|failure| failure.exit != Exit::Input);
    let mut failures = failures.into_iter();
    let Some(first) = failures.next() else {
        return Ok(Exit::Ok);
    };
    for other in failures {
        other.report();
    }
    Err(first)
}
