//! The spans the builder ends while it reads a batch of steps, as
//! fixed-size records: a run's trace and root once, span ids derived only
//! when the spans are made, text in one buffer and metadata in one list.
//! At the end of the batch they become [`SpanData`] (with its strings,
//! boxes and vectors) for the encoders.

use std::ops::Range;
use std::sync::Arc;

use super::spans::{GateEvent, RunInfo, SpanData, Status, What};
use crate::event::{Metadata, Phase, RunOutcome, RunResult, SpanId, Strategy, TraceId};

/// A string's place in a batch's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Text {
    start: u32,
    end: u32,
}

impl Text {
    /// `range` of a text kept at `base` (see [`Records::texts`]).
    pub(crate) fn part(base: u32, range: std::ops::Range<usize>) -> Text {
        Text {
            start: base.saturating_add(range.start as u32),
            end: base.saturating_add(range.end as u32),
        }
    }
}

/// What a run's root span says about its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunStatus {
    Unset,
    /// Completed without succeeding: `run RESULT: ENGINE_RESULT`.
    Completed,
    /// Canceled or failed, with the engine's reason.
    Message(Text),
}

/// What a run's root span knows, but for its span ids and times.
#[derive(Clone, Debug)]
pub(crate) struct RunRecord {
    /// The caller's span the run nests in, when it joined a trace.
    pub(crate) parent: Option<SpanId>,
    /// Copies, not the pipeline's `Arc`s: a reference count the exporter
    /// thread let go of would pull its cache line from the drain thread.
    pub(crate) work_order_id: Text,
    pub(crate) run_id: Text,
    pub(crate) correlation_id: Option<Text>,
    pub(crate) task: Option<(Strategy, u32, Text)>,
    pub(crate) outcome: Option<RunOutcome>,
    pub(crate) engine_result: Option<RunResult>,
    pub(crate) iterations: Option<u32>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) pr_url: Option<Text>,
    pub(crate) status: RunStatus,
}

/// What a span is, in 16 bytes. `gates` are its gate checks,
/// `gates[start..end]`. A child without `success` is unfinished: its own
/// end never came.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A run's root; its record is `runs[run]`. `unfinished`: ended at
    /// shutdown or by the tracker's eviction, not by its own end.
    Run {
        run: u32,
        gates: (u32, u32),
        unfinished: bool,
    },
    Iteration {
        iteration: u32,
        success: Option<bool>,
        gates: (u32, u32),
    },
    /// `success` and `duration_ms` once its end came; `in_iteration`:
    /// it nests in its iteration's span, not the run's.
    Phase {
        iteration: u32,
        phase: Phase,
        success: Option<bool>,
        in_iteration: bool,
        duration_ms: u64,
    },
    /// Its pull request and CI status are `deliveries[texts]`.
    Delivery { success: Option<bool>, texts: u32 },
}

impl Kind {
    /// Ended by another event than its own end.
    fn unfinished(&self) -> bool {
        match *self {
            Kind::Run { unfinished, .. } => unfinished,
            Kind::Iteration { success, .. }
            | Kind::Phase { success, .. }
            | Kind::Delivery { success, .. } => success.is_none(),
        }
    }
}

/// A gate check, an event of its span: 32 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateRecord {
    pub(crate) time_ns: u64,
    pub(crate) gate: Text,
    /// Meaningful when `timed`: an `Option<u64>` would take 16 bytes.
    pub(crate) duration_ms: u64,
    pub(crate) iteration: u32,
    pub(crate) passed: bool,
    pub(crate) timed: bool,
}

/// A finished span. A child's span id, and its parent's, follow from its
/// run's root span and what it is (`SpanId::child`): the exporter thread
/// computes them, not the drain thread.
///
/// 40 bytes: every byte of a run's spans crosses from the drain thread's
/// core to the exporter thread's, and the drain thread pays for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Its run's trace and root span: `heads[head]`.
    pub(crate) head: u32,
    /// Its metadata: `metadata[index - 1]`, none when 0.
    pub(crate) metadata: u32,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) kind: Kind,
}

const _: () = assert!(std::mem::size_of::<Record>() == 40);
const _: () = assert!(std::mem::size_of::<GateRecord>() == 32);

/// One hand-off of finished spans.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) spans: Vec<Record>,
    /// Which hand-off this is, for a run to know whether its head is
    /// already here.
    pub(crate) seq: u64,
    heads: Vec<(TraceId, SpanId)>,
    deliveries: Vec<(Option<Text>, Option<Text>)>,
    runs: Vec<RunRecord>,
    gates: Vec<GateRecord>,
    text: String,
    metadata: Vec<Arc<Metadata>>,
}

impl Records {
    /// Empty, with room for `spans` spans.
    pub(crate) fn with_capacity(spans: usize) -> Records {
        Records {
            spans: Vec::with_capacity(spans),
            seq: 0,
            heads: Vec::with_capacity(spans / 4),
            deliveries: Vec::new(),
            runs: Vec::with_capacity(spans / 4),
            gates: Vec::with_capacity(spans / 2),
            text: String::with_capacity(spans * 16),
            metadata: Vec::new(),
        }
    }

    /// Keeps `s`; where it went.
    pub(crate) fn text(&mut self, s: &str) -> Text {
        let start = self.text.len();
        self.text.push_str(s);
        Text {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(self.text.len()).unwrap_or(u32::MAX),
        }
    }

    /// Keeps `s`, a run's text whose parts are given as ranges of it:
    /// `part` turns each into its place here. One copy for all of them.
    pub(crate) fn texts(&mut self, s: &str) -> u32 {
        let base = self.text.len();
        self.text.push_str(s);
        u32::try_from(base).unwrap_or(u32::MAX)
    }

    /// Keeps `metadata`; the index a record refers to it by.
    pub(crate) fn metadata(&mut self, metadata: Option<&Arc<Metadata>>) -> u32 {
        match metadata {
            None => 0,
            Some(m) => {
                self.metadata.push(Arc::clone(m));
                u32::try_from(self.metadata.len()).unwrap_or(0)
            }
        }
    }

    /// Keeps a run's trace and root span; the index its spans refer to
    /// them by.
    pub(crate) fn head(&mut self, trace_id: TraceId, root: SpanId) -> u32 {
        self.heads.push((trace_id, root));
        (self.heads.len() - 1) as u32
    }

    /// Keeps a delivery's pull request and CI status; the index its span
    /// refers to them by.
    pub(crate) fn delivery(&mut self, pr_url: Option<Text>, ci_status: Option<Text>) -> u32 {
        self.deliveries.push((pr_url, ci_status));
        (self.deliveries.len() - 1) as u32
    }

    /// Keeps a run's root record; the index its span refers to it by.
    pub(crate) fn run(&mut self, run: RunRecord) -> u32 {
        self.runs.push(run);
        (self.runs.len() - 1) as u32
    }

    /// Keeps a gate check; a span's gates are those kept from
    /// [`gate_count`](Self::gate_count) before them to it after them.
    pub(crate) fn gate(&mut self, gate: GateRecord) {
        self.gates.push(gate);
    }

    /// How many gate checks it keeps.
    pub(crate) fn gate_count(&self) -> u32 {
        self.gates.len() as u32
    }

    /// Empties it, keeping its room, to be filled again.
    pub(crate) fn clear(&mut self) {
        self.spans.clear();
        self.heads.clear();
        self.deliveries.clear();
        self.runs.clear();
        self.gates.clear();
        self.text.clear();
        self.metadata.clear();
    }

    fn str(&self, text: Text) -> &str {
        self.text
            .get(text.start as usize..text.end as usize)
            .unwrap_or_default()
    }

    fn string(&self, text: Text) -> String {
        self.str(text).to_owned()
    }

    /// The spans, as the encoders take them.
    pub(crate) fn to_spans(&self, out: &mut Vec<SpanData>) {
        out.reserve(self.spans.len());
        for record in &self.spans {
            out.push(self.span(record));
        }
    }

    fn span(&self, record: &Record) -> SpanData {
        let Some(&(trace_id, root)) = self.heads.get(record.head as usize) else {
            // Heads and records are written together: unreachable.
            return SpanData {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                parent: None,
                start_ns: record.start_ns,
                end_ns: record.end_ns,
                what: What::Delivery {
                    success: None,
                    pr_url: None,
                    ci_status: None,
                },
                gates: Vec::new(),
                metadata: None,
                status: Status::Unset,
                unfinished: true,
            };
        };
        let unfinished = record.kind.unfinished();
        let (span_id, parent, what, status, gates) = match record.kind {
            Kind::Run { run, gates, .. } => {
                let parent = self.runs.get(run as usize).and_then(|r| r.parent);
                let (what, status) = self.run_root(run);
                (root, parent, what, status, gates)
            }
            Kind::Iteration {
                iteration,
                success,
                gates,
            } => (
                root.child(iteration, 0),
                Some(root),
                What::Iteration { iteration, success },
                Status::Unset,
                gates,
            ),
            Kind::Phase {
                iteration,
                phase,
                success,
                in_iteration,
                duration_ms,
            } => {
                let parent = if in_iteration {
                    root.child(iteration, 0)
                } else {
                    root
                };
                let status = match success {
                    Some(false) => {
                        Status::Error(format!("{} failed", super::spans::phase_name(phase)))
                    }
                    _ => Status::Unset,
                };
                let what = What::Phase {
                    iteration,
                    phase,
                    end: success.map(|success| (success, duration_ms)),
                };
                (
                    root.phase_child(iteration, phase),
                    Some(parent),
                    what,
                    status,
                    (0, 0),
                )
            }
            Kind::Delivery { success, texts } => {
                let (pr_url, ci_status) = self
                    .deliveries
                    .get(texts as usize)
                    .copied()
                    .unwrap_or_default();
                let what = What::Delivery {
                    success,
                    pr_url: pr_url.map(|t| self.string(t)),
                    ci_status: ci_status.map(|t| self.string(t)),
                };
                (
                    root.child(0, SpanId::DELIVERY_SLOT),
                    Some(root),
                    what,
                    Status::Unset,
                    (0, 0),
                )
            }
        };
        let gates: Range<usize> = gates.0 as usize..gates.1 as usize;
        SpanData {
            trace_id,
            span_id,
            parent,
            start_ns: record.start_ns,
            end_ns: record.end_ns,
            what,
            gates: self
                .gates
                .get(gates)
                .unwrap_or_default()
                .iter()
                .map(|g| GateEvent {
                    time_ns: g.time_ns,
                    gate: self.string(g.gate),
                    passed: g.passed,
                    iteration: g.iteration,
                    duration_ms: g.timed.then_some(g.duration_ms),
                })
                .collect(),
            metadata: (record.metadata as usize)
                .checked_sub(1)
                .and_then(|i| self.metadata.get(i))
                .cloned(),
            status,
            unfinished,
        }
    }

    fn run_root(&self, index: u32) -> (What, Status) {
        let Some(run) = self.runs.get(index as usize) else {
            // Records and runs are written together: unreachable.
            return (What::Run(Box::default()), Status::Unset);
        };
        let status = match run.status {
            RunStatus::Unset => Status::Unset,
            RunStatus::Completed => Status::Error(format!(
                "run {}: {}",
                run.outcome.map_or("unknown", RunOutcome::as_str),
                run.engine_result.map_or("unknown", RunResult::as_str)
            )),
            RunStatus::Message(text) => Status::Error(self.string(text)),
        };
        let info = RunInfo {
            work_order_id: Arc::from(self.str(run.work_order_id)),
            run_id: Arc::from(self.str(run.run_id)),
            correlation_id: run.correlation_id.map(|t| Arc::from(self.str(t))),
            task: run
                .task
                .map(|(strategy, max, goal)| (strategy, max, self.string(goal))),
            outcome: run.outcome,
            engine_result: run.engine_result,
            iterations: run.iterations,
            duration_ms: run.duration_ms,
            // What OpenTelemetry's `error.type` says of a run that did not
            // succeed: the engine's result, or how it ended otherwise.
            error_type: match run.status {
                RunStatus::Unset => None,
                RunStatus::Completed => run.engine_result.map(RunResult::as_str),
                RunStatus::Message(_) if run.outcome == Some(RunOutcome::Canceled) => {
                    Some("canceled")
                }
                RunStatus::Message(_) => Some("run_failed"),
            },
            pr_url: run.pr_url.map(|t| self.string(t)),
        };
        (What::Run(Box::new(info)), status)
    }
}
