//! Per-thread, scoped context: the work order, run, iteration, phase and
//! correlation id that log lines and progress events are stamped with.
//!
//! Context is set for the length of a closure ([`with_context`]) or of a
//! guard ([`LogContext::enter`]); scopes nest, inner fields override outer
//! ones, and the outer context comes back when the scope ends, also when it
//! ends by a panic. [`LogContext::wrap`] carries the current context into a
//! closure run on another thread.
//!
//! ```
//! use agentgate_obs::logging::{LogContext, with_context};
//! with_context(LogContext::new().run_id("run-1").correlation_id("req-9"), || {
//!     with_context(LogContext::new().iteration(2), || {
//!         let ctx = LogContext::current();
//!         assert_eq!(ctx.run_id.as_deref(), Some("run-1"));
//!         assert_eq!(ctx.iteration, Some(2));
//!     });
//!     assert_eq!(LogContext::current().iteration, None);
//! });
//! ```

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::event::{Phase, SpanId, TraceId};

/// The context fields. Every field is optional; set ones override the
/// enclosing scope's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogContext {
    /// Work order id.
    pub work_order_id: Option<Arc<str>>,
    /// Run id.
    pub run_id: Option<Arc<str>>,
    /// Iteration number.
    pub iteration: Option<u32>,
    /// Current phase.
    pub phase: Option<Phase>,
    /// Correlation id; progress events emitted in this scope carry it.
    pub correlation_id: Option<Arc<str>>,
    /// The W3C trace of the run (`trace_id` on log lines, exemplars);
    /// the guards' contexts set it.
    pub trace_id: Option<TraceId>,
    /// The span the scope is in (`span_id` on log lines): the run's, an
    /// iteration's or a phase's, as exported over OTLP.
    pub span_id: Option<SpanId>,
}

thread_local! {
    // `None` until the thread first enters a context.
    static CURRENT: RefCell<Current> = const { RefCell::new(Current(None)) };
    /// Where the current context's correlation id lies, 0 without one: the
    /// emitter reads it on every event, and a `Cell` without a destructor
    /// costs one load where `CURRENT` costs a liveness check and a borrow.
    static CORRELATION_ADDR: Cell<usize> = const { Cell::new(0) };
}

/// The current context; forgets the correlation id's address when the
/// thread's locals are destroyed, so that no later emit reads it.
struct Current(Option<Arc<LogContext>>);

impl Drop for Current {
    fn drop(&mut self) {
        CORRELATION_ADDR.set(0);
    }
}

/// The address of `context`'s correlation id, 0 without one.
fn correlation_addr(context: Option<&Arc<LogContext>>) -> usize {
    context
        .and_then(|c| c.correlation_id.as_ref())
        .map_or(0, |id| Arc::as_ptr(id).addr())
}

/// Makes `context` current and returns the one it replaces.
fn replace_current(context: Option<Arc<LogContext>>) -> Option<Arc<LogContext>> {
    let addr = correlation_addr(context.as_ref());
    let previous = CURRENT.with_borrow_mut(|current| std::mem::replace(&mut current.0, context));
    CORRELATION_ADDR.set(addr);
    previous
}

impl LogContext {
    /// An empty context.
    pub fn new() -> Self {
        LogContext::default()
    }

    /// Sets the work order id.
    pub fn work_order_id(mut self, id: impl AsRef<str>) -> Self {
        self.work_order_id = Some(Arc::from(id.as_ref()));
        self
    }

    /// Sets the run id.
    pub fn run_id(mut self, id: impl AsRef<str>) -> Self {
        self.run_id = Some(Arc::from(id.as_ref()));
        self
    }

    /// Sets the iteration.
    pub fn iteration(mut self, iteration: u32) -> Self {
        self.iteration = Some(iteration);
        self
    }

    /// Sets the phase.
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = Some(phase);
        self
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl AsRef<str>) -> Self {
        self.correlation_id = Some(Arc::from(id.as_ref()));
        self
    }

    /// Sets the trace and span (from a [`RunHandle`](crate::RunHandle), or
    /// a `traceparent` the engine received).
    pub fn trace(mut self, trace_id: TraceId, span_id: SpanId) -> Self {
        self.trace_id = Some(trace_id);
        self.span_id = Some(span_id);
        self
    }

    /// The calling thread's current context (empty outside any scope).
    pub fn current() -> LogContext {
        CURRENT.with_borrow(|c| c.0.as_deref().cloned().unwrap_or_default())
    }

    /// `self` layered over `outer`: fields set here win.
    fn over(self, outer: Option<&LogContext>) -> LogContext {
        let Some(outer) = outer else { return self };
        LogContext {
            work_order_id: self.work_order_id.or_else(|| outer.work_order_id.clone()),
            run_id: self.run_id.or_else(|| outer.run_id.clone()),
            iteration: self.iteration.or(outer.iteration),
            phase: self.phase.or(outer.phase),
            correlation_id: self.correlation_id.or_else(|| outer.correlation_id.clone()),
            trace_id: self.trace_id.or(outer.trace_id),
            span_id: self.span_id.or(outer.span_id),
        }
    }

    /// Makes this context (layered over the current one) current until the
    /// guard drops.
    ///
    /// Guards must drop in reverse order of creation, which scoping
    /// enforces; the guard is not `Send`.
    pub fn enter(self) -> ContextGuard {
        let merged = Arc::new(CURRENT.with_borrow(|current| self.over(current.0.as_deref())));
        let previous = replace_current(Some(merged));
        ContextGuard {
            previous,
            _not_send: PhantomData,
        }
    }

    /// Wraps `f` so that it runs in the context current now, wherever it
    /// is called: the way to carry context into a spawned thread.
    ///
    /// ```
    /// use agentgate_obs::logging::{LogContext, with_context};
    /// let job = with_context(LogContext::new().run_id("run-7"), || {
    ///     LogContext::wrap(|| LogContext::current().run_id)
    /// });
    /// let seen = std::thread::spawn(job).join().unwrap();
    /// assert_eq!(seen.as_deref(), Some("run-7"));
    /// ```
    pub fn wrap<F: FnOnce() -> R, R>(f: F) -> impl FnOnce() -> R {
        let captured = current_shared();
        move || {
            let previous = replace_current(captured);
            let _restore = ContextGuard {
                previous,
                _not_send: PhantomData,
            };
            f()
        }
    }
}

/// Runs `f` with `ctx` layered over the current context, then restores the
/// current one (also if `f` panics).
pub fn with_context<R>(ctx: LogContext, f: impl FnOnce() -> R) -> R {
    let _guard = ctx.enter();
    f()
}

/// Spawns a thread that runs `f` in the calling thread's current context.
pub fn spawn_with_context<F, R>(f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // `wrap` captures an `Arc<LogContext>`, which is Send.
    std::thread::spawn(LogContext::wrap(f))
}

/// Restores the previous context when dropped.
#[derive(Debug)]
#[must_use = "the context is left as soon as the guard drops"]
pub struct ContextGuard {
    previous: Option<Arc<LogContext>>,
    // Restoring on another thread would corrupt both threads' contexts.
    _not_send: PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        replace_current(previous);
    }
}

/// The current context, shared rather than copied: a log record holds it
/// until the writer thread formats it.
#[inline]
pub(crate) fn current_shared() -> Option<Arc<LogContext>> {
    CURRENT.with_borrow(|c| c.0.clone())
}

/// The address of the current correlation id's string, 0 without one.
/// Equal to the address of an `Arc<str>` the caller holds only if it is
/// that same id: the context holds its own while it is current.
#[inline]
pub(crate) fn current_correlation_addr() -> usize {
    CORRELATION_ADDR.get()
}

/// Calls `f` with the current correlation id, without cloning anything.
pub(crate) fn with_current_correlation<R>(f: impl FnOnce(Option<&Arc<str>>) -> R) -> R {
    CURRENT.with_borrow(|c| f(c.0.as_ref().and_then(|c| c.correlation_id.as_ref())))
}

/// Calls `f` with the current context, without cloning it: custom
/// histograms read it on every observation for their exemplars.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Arc<LogContext>>) -> R) -> R {
    CURRENT.with_borrow(|c| f(c.0.as_ref()))
}
