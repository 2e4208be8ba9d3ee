//! Writes a [`Metrics`] in either text format: families sorted by name,
//! series sorted by label values.

use std::sync::atomic::Ordering;

use super::delivery::{DropReason, FailReason};
use super::histogram::{Exemplar, TimeHistogram};
use super::{Metrics, OUTCOMES, WsCloseReason};
use crate::event::{EventType, Phase};
use crate::exposition::Format;
use crate::exposition::escape_label_value;
use crate::exposition::proto::Encoder;
use crate::exposition::writer::{Kind, Writer};
use crate::stats::EventCounts;

/// OpenMetrics caps an exemplar's label names and values at 128 characters.
const EXEMPLAR_LABEL_CHARS: usize = 128;
pub(super) const RUN_ID: &str = "run_id";
pub(super) const CORRELATION_ID: &str = "correlation_id";
/// The exemplar label of the run's W3C trace id (OpenTelemetry's name).
pub(super) const TRACE_ID: &str = "trace_id";

const BOOLS: [&str; 2] = ["false", "true"];

/// Event types sorted by name, for `events_total{type}`.
fn event_types_sorted() -> [EventType; EventType::COUNT] {
    let mut types = EventType::ALL;
    types.sort_by_key(|t| t.as_str());
    types
}

pub(super) fn render(metrics: &Metrics, format: Format, out: &mut String) {
    let mut custom = super::custom::render::Cursor::new(&metrics.inner.custom);
    write(metrics, Writer::new(out, format).interleave(&mut custom));
}

/// The protobuf exposition, into `encoder`.
pub(super) fn render_protobuf(metrics: &Metrics, encoder: &mut Encoder) {
    let mut custom = super::custom::render::Cursor::new(&metrics.inner.custom);
    write(metrics, Writer::protobuf(encoder).interleave(&mut custom));
}

fn write(metrics: &Metrics, mut w: Writer<'_>) {
    let m = &*metrics.inner;
    let n = &m.names;
    let pipeline = m.pipeline.as_deref();
    let relaxed = |a: &std::sync::atomic::AtomicU64| {
        // Relaxed: counters read for reporting; each is monotonic on its own.
        a.load(Ordering::Relaxed)
    };

    let active = pipeline.map_or_else(|| relaxed(&m.active_runs), |p| p.counters.active_runs());
    w.single_u64(
        &n.active_runs,
        Kind::Gauge,
        "Runs started and not yet finished.",
        active,
    );

    w.family(
        &n.custom_rejected,
        Kind::Counter,
        "Registrations of the engine's own metrics refused, by reason (clash, family_limit, invalid, mismatch).",
    );
    for reason in super::custom::Rejection::ALL {
        w.sample(&n.custom_rejected, "")
            .label("reason", reason.as_str())
            .value_u64(relaxed(&m.custom.rejected[reason as usize]));
    }
    w.family(
        &n.custom_overflow,
        Kind::Counter,
        "New label values of the engine's own metrics counted under the value \"other\" because their family had reached its series limit, by family.",
    );
    for family in m.custom.families().iter() {
        let overflowed = relaxed(&family.overflowed);
        if overflowed > 0 {
            w.sample(&n.custom_overflow, "")
                .label("family", &family.name)
                .value_u64(overflowed);
        }
    }

    w.family(
        &n.deliveries,
        Kind::Counter,
        "Deliveries completed, by success.",
    );
    for (i, success) in BOOLS.iter().enumerate() {
        w.sample(&n.deliveries, "")
            .label("success", success)
            .value_u64(relaxed(&m.deliveries[i]));
    }

    // Beside the depth, so `depth / capacity` is a query, not a constant
    // copied into alert rules.
    w.single_u64(
        &n.queue_capacity,
        Kind::Gauge,
        "Size of the pipeline's event ring, in events.",
        pipeline.map_or(0, |p| p.capacity as u64),
    );

    w.single_u64(
        &n.queue_depth,
        Kind::Gauge,
        "Events waiting in the pipeline's ring.",
        pipeline.map_or(0, |p| p.queue_depth() as u64),
    );

    histogram(
        &mut w,
        &n.queue_latency,
        "Time from emit to processing on the drain thread, in seconds.",
        &[("", &m.queue_latency)],
    );

    let (processed, dropped) = pipeline.map_or_else(
        || (EventCounts::default(), EventCounts::default()),
        |p| (p.counters.processed.load(), p.counters.dropped.load()),
    );
    let types = event_types_sorted();
    w.family(
        &n.events_dropped,
        Kind::Counter,
        "Events dropped by the overflow policy or at shutdown, by type.",
    );
    for ty in types {
        w.sample(&n.events_dropped, "")
            .label("type", ty.as_str())
            .value_u64(dropped[ty]);
    }
    w.family(
        &n.events,
        Kind::Counter,
        "Events processed by the pipeline, by type.",
    );
    for ty in types {
        w.sample(&n.events, "")
            .label("type", ty.as_str())
            .value_u64(processed[ty]);
    }

    w.family(&n.gate_checks, Kind::Counter, "Gate checks, by gate and result; gate names past the label limit are counted under gate=\"other\".");
    for gate in m.gates.sorted().iter() {
        for (i, passed) in BOOLS.iter().enumerate() {
            w.sample(&n.gate_checks, "")
                .label_escaped("gate", &gate.escaped)
                .label("passed", passed)
                .value_u64(relaxed(&gate.checks[i]));
        }
    }

    w.family(
        &n.http_shed,
        Kind::Counter,
        "HTTP connections refused, evicted or timed out by the server's flood limits, by reason.",
    );
    for reason in crate::server::shed::ShedReason::ALL {
        w.sample(&n.http_shed, "")
            .label("reason", reason.as_str())
            .value_u64(m.http_shed.get(reason));
    }

    histogram(
        &mut w,
        &n.iteration_duration,
        "Duration of completed iterations (sum of their phases), in seconds.",
        &[("", &m.iteration_duration)],
    );
    w.single_u64(
        &n.iterations,
        Kind::Counter,
        "Iterations completed.",
        relaxed(&m.iterations),
    );

    let journal = m.journal.stats();
    w.family(
        &n.journal_dropped,
        Kind::Counter,
        "Events not written to the journal (its writer was behind, or a write failed), by type.",
    );
    for ty in types {
        w.sample(&n.journal_dropped, "")
            .label("type", ty.as_str())
            .value_u64(journal.dropped[ty]);
    }
    w.single_u64(
        &n.journal_written,
        Kind::Counter,
        "Events written to the journal.",
        journal.written,
    );
    w.single_u64(
        &n.journal_rotations,
        Kind::Counter,
        "Rotations of the journal file.",
        journal.rotations,
    );
    w.single_u64(
        &n.journal_write_errors,
        Kind::Counter,
        "Failed journal writes, opens, renames and fsyncs.",
        journal.write_errors,
    );

    w.single_u64(
        &n.listener_panics,
        Kind::Counter,
        "Listener calls that panicked.",
        pipeline.map_or(0, |p| relaxed(&p.counters.listener_panics)),
    );

    let log = m
        .log
        .as_deref()
        .map(crate::log::Dispatch::stats)
        .unwrap_or_default();
    w.single_u64(
        &n.log_dropped,
        Kind::Counter,
        "Log records dropped because the log writer was behind (debug and info only) or stopped.",
        log.dropped,
    );
    w.single_u64(
        &n.log_sink_errors,
        Kind::Counter,
        "Failed writes of the log sink.",
        log.sink_errors,
    );

    w.single_u64(
        &n.render_bytes,
        Kind::Gauge,
        "Size of the previous metrics exposition, in bytes.",
        relaxed(&m.last_render_bytes),
    );
    w.family(
        &n.render_seconds,
        Kind::Gauge,
        "Time taken to render the previous metrics exposition, in seconds.",
    );
    w.sample(&n.render_seconds, "")
        .value_f64(relaxed(&m.last_render_nanos) as f64 / 1e9);

    let mut clamped: Vec<(&str, Option<&str>, &TimeHistogram)> = vec![
        (&n.queue_latency, None, &m.queue_latency),
        (&n.iteration_duration, None, &m.iteration_duration),
        (&n.run_duration, None, &m.run_duration),
    ];
    for phase in phases_sorted() {
        clamped.push((
            &n.phase_duration,
            Some(phase.as_str()),
            &m.phase_duration[phase.index()],
        ));
    }
    clamped.sort_by_key(|(name, phase, _)| (*name, *phase));
    w.family(&n.native_reductions, Kind::Counter, "Times a histogram's native schema was lowered (pairs of buckets merged) to keep within its bucket limit (MetricsConfig::native_max_buckets), by histogram (the engine's own: summed over the family's series).");
    let serving_native = w.wants_native();
    let mut reductions: Vec<(&str, Option<&str>, u64)> = Vec::new();
    for (name, phase, h) in &clamped {
        if serving_native {
            // Lowered now, when this render serves the buckets, rather than
            // counted only by the next scrape: some histograms sort after
            // this family.
            let _ = h.read_with(false, true);
        }
        reductions.push((name, *phase, u64::from(h.schema_reductions())));
    }
    let custom_families = m.custom.families();
    if m.custom.native_enabled() {
        for family in custom_families.iter() {
            let mut steps = None;
            for series in family.sorted.load().iter() {
                if let super::custom::Cell::Histogram(h) = &series.cell {
                    if serving_native {
                        let _ = h.read_native();
                    }
                    *steps.get_or_insert(0) += u64::from(h.reductions.get());
                }
            }
            if let Some(steps) = steps {
                reductions.push((&family.name, None, steps));
            }
        }
    }
    reductions.sort_unstable();
    for (name, phase, value) in reductions {
        let s = w.sample(&n.native_reductions, "").label("histogram", name);
        match phase {
            Some(phase) => s.label("phase", phase).value_u64(value),
            None => s.value_u64(value),
        }
    }

    w.family(&n.clamped, Kind::Counter, "Observations outside the quantile histograms' range (1 us to 24 h), recorded at its edge, by histogram.");
    for (name, phase, h) in clamped {
        let s = w.sample(&n.clamped, "").label("histogram", name);
        match phase {
            Some(phase) => s.label("phase", phase).value_u64(h.clamped()),
            None => s.value_u64(h.clamped()),
        }
    }

    let otlp = m.otlp.stats();
    w.single_u64(
        &n.otlp_retries,
        Kind::Counter,
        "OTLP requests sent again after a 429, 502, 503, 504 or a connection error.",
        otlp.retries,
    );
    w.family(
        &n.otlp_dropped,
        Kind::Counter,
        "Spans the OTLP exporter dropped without a try, by reason (queue_full: the queue to the exporter thread or its requests waiting for the receiver were full; rejected: the receiver answered a 4xx other than 429).",
    );
    for reason in DropReason::ALL {
        w.sample(&n.otlp_dropped, "")
            .label("reason", reason.as_str())
            .value_u64(otlp.dropped[reason as usize]);
    }
    w.single_u64(
        &n.otlp_exported,
        Kind::Counter,
        "Spans the OTLP receiver accepted (2xx).",
        otlp.delivered,
    );
    w.family(
        &n.otlp_failed,
        Kind::Counter,
        "Spans the OTLP exporter gave up on (out of retries, a 5xx it may not retry, or the final flush's wait ended), by the last error (connect, io, malformed, server_error, throttled, timeout).",
    );
    for reason in FailReason::ALL {
        w.sample(&n.otlp_failed, "")
            .label("reason", reason.as_str())
            .value_u64(otlp.failed[reason as usize]);
    }

    let phase_series: Vec<(&str, &TimeHistogram)> = phases_sorted()
        .into_iter()
        .map(|p| (p.as_str(), &m.phase_duration[p.index()]))
        .collect();
    histogram_labeled(
        &mut w,
        &n.phase_duration,
        "Duration of phase executions, in seconds, by phase.",
        "phase",
        &phase_series,
    );

    w.family(
        &n.phase_executions,
        Kind::Counter,
        "Phase executions, by phase and success.",
    );
    for phase in phases_sorted() {
        for (i, success) in BOOLS.iter().enumerate() {
            w.sample(&n.phase_executions, "")
                .label("phase", phase.as_str())
                .label("success", success)
                .value_u64(relaxed(&m.phase_executions[phase.index()][i]));
        }
    }

    w.family(
        &n.push_failures,
        Kind::Counter,
        "Pushes to the Pushgateway (and the delete at shutdown) that failed, by reason.",
    );
    for reason in super::PushFailure::ALL {
        w.sample(&n.push_failures, "")
            .label("reason", reason.as_str())
            .value_u64(m.push.failed(reason));
    }
    w.single_u64(
        &n.pushes,
        Kind::Counter,
        "Pushes to the Pushgateway (and the delete at shutdown) sent, whatever their outcome.",
        m.push.pushes(),
    );

    let remote = m.remote_write.stats();
    w.single_u64(
        &n.remote_write_retries,
        Kind::Counter,
        "Remote write requests sent again after a 5xx, a 429 or a connection error.",
        remote.retries,
    );
    w.family(
        &n.remote_write_dropped,
        Kind::Counter,
        "Samples remote write dropped without retrying, by reason (queue_full: the oldest waiting request made room; rejected: the receiver answered a 4xx other than 429).",
    );
    for reason in DropReason::ALL {
        w.sample(&n.remote_write_dropped, "")
            .label("reason", reason.as_str())
            .value_u64(remote.dropped[reason as usize]);
    }
    w.family(
        &n.remote_write_failed,
        Kind::Counter,
        "Samples remote write gave up on after retries (out of retries, or the final send's wait ended), by the last error (connect, io, malformed, server_error, throttled, timeout).",
    );
    for reason in FailReason::ALL {
        w.sample(&n.remote_write_failed, "")
            .label("reason", reason.as_str())
            .value_u64(remote.failed[reason as usize]);
    }
    w.single_u64(
        &n.remote_write_sent,
        Kind::Counter,
        "Samples remote write delivered (the receiver answered 2xx).",
        remote.delivered,
    );

    histogram(
        &mut w,
        &n.run_duration,
        "Duration of finished runs, in seconds.",
        &[("", &m.run_duration)],
    );
    w.family(
        &n.runs_completed,
        Kind::Counter,
        "Runs finished, by result (succeeded, failed, canceled).",
    );
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        w.sample(&n.runs_completed, "")
            .label("result", outcome.as_str())
            .value_u64(relaxed(&m.runs_completed[i]));
    }
    w.single_u64(&n.runs_evicted, Kind::Counter, "Active runs forgotten without a result because the run tracker was full (Builder::max_runs): the least recently updated go first. They leave active_runs, so active_runs = runs_started_total - sum(runs_completed_total) - runs_evicted_total; later events for them are ignored.", pipeline.map_or(0, |p| relaxed(&p.counters.runs_evicted)));
    w.single_u64(
        &n.runs_started,
        Kind::Counter,
        "Runs started.",
        relaxed(&m.runs_started),
    );

    w.single_u64(
        &n.ws_clients,
        Kind::Gauge,
        "Connected WebSocket clients.",
        relaxed(&m.ws_clients),
    );
    w.family(
        &n.ws_clients_closed,
        Kind::Counter,
        "WebSocket clients the server closed, by reason (budget, pong_timeout, rate, stalled).",
    );
    for reason in WsCloseReason::ALL {
        w.sample(&n.ws_clients_closed, "")
            .label("reason", reason.as_str())
            .value_u64(relaxed(&m.ws_clients_closed[reason as usize]));
    }
    w.finish();
}

pub(super) fn phases_sorted() -> Vec<Phase> {
    let mut phases = Phase::ALL.to_vec();
    phases.sort_by_key(|p| p.as_str());
    phases
}

fn histogram(w: &mut Writer<'_>, name: &str, help: &str, series: &[(&str, &TimeHistogram)]) {
    histogram_labeled(w, name, help, "", series);
}

/// A histogram family; `label` is the series' label name ("" for none).
fn histogram_labeled(
    w: &mut Writer<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, &TimeHistogram)],
) {
    w.family(name, Kind::Histogram, help);
    let openmetrics = w.wants_exemplars();
    let native = w.wants_native();
    for (value, h) in series {
        let read = h.read_with(openmetrics, native);
        for ((le, count), exemplar) in h.le().iter().zip(&read.cumulative).zip(&read.exemplars) {
            let s = w.sample(name, "_bucket");
            if !label.is_empty() {
                s.label(label, value);
            }
            s.label_escaped("le", le);
            match exemplar.as_ref().filter(|_| openmetrics) {
                Some(e) => {
                    let (run, correlation) = exemplar_labels(e);
                    let trace = e.trace_id.map(|t| t.to_string()).unwrap_or_default();
                    let mut labels = vec![
                        (CORRELATION_ID, correlation.as_str()),
                        (RUN_ID, run.as_str()),
                    ];
                    if !trace.is_empty() {
                        labels.push((TRACE_ID, trace.as_str()));
                    }
                    s.value_with_exemplar(*count, Some((&labels, e.seconds(), e.millis)));
                }
                None => s.value_with_exemplar(*count, None),
            }
        }
        let s = w.sample(name, "_sum");
        if !label.is_empty() {
            s.label(label, value);
        }
        s.value_f64(read.sum_seconds);
        if let Some(native) = &read.native {
            w.native(native);
        }
        let s = w.sample(name, "_count");
        if !label.is_empty() {
            s.label(label, value);
        }
        s.value_u64(read.count);
    }
}

/// The exemplar's ids, escaped, each cut to fit OpenMetrics' 128-character
/// limit on an exemplar's labels.
fn exemplar_labels(e: &Exemplar) -> (String, String) {
    exemplar_ids(&e.run_id, &e.correlation_id, e.trace_id.is_some())
}

/// A run id and a correlation id, escaped, each cut so that together they
/// fit OpenMetrics' 128-character limit on an exemplar's labels, with room
/// for `trace_id` (40 characters) when `with_trace`.
pub(super) fn exemplar_ids(
    run_id: &str,
    correlation_id: &str,
    with_trace: bool,
) -> (String, String) {
    let trace = if with_trace { TRACE_ID.len() + 32 } else { 0 };
    let budget = EXEMPLAR_LABEL_CHARS - RUN_ID.len() - CORRELATION_ID.len() - trace;
    let run_chars = run_id.chars().count();
    let corr_chars = correlation_id.chars().count();
    let (run_max, corr_max) = if run_chars + corr_chars <= budget {
        (run_chars, corr_chars)
    } else {
        // Share the budget; a short id leaves its unused part to the other.
        let half = budget / 2;
        let run_max = run_chars.min(budget - corr_chars.min(half));
        (run_max, budget - run_max)
    };
    let cut = |s: &str, max: usize| {
        let end = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
        let mut out = String::new();
        escape_label_value(&s[..end], &mut out);
        out
    };
    (cut(run_id, run_max), cut(correlation_id, corr_max))
}
