//! `agentgate-obs push FILE... --push-gateway URL`: the metrics of a
//! journal, rebuilt through the replay pipeline, delivered once. For an
//! engine that died before its last push (SIGKILL, out of memory): its
//! journal holds every run, and a `PUT` replaces the group, so pushing
//! twice counts nothing twice.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

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
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["push_gateway"])))]
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
    // Warnings only, as JSON lines on stderr: a failed push says why there.
    let builder = Observability::builder()
        .overflow(Overflow::Block)
        .log_level(Level::Warn);
    let builder = args
        .targets
        .apply(builder, |config| config.interval(NO_PERIODIC_PUSH))?;
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
            "the journal holds no event: nothing pushed (a push would replace the group with zeros)",
        ));
    }
    let metrics = obs.metrics();
    let runs = [
        RunOutcome::Succeeded,
        RunOutcome::Failed,
        RunOutcome::Canceled,
    ]
    .map(|outcome| metrics.runs_completed(outcome));
    // The push happens here, after the last event is processed.
    obs.shutdown();
    let url = args
        .targets
        .push_gateway
        .push_gateway
        .as_deref()
        .unwrap_or_default();
    match obs.metrics().push_gateway_stats().last {
        Some(Ok(())) => {
            say!(
                "pushed the figures of {} events ({} runs started: {} succeeded, {} failed, {} canceled) to the Pushgateway at {url}",
                report.events,
                metrics.runs_started(),
                runs[0],
                runs[1],
                runs[2],
            );
            Ok(Exit::Ok)
        }
        Some(Err(reason @ (PushFailure::Unauthorized | PushFailure::Rejected))) => {
            Err(Failure::new(
                Exit::Input,
                format_args!(
                    "the Pushgateway at {url} refused the push ({reason}): check the URL, the token, and what else pushes to it (the log line above has its answer)"
                ),
            ))
        }
        Some(Err(reason)) => Err(Failure::new(
            Exit::Unavailable,
            format_args!(
                "could not push to the Pushgateway at {url} ({reason}); nothing was lost: push the journal again later"
            ),
        )),
        None => Err(Failure::new(
            Exit::Unavailable,
            format_args!(
                "the push to the Pushgateway at {url} did not end within --push-wait; push the journal again later"
            ),
        )),
    }
}
