//! The state of every run, kept by the drain thread.
//!
//! Rules, so that `active_runs` is exact and returns to zero:
//! - A run becomes terminal exactly once, by whichever of `run_completed`,
//!   `run_canceled` or `run_failed` comes first; later terminal events for
//!   it are counted as duplicates and change nothing.
//! - An event for a run the tracker has not seen creates it (an engine that
//!   skips `run_started` is still tracked); a terminal event creates it
//!   directly in its final state, so it is never counted active.
//! - Finished runs are kept up to a bound (oldest evicted first). Runs of
//!   any kind are kept up to a second bound, `max_runs`: a new run that
//!   finds the tracker full evicts the active run updated least recently
//!   (one the engine may have lost without a terminal event), or the oldest
//!   finished run when none is active. An evicted active run is no longer
//!   active (`active_runs` goes down) and is counted in
//!   `runs_evicted_total`. An evicted run's ids are remembered in a bounded
//!   list of tombstones, so a late event for it, a terminal one included,
//!   is ignored rather than resurrecting it or counting it twice.
//! - Events other than delivery events that arrive after a run finished
//!   change nothing; `run_started` for a running run only refreshes its spec.
//! - Each run is kept behind an `Arc`, changed in place while nobody else
//!   holds it (copy-on-write otherwise): a snapshot only clones `Arc`s, so
//!   it holds the drain thread for microseconds, and sorting and
//!   serializing happen on the thread that asked.
//! - Iteration numbers are taken as given (0 included). Gate results per
//!   iteration are capped at [`MAX_GATES_PER_ITERATION`]; a gate checked
//!   twice in one iteration keeps its latest result.
//! - A run's free text is kept within a byte bound per field (the goal
//!   within [`GOAL_MAX_CHARS`] characters, hence [`RUN_GOAL_MAX_BYTES`]; a gate name within
//!   [`GATE_NAME_MAX_BYTES`], the reason, pull request URL and CI status
//!   within [`RUN_TEXT_MAX_BYTES`]); longer text is cut on a character
//!   boundary and ends in `…`. So a run's snapshot, hence a page of
//!   `/api/runs` and the WebSocket `hello`, has a byte bound whatever the
//!   engine sends; the events themselves are not cut.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{
    EventKind, GOAL_MAX_CHARS, GateSummary, Phase, PhaseTimings, ProgressEvent, RunOutcome,
    RunResult, TRUNCATION_MARKER, TaskSpec, Timestamp, TraceId, bound_bytes, truncate_chars,
};

/// The most gate results one iteration keeps.
pub const MAX_GATES_PER_ITERATION: usize = 64;

/// The most bytes of a goal a run's snapshot keeps: [`GOAL_MAX_CHARS`]
/// characters of up to 4 bytes, what [`TaskSpec::new`] lets through (a
/// goal set directly, or read from a journal, may be longer).
pub const RUN_GOAL_MAX_BYTES: usize = 4 * GOAL_MAX_CHARS;

/// The most bytes a run's snapshot keeps of its cancel reason or failure
/// error, of a pull request URL and of a CI status.
pub const RUN_TEXT_MAX_BYTES: usize = 1024;

/// The most bytes of a gate name a run's snapshot keeps.
pub const GATE_NAME_MAX_BYTES: usize = 128;

/// `text` within `max` bytes, as the tracker keeps it.
fn bounded(text: &str, max: usize) -> String {
    bound_bytes(text, max).into_owned()
}

/// A goal within [`GOAL_MAX_CHARS`] characters, hence within
/// [`RUN_GOAL_MAX_BYTES`]: cut to one character fewer and marked.
fn bounded_goal(goal: &str) -> String {
    match goal.char_indices().nth(GOAL_MAX_CHARS) {
        None => goal.to_owned(),
        Some(_) => {
            let keep = truncate_chars(goal, GOAL_MAX_CHARS - 1);
            let mut bounded = String::with_capacity(keep.len() + TRUNCATION_MARKER.len());
            bounded.push_str(keep);
            bounded.push_str(TRUNCATION_MARKER);
            bounded
        }
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Not finished yet.
    Running,
    /// Completed with `passed`.
    Succeeded,
    /// Completed with a failure, or `run_failed`.
    Failed,
    /// Canceled.
    Canceled,
}

impl From<RunOutcome> for RunStatus {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
            RunOutcome::Canceled => RunStatus::Canceled,
        }
    }
}

/// Where a phase or a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully.
    Failed,
}

impl StepStatus {
    fn finished(success: bool) -> Self {
        if success {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        }
    }
}

/// The delivery of a run's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryState {
    /// Where it stands.
    pub status: StepStatus,
    /// The pull request, when one was opened.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pr_url: Option<String>,
    /// CI status, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ci_status: Option<String>,
}

/// One tracked run, as `/api/runs` and the WebSocket `hello` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSnapshot {
    /// Work order id.
    pub work_order_id: Arc<str>,
    /// Run id.
    pub run_id: Arc<str>,
    /// Where the run stands.
    pub status: RunStatus,
    /// The engine's result, once `run_completed` arrived.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine_result: Option<RunResult>,
    /// The task, once `run_started` arrived.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub task_spec: Option<TaskSpec>,
    /// The current (or last) iteration; 0 before the first.
    pub iteration: u32,
    /// The iteration limit; 0 when unknown.
    pub max_iterations: u32,
    /// The current (or last) phase.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase: Option<Phase>,
    /// Where that phase stands.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase_status: Option<StepStatus>,
    /// Milliseconds per phase over the whole run.
    pub phase_timings: PhaseTimings,
    /// Milliseconds per phase in the current iteration.
    pub iteration_timings: PhaseTimings,
    /// Gates checked in the current iteration.
    pub gates: Vec<GateSummary>,
    /// The delivery, once it started.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delivery: Option<DeliveryState>,
    /// The first event's time.
    pub started_at: Timestamp,
    /// The latest event's time.
    pub updated_at: Timestamp,
    /// When the run became terminal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finished_at: Option<Timestamp>,
    /// The run's duration, once terminal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    /// The cancel reason or failure error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Events applied to this run.
    pub events: u64,
}

impl RunSnapshot {
    fn new(event: &ProgressEvent) -> Self {
        RunSnapshot {
            work_order_id: event.work_order_id.clone(),
            run_id: event.run_id.clone(),
            status: RunStatus::Running,
            engine_result: None,
            task_spec: None,
            iteration: 0,
            max_iterations: 0,
            phase: None,
            phase_status: None,
            phase_timings: PhaseTimings::default(),
            iteration_timings: PhaseTimings::default(),
            gates: Vec::new(),
            delivery: None,
            started_at: event.timestamp,
            updated_at: event.timestamp,
            finished_at: None,
            duration_ms: None,
            reason: None,
            events: 0,
        }
    }

    /// Whether the run has finished.
    pub fn is_terminal(&self) -> bool {
        self.status != RunStatus::Running
    }
}

/// What applying one event did, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The event made the tracker start tracking a run.
    pub(crate) new_run: bool,
    /// The event made the run terminal, with this outcome and duration.
    pub(crate) finished: Option<(RunOutcome, u64)>,
    /// The event was a terminal event for an already terminal run.
    pub(crate) duplicate_terminal: bool,
    /// Making room for the event's run evicted an active run.
    pub(crate) evicted_active: bool,
    /// Where the tracker keeps the event's run, while it keeps it: a key
    /// for other per-run state that costs no hashing of the run's ids.
    pub(crate) slot: Option<RunSlot>,
}

/// A run's place in the tracker: its slot, and the slot's generation,
/// which changes when the slot is freed for another run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunSlot {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// A cached position in the tracker, so the drain thread need not hash a
/// run's ids on every event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotHint {
    slot: u32,
    generation: u32,
}

impl Default for SlotHint {
    fn default() -> Self {
        SlotHint {
            slot: u32::MAX,
            generation: 0,
        }
    }
}

type RunId = (Arc<str>, Arc<str>);

/// Slot hints for whole events (`emit`, replay), kept by their id `Arc`s:
/// the events of one run share them, so most find their run by comparing
/// pointers instead of hashing two strings with SipHash (about 360 of the
/// drain thread's ~2,300 instructions for such an event, callgrind).
///
/// Holding clones keeps each allocation alive, so an equal pointer is the
/// same id; a hint gone stale (its run evicted) is caught by the slot's
/// generation, as for registered runs.
#[derive(Debug, Default)]
pub(crate) struct RecentHints {
    recent: Vec<(Arc<str>, Arc<str>, SlotHint)>,
    next: usize,
}

/// Runs interleaved closely enough to keep their hints.
const RECENT_HINTS: usize = 8;

impl RecentHints {
    /// The hint kept for `event`'s run, or a fresh one kept from now on.
    pub(crate) fn hint_for(&mut self, event: &ProgressEvent) -> &mut SlotHint {
        let found = self.recent.iter().position(|(work_order, run, _)| {
            Arc::ptr_eq(run, &event.run_id) && Arc::ptr_eq(work_order, &event.work_order_id)
        });
        let index = found.unwrap_or_else(|| {
            let entry = (
                event.work_order_id.clone(),
                event.run_id.clone(),
                SlotHint::default(),
            );
            if self.recent.len() < RECENT_HINTS {
                self.recent.push(entry);
                self.recent.len() - 1
            } else {
                let index = self.next;
                self.next = (index + 1) % RECENT_HINTS;
                self.recent[index] = entry;
                index
            }
        });
        &mut self.recent[index].2
    }
}

/// No slot: the end of the list of active runs.
const NIL: u32 = u32::MAX;

struct Slot {
    generation: u32,
    run: Option<Arc<RunSnapshot>>,
    /// Neighbours in the list of active runs (least recently updated
    /// first); `NIL` at the ends and for finished runs.
    prev: u32,
    next: u32,
    /// The run's trace, set by its first event.
    trace: Option<TraceId>,
}

/// The state of every run, bounded in memory.
pub(crate) struct RunTracker {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_id: HashMap<RunId, u32>,
    /// Terminal runs, oldest first, as (slot, generation).
    finished: VecDeque<(u32, u32)>,
    /// Active runs, least recently updated first: an intrusive list
    /// through the slots, so touching a run costs a few stores.
    lru_head: u32,
    lru_tail: u32,
    tombstones: HashSet<RunId>,
    tombstone_order: VecDeque<RunId>,
    active: u64,
    max_finished: usize,
    max_runs: usize,
    max_tombstones: usize,
}

/// Every tracked run, shared with the drain thread: cheap to take, sorted
/// and serialized by whoever asked for it.
pub(crate) type SharedRuns = Vec<Arc<RunSnapshot>>;

/// Sorts runs oldest first (by start, then ids): the order of
/// `/api/runs` and `hello`.
pub(crate) fn sort_runs(runs: &mut [Arc<RunSnapshot>]) {
    runs.sort_unstable_by(|a, b| {
        (a.started_at, &a.run_id, &a.work_order_id).cmp(&(
            b.started_at,
            &b.run_id,
            &b.work_order_id,
        ))
    });
}

impl RunTracker {
    /// A tracker keeping at most `max_runs` runs (at least 1), of which at
    /// most `max_finished` finished ones.
    pub(crate) fn new(max_finished: usize, max_runs: usize) -> Self {
        let max_runs = max_runs.max(1);
        let max_finished = max_finished.min(max_runs);
        RunTracker {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            finished: VecDeque::new(),
            lru_head: NIL,
            lru_tail: NIL,
            tombstones: HashSet::new(),
            tombstone_order: VecDeque::new(),
            active: 0,
            max_finished,
            max_runs,
            max_tombstones: max_finished.saturating_mul(4).max(max_runs).max(1024),
        }
    }

    /// Runs not yet terminal.
    pub(crate) fn active(&self) -> u64 {
        self.active
    }

    /// The most runs tracked at once.
    pub(crate) fn max_runs(&self) -> usize {
        self.max_runs
    }

    /// Every tracked run, in no particular order: clones only `Arc`s, so
    /// the drain thread is held for microseconds (see [`sort_runs`]).
    pub(crate) fn shared_snapshot(&self) -> SharedRuns {
        let mut runs = Vec::with_capacity(self.by_id.len());
        runs.extend(self.slots.iter().filter_map(|s| s.run.clone()));
        runs
    }

    /// Every tracked run, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<RunSnapshot> {
        let mut runs = self.shared_snapshot();
        sort_runs(&mut runs);
        runs.iter().map(|r| RunSnapshot::clone(r)).collect()
    }

    fn lru_unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL if self.lru_head == slot => self.lru_head = next,
            NIL => return, // not in the list
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.lru_tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let s = &mut self.slots[slot as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn lru_push_back(&mut self, slot: u32) {
        let tail = self.lru_tail;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = tail;
            s.next = NIL;
        }
        match tail {
            NIL => self.lru_head = slot,
            t => self.slots[t as usize].next = slot,
        }
        self.lru_tail = slot;
    }

    /// Marks an active run as the most recently updated.
    fn lru_touch(&mut self, slot: u32) {
        if self.lru_tail != slot {
            self.lru_unlink(slot);
            self.lru_push_back(slot);
        }
    }

    /// Makes room for one more run when the tracker is full: evicts the
    /// active run updated least recently, or the oldest finished run when
    /// none is active. Returns whether an active run was evicted.
    fn make_room(&mut self) -> bool {
        if self.by_id.len() < self.max_runs {
            return false;
        }
        if self.lru_head != NIL {
            let slot = self.lru_head;
            self.lru_unlink(slot);
            self.active -= 1;
            self.forget(slot);
            return true;
        }
        while let Some((slot, generation)) = self.finished.pop_front() {
            if self.slots[slot as usize].generation == generation {
                self.forget(slot);
                break;
            }
        }
        false
    }

    /// Empties a slot, remembering the run's ids as a tombstone.
    fn forget(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let Some(run) = s.run.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        let id = (run.work_order_id.clone(), run.run_id.clone());
        self.by_id.remove(&id);
        self.tombstones.insert(id.clone());
        self.tombstone_order.push_back(id);
        while self.tombstone_order.len() > self.max_tombstones {
            if let Some(old) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }

    fn slot_of(&self, event: &ProgressEvent, hint: &mut SlotHint) -> Option<u32> {
        if let Some(slot) = self.slots.get(hint.slot as usize)
            && slot.generation == hint.generation
            && slot.run.is_some()
        {
            return Some(hint.slot);
        }
        let id = (event.work_order_id.clone(), event.run_id.clone());
        let found = self.by_id.get(&id).copied()?;
        *hint = SlotHint {
            slot: found,
            generation: self.slots[found as usize].generation,
        };
        Some(found)
    }

    fn insert(&mut self, run: RunSnapshot, hint: &mut SlotHint) -> u32 {
        let run = Arc::new(run);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].run = Some(run);
                self.slots[slot as usize].trace = None;
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    run: Some(run),
                    prev: NIL,
                    next: NIL,
                    trace: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        // Every run starts active; a terminal event takes it out of the list.
        self.lru_push_back(slot);
        let s = &self.slots[slot as usize];
        let run = s
            .run
            .as_ref()
            .map(|r| (r.work_order_id.clone(), r.run_id.clone()));
        if let Some(id) = run {
            self.by_id.insert(id, slot);
        }
        *hint = SlotHint {
            slot,
            generation: s.generation,
        };
        slot
    }

    /// Applies `event` to its run. Fills an empty `gate_results` of an
    /// `iteration_completed` from the iteration's `gate_checked` events.
    pub(crate) fn apply(&mut self, event: &mut ProgressEvent, hint: &mut SlotHint) -> Applied {
        let mut applied = Applied::default();
        let slot = match self.slot_of(event, hint) {
            Some(slot) => slot,
            None => {
                let id = (event.work_order_id.clone(), event.run_id.clone());
                if self.tombstones.contains(&id) {
                    return applied;
                }
                applied.new_run = true;
                applied.evicted_active = self.make_room();
                // Counted active now; a terminal event below takes it back.
                self.active += 1;
                self.insert(RunSnapshot::new(event), hint)
            }
        };
        if self.slots[slot as usize]
            .run
            .as_ref()
            .is_some_and(|r| !r.is_terminal())
        {
            self.lru_touch(slot);
        }
        let entry = &mut self.slots[slot as usize];
        applied.slot = Some(RunSlot {
            index: slot,
            generation: entry.generation,
        });
        // The first event fixes the run's trace: the one its handle chose
        // or its event carries (a replayed journal), else a new one. Every
        // later event of the run carries it, whichever handle sent it.
        let trace_id = *entry
            .trace
            .get_or_insert_with(|| event.trace_id.unwrap_or_else(TraceId::random));
        event.trace_id = Some(trace_id);
        let Some(run) = entry.run.as_mut() else {
            return applied;
        };
        // In place unless a snapshot still holds this version of the run.
        let run = Arc::make_mut(run);
        run.events += 1;
        run.updated_at = run.updated_at.max(event.timestamp);
        let was_terminal = run.is_terminal();
        let ts = event.timestamp;

        let finished = match &mut event.kind {
            EventKind::RunStarted { task_spec } => {
                if !was_terminal {
                    run.max_iterations = task_spec.max_iterations;
                    run.task_spec = Some(TaskSpec {
                        goal: bounded_goal(&task_spec.goal),
                        ..task_spec.clone()
                    });
                }
                None
            }
            EventKind::RunCompleted {
                result,
                engine_result,
                duration_ms,
                ..
            } => {
                if !was_terminal {
                    run.engine_result = Some(*engine_result);
                    run.duration_ms = Some(*duration_ms);
                }
                Some(*result)
            }
            EventKind::RunCanceled { reason } => {
                if !was_terminal {
                    run.reason = Some(bounded(reason, RUN_TEXT_MAX_BYTES));
                }
                Some(RunOutcome::Canceled)
            }
            EventKind::RunFailed { error } => {
                if !was_terminal {
                    run.reason = Some(bounded(error, RUN_TEXT_MAX_BYTES));
                }
                Some(RunOutcome::Failed)
            }
            _ if was_terminal => {
                apply_delivery(run, &event.kind);
                None
            }
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                ..
            } => {
                run.iteration = *iteration;
                if *max_iterations > 0 {
                    run.max_iterations = *max_iterations;
                }
                run.phase = None;
                run.phase_status = None;
                run.gates.clear();
                run.iteration_timings = PhaseTimings::default();
                None
            }
            EventKind::IterationCompleted {
                iteration,
                gate_results,
                ..
            } => {
                run.iteration = *iteration;
                // The event carries the gates' names in full; only the
                // run's own copy is bounded.
                if gate_results.is_empty() {
                    gate_results.clone_from(&run.gates);
                }
                None
            }
            EventKind::PhaseStarted { iteration, phase } => {
                run.iteration = *iteration;
                run.phase = Some(*phase);
                run.phase_status = Some(StepStatus::Running);
                None
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => {
                run.iteration = *iteration;
                run.phase = Some(*phase);
                run.phase_status = Some(StepStatus::finished(*success));
                run.phase_timings.add(*phase, *duration_ms);
                run.iteration_timings.set(*phase, Some(*duration_ms));
                None
            }
            EventKind::GateChecked {
                gate,
                passed,
                duration_ms,
                ..
            } => {
                let name = bound_bytes(gate, GATE_NAME_MAX_BYTES);
                if let Some(existing) = run.gates.iter_mut().find(|g| g.name == name) {
                    existing.passed = *passed;
                    existing.duration_ms = *duration_ms;
                } else if run.gates.len() < MAX_GATES_PER_ITERATION {
                    run.gates.push(GateSummary {
                        name: name.into_owned(),
                        passed: *passed,
                        duration_ms: *duration_ms,
                    });
                }
                None
            }
            EventKind::DeliveryStarted | EventKind::DeliveryCompleted { .. } => {
                apply_delivery(run, &event.kind);
                None
            }
        };

        if let Some(outcome) = finished {
            if was_terminal {
                applied.duplicate_terminal = true;
            } else {
                run.status = outcome.into();
                run.finished_at = Some(ts);
                let duration = *run.duration_ms.get_or_insert_with(|| {
                    ts.as_millis().saturating_sub(run.started_at.as_millis())
                });
                applied.finished = Some((outcome, duration));
                self.active -= 1;
                self.lru_unlink(slot);
                let generation = self.slots[slot as usize].generation;
                self.finished.push_back((slot, generation));
                self.evict_finished();
            }
        }
        applied
    }

    fn evict_finished(&mut self) {
        while self.finished.len() > self.max_finished {
            let Some((slot, generation)) = self.finished.pop_front() else {
                return;
            };
            if self.slots[slot as usize].generation == generation {
                self.forget(slot);
            }
        }
    }
}

fn apply_delivery(run: &mut RunSnapshot, kind: &EventKind) {
    match kind {
        EventKind::DeliveryStarted => {
            run.delivery = Some(DeliveryState {
                status: StepStatus::Running,
                pr_url: None,
                ci_status: None,
            });
        }
        EventKind::DeliveryCompleted {
            success,
            pr_url,
            ci_status,
        } => {
            run.delivery = Some(DeliveryState {
                status: StepStatus::finished(*success),
                pr_url: pr_url.as_deref().map(|t| bounded(t, RUN_TEXT_MAX_BYTES)),
                ci_status: ci_status.as_deref().map(|t| bounded(t, RUN_TEXT_MAX_BYTES)),
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecutionMetrics, Strategy};

    fn event(run: &str, kind: EventKind) -> ProgressEvent {
        ProgressEvent::new("wo", run, kind)
    }

    #[test]
    fn a_run_is_terminal_once_and_active_runs_returns_to_zero_past_the_finished_bound() {
        let mut tracker = RunTracker::new(2, 10);
        let runs = if cfg!(miri) { 4 } else { 50 };
        for i in 0..runs {
            let run = format!("run-{i}");
            let mut hint = SlotHint::default();
            let spec = TaskSpec::new("g", Strategy::Fixed, 1);
            tracker.apply(
                &mut event(&run, EventKind::RunStarted { task_spec: spec }),
                &mut hint,
            );
            assert_eq!(tracker.active(), 1);
            let completed = EventKind::RunCompleted {
                result: RunOutcome::Succeeded,
                engine_result: RunResult::Passed,
                iterations: 1,
                duration_ms: 5,
                metrics: Box::new(ExecutionMetrics::default()),
            };
            let first = tracker.apply(&mut event(&run, completed), &mut hint);
            assert!(first.finished.is_some());
            let late = EventKind::RunFailed {
                error: "late".into(),
            };
            let second = tracker.apply(&mut event(&run, late), &mut hint);
            assert!(second.finished.is_none(), "terminal exactly once");
            assert_eq!(tracker.active(), 0);
        }
        assert!(tracker.snapshot().len() <= 2, "finished runs are bounded");
    }

    fn started(run: &str) -> ProgressEvent {
        let spec = TaskSpec::new("g", Strategy::Fixed, 3);
        event(run, EventKind::RunStarted { task_spec: spec })
    }

    fn ids(tracker: &RunTracker) -> Vec<String> {
        let mut ids: Vec<String> = tracker
            .shared_snapshot()
            .iter()
            .map(|r| r.run_id.to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn at_the_bound_the_least_recently_updated_active_run_is_evicted_and_stays_gone() {
        let mut tracker = RunTracker::new(1, 3);
        for run in ["a", "b", "c"] {
            let applied = tracker.apply(&mut started(run), &mut SlotHint::default());
            assert!(!applied.evicted_active);
        }
        // `a` is updated again: `b` is now the idlest.
        let phase = EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Build,
        };
        tracker.apply(&mut event("a", phase), &mut SlotHint::default());
        let applied = tracker.apply(&mut started("d"), &mut SlotHint::default());
        assert!(applied.new_run && applied.evicted_active);
        assert_eq!(ids(&tracker), ["a", "c", "d"]);
        assert_eq!(tracker.active(), 3);

        // A late terminal event for `b` neither finishes nor resurrects it.
        let late = tracker.apply(
            &mut event("b", EventKind::RunCanceled { reason: "x".into() }),
            &mut SlotHint::default(),
        );
        assert_eq!(late, Applied::default());
        assert_eq!(tracker.active(), 3);

        // Finished runs do not count as idle active runs; with one finished
        // and two active, the next new run evicts the idler active one (`c`).
        tracker.apply(
            &mut event("a", EventKind::RunCanceled { reason: "x".into() }),
            &mut SlotHint::default(),
        );
        assert_eq!(tracker.active(), 2);
        let applied = tracker.apply(&mut started("e"), &mut SlotHint::default());
        assert!(applied.evicted_active);
        assert_eq!(ids(&tracker), ["a", "d", "e"]);
        assert_eq!(tracker.active(), 2);
    }

    #[test]
    fn with_no_active_run_the_oldest_finished_run_makes_room() {
        let mut tracker = RunTracker::new(10, 2);
        for run in ["a", "b", "c"] {
            let done = EventKind::RunFailed { error: "e".into() };
            let applied = tracker.apply(&mut event(run, done), &mut SlotHint::default());
            assert!(!applied.evicted_active);
        }
        assert_eq!(ids(&tracker), ["b", "c"]);
        assert_eq!(tracker.active(), 0);
    }

    #[test]
    fn a_snapshot_shares_the_runs_and_later_events_do_not_change_it() {
        let mut tracker = RunTracker::new(1, 4);
        let mut hint = SlotHint::default();
        tracker.apply(&mut started("a"), &mut hint);
        let before = tracker.shared_snapshot();
        let phase = EventKind::PhaseStarted {
            iteration: 2,
            phase: Phase::Verify,
        };
        tracker.apply(&mut event("a", phase), &mut hint);
        assert_eq!(before[0].iteration, 0, "copy on write");
        assert_eq!(tracker.shared_snapshot()[0].iteration, 2);
    }

    #[test]
    fn a_run_keeps_its_goal_error_gates_and_delivery_within_byte_bounds_cut_on_a_char_boundary_with_a_marker()
     {
        // Regression: the tracker kept an engine's text whole, so a run's
        // snapshot (a page of `/api/runs`, the `hello`) grew with it.
        let mut tracker = RunTracker::new(10, 10);
        let mut hint = SlotHint::default();
        let spec = TaskSpec {
            goal: "é".repeat(10_000),
            strategy: Strategy::Fixed,
            max_iterations: 1,
        };
        tracker.apply(
            &mut event("a", EventKind::RunStarted { task_spec: spec }),
            &mut hint,
        );
        for gate in ["ü".repeat(1_000), "ü".repeat(2_000)] {
            let checked = EventKind::GateChecked {
                iteration: 1,
                gate,
                passed: false,
                duration_ms: None,
            };
            tracker.apply(&mut event("a", checked), &mut hint);
        }
        let delivered = EventKind::DeliveryCompleted {
            success: false,
            pr_url: Some("→".repeat(5_000)),
            ci_status: Some("c".repeat(5_000)),
        };
        tracker.apply(&mut event("a", delivered), &mut hint);
        let mut failed = event(
            "a",
            EventKind::RunFailed {
                error: "€".repeat(100_000),
            },
        );
        tracker.apply(&mut failed, &mut hint);
        let EventKind::RunFailed { error } = &failed.kind else {
            unreachable!()
        };
        assert_eq!(error.len(), 300_000, "the event itself is not cut");

        let run = &tracker.snapshot()[0];
        let goal = &run.task_spec.as_ref().expect("spec").goal;
        assert_eq!(goal.chars().count(), GOAL_MAX_CHARS);
        assert!(goal.len() <= RUN_GOAL_MAX_BYTES && goal.ends_with('…'));
        let reason = run.reason.as_deref().expect("reason");
        assert!(reason.len() <= RUN_TEXT_MAX_BYTES && reason.ends_with('…'));
        assert!(reason.trim_end_matches('…').chars().all(|c| c == '€'));
        // Names cut to the same prefix are one gate.
        assert_eq!(run.gates.len(), 1);
        assert!(run.gates[0].name.len() <= GATE_NAME_MAX_BYTES);
        let delivery = run.delivery.as_ref().expect("delivery");
        for text in [&delivery.pr_url, &delivery.ci_status] {
            let text = text.as_deref().expect("text");
            assert!(text.len() <= RUN_TEXT_MAX_BYTES && text.ends_with('…'));
        }
        let json = serde_json::to_string(run).expect("json");
        assert!(json.len() < 8 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn short_text_is_kept_as_given() {
        let mut tracker = RunTracker::new(10, 10);
        let mut hint = SlotHint::default();
        let spec = TaskSpec::new("g".repeat(GOAL_MAX_CHARS), Strategy::Fixed, 1);
        tracker.apply(
            &mut event("a", EventKind::RunStarted { task_spec: spec }),
            &mut hint,
        );
        let error = "e".repeat(RUN_TEXT_MAX_BYTES);
        tracker.apply(
            &mut event(
                "a",
                EventKind::RunFailed {
                    error: error.clone(),
                },
            ),
            &mut hint,
        );
        let run = &tracker.snapshot()[0];
        assert_eq!(
            run.task_spec.as_ref().map(|s| s.goal.len()),
            Some(GOAL_MAX_CHARS)
        );
        assert_eq!(run.reason.as_deref(), Some(error.as_str()));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_snapshot_at_the_default_bound_only_clones_arcs() {
        const RUNS: usize = crate::observability::DEFAULT_MAX_RUNS;
        let mut tracker = RunTracker::new(RUNS, RUNS);
        for i in 0..RUNS {
            let mut hint = SlotHint::default();
            let run = format!("run-{i:05}");
            tracker.apply(&mut started(&run), &mut hint);
            let gate = EventKind::GateChecked {
                iteration: 1,
                gate: "lint".into(),
                passed: true,
                duration_ms: Some(3),
            };
            tracker.apply(&mut event(&run, gate), &mut hint);
        }
        let t = std::time::Instant::now();
        let shared = tracker.shared_snapshot();
        let on_drain = t.elapsed();
        assert_eq!(shared.len(), RUNS);
        assert!(
            shared.iter().all(|r| Arc::strong_count(r) == 2),
            "shared, not copied"
        );
        let t = std::time::Instant::now();
        let deep = tracker.snapshot();
        let deep_time = t.elapsed();
        assert_eq!(deep.len(), RUNS);
        println!(
            "{RUNS} runs: shared snapshot (what the drain thread does) {on_drain:?}; \
             sorted deep copy (what it did before) {deep_time:?}"
        );
    }
}
