//! The engine-facing API: [`ProgressEmitter`], its implementation
//! [`Emitter`], and [`RunHandle`] for allocation-free emits.

use std::sync::Arc;
use std::time::Duration;

use crate::event::{
    DeliveryResult, EventKind, EventType, ExecutionMetrics, Metadata, Phase, PhaseTimings,
    ProgressEvent, RunOutcome, RunResult, RunTrace, SpanId, TaskSpec, TraceId, TraceParent,
};
use crate::pipeline::Shared;
use crate::pipeline::envelope::{
    Annotated, Body, CompactTimings, Envelope, InlineName, Key, Msg, NO_CORRELATION,
};
use crate::pipeline::producer;

/// The emits, each defined once: its doc, its name on [`RunHandle`] and
/// [`WithMetadata`] and on [`ProgressEmitter`] (which adds the run's two
/// ids in front), its arguments, and the envelope body it sends. `[inline]`
/// marks the frequent ones, inlined into the engine's code.
///
/// `emits!(m)` hands the list to the macro `m`, which writes one of the
/// four forms: the trait's declarations, [`Emitter`]'s implementation,
/// [`RunHandle`]'s methods and [`WithMetadata`]'s.
macro_rules! emits {
    ($form:ident) => {
        $form! {
            /// `run_started`: a run began.
            fn started / emit_run_started(task_spec: &TaskSpec)
                => bodies::run_started(task_spec);
            /// `run_completed`: a run ended; `result` is the engine's own,
            /// mapped to `succeeded | failed | canceled`.
            fn completed / emit_run_completed(result: RunResult, metrics: &ExecutionMetrics)
                => bodies::run_completed(result, metrics);
            /// `run_canceled`: a run was canceled.
            fn canceled / emit_run_canceled(reason: &str)
                => bodies::run_canceled(reason);
            /// `run_failed`: a run failed with an error.
            fn failed / emit_run_failed(error: &str)
                => bodies::run_failed(error);
            /// `iteration_started`: an iteration began; `max_iterations` is the
            /// run's real limit, `feedback` what the previous iteration left.
            [inline] fn iteration_started / emit_iteration_started(
                iteration: u32, max_iterations: u32, feedback: Option<&str>)
                => bodies::iteration_started(iteration, max_iterations, feedback);
            /// `iteration_completed`: an iteration ended.
            [inline] fn iteration_completed / emit_iteration_completed(
                iteration: u32, success: bool, timings: &PhaseTimings)
                => bodies::iteration_completed(iteration, success, timings);
            /// `phase_started`: a phase began.
            [inline] fn phase_started / emit_phase_started(iteration: u32, phase: Phase)
                => Body::PhaseStarted { iteration, phase };
            /// `phase_completed`: a phase ended, after `duration`.
            [inline] fn phase_completed / emit_phase_completed(
                iteration: u32, phase: Phase, success: bool, duration: Duration)
                => bodies::phase_completed(iteration, phase, success, duration);
            /// `gate_checked`: a gate was checked. Names up to 15 bytes
            /// travel inline, longer ones allocate.
            [inline] fn gate_checked / emit_gate_checked(iteration: u32, gate: &str, passed: bool)
                => bodies::gate_checked(iteration, gate, passed, None);
            /// `gate_checked` with how long the check took (shown in the
            /// iteration's `gateResults`).
            [inline] fn gate_checked_timed / emit_gate_checked_timed(
                iteration: u32, gate: &str, passed: bool, duration: Duration)
                => bodies::gate_checked(iteration, gate, passed, Some(duration));
            /// `delivery_started`: delivery began.
            [inline] fn delivery_started / emit_delivery_started()
                => Body::DeliveryStarted;
            /// `delivery_completed`: delivery ended.
            fn delivery_completed / emit_delivery_completed(result: &DeliveryResult)
                => bodies::delivery_completed(result);
        }
    };
}

/// [`ProgressEmitter`]'s declarations.
macro_rules! trait_methods {
    ($(
        $(#[doc = $doc:expr])* $([$inline:meta])?
        fn $handle:ident / $method:ident ($($arg:ident: $ty:ty),* $(,)?) => $body:expr;
    )*) => {$(
        $(#[doc = $doc])*
        fn $method(&self, work_order_id: &str, run_id: &str, $($arg: $ty),*);
    )*};
}

/// [`Emitter`]'s implementation of [`ProgressEmitter`].
macro_rules! emitter_methods {
    ($(
        $(#[doc = $doc:expr])* $([$inline:meta])?
        fn $handle:ident / $method:ident ($($arg:ident: $ty:ty),* $(,)?) => $body:expr;
    )*) => {$(
        $(#[$inline])?
        fn $method(&self, work_order_id: &str, run_id: &str, $($arg: $ty),*) {
            self.emit_str(work_order_id, run_id, $body);
        }
    )*};
}

/// [`RunHandle`]'s methods.
macro_rules! handle_methods {
    ($(
        $(#[doc = $doc:expr])* $([$inline:meta])?
        fn $handle:ident / $method:ident ($($arg:ident: $ty:ty),* $(,)?) => $body:expr;
    )*) => {$(
        $(#[doc = $doc])*
        $(#[$inline])?
        pub fn $handle(&self, $($arg: $ty),*) {
            self.emit($body);
        }
    )*};
}

/// [`WithMetadata`]'s methods: the same, consuming the metadata.
macro_rules! metadata_methods {
    ($(
        $(#[doc = $doc:expr])* $([$inline:meta])?
        fn $handle:ident / $method:ident ($($arg:ident: $ty:ty),* $(,)?) => $body:expr;
    )*) => {$(
        $(#[doc = $doc])*
        pub fn $handle(self, $($arg: $ty),*) {
            self.emit($body);
        }
    )*};
}

/// The progress-event interface an engine calls, one method per event type
/// (the original TypeScript interface in snake_case) plus
/// [`emit_gate_checked_timed`](Self::emit_gate_checked_timed), a gate with
/// its duration, and [`subscribe`].
///
/// It is a trait so an engine can be tested with a fake; [`Emitter`] is
/// the real implementation. Every method is required: a fake says what it
/// does with each event, a gate's duration included.
///
/// [`subscribe`]: ProgressEmitter::subscribe
pub trait ProgressEmitter {
    emits!(trait_methods);
    /// Calls `listener` with every event, on the pipeline's drain thread,
    /// until the returned [`Subscription`] drops. Events arrive redacted,
    /// as every output sees them.
    fn subscribe(&self, listener: Box<dyn Fn(&ProgressEvent) + Send + Sync>) -> Subscription;
}

/// Unsubscribes a listener when dropped.
///
/// Dropping it from inside the listener itself is fine. Dropped on another
/// thread while the drain thread is about to call the listener, the
/// listener may see that one event more.
#[must_use = "the listener is removed as soon as the subscription drops"]
pub struct Subscription {
    unsubscribe: Option<Box<dyn FnOnce() + Send>>,
}

impl Subscription {
    /// A subscription that runs `unsubscribe` when dropped: for fakes of
    /// [`ProgressEmitter`].
    pub fn new(unsubscribe: impl FnOnce() + Send + 'static) -> Self {
        Subscription {
            unsubscribe: Some(Box::new(unsubscribe)),
        }
    }

    /// Keeps the listener for the pipeline's lifetime.
    pub fn detach(mut self) {
        self.unsubscribe = None;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(unsubscribe) = self.unsubscribe.take() {
            unsubscribe();
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("active", &self.unsubscribe.is_some())
            .finish()
    }
}

/// The engine's handle on a pipeline: cheap to clone, `Send + Sync`.
///
/// Every emit stamps the event, pushes it onto the ring and returns; it
/// does no I/O, no JSON and takes no lock. What happens when the ring is
/// full is the pipeline's [`Overflow`](crate::Overflow) policy.
#[derive(Clone, Debug)]
pub struct Emitter {
    shared: Arc<Shared>,
}

impl Emitter {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Emitter { shared }
    }

    /// A handle on one run: its ids are interned once, so its frequent
    /// emits allocate nothing and compare no strings.
    ///
    /// ```
    /// # use agentgate_obs::{Observability, Phase};
    /// # use std::time::Duration;
    /// let obs = Observability::builder().start().unwrap();
    /// let run = obs.emitter().run("wo-1", "run-1");
    /// run.phase_completed(1, Phase::Build, true, Duration::from_millis(1234));
    /// obs.flush();
    /// assert_eq!(obs.runs()[0].phase_timings.build, Some(1234));
    /// ```
    pub fn run(&self, work_order_id: &str, run_id: &str) -> RunHandle {
        self.run_with(work_order_id, run_id, None)
    }

    /// [`run`](Self::run) for a run that joins its caller's trace: the
    /// engine got `traceparent` with the request that started the run, and
    /// the run's events (`traceId`), its log lines and its exported spans
    /// (the root span a child of the caller's span) carry the caller's
    /// trace id.
    ///
    /// ```
    /// # use agentgate_obs::{Observability, TraceParent};
    /// let obs = Observability::builder().no_log().start()?;
    /// let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let run = obs.emitter().run_in_trace("wo-1", "run-1", &caller);
    /// assert_eq!(run.trace_id(), caller.trace_id);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn run_in_trace(
        &self,
        work_order_id: &str,
        run_id: &str,
        traceparent: &TraceParent,
    ) -> RunHandle {
        self.run_with(work_order_id, run_id, Some(traceparent))
    }

    pub(crate) fn run_with(
        &self,
        work_order_id: &str,
        run_id: &str,
        traceparent: Option<&TraceParent>,
    ) -> RunHandle {
        // Once per handle, not per emit: a few arithmetic instructions of
        // a thread-local generator.
        let trace = RunTrace::new(traceparent);
        let key = producer::register_run(&self.shared, work_order_id, run_id, Some(trace));
        RunHandle {
            inner: Arc::new(HandleInner {
                emitter: self.clone(),
                key,
                trace,
            }),
        }
    }

    /// Calls `listener` with every event, on the drain thread, until the
    /// subscription drops. A listener that panics is caught, counted
    /// (`listener_panics_total`) and logged once per panic; the others go on.
    ///
    /// Such a panic is not printed by the panic hook: the first subscription
    /// installs, once per process, a hook that stays silent inside listener
    /// calls and passes every other panic to the hook it replaced (so an
    /// embedder's hook set before still sees the embedder's panics). A hook
    /// set afterwards replaces it unless it calls the one it took over.
    ///
    /// Listeners run on the drain thread: a slow one slows the pipeline,
    /// not the engine. A listener may emit; its events are processed right
    /// after the current one and are never dropped.
    ///
    /// Listeners get the event every other output gets: redacted (secret
    /// keys in metadata, tokens, URL passwords … become `[REDACTED]`; see
    /// `docs/REDACTION.md`).
    pub fn subscribe<F>(&self, listener: F) -> Subscription
    where
        F: Fn(&ProgressEvent) + Send + Sync + 'static,
    {
        let id = self.shared.listeners.add(Box::new(listener));
        let shared = Arc::downgrade(&self.shared);
        Subscription::new(move || {
            if let Some(shared) = shared.upgrade() {
                shared.listeners.remove(id);
            }
        })
    }

    /// Emits a complete event, with its own timestamp, correlation id and
    /// metadata. It allocates; prefer the typed methods on hot paths (for
    /// metadata on those, [`RunHandle::with_metadata`]).
    pub fn emit(&self, event: ProgressEvent) {
        let ty = event.event_type();
        self.count_emitted(ty);
        let envelope = Envelope {
            ticks: self.shared.clock.raw(),
            msg: Msg::Owned(Box::new(event)),
        };
        self.shared.send_event(envelope, ty);
    }

    /// Emits `events` in order as one message, waiting for room whatever
    /// the overflow policy (a replay must lose nothing); dropped only after
    /// shutdown. One message for many events spares a replay an allocation,
    /// a ring slot and a free per event.
    pub(crate) fn emit_all_reliably(&self, events: Vec<ProgressEvent>) {
        if events.is_empty() {
            return;
        }
        let mut by_type = [0u64; EventType::COUNT];
        for event in &events {
            let ty = event.event_type();
            self.count_emitted(ty);
            by_type[ty.index()] += 1;
        }
        if !self.shared.send_reliable(Msg::OwnedBatch(events)) {
            for (ty, n) in EventType::ALL.into_iter().zip(by_type) {
                self.shared.counters.dropped.add_n(ty, n);
            }
        }
    }

    /// The pipeline behind this emitter.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn count_emitted(&self, ty: EventType) {
        let counted = producer::with_cache(&self.shared, |cache| {
            cache.counters.emitted.add_single_writer(ty)
        });
        if counted.is_none() {
            // Thread-local state is gone (emit from a TLS destructor).
            self.shared.counters.emitted_fallback.add(ty);
        }
    }

    /// Emits `body` about the run `(work_order_id, run_id)`.
    #[inline]
    fn emit_str(&self, work_order_id: &str, run_id: &str, body: Body) {
        let ty = body.event_type();
        let shared = &self.shared;
        // Taken by the cached path; left for the fallback when the
        // thread-local state is gone.
        let mut body = Some(body);
        let sent = producer::with_cache(shared, |cache| {
            let run = cache.run_key(shared, work_order_id, run_id);
            let correlation = cache.correlation_key(shared);
            cache.counters.emitted.add_single_writer(ty);
            if let Some(body) = body.take() {
                shared.send_event_cached(cache, ty, None, || Msg::Event {
                    run,
                    correlation,
                    body,
                });
            }
        });
        if sent.is_none()
            && let Some(body) = body
        {
            self.emit_uncached(work_order_id, run_id, body);
        }
    }

    #[inline]
    fn send(&self, ticks: u64, run: Key, correlation: Key, body: Body, ty: EventType) {
        let msg = Msg::Event {
            run,
            correlation,
            body,
        };
        self.shared.send_event(Envelope { ticks, msg }, ty);
    }

    /// Emits `body` about a run registered as `run`.
    #[inline]
    fn emit_keyed(&self, run: Key, body: Body) {
        self.emit_keyed_stamped(None, run, body);
    }

    /// Emits `body` about a run registered as `run`, stamped `ticks`.
    #[inline]
    fn emit_keyed_at(&self, ticks: u64, run: Key, body: Body) {
        self.emit_keyed_stamped(Some(ticks), run, body);
    }

    /// Emits `body` about a run registered as `run`, stamped `ticks` or,
    /// without, when it is sent.
    #[inline(always)]
    fn emit_keyed_stamped(&self, ticks: Option<u64>, run: Key, body: Body) {
        // Inlined where the body is built, so the type is a constant there
        // instead of a match on every emit.
        let ty = body.event_type();
        self.emit_keyed_typed(ticks, ty, run, body);
    }

    /// [`emit_keyed_stamped`](Self::emit_keyed_stamped) once the type is known.
    #[inline]
    fn emit_keyed_typed(&self, ticks: Option<u64>, ty: EventType, run: Key, body: Body) {
        self.emit_keyed_msg(ticks, ty, body, |body, correlation| Msg::Event {
            run,
            correlation,
            body,
        });
    }

    /// [`emit_keyed_stamped`](Self::emit_keyed_stamped) with `metadata`
    /// attached: the envelope carries a box instead of the body inline.
    fn emit_keyed_annotated(
        &self,
        ticks: Option<u64>,
        run: Key,
        body: Body,
        metadata: Arc<Metadata>,
    ) {
        let ty = body.event_type();
        let payload = (body, metadata);
        self.emit_keyed_msg(ticks, ty, payload, |(body, metadata), correlation| {
            Msg::Annotated(Box::new(Annotated {
                run,
                correlation,
                body,
                metadata,
            }))
        });
    }

    /// Sends the message `msg` makes of `payload` and the context's
    /// correlation key, counted as one emit of `ty`.
    #[inline]
    fn emit_keyed_msg<P>(
        &self,
        ticks: Option<u64>,
        ty: EventType,
        payload: P,
        msg: impl FnOnce(P, Key) -> Msg,
    ) {
        let shared = &self.shared;
        // Taken by the cached path; left for the fallback when the
        // thread-local state is gone.
        let mut pending = Some((payload, msg));
        let sent = producer::with_cache(shared, |cache| {
            cache.counters.emitted.add_single_writer(ty);
            let correlation = cache.correlation_key(shared);
            if let Some((payload, msg)) = pending.take() {
                shared.send_event_cached(cache, ty, ticks, || msg(payload, correlation));
            }
        });
        if sent.is_none()
            && let Some((payload, msg)) = pending
        {
            self.emit_keyed_uncached(ticks, ty, msg(payload, NO_CORRELATION));
        }
    }

    /// Sends `msg` without this thread's cache (its thread-local state is gone).
    #[cold]
    #[inline(never)]
    fn emit_keyed_uncached(&self, ticks: Option<u64>, ty: EventType, msg: Msg) {
        self.shared.counters.emitted_fallback.add(ty);
        let ticks = ticks.unwrap_or_else(|| self.shared.clock.raw());
        self.shared.send_event(Envelope { ticks, msg }, ty);
    }

    #[cold]
    fn emit_uncached(&self, work_order_id: &str, run_id: &str, body: Body) {
        let ty = body.event_type();
        self.shared.counters.emitted_fallback.add(ty);
        let key = producer::register_run(&self.shared, work_order_id, run_id, None);
        self.send(self.shared.clock.raw(), key, NO_CORRELATION, body, ty);
        self.shared.send_reliable(Msg::UnregisterRun(key));
    }
}

/// Builds the envelope bodies; shared by the `&str` API and [`RunHandle`].
pub(crate) mod bodies {
    use super::*;

    pub(crate) fn run_started(spec: &TaskSpec) -> Body {
        // Re-cut: a caller may have built the struct by hand.
        let task_spec = TaskSpec::new(&spec.goal, spec.strategy, spec.max_iterations);
        Body::Boxed(Box::new(EventKind::RunStarted { task_spec }))
    }

    pub(crate) fn run_completed(result: RunResult, metrics: &ExecutionMetrics) -> Body {
        Body::Boxed(Box::new(EventKind::RunCompleted {
            result: RunOutcome::from(result),
            engine_result: result,
            iterations: metrics.iteration_count,
            duration_ms: metrics.total_duration_ms,
            metrics: Box::new(metrics.clone()),
        }))
    }

    pub(crate) fn run_canceled(reason: &str) -> Body {
        Body::Boxed(Box::new(EventKind::RunCanceled {
            reason: reason.to_owned(),
        }))
    }

    pub(crate) fn run_failed(error: &str) -> Body {
        Body::Boxed(Box::new(EventKind::RunFailed {
            error: error.to_owned(),
        }))
    }

    pub(crate) fn iteration_started(
        iteration: u32,
        max_iterations: u32,
        feedback: Option<&str>,
    ) -> Body {
        match feedback {
            None => Body::IterationStarted {
                iteration,
                max_iterations,
            },
            Some(feedback) => Body::Boxed(Box::new(EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: Some(feedback.to_owned()),
            })),
        }
    }

    pub(crate) fn iteration_completed(
        iteration: u32,
        success: bool,
        timings: &PhaseTimings,
    ) -> Body {
        match CompactTimings::new(timings) {
            Some(timings) => Body::IterationCompleted {
                iteration,
                success,
                timings,
            },
            None => Body::Boxed(Box::new(EventKind::IterationCompleted {
                iteration,
                success,
                phase_timings: *timings,
                gate_results: Vec::new(),
            })),
        }
    }

    pub(crate) fn phase_completed(
        iteration: u32,
        phase: Phase,
        success: bool,
        duration: Duration,
    ) -> Body {
        Body::PhaseCompleted {
            iteration,
            phase,
            success,
            nanos: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    pub(crate) fn gate_checked(
        iteration: u32,
        gate: &str,
        passed: bool,
        duration: Option<Duration>,
    ) -> Body {
        let duration_ms = duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let compact_ms = match duration_ms {
            None => Some(None),
            Some(ms) => u32::try_from(ms).ok().map(Some),
        };
        match (InlineName::new(gate), compact_ms) {
            (Some(gate), Some(duration_ms)) => Body::GateChecked {
                iteration,
                gate,
                passed,
                duration_ms,
            },
            _ => Body::Boxed(Box::new(EventKind::GateChecked {
                iteration,
                gate: gate.to_owned(),
                passed,
                duration_ms,
            })),
        }
    }

    pub(crate) fn delivery_completed(result: &DeliveryResult) -> Body {
        Body::Boxed(Box::new(EventKind::DeliveryCompleted {
            success: result.success,
            pr_url: result.pr_url.clone(),
            ci_status: result.ci_status.clone(),
        }))
    }
}

impl ProgressEmitter for Emitter {
    emits!(emitter_methods);
    fn subscribe(&self, listener: Box<dyn Fn(&ProgressEvent) + Send + Sync>) -> Subscription {
        Emitter::subscribe(self, listener)
    }
}

struct HandleInner {
    emitter: Emitter,
    key: Key,
    trace: RunTrace,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.emitter
            .shared
            .send_reliable(Msg::UnregisterRun(self.key));
    }
}

/// One run's emitter: ids interned once, so the frequent emits
/// (phases, gates with short names, iterations without feedback) allocate
/// nothing. Cheap to clone; the run's key is released when the last clone
/// drops.
///
/// ```
/// # use agentgate_obs::{Observability, Phase, PhaseTimings, RunResult, ExecutionMetrics, Strategy, TaskSpec};
/// # use std::time::Duration;
/// let obs = Observability::builder().start().unwrap();
/// let run = obs.emitter().run("wo-1", "run-1");
/// run.started(&TaskSpec::new("fix the flaky test", Strategy::Ralph, 3));
/// run.iteration_started(1, 3, None);
/// run.phase_started(1, Phase::Build);
/// run.phase_completed(1, Phase::Build, true, Duration::from_millis(40));
/// run.gate_checked(1, "tests", true);
/// run.iteration_completed(1, true, &PhaseTimings { build: Some(40), ..Default::default() });
/// run.completed(RunResult::Passed, &ExecutionMetrics::default());
/// obs.flush();
/// assert_eq!(obs.active_runs(), 0);
/// ```
#[derive(Clone)]
pub struct RunHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("key", &self.inner.key)
            .finish()
    }
}

impl RunHandle {
    #[inline]
    fn emit(&self, body: Body) {
        self.inner.emitter.emit_keyed(self.inner.key, body);
    }

    /// The trace this handle's run is in: the id its events carry as
    /// `traceId`, unless another handle of the same run emitted the run's
    /// first event (the pipeline keeps the first trace a run gets).
    pub fn trace_id(&self) -> TraceId {
        self.inner.trace.trace_id
    }

    /// The span of the run itself (the root span of its trace, as
    /// exported over OTLP).
    pub fn span_id(&self) -> SpanId {
        self.inner.trace.root
    }

    /// A `traceparent` naming the run's span: what the engine passes on to
    /// the services it calls so that their spans nest under the run.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.inner.trace.trace_id,
            parent_id: self.inner.trace.root,
            flags: 1,
        }
    }

    /// The handle's trace, for the guards' log contexts.
    pub(crate) fn trace(&self) -> RunTrace {
        self.inner.trace
    }

    /// The pipeline's clock now, in raw ticks (what events are stamped with).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.inner.emitter.shared.clock.raw()
    }

    /// The time from `start` to `end`, both raw ticks from [`now`](Self::now).
    #[inline]
    pub(crate) fn between(&self, start: u64, end: u64) -> Duration {
        Duration::from_nanos(self.nanos_between(start, end))
    }

    /// [`between`](Self::between) in nanoseconds.
    #[inline]
    pub(crate) fn nanos_between(&self, start: u64, end: u64) -> u64 {
        self.inner.emitter.shared.clock.delta_as_nanos(start, end)
    }

    /// Emits `body` stamped `ticks` (read by the caller, who also uses it
    /// to time something: one clock read serves both).
    #[inline]
    pub(crate) fn emit_at(&self, ticks: u64, body: Body) {
        self.inner
            .emitter
            .emit_keyed_at(ticks, self.inner.key, body);
    }

    /// Emits `body` stamped `ticks`, with `metadata` when there is some.
    #[inline]
    pub(crate) fn emit_at_with(&self, ticks: u64, body: Body, metadata: Option<Arc<Metadata>>) {
        match metadata {
            None => self.emit_at(ticks, body),
            Some(metadata) => {
                self.inner
                    .emitter
                    .emit_keyed_annotated(Some(ticks), self.inner.key, body, metadata)
            }
        }
    }

    /// The run ready to emit one event with `metadata` attached: the
    /// returned [`WithMetadata`]'s one emit carries it (what `with_metadata`
    /// means on the guards too, see [their metadata](crate::RunGuard#metadata)).
    /// It appears under the event's `metadata` in every output (listeners,
    /// `/ws`, JSON logs), redacted like everything else.
    ///
    /// Only this emit pays for it (one box on the ring instead of the
    /// inline event); the emits without metadata cost what they did.
    /// Pass an `Arc<Metadata>` to share one map between several events.
    ///
    /// ```
    /// # use agentgate_obs::{Metadata, Observability, Phase};
    /// # use std::time::Duration;
    /// let obs = Observability::builder().no_log().start()?;
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    /// let sink = seen.clone();
    /// let _sub = obs.emitter().subscribe(move |e| *sink.lock().unwrap() = e.metadata.clone());
    /// let run = obs.emitter().run("wo-1", "run-1");
    /// let mut metadata = Metadata::new();
    /// metadata.insert("stdoutBytes".into(), 5120.into());
    /// run.with_metadata(metadata)
    ///     .phase_completed(1, Phase::Build, true, Duration::from_millis(40));
    /// obs.flush();
    /// let got = seen.lock().unwrap().clone().unwrap();
    /// assert_eq!(got["stdoutBytes"], 5120);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn with_metadata(&self, metadata: impl Into<Arc<Metadata>>) -> WithMetadata<'_> {
        WithMetadata {
            handle: self,
            metadata: metadata.into(),
        }
    }

    emits!(handle_methods);
}

/// One emit of a run with metadata attached; see [`RunHandle::with_metadata`].
///
/// Each method emits the event of the [`RunHandle`] method of the same
/// name and consumes the metadata.
#[must_use = "nothing is emitted until one of the emit methods is called"]
pub struct WithMetadata<'h> {
    handle: &'h RunHandle,
    metadata: Arc<Metadata>,
}

impl std::fmt::Debug for WithMetadata<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithMetadata")
            .field("handle", self.handle)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl WithMetadata<'_> {
    fn emit(self, body: Body) {
        let inner = &self.handle.inner;
        inner
            .emitter
            .emit_keyed_annotated(None, inner.key, body, self.metadata);
    }

    emits!(metadata_methods);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Observability;
    use crate::event::Strategy;
    use parking_lot::Mutex;

    fn recorded(obs: &Observability) -> (Arc<Mutex<Vec<ProgressEvent>>>, Subscription) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let sub = obs
            .emitter()
            .subscribe(move |e| sink.lock().push(e.clone()));
        (seen, sub)
    }

    #[test]
    fn every_event_of_a_run_carries_the_trace_of_its_first_whichever_handle_sent_it() {
        let obs = Observability::builder().no_log().start().unwrap();
        let (seen, _sub) = recorded(&obs);
        let first = obs.emitter().run("wo", "run-1");
        let second = obs.emitter().run("wo", "run-1");
        assert_ne!(first.trace_id(), second.trace_id());
        first.started(&TaskSpec::new("g", Strategy::Fixed, 1));
        second.phase_started(1, Phase::Build);
        obs.emitter()
            .emit_phase_started("wo", "run-1", 1, Phase::Verify);
        obs.flush();
        let events = seen.lock();
        assert_eq!(events.len(), 3);
        for event in events.iter() {
            assert_eq!(event.trace_id, Some(first.trace_id()), "{event:?}");
        }
    }

    #[test]
    fn a_run_started_in_a_callers_trace_carries_the_callers_trace_id() {
        let obs = Observability::builder().no_log().start().unwrap();
        let (seen, _sub) = recorded(&obs);
        let caller =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let run = obs.emitter().run_in_trace("wo", "run-1", &caller);
        assert_ne!(
            run.span_id(),
            caller.parent_id,
            "the run is a span of its own"
        );
        assert_eq!(run.traceparent().trace_id, caller.trace_id);
        assert_eq!(run.traceparent().parent_id, run.span_id());
        run.started(&TaskSpec::new("g", Strategy::Fixed, 1));
        obs.flush();
        assert_eq!(seen.lock()[0].trace_id, Some(caller.trace_id));
    }

    #[test]
    fn runs_of_the_str_api_get_traces_of_their_own_and_a_whole_event_keeps_its_trace() {
        let obs = Observability::builder().no_log().start().unwrap();
        let (seen, _sub) = recorded(&obs);
        let spec = TaskSpec::new("g", Strategy::Fixed, 1);
        obs.emitter().emit_run_started("wo", "run-a", &spec);
        obs.emitter().emit_run_started("wo", "run-b", &spec);
        let kept = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let mut whole = ProgressEvent::new("wo", "run-c", EventKind::DeliveryStarted);
        whole.trace_id = Some(kept);
        obs.emitter().emit(whole);
        obs.flush();
        let events = seen.lock();
        let (a, b) = (events[0].trace_id, events[1].trace_id);
        assert!(a.is_some() && b.is_some() && a != b);
        assert_eq!(events[2].trace_id, Some(kept));
    }
}
