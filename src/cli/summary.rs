//! `agentgate-obs summary FILE... [--json]`: the `demo --json` summary
//! from a journal, with an exit status a CI job can gate on.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use agentgate_obs::event::RunOutcome;
use agentgate_obs::journal::Speed;
use agentgate_obs::{Observability, Overflow};
use clap::Args;

use super::replay::{InputArgs, note_missing_rotations, warn_about};
use super::{Exit, Failure, report};

#[derive(Debug, Args)]
pub(crate) struct SummaryArgs {
    /// Journal files; a rotated set may be given in any order (`FILE*`).
    /// `-` is standard input; a FIFO is read until its writer closes it.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
    /// The summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: SummaryArgs) -> Result<Exit, Failure> {
    note_missing_rotations(&args.files);
    let obs = Observability::builder()
        .no_log()
        .overflow(Overflow::Block)
        .start()?;
    let limits = args.input.limits();
    let report = obs.replay_with(&args.files, Speed::Max, limits, &AtomicBool::new(false))?;
    warn_about(&report);
    let metrics = obs.metrics();
    let succeeded = metrics.runs_completed(RunOutcome::Succeeded);
    let failed = metrics.runs_completed(RunOutcome::Failed);
    let canceled = metrics.runs_completed(RunOutcome::Canceled);
    let runs = report::Runs {
        succeeded,
        failed,
        canceled,
        unfinished: Some(
            metrics
                .runs_started()
                .saturating_sub(succeeded + failed + canceled),
        ),
    };
    // The journal's view: what it holds, and what its seq says it missed.
    let events = report::Events {
        emitted: report.events + report.missing,
        processed: report.events,
        dropped: report.missing,
    };
    report::print(
        &report::summary(&runs, &events, &metrics.summary()),
        args.json,
    );
    let all_succeeded = runs.total() > 0 && runs.total() == succeeded;
    obs.shutdown();
    Ok(if all_succeeded {
        Exit::Ok
    } else {
        Exit::RunsFailed
    })
}
