//! `agentgate-obs summary FILE... [--json]`: the `demo --json` summary
//! from a journal, with an exit status a CI job can gate on.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use agentgate_obs::journal::{Speed, replay};
use agentgate_obs::{Observability, Overflow, RunOutcome};
use clap::Args;

use super::replay::{note_missing_rotations, warn_about};
use super::{Exit, Failure, report};

#[derive(Debug, Args)]
pub(crate) struct SummaryArgs {
    /// Journal files; a rotated set may be given in any order (`FILE*`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
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
    let report = replay(&obs, &args.files, Speed::Max, &AtomicBool::new(false))?;
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
