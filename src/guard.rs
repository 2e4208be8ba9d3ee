//! Scoped guards over [`RunHandle`], so the library times and the engine
//! just scopes: see [`RunGuard`].

use std::sync::Arc;
use std::time::Duration;

use crate::context::LogContext;
use crate::emitter::{Emitter, RunHandle, bodies};
use crate::event::{
    ExecutionMetrics, Metadata, Phase, PhaseTimings, RunResult, TaskSpec, TraceParent,
};
use crate::panic_hook;
use crate::pipeline::envelope::Body;

impl Emitter {
    /// Starts a run: emits `run_started` and returns the guard that ends it.
    ///
    /// Dropped without an end verb ([`succeed`](RunGuard::succeed),
    /// [`finish`](RunGuard::finish), [`fail`](RunGuard::fail) or
    /// [`cancel`](RunGuard::cancel)), the guard emits `run_failed`: with the panic message when the thread
    /// is unwinding, else saying that the guard was dropped. See
    /// [`RunGuard`] for the whole family.
    ///
    /// ```
    /// # use agentgate_obs::{Observability, Strategy, TaskSpec};
    /// # use agentgate_obs::runs::RunStatus;
    /// let obs = Observability::builder().no_log().start()?;
    /// let spec = TaskSpec::new("fix it", Strategy::Ralph, 3);
    /// drop(obs.emitter().start_run("wo-1", "run-1", &spec)); // an early return
    /// obs.flush();
    /// assert_eq!(obs.runs()[0].status, RunStatus::Failed);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn start_run(&self, work_order_id: &str, run_id: &str, task_spec: &TaskSpec) -> RunGuard {
        self.start_run_with(work_order_id, run_id, task_spec, None)
    }

    /// [`start_run`](Self::start_run) for a run that joins its caller's
    /// trace (see [`Emitter::run_in_trace`]): the engine received
    /// `traceparent` with the request that started the run.
    ///
    /// ```
    /// # use agentgate_obs::{Observability, Strategy, TaskSpec, TraceParent};
    /// let obs = Observability::builder().no_log().start()?;
    /// let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let spec = TaskSpec::new("fix it", Strategy::Ralph, 3);
    /// let run = obs.emitter().start_run_in_trace("wo-1", "run-1", &spec, &caller);
    /// assert_eq!(run.log_context().trace_id, Some(caller.trace_id));
    /// # run.cancel("example");
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn start_run_in_trace(
        &self,
        work_order_id: &str,
        run_id: &str,
        task_spec: &TaskSpec,
        traceparent: &TraceParent,
    ) -> RunGuard {
        self.start_run_with(work_order_id, run_id, task_spec, Some(traceparent))
    }

    fn start_run_with(
        &self,
        work_order_id: &str,
        run_id: &str,
        task_spec: &TaskSpec,
        traceparent: Option<&TraceParent>,
    ) -> RunGuard {
        panic_hook::install();
        panic_hook::keep_messages();
        let handle = self.run_with(work_order_id, run_id, traceparent);
        let started = handle.now();
        handle.emit_at(started, bodies::run_started(task_spec));
        RunGuard {
            handle,
            work_order_id: Arc::from(work_order_id),
            run_id: Arc::from(run_id),
            started,
            iterations: 0,
            breakdown: PhaseTimings::default(),
            metadata: None,
            ended: false,
        }
    }
}

/// A run in progress, started by [`Emitter::start_run`]. `Send`: it may
/// end on another thread than the one that started it.
///
/// [`Emitter::start_run`] returns a [`RunGuard`]; [`RunGuard::iteration`]
/// an [`IterationGuard`]; [`IterationGuard::phase`] a [`PhaseGuard`]. Each
/// emits its start event when created and its end event when it is ended
/// explicitly, or, when it is dropped without that (an early `?` return, a
/// panic), a failure. Every guard ends with the same verbs: `succeed`,
/// `fail`, `finish` (the outcome as a value) and, for a run, `cancel`:
///
/// | guard | created | `succeed` | `fail` | `finish` | `cancel` | dropped without an end |
/// | --- | --- | --- | --- | --- | --- | --- |
/// | [`RunGuard`] | `run_started` | `succeed(&metrics)`: `run_completed`, [`RunResult::Passed`] | `fail(error)`: `run_failed` | `finish(result, &metrics)`: `run_completed` with the engine's result | `cancel(reason)`: `run_canceled` | `run_failed` (with the panic message when unwinding) |
/// | [`IterationGuard`] | `iteration_started` | `iteration_completed`, `success: true` | `success: false` | `finish(success)` | — | `iteration_completed` with `success: false` |
/// | [`PhaseGuard`] | `phase_started` | `phase_completed`, `success: true` | `success: false` | `finish(success)` | — | `phase_completed` with `success: false` |
///
/// A phase's duration is measured by the guard; an iteration collects its
/// phases' durations into the [`PhaseTimings`] of `iteration_completed`; a
/// run fills the [`ExecutionMetrics`] fields the caller leaves at zero
/// (duration, iteration count, phase breakdown).
///
/// An iteration borrows its run and a phase its iteration mutably, so the
/// end events always come out in order (phase, iteration, run) however the
/// scope is left; a gate checked while a phase is open goes through the
/// phase ([`PhaseGuard::gate`]).
///
/// ```
/// use agentgate_obs::{ExecutionMetrics, Observability, Phase, Strategy, TaskSpec};
///
/// fn build() -> Result<(), String> { Ok(()) }
///
/// fn execute(obs: &Observability) -> Result<(), String> {
///     let spec = TaskSpec::new("fix the flaky test", Strategy::Ralph, 3);
///     let mut run = obs.emitter().start_run("wo-1", "run-1", &spec);
///     let mut iteration = run.iteration(1, 3, None);
///     let phase = iteration.phase(Phase::Build);
///     phase.in_context(build)?;          // an early return: phase, iteration and run fail
///     phase.succeed();
///     iteration.gate("tests", true);
///     iteration.succeed();
///     run.succeed(&ExecutionMetrics::default());
///     Ok(())
/// }
///
/// let obs = Observability::builder().no_log().start()?;
/// execute(&obs).unwrap();
/// obs.flush();
/// assert_eq!(obs.runs()[0].iteration, 1);
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
///
/// ## Metadata
///
/// `with_metadata` means one thing on the guards and on [`RunHandle`]:
/// `x.with_metadata(m)` returns `x` ready to emit its event with `m`
/// attached. A [`RunHandle`]'s returns a [`WithMetadata`](crate::WithMetadata)
/// whose one emit carries `m`; a guard's returns the guard, whose event is
/// its end: the verb that ends it, or the failure its drop emits
/// (`phase.with_metadata(m).succeed()`). A guard's start event is out
/// before `with_metadata` can be called, and what it emits on the way
/// (gates, its children's starts) belongs to the run: those take metadata
/// through the guard's `handle()`. Events without metadata cost what they
/// did.
///
/// ## Panics
///
/// The panic message in `run_failed` comes from a panic hook that
/// [`Emitter::start_run`] installs once per process, chained to the hook
/// in place then. A hook set afterwards that does not call the one it
/// replaced hides the message: `run_failed` then says only "the run
/// panicked".
///
/// ## Log context
///
/// The thread-local [`LogContext`] is entered through a closure
/// ([`PhaseGuard::in_context`] and the same on the other guards), not for
/// the guard's whole life: a guard is `Send`, and a context entered on one
/// thread must be left on that thread ([`ContextGuard`](crate::logging::ContextGuard)
/// is not `Send`). Where a thread-bound scope is wanted,
/// `let _ctx = phase.log_context().enter();` does it.
///
/// ## Cost
///
/// A guard's start and end are the [`RunHandle`] calls they stand for
/// (ids interned once per run) with the event's own timestamp reused as the
/// timing: the clock is read once per event, as for the bare calls. On a
/// busy 2-core machine a `PhaseGuard` start and `succeed` measured 55 ns
/// against 48 ns for the bare `phase_started` + `phase_completed` pair and
/// 106 ns for the pair timed by hand with `Instant` (same run;
/// `cargo bench --bench emit -- phase_started`).
#[must_use = "dropping the guard fails the run at once"]
pub struct RunGuard {
    handle: RunHandle,
    work_order_id: Arc<str>,
    run_id: Arc<str>,
    /// Ticks of `run_started`.
    started: u64,
    /// Iterations started through the guard.
    iterations: u32,
    /// Milliseconds per phase over the iterations that ended.
    breakdown: PhaseTimings,
    /// Attached to the run's end event.
    metadata: Option<Arc<Metadata>>,
    ended: bool,
}

impl std::fmt::Debug for RunGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGuard")
            .field("work_order_id", &self.work_order_id)
            .field("run_id", &self.run_id)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl RunGuard {
    /// The run's handle, for emits the guards do not cover (delivery).
    /// Ending the run through it does not end the guard: end the guard.
    pub fn handle(&self) -> &RunHandle {
        &self.handle
    }

    /// Time since `run_started`.
    pub fn elapsed(&self) -> Duration {
        self.handle.between(self.started, self.handle.now())
    }

    /// The run with `metadata` attached to its end event, however it ends
    /// (an end verb or dropped); see [the guards' metadata](RunGuard#metadata).
    pub fn with_metadata(mut self, metadata: impl Into<Arc<Metadata>>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// Starts an iteration: emits `iteration_started`. `max_iterations` is
    /// the run's real limit; `feedback` what the previous iteration left.
    ///
    /// The iteration borrows the run until it ends.
    pub fn iteration(
        &mut self,
        iteration: u32,
        max_iterations: u32,
        feedback: Option<&str>,
    ) -> IterationGuard<'_> {
        self.iterations = self.iterations.saturating_add(1);
        self.handle.emit_at(
            self.handle.now(),
            bodies::iteration_started(iteration, max_iterations, feedback),
        );
        IterationGuard {
            run: self,
            iteration,
            timings: PhaseTimings::default(),
            metadata: None,
            ended: false,
        }
    }

    /// The run's ids, its trace and its span as a [`LogContext`].
    pub fn log_context(&self) -> LogContext {
        let trace = self.handle.trace();
        LogContext {
            work_order_id: Some(self.work_order_id.clone()),
            run_id: Some(self.run_id.clone()),
            trace_id: Some(trace.trace_id),
            span_id: Some(trace.root),
            ..LogContext::default()
        }
    }

    /// Runs `f` with the run's ids in the thread's [`LogContext`].
    pub fn in_context<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::context::with_context(self.log_context(), f)
    }

    /// Emits `run_completed` with [`RunResult::Passed`]; `metrics` as in
    /// [`finish`](Self::finish).
    pub fn succeed(self, metrics: &ExecutionMetrics) {
        self.finish(RunResult::Passed, metrics);
    }

    /// Emits `run_completed` with the engine's `result`. Fields of
    /// `metrics` left at zero (duration, iteration count, an empty phase
    /// breakdown) are filled from what the guard saw: the time since
    /// `run_started`, the iterations started through it, and their phases'
    /// summed durations.
    pub fn finish(mut self, result: RunResult, metrics: &ExecutionMetrics) {
        let now = self.handle.now();
        let fills = metrics.total_duration_ms == 0
            || metrics.iteration_count == 0
            || metrics.phase_breakdown == PhaseTimings::default();
        let body = if fills {
            let mut filled = metrics.clone();
            if filled.total_duration_ms == 0 {
                filled.total_duration_ms = millis(self.handle.between(self.started, now));
            }
            if filled.iteration_count == 0 {
                filled.iteration_count = self.iterations;
            }
            if filled.phase_breakdown == PhaseTimings::default() {
                filled.phase_breakdown = self.breakdown;
            }
            bodies::run_completed(result, &filled)
        } else {
            bodies::run_completed(result, metrics)
        };
        self.end(now, body);
    }

    /// Emits `run_canceled`.
    pub fn cancel(mut self, reason: &str) {
        let now = self.handle.now();
        self.end(now, bodies::run_canceled(reason));
    }

    /// Emits `run_failed`.
    pub fn fail(mut self, error: &str) {
        let now = self.handle.now();
        self.end(now, bodies::run_failed(error));
    }

    fn end(&mut self, now: u64, body: Body) {
        self.ended = true;
        self.handle.emit_at_with(now, body, self.metadata.take());
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let error = if std::thread::panicking() {
            match panic_hook::current_panic_message() {
                Some(message) => format!("the run panicked: {message}"),
                None => "the run panicked".to_owned(),
            }
        } else {
            "the run ended without succeed, finish, fail or cancel (an early return?)".to_owned()
        };
        let now = self.handle.now();
        self.end(now, bodies::run_failed(&error));
    }
}

/// An iteration in progress; see [`RunGuard::iteration`].
///
/// Collects the durations of its phases; [`succeed`](Self::succeed),
/// [`fail`](Self::fail) or [`finish`](Self::finish) emits them in
/// `iteration_completed`. Dropped without one, the iteration completes
/// with `success: false`.
#[must_use = "dropping the guard completes the iteration as failed at once"]
pub struct IterationGuard<'r> {
    run: &'r mut RunGuard,
    iteration: u32,
    timings: PhaseTimings,
    /// Attached to `iteration_completed`.
    metadata: Option<Arc<Metadata>>,
    ended: bool,
}

impl std::fmt::Debug for IterationGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IterationGuard")
            .field("run", &self.run)
            .field("iteration", &self.iteration)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl IterationGuard<'_> {
    /// Starts a phase: emits `phase_started` and starts timing it.
    ///
    /// The phase borrows the iteration until it ends.
    #[inline]
    pub fn phase(&mut self, phase: Phase) -> PhaseGuard<'_> {
        let started = self.run.handle.now();
        self.run.handle.emit_at(
            started,
            Body::PhaseStarted {
                iteration: self.iteration,
                phase,
            },
        );
        PhaseGuard {
            run: self.run,
            iteration: self.iteration,
            timings: &mut self.timings,
            phase,
            started,
            metadata: None,
            ended: false,
        }
    }

    /// Emits `gate_checked`. Names up to 15 bytes travel inline, longer
    /// ones allocate.
    pub fn gate(&self, name: &str, passed: bool) {
        self.run.handle.gate_checked(self.iteration, name, passed);
    }

    /// Emits `gate_checked` with how long the check took.
    pub fn gate_timed(&self, name: &str, passed: bool, duration: Duration) {
        self.run
            .handle
            .gate_checked_timed(self.iteration, name, passed, duration);
    }

    /// Runs the check `f`, times it and emits `gate_checked` with its
    /// result and duration; returns the result.
    pub fn check_gate(&self, name: &str, f: impl FnOnce() -> bool) -> bool {
        check_gate(&self.run.handle, self.iteration, name, f)
    }

    /// The iteration's number.
    pub fn number(&self) -> u32 {
        self.iteration
    }

    /// The run's handle, for emits the guard does not cover (a gate with
    /// metadata: `iteration.handle().with_metadata(m).gate_checked(..)`).
    pub fn handle(&self) -> &RunHandle {
        &self.run.handle
    }

    /// The iteration with `metadata` attached to `iteration_completed`,
    /// however it ends (an end verb or dropped); see
    /// [the guards' metadata](RunGuard#metadata).
    pub fn with_metadata(mut self, metadata: impl Into<Arc<Metadata>>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// The milliseconds collected so far, per phase.
    pub fn timings(&self) -> PhaseTimings {
        self.timings
    }

    /// The run's ids, the iteration and its span as a [`LogContext`].
    pub fn log_context(&self) -> LogContext {
        let mut ctx = self.run.log_context();
        ctx.iteration = Some(self.iteration);
        ctx.span_id = Some(self.run.handle.trace().root.child(self.iteration, 0));
        ctx
    }

    /// Runs `f` with the run's ids and the iteration in the thread's
    /// [`LogContext`].
    pub fn in_context<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::context::with_context(self.log_context(), f)
    }

    /// Emits `iteration_completed` with `success: true` and the phase
    /// timings collected.
    pub fn succeed(mut self) {
        self.end(true);
    }

    /// Emits `iteration_completed` with `success: false` and the phase
    /// timings collected.
    pub fn fail(mut self) {
        self.end(false);
    }

    /// Ends the iteration as `success` says.
    pub fn finish(mut self, success: bool) {
        self.end(success);
    }

    fn end(&mut self, success: bool) {
        self.ended = true;
        for &phase in Phase::ALL {
            if let Some(ms) = self.timings.get(phase) {
                self.run.breakdown.add(phase, ms);
            }
        }
        let body = bodies::iteration_completed(self.iteration, success, &self.timings);
        let handle = &self.run.handle;
        handle.emit_at_with(handle.now(), body, self.metadata.take());
    }
}

impl Drop for IterationGuard<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.end(false);
        }
    }
}

/// A phase in progress; see [`IterationGuard::phase`].
///
/// [`succeed`](Self::succeed) or [`fail`](Self::fail) emits
/// `phase_completed` with the time since `phase_started`; dropped without
/// either, the phase fails.
#[must_use = "dropping the guard fails the phase at once"]
pub struct PhaseGuard<'i> {
    run: &'i RunGuard,
    iteration: u32,
    timings: &'i mut PhaseTimings,
    phase: Phase,
    /// Ticks of `phase_started`.
    started: u64,
    /// Attached to `phase_completed`.
    metadata: Option<Arc<Metadata>>,
    ended: bool,
}

impl std::fmt::Debug for PhaseGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseGuard")
            .field("iteration", &self.iteration)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl PhaseGuard<'_> {
    /// Emits `phase_completed` with `success: true` and the measured duration.
    #[inline]
    pub fn succeed(mut self) {
        self.end(true);
    }

    /// Emits `phase_completed` with `success: false` and the measured duration.
    pub fn fail(mut self) {
        self.end(false);
    }

    /// Ends the phase as `success` says.
    pub fn finish(mut self, success: bool) {
        self.end(success);
    }

    /// Time since `phase_started`.
    pub fn elapsed(&self) -> Duration {
        self.run.handle.between(self.started, self.run.handle.now())
    }

    /// The phase with `metadata` attached to `phase_completed`, however it
    /// ends (`succeed`, `fail`, `finish` or dropped); see
    /// [the guards' metadata](RunGuard#metadata).
    ///
    /// ```
    /// # use agentgate_obs::{Metadata, Observability, Phase, Strategy, TaskSpec};
    /// # let obs = Observability::builder().no_log().start()?;
    /// # let spec = TaskSpec::new("fix it", Strategy::Ralph, 3);
    /// let mut run = obs.emitter().start_run("wo-1", "run-1", &spec);
    /// let mut iteration = run.iteration(1, 3, None);
    /// let phase = iteration.phase(Phase::Build);
    /// let mut metadata = Metadata::new();
    /// metadata.insert("stdoutBytes".into(), 812.into());
    /// phase.with_metadata(metadata).succeed();
    /// # iteration.succeed();
    /// # run.succeed(&Default::default());
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn with_metadata(mut self, metadata: impl Into<Arc<Metadata>>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// The run's handle, for emits the guard does not cover.
    pub fn handle(&self) -> &RunHandle {
        &self.run.handle
    }

    /// Emits `gate_checked` for the phase's iteration.
    pub fn gate(&self, name: &str, passed: bool) {
        self.run.handle.gate_checked(self.iteration, name, passed);
    }

    /// Emits `gate_checked` with how long the check took.
    pub fn gate_timed(&self, name: &str, passed: bool, duration: Duration) {
        self.run
            .handle
            .gate_checked_timed(self.iteration, name, passed, duration);
    }

    /// Runs the check `f`, times it and emits `gate_checked`; returns the result.
    pub fn check_gate(&self, name: &str, f: impl FnOnce() -> bool) -> bool {
        check_gate(&self.run.handle, self.iteration, name, f)
    }

    /// The run's ids, the iteration, the phase and its span as a
    /// [`LogContext`].
    pub fn log_context(&self) -> LogContext {
        let mut ctx = self.run.log_context();
        ctx.iteration = Some(self.iteration);
        ctx.phase = Some(self.phase);
        ctx.span_id = Some(
            self.run
                .handle
                .trace()
                .root
                .phase_child(self.iteration, self.phase),
        );
        ctx
    }

    /// Runs `f` with the run's ids, the iteration and the phase in the
    /// thread's [`LogContext`], so log lines written inside carry them.
    ///
    /// ```
    /// # use agentgate_obs::{Observability, Phase, Strategy, TaskSpec};
    /// # use agentgate_obs::logging::LogContext;
    /// # let obs = Observability::builder().no_log().start()?;
    /// # let spec = TaskSpec::new("fix it", Strategy::Ralph, 3);
    /// let mut run = obs.emitter().start_run("wo-1", "run-1", &spec);
    /// let mut iteration = run.iteration(1, 3, None);
    /// let phase = iteration.phase(Phase::Verify);
    /// let seen = phase.in_context(LogContext::current);
    /// assert_eq!((seen.iteration, seen.phase), (Some(1), Some(Phase::Verify)));
    /// phase.succeed();
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn in_context<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::context::with_context(self.log_context(), f)
    }

    #[inline]
    fn end(&mut self, success: bool) {
        self.ended = true;
        let now = self.run.handle.now();
        let nanos = self.run.handle.nanos_between(self.started, now);
        self.timings.add(self.phase, nanos / 1_000_000);
        self.run.handle.emit_at_with(
            now,
            Body::PhaseCompleted {
                iteration: self.iteration,
                phase: self.phase,
                success,
                nanos,
            },
            self.metadata.take(),
        );
    }
}

impl Drop for PhaseGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.ended {
            self.end(false);
        }
    }
}

fn check_gate(handle: &RunHandle, iteration: u32, name: &str, f: impl FnOnce() -> bool) -> bool {
    let started = handle.now();
    let passed = f();
    let now = handle.now();
    handle.emit_at(
        now,
        bodies::gate_checked(iteration, name, passed, Some(handle.between(started, now))),
    );
    passed
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
