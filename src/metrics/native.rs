//! Native (sparse exponential) histogram buckets for the duration
//! histograms, counted exactly on the drain thread beside the classic
//! buckets and the hdrhistogram.
//!
//! Bucket `k` of schema `s` holds the values in `(2^((k-1)/2^s), 2^(k/2^s)]`
//! seconds, as client_golang and Prometheus define them. Observations are
//! integer nanoseconds, so a [`Layout`] turns each bucket's upper bound
//! into the largest nanosecond count inside it, once: finding an
//! observation's bucket is then the same integer search as for the classic
//! buckets (start at its power of two, a few comparisons), with no
//! floating point on the drain thread. The layout covers every `u64` of
//! nanoseconds at the configured schema (`64 * 2^s` buckets, 4 KiB per
//! series at the default schema 3), so counting never allocates.
//!
//! The per-series bucket limit is applied when the buckets are read: while
//! more buckets are populated than allowed, the schema is lowered by one,
//! merging each pair of neighbours exactly (bucket `k` goes to `ceil(k/2)`),
//! as client_golang does when it observes. Counts only grow, so a series'
//! schema only ever goes down; each step down is counted once
//! (`native_schema_reductions_total`).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::exposition::proto::Native;

/// The default schema: buckets grow by a factor of `2^(1/8)`, about 1.09.
pub const DEFAULT_NATIVE_SCHEMA: i8 = 3;
/// The lowest schema Prometheus accepts: buckets grow by `2^16`.
pub const MIN_NATIVE_SCHEMA: i8 = -4;
/// The highest schema Prometheus accepts: buckets grow by `2^(1/256)`.
pub const MAX_NATIVE_SCHEMA: i8 = 8;
/// The default cap on populated native buckets per series.
pub const DEFAULT_NATIVE_MAX_BUCKETS: u32 = 160;
/// Observations at or below this many seconds count in the zero bucket:
/// client_golang's default, `2^-128`. A duration of 0 ns is the only one.
pub const NATIVE_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Where each nanosecond count falls at one schema.
#[derive(Debug)]
pub(crate) struct Layout {
    schema: i8,
    /// The key of the first bucket (the one holding 1 ns).
    first_key: i32,
    /// Per bucket, the largest nanosecond count inside it, increasing; the
    /// last is `u64::MAX`.
    upper: Box<[u64]>,
    /// For each power of two `2^j`, the first bucket whose upper bound is
    /// at least `2^j`: where the search for a value of `j + 1` bits starts.
    from_power: [u32; 65],
}

impl Layout {
    /// `schema` within [`MIN_NATIVE_SCHEMA`]`..=`[`MAX_NATIVE_SCHEMA`] (the
    /// configuration checks it; it is clamped here all the same).
    pub(crate) fn new(schema: i8) -> Self {
        let schema = schema.clamp(MIN_NATIVE_SCHEMA, MAX_NATIVE_SCHEMA);
        let per_octave = 2f64.powi(i32::from(schema));
        // Upper bound of key k in nanoseconds: 1e9 * 2^(k / 2^schema).
        let upper_of = |k: i32| -> u64 {
            let seconds = 2f64.powf(f64::from(k) / per_octave);
            // `as` saturates: the bounds past u64::MAX ns are u64::MAX.
            (seconds * 1e9).floor() as u64
        };
        // 1 ns is 2^-29.9 s: start a little below and walk up.
        let mut first_key = ((-30.0 * per_octave).floor() as i32).min(-1);
        while upper_of(first_key) < 1 {
            first_key += 1;
        }
        while first_key > i32::MIN && upper_of(first_key - 1) >= 1 {
            first_key -= 1;
        }
        let mut upper = Vec::new();
        let mut k = first_key;
        loop {
            let u = upper_of(k);
            upper.push(u);
            if u == u64::MAX {
                break;
            }
            k += 1;
        }
        let from_power = std::array::from_fn(|j| {
            let power = if j < 64 { 1u64 << j } else { u64::MAX };
            upper.partition_point(|&u| u < power) as u32
        });
        Layout {
            schema,
            first_key,
            upper: upper.into_boxed_slice(),
            from_power,
        }
    }

    /// How many buckets a series keeps.
    pub(crate) fn len(&self) -> usize {
        self.upper.len()
    }

    /// The bucket (an index, not a key) of `nanos` ≥ 1.
    #[inline]
    pub(crate) fn index_of(&self, nanos: u64) -> usize {
        let j = nanos.checked_ilog2().unwrap_or(0) as usize;
        let (from, to) = (
            self.from_power[j] as usize,
            self.from_power[j + 1] as usize + 1,
        );
        let to = to.min(self.upper.len());
        from + self.upper[from..to].partition_point(|&u| u < nanos)
    }

    /// The native buckets of `counts` (one per bucket of this layout),
    /// lowered to at most `max_buckets` populated buckets. Returns them and
    /// how many times the schema was lowered.
    pub(crate) fn native(&self, zero: u64, counts: &[u64], max_buckets: u32) -> (Native, u32) {
        let mut populated: Vec<(i32, u64)> = counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(i, &c)| (self.first_key + i as i32, c))
            .collect();
        let mut schema = self.schema;
        let mut reductions = 0;
        while populated.len() > max_buckets.max(1) as usize && schema > MIN_NATIVE_SCHEMA {
            populated = halve(&populated);
            schema -= 1;
            reductions += 1;
        }
        let (spans, deltas) = spans(&populated);
        (
            Native {
                schema: i32::from(schema),
                zero_threshold: NATIVE_ZERO_THRESHOLD,
                zero_count: zero,
                spans,
                deltas,
            },
            reductions,
        )
    }
}

/// Merges each pair of neighbouring buckets: the schema one lower. Key `k`
/// covers `(2^((k-1)/2^s), 2^(k/2^s)]`, so keys `2j-1` and `2j` together
/// cover key `j` of schema `s-1`: `k` goes to `ceil(k/2)`.
fn halve(populated: &[(i32, u64)]) -> Vec<(i32, u64)> {
    let mut out: Vec<(i32, u64)> = Vec::with_capacity(populated.len() / 2 + 1);
    for &(k, c) in populated {
        // An arithmetic shift floors, so this is ceil(k / 2) for any sign.
        let j = (k + 1) >> 1;
        match out.last_mut() {
            Some((last, count)) if *last == j => *count += c,
            _ => out.push((j, c)),
        }
    }
    out
}

/// Spans and deltas of populated buckets sorted by key. Gaps of one or two
/// empty buckets are written as zero counts inside a span, as
/// client_golang does: that is shorter than a new span.
fn spans(populated: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(populated.len());
    let mut previous_count: u64 = 0;
    let mut next_key: Option<i32> = None;
    for &(k, c) in populated {
        match next_key {
            Some(next) if k - next <= 2 => {
                for _ in next..k {
                    deltas.push(-(previous_count as i64));
                    previous_count = 0;
                }
                if let Some(span) = spans.last_mut() {
                    span.1 += (k - next) as u32 + 1;
                }
            }
            Some(next) => spans.push((k - next, 1)),
            None => spans.push((k, 1)),
        }
        deltas.push(c as i64 - previous_count as i64);
        previous_count = c;
        next_key = Some(k + 1);
    }
    (spans, deltas)
}

/// A series' native counters, kept beside its classic buckets.
#[derive(Debug)]
pub(crate) struct Counts {
    pub(crate) zero: u64,
    pub(crate) buckets: Box<[u64]>,
}

impl Counts {
    pub(crate) fn new(layout: &Layout) -> Self {
        Counts {
            zero: 0,
            buckets: vec![0; layout.len()].into_boxed_slice(),
        }
    }

    #[inline]
    pub(crate) fn observe(&mut self, layout: &Layout, nanos: u64) {
        if nanos == 0 {
            self.zero += 1;
        } else {
            self.buckets[layout.index_of(nanos)] += 1;
        }
    }
}

/// The schema steps a series has taken down so far, to count each once.
#[derive(Debug, Default)]
pub(crate) struct Reductions(AtomicU32);

impl Reductions {
    /// Records that the series now needs `total` steps; returns how many
    /// of them are new.
    pub(crate) fn reach(&self, total: u32) -> u32 {
        // Relaxed: a monotonic maximum read for reporting.
        let before = self.0.fetch_max(total, Ordering::Relaxed);
        total.saturating_sub(before)
    }

    /// Steps taken so far.
    pub(crate) fn get(&self) -> u32 {
        // Relaxed: read for reporting.
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key client_golang computes for `seconds` (math.Frexp and a
    /// search among the schema's bounds, or the exponent for schema ≤ 0).
    fn golang_key(seconds: f64, schema: i8) -> i32 {
        let schema = i32::from(schema);
        if schema > 0 {
            let per = 1 << schema;
            // Bounds of the fraction in [0.5, 1): 2^(i/2^s - 1).
            let bounds: Vec<f64> = (0..per)
                .map(|i| 2f64.powf(f64::from(i) / f64::from(per) - 1.0))
                .collect();
            let (frac, exp) = frexp(seconds);
            bounds.partition_point(|&b| b < frac) as i32 + (exp - 1) * per
        } else {
            let (frac, exp) = frexp(seconds);
            let mut key = exp;
            if frac == 0.5 {
                key -= 1;
            }
            let offset = (1 << -schema) - 1;
            (key + offset) >> -schema
        }
    }

    fn frexp(x: f64) -> (f64, i32) {
        let exp = x.log2().floor() as i32 + 1;
        let mut frac = x / 2f64.powi(exp);
        let mut exp = exp;
        if frac >= 1.0 {
            frac /= 2.0;
            exp += 1;
        }
        if frac < 0.5 {
            frac *= 2.0;
            exp -= 1;
        }
        (frac, exp)
    }

    #[test]
    fn every_value_falls_into_the_bucket_client_golang_gives_it() {
        for schema in [-4, -1, 0, 1, 3, 5, 8] {
            let layout = Layout::new(schema);
            let mut values: Vec<u64> = vec![1, 2, 3, 999, 1_000, 1_000_000_000, 1_000_000_001];
            for j in 0..63 {
                values.extend([(1u64 << j) + 1, (3u64 << j) / 2]);
            }
            values.extend((0..2000).map(|i| 1 + i * 7_919_113));
            for nanos in values {
                let key = layout.first_key + layout.index_of(nanos) as i32;
                let seconds = nanos as f64 / 1e9;
                let expected = golang_key(seconds, schema);
                // Values within a rounding error of a bound may land on
                // either side in floating point; the integer layout is exact.
                if key != expected {
                    let upper = 2f64.powf(f64::from(expected) / 2f64.powi(i32::from(schema)));
                    let near = ((seconds - upper) / upper).abs() < 1e-12
                        || ((seconds - upper / 2f64.powf(1.0 / 2f64.powi(i32::from(schema))))
                            / upper)
                            .abs()
                            < 1e-12;
                    assert!(
                        near,
                        "schema {schema}: {nanos} ns in {key}, Go says {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_second_is_the_upper_bound_of_bucket_zero() {
        let layout = Layout::new(3);
        assert_eq!(layout.first_key + layout.index_of(1_000_000_000) as i32, 0);
        assert_eq!(layout.first_key + layout.index_of(1_000_000_001) as i32, 1);
        assert_eq!(layout.first_key + layout.index_of(500_000_000) as i32, -8);
        assert_eq!(layout.first_key + layout.index_of(500_000_001) as i32, -7);
        assert_eq!(*layout.upper.last().unwrap_or(&0), u64::MAX);
        assert_eq!(layout.len(), 64 * 8 + 1);
    }

    #[test]
    fn lowering_the_schema_merges_pairs_exactly_and_keeps_every_count() {
        let layout = Layout::new(3);
        let mut counts = Counts::new(&layout);
        let values: Vec<u64> = (1..=5000).map(|i| i * 1_234_567).collect();
        for &v in &values {
            counts.observe(&layout, v);
        }
        counts.observe(&layout, 0);
        let (full, none) = layout.native(counts.zero, &counts.buckets, 10_000);
        assert_eq!(none, 0);
        assert_eq!(full.schema, 3);
        let (capped, reductions) = layout.native(counts.zero, &counts.buckets, 8);
        assert!(reductions >= 1);
        assert_eq!(capped.schema, 3 - reductions as i32);
        assert_eq!(capped.zero_count, 1);
        // Expand spans and deltas back into (key, count).
        let expand = |n: &Native| -> Vec<(i32, u64)> {
            let mut out = Vec::new();
            let (mut key, mut count, mut d) = (0i32, 0i64, n.deltas.iter());
            for (i, &(offset, length)) in n.spans.iter().enumerate() {
                key = if i == 0 { offset } else { key + offset };
                for _ in 0..length {
                    count += d.next().copied().unwrap_or(0);
                    if count > 0 {
                        out.push((key, count as u64));
                    }
                    key += 1;
                }
            }
            out
        };
        let buckets = expand(&capped);
        assert!(buckets.len() <= 8, "{buckets:?}");
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5000);
        // Every value is in the bucket its key says, at the lower schema.
        for &v in &values {
            let key = golang_key(v as f64 / 1e9, capped.schema as i8);
            assert!(buckets.iter().any(|b| b.0 == key), "{v} in {key}");
        }
        let mut from_go = std::collections::BTreeMap::new();
        for &v in &values {
            *from_go
                .entry(golang_key(v as f64 / 1e9, capped.schema as i8))
                .or_insert(0u64) += 1;
        }
        assert_eq!(buckets, from_go.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn gaps_of_up_to_two_buckets_stay_inside_a_span() {
        let (spans, deltas) = spans(&[(-3, 2), (-2, 5), (1, 1), (10, 4)]);
        assert_eq!(spans, vec![(-3, 5), (8, 1)]);
        assert_eq!(deltas, vec![2, 3, -5, 0, 1, 3]);
    }

    #[test]
    fn each_reduction_is_counted_once() {
        let r = Reductions::default();
        assert_eq!(r.reach(2), 2);
        assert_eq!(r.reach(2), 0);
        assert_eq!(r.reach(1), 0);
        assert_eq!(r.reach(3), 1);
        assert_eq!(r.get(), 3);
    }
}
