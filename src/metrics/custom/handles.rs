//! The handles the engine records through, and the cells behind them.
//!
//! A handle is an `Arc` of its series' cell: cloning it is one reference
//! count, and recording is a few relaxed atomic operations with no lock,
//! no allocation and no lookup. Relaxed is enough everywhere here: each
//! value is a count or a level read for reporting, and nothing else is
//! published through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::context::{self, LogContext};

/// A counter of the engine's own, from [`Metrics::counter`](crate::metrics::Metrics::counter).
/// Cheap to clone; every clone counts into the same series.
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// let calls = metrics.counter("tool_calls_total", "Tool calls, by tool.", &[("tool", "grep")])?;
/// calls.increment(1);
/// assert_eq!(calls.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Counter {
    pub(crate) cell: Arc<CounterCell>,
}

/// A gauge of the engine's own, from [`Metrics::gauge`](crate::metrics::Metrics::gauge).
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// let open = metrics.gauge("open_sandboxes", "Sandboxes open.", &[])?;
/// open.increment(2.0);
/// open.decrement(1.0);
/// assert_eq!(open.value(), 1.0);
/// open.set(7.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gauge {
    pub(crate) cell: Arc<GaugeCell>,
}

/// A histogram of the engine's own, from
/// [`Metrics::histogram`](crate::metrics::Metrics::histogram). In
/// OpenMetrics, each bucket's exemplar is its latest observation made
/// inside a [`LogContext`] with a correlation id or run id.
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// use std::time::Duration;
/// let latency = metrics.histogram("model_request_seconds", "Model requests.", &[("model", "m1")])?;
/// latency.record(0.42);
/// latency.record_duration(Duration::from_millis(1200));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Histogram {
    pub(crate) cell: Arc<HistogramCell>,
}

/// A counter's value.
#[derive(Debug, Default)]
pub(crate) struct CounterCell(pub(crate) AtomicU64);

/// A gauge's value, as the bits of an `f64`.
#[derive(Debug, Default)]
pub(crate) struct GaugeCell(pub(crate) AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn increment(&self, n: u64) {
        self.cell.increment(n);
    }

    /// The current count.
    pub fn value(&self) -> u64 {
        // Relaxed: see the module comment (whole file).
        self.cell.0.load(Ordering::Relaxed)
    }
}

impl CounterCell {
    #[inline]
    pub(crate) fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises the count to `n` if it is lower (`metrics`' `absolute`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn absolute(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
}

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.cell.set(value);
    }

    /// Adds `delta`.
    #[inline]
    pub fn increment(&self, delta: f64) {
        self.cell.add(delta);
    }

    /// Subtracts `delta`.
    #[inline]
    pub fn decrement(&self, delta: f64) {
        self.cell.add(-delta);
    }

    /// The current value.
    pub fn value(&self) -> f64 {
        self.cell.get()
    }
}

impl GaugeCell {
    #[inline]
    pub(crate) fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add(&self, delta: f64) {
        add_f64(&self.0, delta);
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Adds to an `f64` kept as bits: a compare-and-swap loop, since there is
/// no atomic float add.
#[inline]
fn add_f64(cell: &AtomicU64, delta: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

/// A bucket's latest observation made inside a context.
#[derive(Clone, Debug)]
pub(crate) struct Sampled {
    pub(crate) context: Arc<LogContext>,
    pub(crate) value: f64,
    /// Raw `quanta` ticks of the observation, turned into wall time at render.
    pub(crate) ticks: u64,
}

/// A bucket's exemplar. Refreshed at most once a millisecond while the
/// same context keeps observing into it (an exemplar is the latest
/// observation to a millisecond, as for the built-in histograms): the
/// common case then costs a clock read and two loads, not a lock.
#[derive(Debug, Default)]
pub(crate) struct ExemplarSlot {
    /// Only ever `try_lock`ed by recorders: a contended slot keeps its
    /// previous exemplar rather than making an engine thread wait.
    pub(crate) sampled: Mutex<Option<Sampled>>,
    /// Address of the sampled context, written under the lock; compared
    /// only, never dereferenced. The slot holds that `Arc`, so the address
    /// cannot be reused by another context meanwhile.
    context: AtomicUsize,
    /// Ticks of the last refresh.
    refreshed: AtomicU64,
}

/// Ticks are compared through the clock's scale: a millisecond.
const REFRESH_NANOS: u64 = 1_000_000;

/// A histogram's buckets, sum and exemplars.
#[derive(Debug)]
pub(crate) struct HistogramCell {
    /// Upper bounds (`le`, inclusive), increasing; `+Inf` is implied.
    pub(crate) bounds: Arc<[f64]>,
    /// Per-bucket (not cumulative) counts; the last is `+Inf`. The count
    /// is their total, so `_count` always equals the `+Inf` bucket.
    pub(crate) buckets: Box<[AtomicU64]>,
    pub(crate) sum_bits: AtomicU64,
    pub(crate) exemplars: Box<[ExemplarSlot]>,
    pub(crate) clock: quanta::Clock,
    /// Native buckets, unless turned off, and the series' bucket cap.
    pub(crate) native: Option<(crate::metrics::native::AtomicNative, u32)>,
    pub(crate) reductions: crate::metrics::native::Reductions,
}

impl HistogramCell {
    pub(crate) fn new(bounds: Arc<[f64]>, clock: quanta::Clock) -> Self {
        let n = bounds.len() + 1;
        HistogramCell {
            bounds,
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
            exemplars: (0..n).map(|_| ExemplarSlot::default()).collect(),
            clock,
            native: None,
            reductions: Default::default(),
        }
    }

    /// Keeps native buckets as well, as `native` says.
    pub(crate) fn with_native(mut self, native: Option<super::CustomNative>) -> Self {
        self.native = native.map(|n| {
            (
                crate::metrics::native::AtomicNative::new(n.schema, n.bounds),
                n.max_buckets,
            )
        });
        self
    }

    /// The native buckets within the series' cap, the schema steps it took
    /// counted once.
    pub(crate) fn read_native(&self) -> Option<crate::exposition::proto::Native> {
        let (native, max_buckets) = self.native.as_ref()?;
        let (native, reductions) = native.native(*max_buckets);
        self.reductions.reach(reductions);
        Some(native)
    }

    /// Records one observation. NaN is ignored: it belongs in no bucket
    /// and would make the sum NaN for good.
    #[inline]
    pub(crate) fn record(&self, value: f64) {
        self.record_n(value, 1);
    }

    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn record_n(&self, value: f64, n: u64) {
        if value.is_nan() || n == 0 {
            return;
        }
        // The first bound not below `value`: `le` is inclusive.
        let bucket = self.bounds.partition_point(|&b| b < value);
        self.buckets[bucket].fetch_add(n, Ordering::Relaxed);
        add_f64(&self.sum_bits, value * n as f64);
        if let Some((native, _)) = &self.native {
            native.record_n(value, n);
        }
        let replaced = context::with_current(|current| {
            let current = current.filter(|c| c.correlation_id.is_some() || c.run_id.is_some())?;
            self.refresh(&self.exemplars[bucket], current, value)
        });
        // Released outside the slot's lock (and the thread-local borrow).
        drop(replaced);
    }

    /// Makes `value`, observed in `current`, the slot's exemplar unless the
    /// same context refreshed it less than a millisecond ago. Returns the
    /// replaced exemplar, to be dropped after the lock.
    #[inline]
    fn refresh(
        &self,
        slot: &ExemplarSlot,
        current: &Arc<LogContext>,
        value: f64,
    ) -> Option<Sampled> {
        let now = self.clock.raw();
        let address = Arc::as_ptr(current) as usize;
        // Relaxed (both loads): a stale read only refreshes early or late.
        if slot.context.load(Ordering::Relaxed) == address
            && self
                .clock
                .delta_as_nanos(slot.refreshed.load(Ordering::Relaxed), now)
                < REFRESH_NANOS
        {
            return None;
        }
        let mut sampled = slot.sampled.try_lock()?;
        // Relaxed (both stores): hints for the check above; the exemplar
        // itself is published by the lock.
        slot.refreshed.store(now, Ordering::Relaxed);
        slot.context.store(address, Ordering::Relaxed);
        match sampled.as_mut() {
            // Same scope: no reference count touched.
            Some(s) if Arc::ptr_eq(&s.context, current) => {
                s.value = value;
                s.ticks = now;
                None
            }
            _ => sampled.replace(Sampled {
                context: current.clone(),
                value,
                ticks: now,
            }),
        }
    }

    /// Cumulative counts (one per bound plus `+Inf`) and the sum.
    pub(crate) fn read(&self) -> (Vec<u64>, f64) {
        let mut running = 0u64;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running = running.saturating_add(b.load(Ordering::Relaxed));
                running
            })
            .collect();
        (
            cumulative,
            f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        )
    }
}

impl Histogram {
    /// Records one observation (NaN is ignored).
    #[inline]
    pub fn record(&self, value: f64) {
        self.cell.record(value);
    }

    /// Records a duration, in seconds.
    #[inline]
    pub fn record_duration(&self, duration: Duration) {
        self.cell.record(duration.as_secs_f64());
    }

    /// Observations so far and their sum.
    pub fn count_and_sum(&self) -> (u64, f64) {
        let (cumulative, sum) = self.cell.read();
        (cumulative.last().copied().unwrap_or(0), sum)
    }
}

#[cfg(feature = "metrics")]
mod metrics_fns {
    //! The `metrics` crate's handle traits, so its handles are ours.

    use super::{CounterCell, GaugeCell, HistogramCell};

    impl ::metrics::CounterFn for CounterCell {
        fn increment(&self, value: u64) {
            CounterCell::increment(self, value);
        }

        fn absolute(&self, value: u64) {
            CounterCell::absolute(self, value);
        }
    }

    impl ::metrics::GaugeFn for GaugeCell {
        fn increment(&self, value: f64) {
            self.add(value);
        }

        fn decrement(&self, value: f64) {
            self.add(-value);
        }

        fn set(&self, value: f64) {
            GaugeCell::set(self, value);
        }
    }

    impl ::metrics::HistogramFn for HistogramCell {
        fn record(&self, value: f64) {
            HistogramCell::record(self, value);
        }

        fn record_many(&self, value: f64, count: usize) {
            self.record_n(value, count as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_into_the_first_bucket_whose_bound_they_do_not_exceed() {
        let h = HistogramCell::new(Arc::from([1.0, 2.0]), crate::pipeline::new_clock());
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, f64::NAN] {
            h.record(v);
        }
        let (cumulative, sum) = h.read();
        assert_eq!(cumulative, vec![2, 4, 5]);
        assert_eq!(sum, 8.0);
    }

    #[test]
    fn an_exemplar_is_taken_only_inside_a_context() {
        let h = HistogramCell::new(Arc::from([1.0]), crate::pipeline::new_clock());
        h.record(0.5);
        assert!(h.exemplars[0].sampled.lock().is_none());
        crate::logging::with_context(LogContext::new().correlation_id("req-1"), || h.record(0.25));
        // Another context refreshes at once, whenever the last refresh was.
        crate::logging::with_context(LogContext::new().correlation_id("req-2"), || h.record(0.75));
        let slot = h.exemplars[0].sampled.lock();
        let sampled = slot.as_ref().expect("an exemplar");
        assert_eq!(sampled.context.correlation_id.as_deref(), Some("req-2"));
        assert_eq!(sampled.value, 0.75);
    }
}
