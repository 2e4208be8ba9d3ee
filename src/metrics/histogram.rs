//! A duration histogram with two faces: Prometheus buckets counted as
//! observations arrive (so a scrape is a copy, never a conversion), and an
//! hdrhistogram for the quantiles buckets cannot give.
//!
//! Writers (normally only the drain thread) take a short lock per
//! observation. Readers take the same lock only to copy the counts (a few
//! dozen words; with native buckets one word per cell, 4 KiB at the
//! default schema and 130 KiB at the finest) or to swap the hdrhistogram
//! out (summary, O(1)); the expensive work (folding cells into buckets,
//! merging, quantiles) happens after the lock is released, so a reader
//! stalls a writer for at most the time of that copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::cells::Cells;
use super::native::{Layout, Reductions};
use crate::event::TraceId;
use crate::exposition::canonical_float;
use crate::exposition::proto::Native;

/// The hdrhistogram's range: 1 µs to 24 h, in microseconds.
pub(crate) const HDR_LOW_MICROS: u64 = 1;
/// See [`HDR_LOW_MICROS`].
pub(crate) const HDR_HIGH_MICROS: u64 = 86_400_000_000;
const HDR_SIGFIG: u8 = 3;

fn new_hdr() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    match Histogram::new_with_bounds(HDR_LOW_MICROS, HDR_HIGH_MICROS, HDR_SIGFIG) {
        Ok(h) => h,
        Err(e) => unreachable!("constant hdrhistogram bounds rejected: {e}"),
    }
}

/// The most recent observation that fell into a bucket, for OpenMetrics.
#[derive(Clone, Debug)]
pub(crate) struct Exemplar {
    pub(crate) run_id: Arc<str>,
    pub(crate) correlation_id: Arc<str>,
    pub(crate) trace_id: Option<TraceId>,
    /// The observed value; kept in nanoseconds so that the drain thread,
    /// which refreshes it per observation, does no floating-point division.
    pub(crate) nanos: u64,
    /// Wall-clock time of the observation, ms since the epoch.
    pub(crate) millis: u64,
}

impl Exemplar {
    /// The observed value in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        self.nanos as f64 / 1e9
    }
}

/// Identifies an observation for its bucket's exemplar.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trace<'a> {
    pub(crate) run_id: &'a Arc<str>,
    pub(crate) correlation_id: &'a Arc<str>,
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) millis: u64,
}

struct State {
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    buckets: Box<[u64]>,
    exemplars: Box<[Option<Exemplar>]>,
    count: u64,
    sum_nanos: u128,
    hdr: Histogram<u64>,
    /// With native buckets on, the counts of the cells (native buckets cut
    /// at the classic bounds) instead of `buckets`: both are read from
    /// them.
    cells: Option<Box<[u64]>>,
}

/// What a reader copies out for one exposition.
#[derive(Debug)]
pub(crate) struct Read {
    /// Cumulative counts, one per bound plus `+Inf`.
    pub(crate) cumulative: Vec<u64>,
    pub(crate) exemplars: Vec<Option<Exemplar>>,
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
    /// Native buckets, when asked for and kept.
    pub(crate) native: Option<Native>,
}

/// Where an observation was counted.
#[derive(Clone, Copy, Debug)]
enum Counted {
    Classic(usize),
    /// A cell of the native layout cut at the classic bounds.
    Cell(usize),
}

/// Native buckets for a histogram: their layout (shared by every series
/// of one schema) and the cap on populated buckets per series.
#[derive(Clone, Debug)]
pub(crate) struct NativeSpec {
    pub(crate) layout: Arc<Layout>,
    pub(crate) max_buckets: u32,
    /// The cells counted, for the classic bounds they serve (built once
    /// for the histograms that share their bounds).
    pub(crate) cells: Arc<Cells>,
}

impl NativeSpec {
    /// `layout` and `max_buckets`, with the cells of `layout` cut at the
    /// classic `bounds` (seconds).
    pub(crate) fn new(layout: Arc<Layout>, max_buckets: u32, bounds: &[f64]) -> NativeSpec {
        let cells = Arc::new(Cells::new(&layout, &bounds_in_nanos(bounds)));
        NativeSpec {
            layout,
            max_buckets,
            cells,
        }
    }
}

/// Classic bounds in seconds as the nanoseconds they are compared with.
fn bounds_in_nanos(bounds: &[f64]) -> Box<[u64]> {
    bounds
        .iter()
        .map(|&s| (s * 1e9).round().min(u64::MAX as f64) as u64)
        .collect()
}

/// Quantiles from the hdrhistogram, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Quantiles {
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// Makes `t` the bucket's exemplar, unless the current one is from the
/// same millisecond: the exemplar is the latest observation to a
/// millisecond, and a bucket hit millions of times a second costs two
/// refcount increments at most once per millisecond instead of per event.
/// Returns the replaced exemplar, to be dropped outside the lock.
fn refresh_exemplar(slot: &mut Option<Exemplar>, t: Trace<'_>, nanos: u64) -> Option<Exemplar> {
    if let Some(current) = slot.as_mut()
        && current.millis == t.millis
    {
        // Same millisecond: keep the strings if they are the same run's.
        if Arc::ptr_eq(&current.run_id, t.run_id)
            && Arc::ptr_eq(&current.correlation_id, t.correlation_id)
            && current.trace_id == t.trace_id
        {
            current.nanos = nanos;
        }
        return None;
    }
    slot.replace(Exemplar {
        run_id: t.run_id.clone(),
        correlation_id: t.correlation_id.clone(),
        trace_id: t.trace_id,
        nanos,
        millis: t.millis,
    })
}

/// An observation waiting to be recorded with others under one lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub(crate) nanos: u64,
    /// Wall-clock time of the observation, ms since the epoch.
    pub(crate) millis: u64,
    /// Index of its ids in the batch's trace table.
    pub(crate) trace: u32,
}

/// Consecutive equal values of a batch, recorded into the hdrhistogram as
/// one entry (a record costs some sixty instructions; the queue latencies
/// of a run of events received together often agree to the microsecond).
#[derive(Default)]
struct Runs {
    micros: u64,
    count: u64,
}

impl Runs {
    fn add(&mut self, hdr: &mut Histogram<u64>, micros: u64) {
        if self.count > 0 && micros == self.micros {
            self.count += 1;
            return;
        }
        self.finish(hdr);
        self.micros = micros;
        self.count = 1;
    }

    fn finish(&mut self, hdr: &mut Histogram<u64>) {
        if self.count > 0 {
            // Clamped into range, so recording cannot fail.
            let _ = hdr.record_n(
                self.micros.clamp(HDR_LOW_MICROS, HDR_HIGH_MICROS),
                self.count,
            );
            self.count = 0;
        }
    }
}

/// The reader side's accumulated hdrhistogram, built on first use.
struct Accumulated {
    total: Histogram<u64>,
    spare: Histogram<u64>,
}

pub(crate) struct TimeHistogram {
    /// Upper bounds (`le`, inclusive) in nanoseconds, increasing.
    bounds_nanos: Box<[u64]>,
    /// For each power of two `2^k`, how many bounds are below it: where
    /// the search for a value of `k + 1` significant bits starts.
    below_power: [u32; 64],
    /// Canonical `le` strings, the last being `+Inf`.
    le: Box<[String]>,
    state: Mutex<State>,
    /// Observations outside the hdrhistogram's range, recorded at its edge.
    /// Outside the lock: rare to write, and a scrape reads it without
    /// touching the lock the drain thread takes per observation.
    clamped: AtomicU64,
    reader: Mutex<Option<Accumulated>>,
    native: Option<NativeSpec>,
    reductions: Reductions,
}

impl std::fmt::Debug for TimeHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeHistogram")
            .field("le", &self.le)
            .finish_non_exhaustive()
    }
}

impl TimeHistogram {
    /// `bounds` in seconds, validated by the caller (finite, positive,
    /// strictly increasing).
    #[cfg(test)]
    pub(crate) fn new(bounds: &[f64]) -> Self {
        Self::with_native(bounds, None)
    }

    /// As [`new`](Self::new), with native buckets counted as well when
    /// `native` is given.
    pub(crate) fn with_native(bounds: &[f64], native: Option<NativeSpec>) -> Self {
        let bounds_nanos = bounds_in_nanos(bounds);
        // Cells cut at other bounds would count in the wrong buckets.
        let native = native.map(|mut spec| {
            if !spec.cells.serves(&bounds_nanos) {
                spec.cells = Arc::new(Cells::new(&spec.layout, &bounds_nanos));
            }
            spec
        });
        let le: Box<[String]> = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .map(canonical_float)
            .collect();
        let n = le.len();
        let below_power = std::array::from_fn(|k| {
            let power = 1u64 << k;
            bounds_nanos.iter().filter(|&&b| b < power).count() as u32
        });
        TimeHistogram {
            below_power,
            bounds_nanos,
            le,
            state: Mutex::new(State {
                buckets: vec![0; n].into_boxed_slice(),
                exemplars: vec![None; n].into_boxed_slice(),
                count: 0,
                sum_nanos: 0,
                hdr: new_hdr(),
                cells: native
                    .as_ref()
                    .map(|n| vec![0; n.cells.len()].into_boxed_slice()),
            }),
            clamped: AtomicU64::new(0),
            reader: Mutex::new(None),
            native,
            reductions: Reductions::default(),
        }
    }

    /// The canonical `le` strings, `+Inf` last.
    pub(crate) fn le(&self) -> &[String] {
        &self.le
    }

    /// The bucket `nanos` falls into (the first bound it does not exceed).
    /// Starts from the bounds below `nanos`'s power of two and steps over
    /// the few within it: a handful of instructions, where a binary search
    /// took about forty and mispredicted on every observation.
    #[inline]
    fn bucket_of(&self, nanos: u64) -> usize {
        let mut bucket = match nanos.checked_ilog2() {
            Some(k) => self.below_power[k as usize] as usize,
            None => 0,
        };
        while self.bounds_nanos.get(bucket).is_some_and(|&b| b < nanos) {
            bucket += 1;
        }
        bucket
    }

    /// Counts `nanos` in its classic bucket, or in its cell when native
    /// buckets are on; returns where it was counted, which
    /// [`classic_of`](Self::classic_of) turns into its classic bucket when
    /// an exemplar needs it.
    #[inline(always)]
    fn count_bucket(&self, state: &mut State, nanos: u64) -> Counted {
        match (state.cells.as_mut(), &self.native) {
            (Some(counts), Some(spec)) => {
                let cell = spec.cells.cell_of(nanos);
                if let Some(count) = counts.get_mut(cell) {
                    *count += 1;
                }
                Counted::Cell(cell)
            }
            _ => {
                let bucket = self.bucket_of(nanos);
                state.buckets[bucket] += 1;
                Counted::Classic(bucket)
            }
        }
    }

    /// The classic bucket of what [`count_bucket`](Self::count_bucket)
    /// counted.
    #[inline]
    fn classic_of(&self, counted: Counted) -> usize {
        match (counted, &self.native) {
            (Counted::Cell(cell), Some(spec)) => spec.cells.classic_of(cell),
            (Counted::Classic(bucket), _) | (Counted::Cell(bucket), None) => bucket,
        }
    }

    /// Records one observation of `nanos` nanoseconds.
    pub(crate) fn observe(&self, nanos: u64, trace: Option<Trace<'_>>) {
        let micros = nanos / 1_000;
        let clamped = !(HDR_LOW_MICROS..=HDR_HIGH_MICROS).contains(&micros);
        let micros = micros.clamp(HDR_LOW_MICROS, HDR_HIGH_MICROS);
        if clamped {
            // Relaxed: a count for reporting (also below).
            self.clamped.fetch_add(1, Ordering::Relaxed);
        }
        let old = {
            let mut state = self.state.lock();
            let counted = self.count_bucket(&mut state, nanos);
            state.count += 1;
            state.sum_nanos += u128::from(nanos);
            // In range by the clamp above, so recording cannot fail.
            let _ = state.hdr.record(micros);
            match trace {
                Some(t) => {
                    let bucket = self.classic_of(counted);
                    refresh_exemplar(&mut state.exemplars[bucket], t, nanos)
                }
                None => None,
            }
        };
        // A replaced exemplar's strings are released outside the lock.
        drop(old);
    }

    /// Records several observations under one lock; `trace` becomes the
    /// exemplar of the first one's bucket.
    pub(crate) fn observe_many(&self, nanos: &[u64], trace: Option<Trace<'_>>) {
        let Some(&first) = nanos.first() else {
            return;
        };
        let mut clamped = 0;
        let mut runs = Runs::default();
        let old = {
            let mut state = self.state.lock();
            let state = &mut *state;
            // The choice between cells and classic buckets made once for
            // the batch, not per observation.
            match (state.cells.as_deref_mut(), &self.native) {
                (Some(counts), Some(spec)) => {
                    for &n in nanos {
                        if let Some(count) = counts.get_mut(spec.cells.cell_of(n)) {
                            *count += 1;
                        }
                    }
                }
                _ => {
                    for &n in nanos {
                        state.buckets[self.bucket_of(n)] += 1;
                    }
                }
            }
            for &n in nanos {
                let micros = n / 1_000;
                state.count += 1;
                state.sum_nanos += u128::from(n);
                clamped += u64::from(!(HDR_LOW_MICROS..=HDR_HIGH_MICROS).contains(&micros));
                runs.add(&mut state.hdr, micros);
            }
            runs.finish(&mut state.hdr);
            let bucket = self.bucket_of(first);
            match trace {
                Some(t) => refresh_exemplar(&mut state.exemplars[bucket], t, first),
                None => None,
            }
        };
        drop(old);
        if clamped > 0 {
            // Relaxed: a count for reporting.
            self.clamped.fetch_add(clamped, Ordering::Relaxed);
        }
    }

    /// Records several observations under one lock, each with its own
    /// exemplar candidate (`traces[p.trace]`): the same result as calling
    /// [`observe`](Self::observe) for each in turn. Exemplars replaced are
    /// moved to `replaced` and released after the lock.
    pub(crate) fn observe_traced(
        &self,
        items: &[Pending],
        traces: &[(Arc<str>, Arc<str>, Option<TraceId>)],
        replaced: &mut Vec<Exemplar>,
    ) {
        let mut clamped = 0;
        let mut runs = Runs::default();
        {
            let mut state = self.state.lock();
            let state = &mut *state;
            for p in items {
                let counted = self.count_bucket(state, p.nanos);
                let micros = p.nanos / 1_000;
                state.count += 1;
                state.sum_nanos += u128::from(p.nanos);
                clamped += u64::from(!(HDR_LOW_MICROS..=HDR_HIGH_MICROS).contains(&micros));
                runs.add(&mut state.hdr, micros);
                if let Some((run_id, correlation_id, trace_id)) = traces.get(p.trace as usize) {
                    let t = Trace {
                        run_id,
                        correlation_id,
                        trace_id: *trace_id,
                        millis: p.millis,
                    };
                    let bucket = self.classic_of(counted);
                    if let Some(old) = refresh_exemplar(&mut state.exemplars[bucket], t, p.nanos) {
                        replaced.push(old);
                    }
                }
            }
            runs.finish(&mut state.hdr);
        }
        replaced.clear();
        if clamped > 0 {
            // Relaxed: a count for reporting.
            self.clamped.fetch_add(clamped, Ordering::Relaxed);
        }
    }

    /// A consistent copy; exemplars only when asked for (OpenMetrics):
    /// copying them touches the reference counts of ids the drain thread is
    /// using, which costs it cache misses on every scrape.
    ///
    /// The lock is held only for the copy: allocating inside it made the
    /// drain thread, which takes it per observation, wait and sleep
    /// under a tight scrape loop.
    pub(crate) fn read(&self, with_exemplars: bool) -> Read {
        self.read_with(with_exemplars, false)
    }

    /// As [`read`](Self::read), with the native buckets when `with_native`
    /// (and they are kept), lowered to the series' bucket cap.
    pub(crate) fn read_with(&self, with_exemplars: bool, with_native: bool) -> Read {
        let n = self.le.len();
        let mut cumulative = Vec::with_capacity(n);
        let mut exemplars = Vec::with_capacity(n);
        let spec = self.native.as_ref();
        let mut cells = Vec::with_capacity(spec.map_or(0, |s| s.cells.len()));
        let (count, sum_nanos) = {
            let state = self.state.lock();
            cumulative.extend_from_slice(&state.buckets);
            if with_exemplars {
                exemplars.extend_from_slice(&state.exemplars);
            }
            if let Some(counts) = &state.cells {
                cells.extend_from_slice(counts);
            }
            (state.count, state.sum_nanos)
        };
        let native = spec.and_then(|spec| {
            let mut native_counts = vec![0; if with_native { spec.layout.len() } else { 0 }];
            let native_out = with_native.then_some(&mut native_counts[..]);
            let zero = spec.cells.fold(&cells, &mut cumulative, native_out);
            with_native.then(|| {
                let (native, reductions) =
                    spec.layout.native(zero, &native_counts, spec.max_buckets);
                self.reductions.reach(reductions);
                native
            })
        });
        exemplars.resize(n, None);
        let mut running = 0;
        for c in &mut cumulative {
            running += *c;
            *c = running;
        }
        Read {
            cumulative,
            exemplars,
            count,
            sum_seconds: nanos_to_seconds(sum_nanos),
            native,
        }
    }

    /// How many times this series' native schema was lowered to keep
    /// within its bucket cap.
    pub(crate) fn schema_reductions(&self) -> u32 {
        self.reductions.get()
    }

    /// Observations recorded at the hdrhistogram's edge because they were
    /// below 1 µs or above 24 h.
    pub(crate) fn clamped(&self) -> u64 {
        // Relaxed: a count for reporting.
        self.clamped.load(Ordering::Relaxed)
    }

    /// Quantiles over every observation so far.
    pub(crate) fn quantiles(&self) -> Quantiles {
        let mut reader = self.reader.lock();
        let acc = reader.get_or_insert_with(|| Accumulated {
            total: new_hdr(),
            spare: new_hdr(),
        });
        let (count, sum_nanos) = {
            let mut state = self.state.lock();
            // O(1): only the histograms' buffers change hands.
            std::mem::swap(&mut state.hdr, &mut acc.spare);
            (state.count, state.sum_nanos)
        };
        // Same bounds on both sides, so adding cannot fail.
        let _ = acc.total.add(&acc.spare);
        acc.spare.reset();
        let h = &acc.total;
        let seconds = |micros: u64| micros as f64 / 1e6;
        if h.is_empty() {
            return Quantiles {
                count,
                sum_seconds: nanos_to_seconds(sum_nanos),
                ..Quantiles::default()
            };
        }
        Quantiles {
            count,
            sum_seconds: nanos_to_seconds(sum_nanos),
            p50: seconds(h.value_at_quantile(0.5)),
            p90: seconds(h.value_at_quantile(0.9)),
            p99: seconds(h.value_at_quantile(0.99)),
            max: seconds(h.max()),
        }
    }
}

fn nanos_to_seconds(nanos: u128) -> f64 {
    // Whole seconds and the remainder separately, so sums up to ~2^53 s stay exact to the nanosecond as far as f64 allows.
    (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_on_a_bound_falls_into_that_bucket() {
        let h = TimeHistogram::new(&[0.01, 0.1, 1.0]);
        h.observe(10_000_000, None);
        h.observe(10_000_001, None);
        h.observe(5_000_000_000, None);
        let read = h.read(true);
        assert_eq!(read.cumulative, vec![1, 2, 2, 3]);
        assert_eq!(read.count, 3);
        assert!((read.sum_seconds - 5.020000001).abs() < 1e-12);
        assert_eq!(h.le(), ["0.01", "0.1", "1.0", "+Inf"]);
    }

    #[test]
    fn a_traced_batch_records_what_one_observe_per_value_records() {
        let run: Arc<str> = Arc::from("run");
        let other: Arc<str> = Arc::from("other");
        let traces = [
            (run.clone(), run.clone(), Some(TraceId::random())),
            (other.clone(), other.clone(), None),
        ];
        let values = [
            (5_000_000, 7, 0),
            (50_000_000, 7, 1),
            (6_000_000, 8, 1),
            (10, 8, 0),
        ];
        let one_by_one = TimeHistogram::new(&[0.01, 0.1]);
        for &(nanos, millis, t) in &values {
            let (run_id, correlation_id, trace_id) = &traces[t];
            one_by_one.observe(
                nanos,
                Some(Trace {
                    run_id,
                    correlation_id,
                    trace_id: *trace_id,
                    millis,
                }),
            );
        }
        let batched = TimeHistogram::new(&[0.01, 0.1]);
        let items: Vec<Pending> = values
            .iter()
            .map(|&(nanos, millis, t)| Pending {
                nanos,
                millis,
                trace: t as u32,
            })
            .collect();
        let mut replaced = Vec::new();
        batched.observe_traced(&items, &traces, &mut replaced);
        let (a, b) = (one_by_one.read(true), batched.read(true));
        assert_eq!(a.cumulative, b.cumulative);
        assert_eq!(a.count, b.count);
        assert_eq!(a.sum_seconds, b.sum_seconds);
        assert_eq!(one_by_one.clamped(), batched.clamped());
        let ids = |r: &Read| -> Vec<Option<(String, u64)>> {
            r.exemplars
                .iter()
                .map(|e| e.as_ref().map(|e| (e.run_id.to_string(), e.millis)))
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(ids(&b)[0], Some(("other".to_owned(), 8)));
        assert_eq!(one_by_one.quantiles(), batched.quantiles());
    }

    #[test]
    fn the_bucket_of_a_value_is_the_first_bound_it_does_not_exceed() {
        let bounds = [1e-9, 2e-9, 2.5e-6, 5e-6, 1e-5, 0.25, 0.5, 1.0, 2.5, 10.0];
        let h = TimeHistogram::new(&bounds);
        let mut values = vec![0, u64::MAX];
        for &b in h.bounds_nanos.iter() {
            values.extend([b - 1, b, b + 1]);
        }
        for k in 0..64 {
            values.extend([(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
        }
        for v in values {
            let expected = h.bounds_nanos.partition_point(|&b| b < v);
            assert_eq!(h.bucket_of(v), expected, "{v}");
        }
    }

    /// Every bound, its neighbours, and every power of two and its
    /// neighbours: where a bucket search can be off by one.
    fn edge_values(bounds_nanos: &[u64]) -> Vec<u64> {
        let mut values = vec![0, 1, u64::MAX];
        for &b in bounds_nanos {
            values.extend([b.saturating_sub(1), b, b.saturating_add(1)]);
        }
        for k in 0..64 {
            values.extend([(1u64 << k) - 1, 1 << k, (1u64 << k).saturating_add(1)]);
        }
        values
    }

    #[test]
    fn classic_counts_are_the_same_with_native_buckets_on_and_off() {
        let edge: &[f64] = &[1e-10, 4e-10, 1e-9, 1.2e-9, 3e-9, 1.0, 1e30];
        // Schema 8 cut at these bounds takes the search's walk.
        for schema in [3, 8] {
            for bounds in [crate::metrics::config::DEFAULT_DURATION_BUCKETS, edge] {
                let off = TimeHistogram::new(bounds);
                let layout = Arc::new(Layout::new(schema));
                let spec = NativeSpec::new(layout, u32::MAX, bounds);
                let on = TimeHistogram::with_native(bounds, Some(spec));
                let values = edge_values(&off.bounds_nanos);
                for h in [&off, &on] {
                    for &v in &values {
                        h.observe(v, None);
                    }
                    h.observe_many(&values, None);
                }
                let (off, on) = (off.read(false), on.read_with(false, true));
                assert_eq!(off.cumulative, on.cumulative, "schema {schema}, {bounds:?}");
                assert_eq!(off.count, on.count);
                let Some(native) = on.native else {
                    panic!("no native buckets at schema {schema}")
                };
                let mut running = 0i64;
                let in_buckets: i64 = native
                    .deltas
                    .iter()
                    .map(|d| {
                        running += d;
                        running
                    })
                    .sum();
                let zeros = 2 * values.iter().filter(|&&v| v == 0).count() as u64;
                assert_eq!(native.zero_count, zeros, "the observations of 0");
                assert_eq!(in_buckets as u64 + native.zero_count, on.count);
            }
        }
    }

    #[test]
    fn cells_cut_at_other_bounds_are_not_used() {
        let layout = Arc::new(Layout::new(3));
        let spec = NativeSpec::new(layout, 160, &[1.0, 2.0]);
        let h = TimeHistogram::with_native(&[0.5, 1.5], Some(spec));
        h.observe(1_200_000_000, None);
        assert_eq!(h.read(false).cumulative, vec![0, 1, 1]);
    }

    #[test]
    fn values_outside_the_hdr_range_are_clamped_and_counted() {
        let h = TimeHistogram::new(&[1.0]);
        h.observe(10, None); // 10 ns
        h.observe(100 * 3600 * 1_000_000_000, None); // 100 h
        h.observe(1_000_000, None);
        assert_eq!(h.clamped(), 2);
        let q = h.quantiles();
        assert_eq!(q.count, 3);
        assert!(q.max <= 86_400.0 * 1.001);
    }

    #[test]
    fn quantiles_include_observations_made_after_an_earlier_summary() {
        let h = TimeHistogram::new(&[1.0]);
        for ms in 1..=100 {
            h.observe(ms * 1_000_000, None);
        }
        let first = h.quantiles();
        assert!((first.p50 - 0.05).abs() < 0.001, "{first:?}");
        for _ in 0..1000 {
            h.observe(2_000_000_000, None);
        }
        let second = h.quantiles();
        assert_eq!(second.count, 1100);
        assert!((second.p50 - 2.0).abs() < 0.01, "{second:?}");
    }
}
