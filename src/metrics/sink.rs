//! Feeds [`Metrics`] from the drain thread, in processing order.

use std::sync::Arc;

use super::Metrics;
use super::histogram::{Exemplar, Pending, Trace};
use crate::event::{EventKind, Phase, ProgressEvent, TraceId};
use crate::pipeline::drain::{EventInfo, Sink};

/// Queue latencies recorded per lock at most: one lock per event for this
/// histogram alone cost a tenth of the drain thread's time.
const LATENCY_BATCH: usize = 256;

/// An exemplar's ids: run, correlation, trace.
type Ids = (Arc<str>, Arc<str>, Option<TraceId>);

/// The drain thread's metrics sink.
pub(crate) struct MetricsSink {
    metrics: Metrics,
    /// Converts raw ticks to nanoseconds (the drain thread reads it).
    clock: quanta::Clock,
    /// Queue latencies not yet recorded (flushed when full, when the ring
    /// runs empty and before every control message, so `flush()` and
    /// scrapes after it see them all).
    latencies: Vec<u64>,
    /// The exemplar for the batch: its first event's ids.
    latency_exemplar: Option<(Ids, u64)>,
    /// Phase durations not yet recorded, per phase, flushed with the
    /// latencies: one histogram lock per batch instead of per event.
    phases: [Vec<Pending>; Phase::ALL.len()],
    /// Phase executions not yet counted, per phase and outcome.
    executions: [[u64; 2]; Phase::ALL.len()],
    /// The ids the pending phase durations refer to (`Pending::trace`),
    /// one entry per change of run or correlation id.
    traces: Vec<Ids>,
    /// Exemplars replaced by a flush, released after the histogram's lock.
    replaced: Vec<Exemplar>,
}

impl MetricsSink {
    pub(crate) fn new(metrics: Metrics, clock: quanta::Clock) -> Self {
        MetricsSink {
            metrics,
            clock,
            latencies: Vec::with_capacity(LATENCY_BATCH),
            latency_exemplar: None,
            phases: std::array::from_fn(|_| Vec::with_capacity(LATENCY_BATCH)),
            executions: [[0; 2]; Phase::ALL.len()],
            traces: Vec::new(),
            replaced: Vec::with_capacity(16),
        }
    }

    /// The index of `event`'s ids in `traces`, adding them on a change.
    fn trace_of(&mut self, event: &ProgressEvent) -> u32 {
        let same = self.traces.last().is_some_and(|(run, correlation, trace)| {
            Arc::ptr_eq(run, &event.run_id)
                && Arc::ptr_eq(correlation, &event.correlation_id)
                && *trace == event.trace_id
        });
        if !same {
            self.traces.push((
                event.run_id.clone(),
                event.correlation_id.clone(),
                event.trace_id,
            ));
        }
        (self.traces.len() - 1) as u32
    }
}

const MS: u64 = 1_000_000;

impl Sink for MetricsSink {
    fn event(&mut self, event: &ProgressEvent, info: &EventInfo) {
        let m = &self.metrics;
        let trace = Trace {
            run_id: &event.run_id,
            correlation_id: &event.correlation_id,
            trace_id: event.trace_id,
            millis: event.timestamp.as_millis(),
        };
        let waited = self.clock.delta_as_nanos(info.ticks, info.received);
        if self.latencies.is_empty() {
            self.latency_exemplar = Some((
                (
                    event.run_id.clone(),
                    event.correlation_id.clone(),
                    event.trace_id,
                ),
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
                let (phase, success, millis) = (*phase, *success, trace.millis);
                self.executions[phase.index()][usize::from(success)] += 1;
                let nanos = info.nanos.unwrap_or(duration_ms.saturating_mul(MS));
                let trace = self.trace_of(event);
                self.phases[phase.index()].push(Pending {
                    nanos,
                    millis,
                    trace,
                });
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
            .map(|((run_id, correlation_id, trace_id), millis)| Trace {
                run_id,
                correlation_id,
                trace_id: *trace_id,
                millis: *millis,
            });
        self.metrics.observe_queue_latencies(&self.latencies, trace);
        self.latencies.clear();
        for &phase in Phase::ALL {
            let i = phase.index();
            for (success, n) in [false, true].into_iter().zip(self.executions[i]) {
                if n > 0 {
                    self.metrics.record_phase_executions(phase, success, n);
                }
            }
            self.executions[i] = [0; 2];
            if !self.phases[i].is_empty() {
                self.metrics.observe_phases(
                    phase,
                    &self.phases[i],
                    &self.traces,
                    &mut self.replaced,
                );
                self.phases[i].clear();
            }
        }
        self.traces.clear();
    }
}
