//! Metrics: counters, gauges and duration histograms, fed by the drain
//! thread and rendered for Prometheus.
//!
//! [`Metrics`] holds the series and renders them. A pipeline's
//! ([`Observability::metrics`](crate::Observability::metrics)) has one
//! writer, the drain thread (see `sink.rs`), so it is not a
//! [`MetricsCollector`]; [`StandaloneMetrics`] is the collector an engine
//! feeds itself, without a pipeline. Counters are atomics; each
//! histogram keeps exact Prometheus bucket counts as observations arrive,
//! plus an hdrhistogram (1 µs to 24 h, 3 significant digits) for
//! [`Metrics::summary`]. Nothing here grows with traffic: series are fixed,
//! except gate names, which are capped ([`MetricsConfig::gate_label_limit`]).
//!
//! ```
//! use agentgate_obs::metrics::{MetricsCollector, MetricsConfig, StandaloneMetrics};
//! use agentgate_obs::Phase;
//! use agentgate_obs::event::RunOutcome;
//! use std::time::Duration;
//!
//! let metrics = StandaloneMetrics::new("agentgate", MetricsConfig::default())?;
//! metrics.increment_runs_started();
//! metrics.increment_runs_completed(RunOutcome::Succeeded);
//! metrics.record_phase_duration(Phase::Build, Duration::from_millis(1234));
//! let text = metrics.render();
//! assert!(text.contains("agentgate_runs_completed_total{result=\"succeeded\"} 1\n"));
//! assert!(text.contains("agentgate_phase_duration_seconds_bucket{phase=\"build\",le=\"2.5\"} 1\n"));
//! # Ok::<(), agentgate_obs::Error>(())
//! ```

mod cells;
mod config;
pub(crate) mod custom;
pub(crate) mod delivery;
pub(crate) mod histogram;
mod labels;
pub(crate) mod native;
pub(crate) mod otlp;
pub(crate) mod push;
#[cfg(feature = "metrics")]
mod recorder;
pub(crate) mod remote_write;
mod render;
pub(crate) mod sink;
mod summary;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use config::{
    DEFAULT_CUSTOM_BUCKETS, DEFAULT_CUSTOM_FAMILY_LIMIT, DEFAULT_CUSTOM_SERIES_LIMIT,
    DEFAULT_DURATION_BUCKETS, DEFAULT_GATE_LABEL_LIMIT, DEFAULT_LATENCY_BUCKETS, MetricsConfig,
};
pub use custom::handles::{Counter, Gauge, Histogram};
pub use custom::vec::{CounterVec, GaugeVec, HistogramVec};
pub use custom::{MAX_LABELS, MetricError, OVERFLOW};
pub use native::{
    DEFAULT_NATIVE_MAX_BUCKETS, DEFAULT_NATIVE_SCHEMA, MAX_NATIVE_SCHEMA, MIN_NATIVE_SCHEMA,
    NATIVE_ZERO_THRESHOLD,
};
pub use otlp::{DEFAULT_SERVICE_NAME, OtlpConfig, OtlpProtocol};
pub use push::{
    DEFAULT_PUSH_FINAL_WAIT, DEFAULT_PUSH_INTERVAL, DEFAULT_PUSH_JOB, PushFailure,
    PushGatewayConfig, PushGatewayStats,
};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use recorder::MetricsRecorder;
pub use remote_write::{DEFAULT_REMOTE_WRITE_JOB, RemoteWriteConfig};
pub use summary::{Bucket, HistogramSummary, Summary};

pub use crate::exposition::{
    Exposition, Format, PROTOBUF_CONTENT_TYPE, canonical_float, escape_help, escape_label_value,
    write_float,
};

use crate::error::Error;
use crate::event::{Phase, RunOutcome};
use crate::exposition::writer::Kind;
use crate::pipeline::Shared;
use crate::redact::Redactor;
use histogram::{NativeSpec, TimeHistogram, Trace};
use labels::GateLabels;

/// The original engine interface for metrics, so an engine can be tested
/// with a fake.
///
/// Whoever holds a collector is the one writer of its series: every call
/// counts once, and [`render`](Self::render) shows exactly what was
/// reported, `active_runs` included. [`StandaloneMetrics`] is the real
/// implementation, for an engine that reports its own numbers without a
/// pipeline.
///
/// A pipeline's metrics ([`Observability::metrics`](crate::Observability::metrics),
/// a [`Metrics`]) are deliberately *not* a collector: the drain thread
/// derives every series from the progress events, `active_runs` from the
/// run tracker's exact count. Calls beside it would count each run twice
/// and fight the tracker over `active_runs`, so the type has no such
/// methods. An engine that emits events reports through the events alone;
/// a [`StandaloneMetrics`] is a separate registry with its own series and
/// never changes the pipeline's.
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
    custom_rejected: String,
    custom_overflow: String,
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
    otlp_dropped: String,
    otlp_exported: String,
    otlp_failed: String,
    otlp_retries: String,
    remote_write_dropped: String,
    remote_write_failed: String,
    remote_write_retries: String,
    remote_write_sent: String,
    render_bytes: String,
    render_seconds: String,
    clamped: String,
    native_reductions: String,
    phase_duration: String,
    phase_executions: String,
    push_failures: String,
    pushes: String,
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
            custom_rejected: n("custom_metrics_rejected_total"),
            custom_overflow: n("custom_series_overflow_total"),
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
            otlp_dropped: n("otlp_spans_dropped_total"),
            otlp_exported: n("otlp_spans_exported_total"),
            otlp_failed: n("otlp_spans_failed_total"),
            otlp_retries: n("otlp_retries_total"),
            remote_write_dropped: n("remote_write_samples_dropped_total"),
            remote_write_failed: n("remote_write_samples_failed_total"),
            remote_write_retries: n("remote_write_retries_total"),
            remote_write_sent: n("remote_write_samples_sent_total"),
            render_bytes: n("metrics_render_bytes"),
            render_seconds: n("metrics_render_seconds"),
            clamped: n("observations_clamped_total"),
            native_reductions: n("native_schema_reductions_total"),
            phase_duration: n("phase_duration_seconds"),
            phase_executions: n("phase_executions_total"),
            push_failures: n("pushgateway_push_failures_total"),
            pushes: n("pushgateway_pushes_total"),
            run_duration: n("run_duration_seconds"),
            runs_completed: n("runs_completed_total"),
            runs_evicted: n("runs_evicted_total"),
            runs_started: n("runs_started_total"),
            ws_clients: n("ws_clients"),
            ws_clients_closed: n("ws_clients_closed_total"),
        }
    }
}

impl Names {
    /// Every built-in family and its type, for the engine's families'
    /// clash check.
    fn families(&self) -> Vec<(&str, Kind)> {
        use Kind::{Counter, Gauge, Histogram};
        vec![
            (&self.active_runs, Gauge),
            (&self.custom_rejected, Counter),
            (&self.custom_overflow, Counter),
            (&self.deliveries, Counter),
            (&self.queue_capacity, Gauge),
            (&self.queue_depth, Gauge),
            (&self.queue_latency, Histogram),
            (&self.events_dropped, Counter),
            (&self.events, Counter),
            (&self.gate_checks, Counter),
            (&self.http_shed, Counter),
            (&self.iteration_duration, Histogram),
            (&self.iterations, Counter),
            (&self.listener_panics, Counter),
            (&self.log_dropped, Counter),
            (&self.log_sink_errors, Counter),
            (&self.render_bytes, Gauge),
            (&self.render_seconds, Gauge),
            (&self.clamped, Counter),
            (&self.native_reductions, Counter),
            (&self.phase_duration, Histogram),
            (&self.phase_executions, Counter),
            (&self.push_failures, Counter),
            (&self.pushes, Counter),
            (&self.otlp_dropped, Counter),
            (&self.otlp_exported, Counter),
            (&self.otlp_failed, Counter),
            (&self.otlp_retries, Counter),
            (&self.remote_write_dropped, Counter),
            (&self.remote_write_failed, Counter),
            (&self.remote_write_retries, Counter),
            (&self.remote_write_sent, Counter),
            (&self.run_duration, Histogram),
            (&self.runs_completed, Counter),
            (&self.runs_evicted, Counter),
            (&self.runs_started, Counter),
            (&self.ws_clients, Gauge),
            (&self.ws_clients_closed, Counter),
        ]
        .into_iter()
        .map(|(name, kind)| (name.as_str(), kind))
        .collect()
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
    /// `active_runs` of a standalone collector (a pipeline's comes from
    /// its tracker).
    active_runs: AtomicU64,
    ws_clients: AtomicU64,
    /// Indexed by `WsCloseReason as usize`.
    ws_clients_closed: [AtomicU64; WsCloseReason::ALL.len()],
    /// Connections the HTTP server shed, by reason (zero without a server).
    http_shed: Arc<crate::server::shed::ShedCounts>,
    /// The journal writer's counters (zero without a journal).
    journal: Arc<crate::journal::JournalCounters>,
    /// The Pushgateway exporter's counters (zero without one).
    push: Arc<push::PushCounters>,
    /// The remote write sender's counters (zero without remote write).
    remote_write: Arc<delivery::DeliveryCounters>,
    otlp: Arc<delivery::DeliveryCounters>,
    run_duration: TimeHistogram,
    iteration_duration: TimeHistogram,
    phase_duration: [TimeHistogram; 4],
    queue_latency: TimeHistogram,
    last_render_nanos: AtomicU64,
    last_render_bytes: AtomicU64,
    pipeline: Option<Arc<Shared>>,
    /// The pipeline's log writer, for the log families.
    log: Option<Arc<crate::log::Dispatch>>,
    /// The engine's own families.
    custom: custom::Registry,
}

/// The series and their rendering: Prometheus text, OpenMetrics, and the
/// quantile [`summary`](Self::summary). Cheap to clone (a shared handle).
///
/// It has no public way to change the engine's series: a pipeline's
/// ([`Observability::metrics`](crate::Observability::metrics)) is written
/// by its drain thread alone, a [`StandaloneMetrics`]'s by its
/// [`MetricsCollector`] calls alone. See [`MetricsCollector`].
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
    /// `text` with this pipeline's redaction rules applied: for a message
    /// that leaves through no redacting output (an error returned).
    pub(crate) fn redact(&self, text: &str) -> String {
        self.inner.custom.redactor().redact_str(text).into_owned()
    }

    /// `value` of a label named `name` as every output shows it (see
    /// `custom::redact_label_value`), with this pipeline's rules.
    pub(crate) fn redact_label_value(&self, name: &str, value: &str) -> String {
        custom::redact_label_value(self.inner.custom.redactor(), name, value).into_owned()
    }

    /// Series no pipeline and no collector feeds: every family renders,
    /// at zero. To report the engine's numbers yourself, use
    /// [`StandaloneMetrics::new`].
    pub fn new(namespace: &str, config: MetricsConfig) -> Result<Metrics, Error> {
        custom::validate_namespace(namespace)?;
        config.validate()?;
        let redactor = Arc::new(Redactor::builtin().clone());
        Ok(Self::build(namespace, &config, None, None, redactor))
    }

    /// A collector attached to a pipeline (config already validated).
    pub(crate) fn for_pipeline(
        namespace: &str,
        config: &MetricsConfig,
        shared: Arc<Shared>,
        log: Option<Arc<crate::log::Dispatch>>,
        redactor: Arc<Redactor>,
    ) -> Metrics {
        Self::build(namespace, config, Some(shared), log, redactor)
    }

    fn build(
        namespace: &str,
        config: &MetricsConfig,
        pipeline: Option<Arc<Shared>>,
        log: Option<Arc<crate::log::Dispatch>>,
        redactor: Arc<Redactor>,
    ) -> Metrics {
        let layout = config
            .native_histograms
            .then(|| Arc::new(native::Layout::new(config.native_schema)));
        let native = |bounds: &[f64]| {
            let layout = layout.clone()?;
            Some(NativeSpec::new(layout, config.native_max_buckets, bounds))
        };
        let duration_native = native(&config.duration_buckets);
        let durations =
            || TimeHistogram::with_native(&config.duration_buckets, duration_native.clone());
        let names = Names::new(namespace);
        let clock = pipeline
            .as_ref()
            .map_or_else(crate::pipeline::new_clock, |p| p.clock.clone());
        let custom = custom::Registry::new(
            namespace,
            custom::Limits {
                families: config.custom_family_limit,
                series: config.custom_series_limit,
                buckets: &config.custom_buckets,
                native: (config.native_histograms && config.custom_native_histograms)
                    .then_some((config.native_schema, config.native_max_buckets)),
            },
            &names.families(),
            redactor,
            clock,
        );
        Metrics {
            inner: Arc::new(Inner {
                names,
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
                push: Arc::default(),
                remote_write: Arc::default(),
                otlp: Arc::default(),
                run_duration: durations(),
                iteration_duration: durations(),
                phase_duration: std::array::from_fn(|_| durations()),
                queue_latency: TimeHistogram::with_native(
                    &config.latency_buckets,
                    native(&config.latency_buckets),
                ),
                last_render_nanos: AtomicU64::new(0),
                last_render_bytes: AtomicU64::new(0),
                pipeline,
                log,
                custom,
            }),
        }
    }

    /// Counts a run that started.
    pub(crate) fn increment_runs_started(&self) {
        // Relaxed: counts and gauges, read for reporting (the writers below).
        self.inner.runs_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a run that finished, by outcome.
    pub(crate) fn increment_runs_completed(&self, result: RunOutcome) {
        self.inner.runs_completed[outcome_index(result)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed iteration.
    pub(crate) fn increment_iterations(&self) {
        self.inner.iterations.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets `active_runs` (read only when no pipeline is attached).
    fn set_active_runs(&self, count: u64) {
        self.inner.active_runs.store(count, Ordering::Relaxed);
    }

    /// A counter of the engine's own, served on the same `/metrics`: the
    /// series of `name` (prefixed with the namespace; `_total` appended if
    /// missing) with these label values. Registering the same name again
    /// with the same help and label names gives the same family; a handle
    /// is cheap to keep and to clone, and counting is one atomic add.
    ///
    /// Label values pass through the redaction layer; past
    /// [`MetricsConfig::custom_series_limit`] distinct values a family's
    /// new label values all go to one series whose values are
    /// [`OVERFLOW`], counted in `custom_series_overflow_total`.
    ///
    /// ```
    /// use agentgate_obs::metrics::{Metrics, MetricsConfig};
    /// let metrics = Metrics::new("agentgate", MetricsConfig::default())?;
    /// let grep = metrics.counter("tool_calls_total", "Tool calls, by tool.", &[("tool", "grep")])?;
    /// grep.increment(1);
    /// assert!(metrics.render().contains("agentgate_tool_calls_total{tool=\"grep\"} 1\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricError> {
        match self.register(Kind::Counter, name, help, labels, None)? {
            custom::Cell::Counter(cell) => Ok(Counter { cell }),
            _ => unreachable!("a counter family holds counter cells"),
        }
    }

    /// A gauge of the engine's own; see [`counter`](Self::counter).
    ///
    /// ```
    /// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
    /// let sandboxes = metrics.gauge("open_sandboxes", "Sandboxes open.", &[])?;
    /// sandboxes.set(3.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricError> {
        match self.register(Kind::Gauge, name, help, labels, None)? {
            custom::Cell::Gauge(cell) => Ok(Gauge { cell }),
            _ => unreachable!("a gauge family holds gauge cells"),
        }
    }

    /// A histogram of the engine's own with the default buckets
    /// ([`MetricsConfig::custom_buckets`], seconds by default); see
    /// [`counter`](Self::counter). Recording is a few atomic operations;
    /// in OpenMetrics each bucket carries an exemplar with the correlation
    /// id (and run id) of the [`LogContext`](crate::logging::LogContext) its latest
    /// observation was made in.
    ///
    /// ```
    /// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
    /// let requests = metrics.histogram("model_request_seconds", "Model requests.", &[("model", "m1")])?;
    /// requests.record_duration(std::time::Duration::from_millis(420));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Histogram, MetricError> {
        self.histogram_cell(name, help, labels, None)
    }

    /// A histogram with its own bucket upper bounds (finite, strictly
    /// increasing, at most 200; `+Inf` is implied). Registering the name
    /// again with other bounds is an error.
    ///
    /// ```
    /// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
    /// let tokens = metrics.histogram_with_buckets(
    ///     "prompt_tokens", "Tokens per prompt.", &[], &[256.0, 1024.0, 4096.0, 16384.0])?;
    /// tokens.record(1500.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram_with_buckets(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Result<Histogram, MetricError> {
        self.histogram_cell(name, help, labels, Some(buckets))
    }

    fn histogram_cell(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: Option<&[f64]>,
    ) -> Result<Histogram, MetricError> {
        match self.register(Kind::Histogram, name, help, labels, buckets)? {
            custom::Cell::Histogram(cell) => Ok(Histogram { cell }),
            _ => unreachable!("a histogram family holds histogram cells"),
        }
    }

    fn register(
        &self,
        kind: Kind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: Option<&[f64]>,
    ) -> Result<custom::Cell, MetricError> {
        let request = custom::Request {
            kind,
            name,
            help: Some(help),
            labels,
            buckets,
        };
        let registered = self
            .inner
            .custom
            .register(&request, custom::Origin::Native)?;
        Ok(registered.cell)
    }

    /// The engine's own families, for the `metrics` recorder and the vectors.
    pub(crate) fn custom(&self) -> &custom::Registry {
        &self.inner.custom
    }

    /// Counts one check of a gate. Gate names past the configured limit
    /// are counted under `gate="other"`.
    pub(crate) fn record_gate_check(&self, gate: &str, passed: bool) {
        self.inner.gates.record(gate, passed);
    }

    /// Counts one phase execution by outcome.
    pub(crate) fn record_phase_execution(&self, phase: Phase, success: bool) {
        self.record_phase_executions(phase, success, 1);
    }

    /// Counts one delivery by outcome.
    pub(crate) fn record_delivery(&self, success: bool) {
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

    /// The Pushgateway exporter's counters (`pushgateway_*`).
    pub(crate) fn push_counters(&self) -> Arc<push::PushCounters> {
        self.inner.push.clone()
    }

    /// What became of the pushes to the Pushgateway so far
    /// (`pushgateway_pushes_total`, `pushgateway_push_failures_total`);
    /// all zero without a [`PushGatewayConfig`].
    pub fn push_gateway_stats(&self) -> PushGatewayStats {
        self.inner.push.stats()
    }

    /// The OTLP exporter's counters (`otlp_*`).
    pub(crate) fn otlp_counters(&self) -> Arc<delivery::DeliveryCounters> {
        self.inner.otlp.clone()
    }

    /// The remote write sender's counters (`remote_write_*`).
    pub(crate) fn remote_write_counters(&self) -> Arc<delivery::DeliveryCounters> {
        self.inner.remote_write.clone()
    }

    /// Whether `series` (a sample's name: a family's, or a histogram's
    /// `_bucket`, `_sum`, `_count`) belongs to a family that describes this
    /// process's pipeline rather than what the events say: the ring, the
    /// renders, the logs, the journal writer, the HTTP server, WebSocket
    /// clients, the Pushgateway and remote write, refused registrations. A delivery of figures
    /// rebuilt from a journal, stamped with the journal's time, leaves them
    /// out: they would describe the process that rebuilt them, and differ
    /// from one rebuild to the next.
    pub(crate) fn is_process_series(&self, series: &str) -> bool {
        let n = &self.inner.names;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| series.strip_suffix(suffix))
            .filter(|family| *family == n.queue_latency)
            .unwrap_or(series);
        [
            &n.custom_rejected,
            &n.custom_overflow,
            &n.queue_capacity,
            &n.queue_depth,
            &n.queue_latency,
            &n.events_dropped,
            &n.http_shed,
            &n.journal_dropped,
            &n.journal_rotations,
            &n.journal_write_errors,
            &n.journal_written,
            &n.listener_panics,
            &n.log_dropped,
            &n.log_sink_errors,
            &n.push_failures,
            &n.pushes,
            &n.otlp_dropped,
            &n.otlp_exported,
            &n.otlp_failed,
            &n.otlp_retries,
            &n.remote_write_dropped,
            &n.remote_write_failed,
            &n.remote_write_retries,
            &n.remote_write_sent,
            &n.render_bytes,
            &n.render_seconds,
            &n.ws_clients,
            &n.ws_clients_closed,
        ]
        .iter()
        .any(|name| name.as_str() == family)
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
        traces: &[(Arc<str>, Arc<str>, Option<crate::event::TraceId>)],
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

    /// Every family in Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        self.render_as(Format::Prometheus)
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

    /// Every family in the protobuf exposition ([`PROTOBUF_CONTENT_TYPE`]):
    /// delimited `io.prometheus.client.MetricFamily` messages, the
    /// duration histograms with native buckets beside their classic ones.
    /// Records its own render time and size, as
    /// [`render_into`](Self::render_into) does.
    pub fn render_protobuf(&self) -> Vec<u8> {
        self.render_protobuf_renaming(&[])
    }

    /// [`render_protobuf`](Self::render_protobuf) with each label named in
    /// `renamed` written as `exported_<name>`: a push's grouping key
    /// overwrites labels named like it.
    pub(crate) fn render_protobuf_renaming(&self, renamed: &[&str]) -> Vec<u8> {
        let started = std::time::Instant::now();
        let mut encoder =
            crate::exposition::proto::Encoder::new(Vec::with_capacity(8 * 1024)).renaming(renamed);
        render::render_protobuf(self, &mut encoder);
        let out = encoder.into_bytes();
        // Relaxed: gauges (also below).
        self.inner
            .last_render_nanos
            .store(nanos(started.elapsed()), Ordering::Relaxed);
        self.inner
            .last_render_bytes
            .store(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Renders in what `exposition` names: text, or protobuf bytes.
    pub fn render_exposition(&self, exposition: Exposition) -> Vec<u8> {
        match exposition {
            Exposition::Text(format) => self.render_as(format).into_bytes(),
            Exposition::Protobuf => self.render_protobuf(),
        }
    }

    /// Every family in Prometheus text format, for a sender (remote
    /// write): the same numbers as a scrape, without touching the render
    /// time and size that the next scrape reports.
    pub(crate) fn render_for_export(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        render::render(self, Format::Prometheus, &mut out);
        out
    }

    /// Count, sum, p50, p90, p99 and max of every histogram series, from
    /// the hdrhistograms.
    pub fn summary(&self) -> Summary {
        summary::summary(self)
    }
}

/// A [`MetricsCollector`] an engine feeds itself, not attached to any
/// pipeline: each call counts once, `set_active_runs` is what
/// `active_runs` renders, and the pipeline's own families (`events_total`,
/// queue depth, …) read zero. Cheap to clone (a shared handle).
///
/// Beside an [`Observability`](crate::Observability) it is a separate
/// registry: nothing it records reaches the pipeline's `/metrics`.
///
/// ```
/// use agentgate_obs::metrics::{MetricsCollector, MetricsConfig, StandaloneMetrics};
/// let metrics = StandaloneMetrics::new("engine", MetricsConfig::default())?;
/// metrics.increment_runs_started();
/// metrics.set_active_runs(1);
/// assert!(metrics.render().contains("engine_active_runs 1\n"));
/// let summary = metrics.metrics().summary();
/// assert!(summary.histograms.iter().all(|h| h.count == 0));
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StandaloneMetrics {
    metrics: Metrics,
}

impl StandaloneMetrics {
    /// A collector whose families are named `{namespace}_…`.
    pub fn new(namespace: &str, config: MetricsConfig) -> Result<StandaloneMetrics, Error> {
        Ok(StandaloneMetrics {
            metrics: Metrics::new(namespace, config)?,
        })
    }

    /// Its series, for rendering in either format and for the summary.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts one check of a gate. Gate names past the configured limit
    /// are counted under `gate="other"`.
    pub fn record_gate_check(&self, gate: &str, passed: bool) {
        self.metrics.record_gate_check(gate, passed);
    }

    /// Counts one phase execution by outcome (the duration goes to
    /// [`record_phase_duration`](MetricsCollector::record_phase_duration)).
    pub fn record_phase_execution(&self, phase: Phase, success: bool) {
        self.metrics.record_phase_execution(phase, success);
    }

    /// Counts one delivery by outcome.
    pub fn record_delivery(&self, success: bool) {
        self.metrics.record_delivery(success);
    }
}

impl MetricsCollector for StandaloneMetrics {
    fn increment_runs_started(&self) {
        self.metrics.increment_runs_started();
    }

    fn increment_runs_completed(&self, result: RunOutcome) {
        self.metrics.increment_runs_completed(result);
    }

    fn increment_iterations(&self) {
        self.metrics.increment_iterations();
    }

    fn record_run_duration(&self, duration: Duration) {
        self.metrics.observe_run(nanos(duration), None);
    }

    fn record_iteration_duration(&self, duration: Duration) {
        self.metrics.observe_iteration(nanos(duration), None);
    }

    fn record_phase_duration(&self, phase: Phase, duration: Duration) {
        self.metrics.observe_phase(phase, nanos(duration), None);
    }

    fn set_active_runs(&self, count: u64) {
        self.metrics.set_active_runs(count);
    }

    fn render(&self) -> String {
        self.metrics.render()
    }
}
