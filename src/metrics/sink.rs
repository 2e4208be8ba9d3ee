//! Feeds [`Metrics`] from the drain thread, in processing order.

use std::sync::Arc;

use super::histogram::Trace;
use super::{Metrics, MetricsCollector};
use crate::event::{EventKind, ProgressEvent};
use crate::pipeline::drain::{EventInfo, Sink};

/// Queue latencies recorded per lock at most: one lock per event for this
/// histogram alone cost a tenth of the drain thread's time.
const LATENCY_BATCH: usize = 256;

/// The drain thread's metrics sink.
pub(crate) struct MetricsSink {
    metrics: Metrics,
    clock: quanta::Clock,
    /// Queue latencies not yet recorded (flushed when full, when the ring
    /// runs empty and before every control message, so `flush()` and
    /// scrapes after it see them all).
    latencies: Vec<u64>,
    /// The exemplar for the batch: its first event's ids.
    latency_exemplar: Option<(Arc<str>, Arc<str>, u64)>,
}

impl MetricsSink {
    pub(crate) fn new(metrics: Metrics, clock: quanta::Clock) -> Self {
        MetricsSink {
            metrics,
            clock,
            latencies: Vec::with_capacity(LATENCY_BATCH),
            latency_exemplar: None,
        }
    }
}

const MS: u64 = 1_000_000;

impl Sink for MetricsSink {
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        let m = &self.metrics;
        let trace = Trace {
            run_id: &event.run_id,
            correlation_id: &event.correlation_id,
            millis: event.timestamp.as_millis(),
        };
        let waited = self.clock.delta_as_nanos(info.ticks, self.clock.raw());
        if self.latencies.is_empty() {
            self.latency_exemplar = Some((
                event.run_id.clone(),
                event.correlation_id.clone(),
                trace.millis,
            ));
        }
        self.latencies.push(waited);

        // Started and finished follow the tracker, so that
        // started - sum(completed) == active_runs at every flush.
        if info.applied.new_run {
            m.increment_runs_started();
        }
        if let Some((outcome, duration_ms)) = info.applied.finished {
            m.increment_runs_completed(outcome);
            m.observe_run(duration_ms.saturating_mul(MS), Some(trace));
        }
        match &event.kind {
            EventKind::IterationCompleted { phase_timings, .. } => {
                m.increment_iterations();
                let ms = crate::event::Phase::ALL
                    .iter()
                    .filter_map(|&p| phase_timings.get(p))
                    .fold(0u64, u64::saturating_add);
                m.observe_iteration(ms.saturating_mul(MS), Some(trace));
            }
            EventKind::PhaseCompleted {
                phase,
                success,
                duration_ms,
                ..
            } => {
                m.record_phase_execution(*phase, *success);
                let nanos = info.nanos.unwrap_or(duration_ms.saturating_mul(MS));
                m.observe_phase(*phase, nanos, Some(trace));
            }
            EventKind::GateChecked { gate, passed, .. } => m.record_gate_check(gate, *passed),
            EventKind::DeliveryCompleted { success, .. } => m.record_delivery(*success),
            _ => {}
        }
        if self.latencies.len() >= LATENCY_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let exemplar = self.latency_exemplar.take();
        let trace = exemplar
            .as_ref()
            .map(|(run_id, correlation_id, millis)| Trace {
                run_id,
                correlation_id,
                millis: *millis,
            });
        self.metrics.observe_queue_latencies(&self.latencies, trace);
        self.latencies.clear();
    }
}
