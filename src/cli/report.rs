//! The end-of-run summary `demo --exit-when-done` and `summary` print:
//! runs by outcome, events, phase p50/p99.

use agentgate_obs::Phase;
use agentgate_obs::metrics::Summary;
use serde_json::json;

/// Runs by how they ended.
pub(crate) struct Runs {
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) canceled: u64,
    /// Runs without a terminal event (a journal cut short); `None` where
    /// the figure cannot arise (the demo waits for its runs).
    pub(crate) unfinished: Option<u64>,
}

impl Runs {
    pub(crate) fn total(&self) -> u64 {
        self.succeeded + self.failed + self.canceled + self.unfinished.unwrap_or(0)
    }
}

/// Events by fate.
pub(crate) struct Events {
    pub(crate) emitted: u64,
    pub(crate) processed: u64,
    pub(crate) dropped: u64,
}

/// The summary as the JSON object of `--json`.
pub(crate) fn summary(runs: &Runs, events: &Events, metrics: &Summary) -> serde_json::Value {
    let phases: serde_json::Map<String, serde_json::Value> = Phase::ALL
        .iter()
        .map(|&p| {
            (p.as_str().to_owned(), {
                let (p50, p99) = metrics.phase(p).map_or((0.0, 0.0), |h| (h.p50, h.p99));
                json!({"p50Ms": millis(p50), "p99Ms": millis(p99)})
            })
        })
        .collect();
    let mut run_counts = json!({
        "total": runs.total(),
        "succeeded": runs.succeeded,
        "failed": runs.failed,
        "canceled": runs.canceled,
    });
    if let Some(unfinished) = runs.unfinished {
        run_counts["unfinished"] = unfinished.into();
    }
    json!({
        "runs": run_counts,
        "events": {
            "emitted": events.emitted,
            "processed": events.processed,
            "dropped": events.dropped,
        },
        "phases": phases,
    })
}

/// Prints `summary`: one JSON line, or a few lines for people.
pub(crate) fn print(summary: &serde_json::Value, as_json: bool) {
    if as_json {
        say!("{summary}");
        return;
    }
    let runs = &summary["runs"];
    say!(
        "runs: {} total, {} succeeded, {} failed, {} canceled",
        runs["total"],
        runs["succeeded"],
        runs["failed"],
        runs["canceled"]
    );
    if runs["unfinished"].as_u64().is_some_and(|n| n > 0) {
        say!(
            "      {} unfinished (no terminal event)",
            runs["unfinished"]
        );
    }
    let events = &summary["events"];
    say!(
        "events: {} emitted, {} processed, {} dropped",
        events["emitted"],
        events["processed"],
        events["dropped"]
    );
    for phase in Phase::ALL {
        let p = &summary["phases"][phase.as_str()];
        say!(
            "{:<9} p50 {:>9} ms   p99 {:>9} ms",
            phase.as_str(),
            p["p50Ms"],
            p["p99Ms"]
        );
    }
}

/// Seconds as milliseconds rounded to the microsecond, so the summary
/// shows `16023.551`, not `16023.551000000001`.
fn millis(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e3
}
