//! Metrics: counters, gauges and duration histograms, fed by the drain
//! thread and rendered for Prometheus.
//!
//! [`Metrics`] is the default [`MetricsCollector`]. The pipeline feeds it
//! from the drain thread (see `sink.rs`); an engine can also use one on its
//! own, or test against a fake collector. Counters are atomics; each
//! histogram keeps exact Prometheus bucket counts as observations arrive,
//! plus an hdrhistogram (1 µs to 24 h, 3 significant digits) for
//! [`Metrics::summary`]. Nothing here grows with traffic: series are fixed,
//! except gate names, which are capped ([`MetricsConfig::gate_label_limit`]).
//!
//! ```
//! use agentgate_obs::metrics::{Metrics, MetricsCollector, MetricsConfig};
//! use agentgate_obs::{Phase, RunOutcome};
//! use std::time::Duration;
//!
//! let metrics = Metrics::new("agentgate", MetricsConfig::default())?;
//! metrics.increment_runs_started();
//! metrics.increment_runs_completed(RunOutcome::Succeeded);
//! metrics.record_phase_duration(Phase::Build, Duration::from_millis(1234));
//! let text = metrics.render();
//! assert!(text.contains("agentgate_runs_completed_total{result=\"succeeded\"} 1\n"));
//! assert!(text.contains("agentgate_phase_duration_seconds_bucket{phase=\"build\",le=\"2.5\"} 1\n"));
//! # Ok::<(), agentgate_obs::Error>(())
//! ```

mod config;
pub(crate) mod histogram;
mod labels;
mod render;
pub(crate) mod sink;
mod summary;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use config::{
    DEFAULT_DURATION_BUCKETS, DEFAULT_GATE_LABEL_LIMIT, DEFAULT_LATENCY_BUCKETS, MetricsConfig,
};
pub use summary::{Bucket, HistogramSummary, Summary};

use crate::event::{Phase, RunOutcome};
use crate::exposition::Format;
use crate::observability::Error;
use crate::pipeline::Shared;
use histogram::{TimeHistogram, Trace};
use labels::GateLabels;

/// The original engine interface for metrics, so an engine can be tested
/// with a fake. [`Metrics`] is the real implementation.
pub trait MetricsCollector: Send + Sync {
    /// Counts a run that started.
    fn increment_runs_started(&self);
    /// Counts a run that finished, by outcome.
    fn increment_runs_completed(&self, result: RunOutcome);
    /// Counts a completed iteration.
    fn increment_iterations(&self);
    /// Records a run's duration.
    fn record_run_duration(&self, duration: Duration);
    /// Records an iteration's duration.
    fn record_iteration_duration(&self, duration: Duration);
    /// Records a phase's duration.
    fn record_phase_duration(&self, phase: Phase, duration: Duration);
    /// Sets the number of active runs.
    fn set_active_runs(&self, count: u64);
    /// The metrics in Prometheus text format 0.0.4.
    fn render(&self) -> String;
}

/// Why the server closed a WebSocket client: the `reason` label of
/// `ws_clients_closed_total`, a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WsCloseReason {
    /// What the server queued for it passed its byte budget.
    Budget = 0,
    /// It answered no ping within the deadline.
    PongTimeout = 1,
    /// It sent messages faster than the rate limit.
    Rate = 2,
    /// Its socket refused data for the stall timeout.
    Stalled = 3,
}

impl WsCloseReason {
    /// Every reason, in label order (sorted), matching the discriminants.
    pub(crate) const ALL: [WsCloseReason; 4] = [
        WsCloseReason::Budget,
        WsCloseReason::PongTimeout,
        WsCloseReason::Rate,
        WsCloseReason::Stalled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WsCloseReason::Budget => "budget",
            WsCloseReason::PongTimeout => "pong_timeout",
            WsCloseReason::Rate => "rate",
            WsCloseReason::Stalled => "stalled",
        }
    }
}

/// Full metric names, built once from the namespace.
#[derive(Debug)]
struct Names {
    active_runs: String,
    deliveries: String,
    queue_capacity: String,
    queue_depth: String,
    queue_latency: String,
    events_dropped: String,
    events: String,
    gate_checks: String,
    http_shed: String,
    iteration_duration: String,
    iterations: String,
    journal_dropped: String,
    journal_rotations: String,
    journal_write_errors: String,
    journal_written: String,
    listener_panics: String,
    log_dropped: String,
    log_sink_errors: String,
    render_bytes: String,
    render_seconds: String,
    clamped: String,
    phase_duration: String,
    phase_executions: String,
    run_duration: String,
    runs_completed: String,
    runs_evicted: String,
    runs_started: String,
    ws_clients: String,
    ws_clients_closed: String,
}

impl Names {
    fn new(ns: &str) -> Self {
        let n = |suffix: &str| format!("{ns}_{suffix}");
        Names {
            active_runs: n("active_runs"),
            deliveries: n("deliveries_total"),
            queue_capacity: n("event_queue_capacity"),
            queue_depth: n("event_queue_depth"),
            queue_latency: n("event_queue_latency_seconds"),
            events_dropped: n("events_dropped_total"),
            events: n("events_total"),
            gate_checks: n("gate_checks_total"),
            http_shed: n("http_connections_shed_total"),
            iteration_duration: n("iteration_duration_seconds"),
            iterations: n("iterations_total"),
            journal_dropped: n("journal_events_dropped_total"),
            journal_rotations: n("journal_rotations_total"),
            journal_write_errors: n("journal_write_errors_total"),
            journal_written: n("journal_events_written_total"),
            listener_panics: n("listener_panics_total"),
            log_dropped: n("log_records_dropped_total"),
            log_sink_errors: n("log_sink_errors_total"),
            render_bytes: n("metrics_render_bytes"),
            render_seconds: n("metrics_render_seconds"),
            clamped: n("observations_clamped_total"),
            phase_duration: n("phase_duration_seconds"),
            phase_executions: n("phase_executions_total"),
            run_duration: n("run_duration_seconds"),
            runs_completed: n("runs_completed_total"),
            runs_evicted: n("runs_evicted_total"),
            runs_started: n("runs_started_total"),
            ws_clients: n("ws_clients"),
            ws_clients_closed: n("ws_clients_closed_total"),
        }
    }
}

#[derive(Debug)]
struct Inner {
    names: Names,
    runs_started: AtomicU64,
    /// Indexed by `RunOutcome as usize`.
    runs_completed: [AtomicU64; 3],
    iterations: AtomicU64,
    /// `[phase][success]`.
    phase_executions: [[AtomicU64; 2]; 4],
    /// `[success]`.
    deliveries: [AtomicU64; 2],
    gates: GateLabels,
    /// Used when no pipeline is attached (a standalone collector).
    active_runs: AtomicU64,
    ws_clients: AtomicU64,
    /// Indexed by `WsCloseReason as usize`.
    ws_clients_closed: [AtomicU64; WsCloseReason::ALL.len()],
    /// Connections the HTTP server shed, by reason (zero without a server).
    http_shed: Arc<crate::server::shed::ShedCounts>,
    /// The journal writer's counters (zero without a journal).
    journal: Arc<crate::journal::JournalCounters>,
    run_duration: TimeHistogram,
    iteration_duration: TimeHistogram,
    phase_duration: [TimeHistogram; 4],
    queue_latency: TimeHistogram,
    last_render_nanos: AtomicU64,
    last_render_bytes: AtomicU64,
    pipeline: Option<Arc<Shared>>,
    /// The pipeline's log writer, for the log families.
    log: Option<Arc<crate::log::Dispatch>>,
}

/// The default [`MetricsCollector`]: cheap to clone (a shared handle).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn outcome_index(outcome: RunOutcome) -> usize {
    match outcome {
        RunOutcome::Canceled => 0,
        RunOutcome::Failed => 1,
        RunOutcome::Succeeded => 2,
    }
}

/// Outcomes in label order (sorted), matching `outcome_index`.
const OUTCOMES: [RunOutcome; 3] = [
    RunOutcome::Canceled,
    RunOutcome::Failed,
    RunOutcome::Succeeded,
];

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Metrics {
    /// A standalone collector, not attached to a pipeline: the pipeline's
    /// own families (`events_total`, queue depth, …) read zero.
    pub fn new(namespace: &str, config: MetricsConfig) -> Result<Metrics, Error> {
        crate::observability::validate_namespace(namespace)?;
        config.validate()?;
        Ok(Self::build(namespace, &config, None, None))
    }

    /// A collector attached to a pipeline (config already validated).
    pub(crate) fn for_pipeline(
        namespace: &str,
        config: &MetricsConfig,
        shared: Arc<Shared>,
        log: Option<Arc<crate::log::Dispatch>>,
    ) -> Metrics {
        Self::build(namespace, config, Some(shared), log)
    }

    fn build(
        namespace: &str,
        config: &MetricsConfig,
        pipeline: Option<Arc<Shared>>,
        log: Option<Arc<crate::log::Dispatch>>,
    ) -> Metrics {
        let durations = || TimeHistogram::new(&config.duration_buckets);
        Metrics {
            inner: Arc::new(Inner {
                names: Names::new(namespace),
                runs_started: AtomicU64::new(0),
                runs_completed: Default::default(),
                iterations: AtomicU64::new(0),
                phase_executions: Default::default(),
                deliveries: Default::default(),
                gates: GateLabels::new(config.gate_label_limit),
                active_runs: AtomicU64::new(0),
                ws_clients: AtomicU64::new(0),
                ws_clients_closed: Default::default(),
                http_shed: Arc::default(),
                journal: Arc::default(),
                run_duration: durations(),
                iteration_duration: durations(),
                phase_duration: std::array::from_fn(|_| durations()),
                queue_latency: TimeHistogram::new(&config.latency_buckets),
                last_render_nanos: AtomicU64::new(0),
                last_render_bytes: AtomicU64::new(0),
                pipeline,
                log,
            }),
        }
    }

    /// Counts one check of a gate. Gate names past the configured limit
    /// are counted under `gate="other"`.
    pub fn record_gate_check(&self, gate: &str, passed: bool) {
        self.inner.gates.record(gate, passed);
    }

    /// Counts one phase execution by outcome (the duration goes to
    /// [`record_phase_duration`](MetricsCollector::record_phase_duration)).
    pub fn record_phase_execution(&self, phase: Phase, success: bool) {
        // Relaxed: counts, read for reporting (also below).
        self.inner.phase_executions[phase.index()][usize::from(success)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one delivery by outcome.
    pub fn record_delivery(&self, success: bool) {
        self.inner.deliveries[usize::from(success)].fetch_add(1, Ordering::Relaxed);
    }

    /// The HTTP server's shed counters (`http_connections_shed_total`).
    pub(crate) fn http_shed(&self) -> Arc<crate::server::shed::ShedCounts> {
        self.inner.http_shed.clone()
    }

    /// The journal writer's counters (`journal_*`).
    pub(crate) fn journal_counters(&self) -> Arc<crate::journal::JournalCounters> {
        self.inner.journal.clone()
    }

    /// Runs started so far (`runs_started_total`).
    pub fn runs_started(&self) -> u64 {
        // Relaxed: a count read for reporting.
        self.inner.runs_started.load(Ordering::Relaxed)
    }

    /// Runs finished with `outcome` so far (`runs_completed_total{result}`).
    pub fn runs_completed(&self, outcome: RunOutcome) -> u64 {
        // Relaxed: a count read for reporting.
        self.inner.runs_completed[outcome_index(outcome)].load(Ordering::Relaxed)
    }

    /// Sets the `ws_clients` gauge.
    #[allow(dead_code)] // Set by the WebSocket layer, which builds on this server.
    pub(crate) fn set_ws_clients(&self, clients: u64) {
        // Relaxed: a gauge.
        self.inner.ws_clients.store(clients, Ordering::Relaxed);
    }

    /// The `ws_clients` gauge.
    pub fn ws_clients(&self) -> u64 {
        // Relaxed: a gauge.
        self.inner.ws_clients.load(Ordering::Relaxed)
    }

    /// Counts a WebSocket client the server closed, by reason.
    pub(crate) fn record_ws_client_closed(&self, reason: WsCloseReason) {
        // Relaxed: a count for reporting.
        self.inner.ws_clients_closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_run(&self, nanos: u64, trace: Option<Trace<'_>>) {
        self.inner.run_duration.observe(nanos, trace);
    }

    pub(crate) fn observe_iteration(&self, nanos: u64, trace: Option<Trace<'_>>) {
        self.inner.iteration_duration.observe(nanos, trace);
    }

    pub(crate) fn observe_phase(&self, phase: Phase, nanos: u64, trace: Option<Trace<'_>>) {
        self.inner.phase_duration[phase.index()].observe(nanos, trace);
    }

    /// Records a batch of one phase's durations (see
    /// [`TimeHistogram::observe_traced`]).
    pub(crate) fn observe_phases(
        &self,
        phase: Phase,
        items: &[histogram::Pending],
        traces: &[(Arc<str>, Arc<str>)],
        replaced: &mut Vec<histogram::Exemplar>,
    ) {
        self.inner.phase_duration[phase.index()].observe_traced(items, traces, replaced);
    }

    /// Counts `n` executions of `phase` by outcome.
    pub(crate) fn record_phase_executions(&self, phase: Phase, success: bool, n: u64) {
        // Relaxed: a count, read for reporting.
        self.inner.phase_executions[phase.index()][usize::from(success)]
            .fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn observe_queue_latencies(&self, nanos: &[u64], trace: Option<Trace<'_>>) {
        self.inner.queue_latency.observe_many(nanos, trace);
    }

    /// Renders every family in `format`.
    pub fn render_as(&self, format: Format) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_into(format, &mut out);
        out
    }

    /// Appends every family in `format` to `out`. Records its own render
    /// time and size, which the next scrape reports.
    pub fn render_into(&self, format: Format, out: &mut String) {
        let started = std::time::Instant::now();
        let before = out.len();
        render::render(self, format, out);
        // Relaxed: gauges (also below).
        self.inner
            .last_render_nanos
            .store(nanos(started.elapsed()), Ordering::Relaxed);
        self.inner
            .last_render_bytes
            .store((out.len() - before) as u64, Ordering::Relaxed);
    }

    /// Count, sum, p50, p90, p99 and max of every histogram series, from
    /// the hdrhistograms.
    pub fn summary(&self) -> Summary {
        summary::summary(self)
    }
}

impl MetricsCollector for Metrics {
    fn increment_runs_started(&self) {
        // Relaxed: counts and gauges, read for reporting (whole impl).
        self.inner.runs_started.fetch_add(1, Ordering::Relaxed);
    }

    fn increment_runs_completed(&self, result: RunOutcome) {
        self.inner.runs_completed[outcome_index(result)].fetch_add(1, Ordering::Relaxed);
    }

    fn increment_iterations(&self) {
        self.inner.iterations.fetch_add(1, Ordering::Relaxed);
    }

    fn record_run_duration(&self, duration: Duration) {
        self.observe_run(nanos(duration), None);
    }

    fn record_iteration_duration(&self, duration: Duration) {
        self.observe_iteration(nanos(duration), None);
    }

    fn record_phase_duration(&self, phase: Phase, duration: Duration) {
        self.observe_phase(phase, nanos(duration), None);
    }

    fn set_active_runs(&self, count: u64) {
        self.inner.active_runs.store(count, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        self.render_as(Format::Prometheus)
    }
}
