//! What `watch` knows about the runs: built from the `hello` snapshot,
//! updated by every event, and telling the display what changed.
//!
//! Messages are read leniently as JSON values: a field of an unexpected
//! type reads as absent, so a newer server never stops an older client.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// A run's identity: work order and run id.
pub(crate) type Key = (String, String);

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        match s {
            "running" => Some(Status::Running),
            "succeeded" => Some(Status::Succeeded),
            "failed" => Some(Status::Failed),
            "canceled" => Some(Status::Canceled),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }
}

/// One run as `watch` shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunView {
    pub(crate) work_order_id: String,
    pub(crate) run_id: String,
    pub(crate) status: Status,
    pub(crate) iteration: u64,
    pub(crate) max_iterations: u64,
    pub(crate) phase: Option<String>,
    pub(crate) delivering: bool,
    pub(crate) engine_result: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) pr_url: Option<String>,
    pub(crate) ci_status: Option<String>,
    pub(crate) delivery_failed: bool,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) finished_at: Option<SystemTime>,
    /// The engine's own duration, from `run:completed`.
    pub(crate) duration_ms: Option<u64>,
}

impl RunView {
    fn new(work_order_id: String, run_id: String) -> Self {
        RunView {
            work_order_id,
            run_id,
            status: Status::Running,
            iteration: 0,
            max_iterations: 0,
            phase: None,
            delivering: false,
            engine_result: None,
            reason: None,
            pr_url: None,
            ci_status: None,
            delivery_failed: false,
            started_at: None,
            finished_at: None,
            duration_ms: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_test(work_order_id: &str, run_id: &str) -> Self {
        RunView::new(work_order_id.to_owned(), run_id.to_owned())
    }

    pub(crate) fn key(&self) -> Key {
        (self.work_order_id.clone(), self.run_id.clone())
    }

    /// The engine's duration when it reported one, else the span between
    /// the run's first and last event.
    pub(crate) fn duration(&self) -> Option<Duration> {
        self.duration_ms.map(Duration::from_millis).or_else(|| {
            let (start, end) = (self.started_at?, self.finished_at?);
            end.duration_since(start).ok()
        })
    }
}

/// What applying a message changed.
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    /// A run still going changed (or appeared).
    Active(Key),
    /// A run finished, seen for the first time as finished.
    Finished(Key),
}

/// The runs the server knows now, and every finished run reported so
/// far: those outlive a restarted server's snapshot, so the summary and the
/// exit status cover everything watched.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    runs: HashMap<Key, RunView>,
    reported: HashMap<Key, Status>,
    /// Events applied.
    pub(crate) events: u64,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

fn time(value: &Value, key: &str) -> Option<SystemTime> {
    value
        .get(key)
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}

impl Fleet {
    pub(crate) fn get(&self, key: &Key) -> Option<&RunView> {
        self.runs.get(key)
    }

    /// Runs not finished.
    pub(crate) fn active(&self) -> usize {
        self.runs
            .values()
            .filter(|r| r.status == Status::Running)
            .count()
    }

    /// How many reported runs ended with `status`.
    pub(crate) fn count(&self, status: Status) -> usize {
        self.reported.values().filter(|s| **s == status).count()
    }

    /// Runs reported finished plus runs active.
    pub(crate) fn total(&self) -> usize {
        self.reported.len() + self.active()
    }

    /// Replaces what is known with a `hello` snapshot. Runs that were
    /// active and are gone from it (a restarted server) are forgotten
    /// without a result.
    pub(crate) fn load(&mut self, snapshot: &[Value]) -> Vec<Change> {
        let mut runs = HashMap::with_capacity(snapshot.len());
        for s in snapshot {
            let (Some(work_order_id), Some(run_id)) = (text(s, "workOrderId"), text(s, "runId"))
            else {
                continue;
            };
            let mut run = RunView::new(work_order_id, run_id);
            run.status = text(s, "status")
                .and_then(|t| Status::parse(&t))
                .unwrap_or(Status::Running);
            run.iteration = number(s, "iteration").unwrap_or(0);
            run.max_iterations = number(s, "maxIterations").unwrap_or(0);
            run.phase = text(s, "phase");
            run.engine_result = text(s, "engineResult");
            run.reason = text(s, "reason");
            run.started_at = time(s, "startedAt");
            run.finished_at = time(s, "finishedAt");
            run.duration_ms = number(s, "durationMs");
            if let Some(d) = s.get("delivery") {
                run.delivering = d.get("status").and_then(Value::as_str) == Some("running");
                run.delivery_failed = d.get("status").and_then(Value::as_str) == Some("failed");
                run.pr_url = text(d, "prUrl");
                run.ci_status = text(d, "ciStatus");
            }
            runs.insert(run.key(), run);
        }
        self.runs = runs;
        // Finished runs not yet reported, in the order they finished.
        let mut finished: Vec<&RunView> = self
            .runs
            .values()
            .filter(|r| r.status != Status::Running && !self.reported.contains_key(&r.key()))
            .collect();
        finished.sort_by_key(|r| (r.finished_at, r.key()));
        let mut active: Vec<Key> = self
            .runs
            .values()
            .filter(|r| r.status == Status::Running)
            .map(RunView::key)
            .collect();
        active.sort();
        let finished: Vec<Key> = finished
            .into_iter()
            .map(|r| {
                self.reported.insert(r.key(), r.status);
                r.key()
            })
            .collect();
        let changes = finished.into_iter().map(Change::Finished);
        changes
            .chain(active.into_iter().map(Change::Active))
            .collect()
    }

    /// Applies one event (`type` in colon form) and says what changed.
    pub(crate) fn apply(&mut self, event: &Value) -> Option<Change> {
        let kind = event.get("type").and_then(Value::as_str)?;
        let key: Key = (text(event, "workOrderId")?, text(event, "runId")?);
        self.events += 1;
        let run = self
            .runs
            .entry(key.clone())
            .or_insert_with(|| RunView::new(key.0.clone(), key.1.clone()));
        let at = time(event, "timestamp");
        if run.started_at.is_none() {
            run.started_at = at;
        }
        let was_running = run.status == Status::Running;
        let finished = |run: &mut RunView, status: Status, reason: Option<String>| {
            run.status = status;
            run.finished_at = at;
            run.reason = reason;
            run.phase = None;
        };
        match kind {
            "run:started" if was_running => {
                if let Some(spec) = event.get("taskSpec") {
                    run.max_iterations = number(spec, "maxIterations").unwrap_or(0);
                }
            }
            "run:completed" if was_running => {
                let status = text(event, "result")
                    .and_then(|t| Status::parse(&t))
                    .filter(|s| *s != Status::Running)
                    .unwrap_or(Status::Failed);
                run.engine_result = text(event, "engineResult");
                run.duration_ms = number(event, "durationMs");
                finished(run, status, None);
            }
            "run:canceled" if was_running => {
                finished(run, Status::Canceled, text(event, "reason"));
            }
            "run:failed" if was_running => finished(run, Status::Failed, text(event, "error")),
            "delivery:started" => run.delivering = true,
            "delivery:completed" => {
                run.delivering = false;
                run.delivery_failed = event.get("success").and_then(Value::as_bool) != Some(true);
                run.pr_url = text(event, "prUrl");
                run.ci_status = text(event, "ciStatus");
            }
            _ if !was_running => {}
            "iteration:started" => {
                run.iteration = number(event, "iteration").unwrap_or(run.iteration);
                if let Some(max) = number(event, "maxIterations").filter(|m| *m > 0) {
                    run.max_iterations = max;
                }
                run.phase = None;
            }
            "phase:started" | "phase:completed" => {
                run.iteration = number(event, "iteration").unwrap_or(run.iteration);
                run.phase = text(event, "phase");
            }
            _ => {}
        }
        if run.status != Status::Running && !self.reported.contains_key(&key) {
            self.reported.insert(key.clone(), run.status);
            return Some(Change::Finished(key));
        }
        (run.status == Status::Running).then_some(Change::Active(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, run: &str, extra: Value) -> Value {
        let mut e = json!({"type": kind, "workOrderId": "wo", "runId": run,
                           "timestamp": "2026-01-01T00:00:00.000Z"});
        if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
            e.extend(extra.clone());
        }
        e
    }

    #[test]
    fn a_run_is_reported_finished_once_whatever_follows() {
        let mut fleet = Fleet::default();
        let key: Key = ("wo".into(), "r".into());
        assert_eq!(
            fleet.apply(&event(
                "run:started",
                "r",
                json!({"taskSpec": {"maxIterations": 3}})
            )),
            Some(Change::Active(key.clone()))
        );
        assert_eq!(
            fleet.apply(&event("run:canceled", "r", json!({"reason": "user"}))),
            Some(Change::Finished(key.clone()))
        );
        assert_eq!(
            fleet.apply(&event("run:completed", "r", json!({"result": "succeeded"}))),
            None
        );
        assert_eq!(fleet.get(&key).map(|r| r.status), Some(Status::Canceled));
        // A snapshot after a reconnect does not report it again.
        let snapshot = [json!({"workOrderId": "wo", "runId": "r", "status": "canceled"})];
        assert_eq!(fleet.load(&snapshot), vec![]);
        assert_eq!(fleet.active(), 0);
    }

    #[test]
    fn a_snapshot_reports_runs_that_finished_while_disconnected() {
        let mut fleet = Fleet::default();
        fleet.apply(&event("run:started", "a", json!({})));
        fleet.apply(&event("run:started", "b", json!({})));
        let snapshot = [
            json!({"workOrderId": "wo", "runId": "a", "status": "succeeded"}),
            json!({"workOrderId": "wo", "runId": "b", "status": "running", "iteration": 2}),
        ];
        assert_eq!(
            fleet.load(&snapshot),
            vec![
                Change::Finished(("wo".into(), "a".into())),
                Change::Active(("wo".into(), "b".into()))
            ]
        );
        assert_eq!((fleet.active(), fleet.count(Status::Succeeded)), (1, 1));
    }

    #[test]
    fn fields_of_the_wrong_type_read_as_absent() {
        let mut fleet = Fleet::default();
        let odd = event(
            "run:completed",
            "r",
            json!({"result": 7, "durationMs": "x"}),
        );
        assert!(matches!(fleet.apply(&odd), Some(Change::Finished(_))));
        assert_eq!(fleet.count(Status::Failed), 1);
        assert_eq!(fleet.apply(&json!({"type": "run:started"})), None);
        assert_eq!(fleet.apply(&json!([1, 2])), None);
    }
}
