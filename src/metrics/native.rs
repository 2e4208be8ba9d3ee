//! Native (sparse exponential) histogram buckets for the duration
//! histograms, counted exactly on the drain thread beside the hdrhistogram.
//!
//! Bucket `k` of schema `s` holds the values in `(2^((k-1)/2^s), 2^(k/2^s)]`
//! seconds, as client_golang and Prometheus define them. Observations are
//! integer nanoseconds, so a [`Layout`] turns each bucket's upper bound
//! into the largest nanosecond count inside it, once, with no floating
//! point on the drain thread. The layout covers every `u64` of nanoseconds
//! at the configured schema (`64 * 2^s` buckets at schema `s`), so
//! counting never allocates. A histogram counts into the layout's buckets
//! cut at its classic bounds (`cells.rs`), from which its native and its
//! classic buckets are both summed when read.
//!
//! The per-series bucket limit is applied when the buckets are read: while
//! more buckets are populated than allowed, the schema is lowered by one,
//! merging each pair of neighbours exactly (bucket `k` goes to `ceil(k/2)`),
//! as client_golang does when it observes. Counts only grow, so a series'
//! schema only ever goes down; each step down is counted once
//! (`native_schema_reductions_total`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

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
    /// Per bucket, the largest nanosecond count inside it, increasing (the
    /// last is `u64::MAX`). The drain thread searches the cells cut from
    /// them ([`Cells`](super::cells::Cells)), never these.
    upper: Box<[u64]>,
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
        Layout {
            schema,
            first_key,
            upper: upper.into_boxed_slice(),
        }
    }

    /// How many buckets a series keeps.
    pub(crate) fn len(&self) -> usize {
        self.upper.len()
    }

    /// Per bucket, the largest nanosecond count inside it.
    pub(crate) fn upper(&self) -> &[u64] {
        &self.upper
    }

    /// The bucket (an index, not a key) of `nanos` ≥ 1.
    #[cfg(test)]
    pub(crate) fn index_of(&self, nanos: u64) -> usize {
        self.upper.partition_point(|&u| u < nanos)
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
                ..Native::default()
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
    use crate::metrics::cells::Search;

    /// A series' native counts as a histogram's cells add up to them.
    struct Counts {
        zero: u64,
        buckets: Box<[u64]>,
    }

    impl Counts {
        fn new(len: usize) -> Self {
            Counts {
                zero: 0,
                buckets: vec![0; len].into_boxed_slice(),
            }
        }

        fn observe(&mut self, layout: &Layout, nanos: u64) {
            if nanos == 0 {
                self.zero += 1;
            } else {
                self.buckets[layout.index_of(nanos)] += 1;
            }
        }
    }

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
        assert_eq!(*layout.upper().last().unwrap_or(&0), u64::MAX);
        assert_eq!(layout.len(), 64 * 8 + 1);
    }

    #[test]
    fn lowering_the_schema_merges_pairs_exactly_and_keeps_every_count() {
        let layout = Layout::new(3);
        let mut counts = Counts::new(layout.len());
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
    fn the_search_from_the_top_bits_finds_what_a_full_search_finds() {
        for schema in [-4, 0, 3, 6, 7, 8] {
            let layout = Layout::new(schema);
            let search = Search::new(layout.upper().to_vec());
            // Two comparisons from the start bucket up to schema 6.
            assert_eq!(search.walks(), schema > 6, "schema {schema}");
            let mut values = vec![1u64, 2, 3, u64::MAX, u64::MAX - 1];
            for &u in layout.upper().iter().take(layout.len() - 1) {
                values.extend([u, u + 1, u.saturating_sub(1).max(1)]);
            }
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                values.push((x >> (x % 64)).max(1));
            }
            for n in values {
                let expected = layout.upper().partition_point(|&u| u < n);
                assert_eq!(search.slot_of(n), expected, "schema {schema}, {n} ns");
            }
        }
    }

    #[test]
    fn the_engines_histograms_count_any_value_in_client_golangs_bucket() {
        let native = AtomicNative::new(3, fraction_bounds(3));
        let values = [
            0.0,
            -0.0,
            1e-300,
            5e-324,
            1.0,
            0.5,
            0.75,
            3.0,
            -3.0,
            -0.001,
            1e20,
            -1e30,
            f64::INFINITY,
            2.5e-7,
            2.5e-7,
            1e15,
        ];
        for v in values {
            native.record_n(v, 1);
        }
        native.record_n(7.0, 5);
        let (n, reductions) = native.native(1_000);
        assert_eq!(reductions, 0);
        // 0, -0, 1e-300 and 5e-324 are within the zero threshold.
        assert_eq!(n.zero_count, 4);
        let expand = |spans: &[(i32, u32)], deltas: &[i64]| -> Vec<(i64, u64)> {
            let (mut out, mut key, mut count, mut d) = (Vec::new(), 0i64, 0i64, deltas.iter());
            for (i, &(offset, length)) in spans.iter().enumerate() {
                key = if i == 0 {
                    i64::from(offset)
                } else {
                    key + i64::from(offset)
                };
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
        let bounds = fraction_bounds(3);
        let mut expected_pos = std::collections::BTreeMap::new();
        let mut expected_neg = std::collections::BTreeMap::new();
        for v in values.into_iter().chain([7.0; 5]) {
            if v.abs() <= NATIVE_ZERO_THRESHOLD {
                continue;
            }
            let key = if v.is_finite() {
                key_of(v.abs(), 3, &bounds)
            } else {
                infinite_key(3, &bounds)
            };
            assert_eq!(
                key,
                if v.is_finite() {
                    i64::from(golang_key(v.abs(), 3))
                } else {
                    key
                }
            );
            let map = if v < 0.0 {
                &mut expected_neg
            } else {
                &mut expected_pos
            };
            *map.entry(key).or_insert(0u64) += 1;
        }
        assert_eq!(
            expand(&n.spans, &n.deltas),
            expected_pos.into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            expand(&n.negative_spans, &n.negative_deltas),
            expected_neg.into_iter().collect::<Vec<_>>()
        );
        // From 2.5e-7 to past f64::MAX is more than three buckets even at
        // the lowest schema: lowered to it, nothing lost.
        let (capped, reductions) = native.native(3);
        assert_eq!(capped.schema, i32::from(MIN_NATIVE_SCHEMA));
        assert_eq!(reductions, 7);
        let kept: u64 = expand(&capped.spans, &capped.deltas)
            .iter()
            .chain(&expand(&capped.negative_spans, &capped.negative_deltas))
            .map(|b| b.1)
            .sum();
        assert_eq!(kept + capped.zero_count, values.len() as u64 + 5);
        // A cap the values fit within is met.
        let (fits, _) = native.native(12);
        let populated = expand(&fits.spans, &fits.deltas).len()
            + expand(&fits.negative_spans, &fits.negative_deltas).len();
        assert!(
            populated <= 12 && fits.schema > i32::from(MIN_NATIVE_SCHEMA),
            "{fits:?}"
        );
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

/// Native buckets of the engine's own histograms, recorded on the engine's
/// threads: lock-free, exact, for any `f64` (NaN aside, which the caller
/// drops; an infinite value counts in the bucket past `f64::MAX`).
///
/// Values are bucketed as client_golang does (`frexp`, then a search among
/// the schema's `2^schema` bounds of the fraction). The counters of one
/// octave (`2^schema` buckets) are allocated when a value first falls into
/// it, for the octaves from `2^-48` to `2^48` (a table of 96 slots per
/// series, allocated at its first observation); a value outside them (or
/// infinite) is counted under a lock in a map, exactly, on a path no
/// realistic observation takes. Negative values have the same structure,
/// allocated at the first one.
#[derive(Debug)]
pub(crate) struct AtomicNative {
    schema: i8,
    /// For schema > 0: the fraction's upper bounds, `2^(i/2^schema - 1)`.
    bounds: Arc<[f64]>,
    zero: AtomicU64,
    positive: OnceLock<Side>,
    negative: OnceLock<Side>,
    /// Keys outside the table, by sign (`false`: positive).
    rare: Mutex<BTreeMap<(bool, i64), u64>>,
}

/// Octave slots of one sign.
#[derive(Debug)]
struct Side {
    octaves: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

/// The octaves with slots: `2^FIRST_OCTAVE` to `2^(FIRST_OCTAVE + OCTAVES)`.
const FIRST_OCTAVE: i64 = -48;
const OCTAVES: usize = 96;

impl Side {
    fn new() -> Side {
        Side {
            octaves: (0..OCTAVES).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The schema's fraction bounds (client_golang's `nativeHistogramBounds`).
pub(crate) fn fraction_bounds(schema: i8) -> Arc<[f64]> {
    if schema <= 0 {
        return Arc::from([]);
    }
    let per = 1u32 << schema;
    (0..per)
        .map(|i| 2f64.powf(f64::from(i) / f64::from(per) - 1.0))
        .collect()
}

/// client_golang's bucket key of `v` > 0 (finite) at `schema`.
pub(crate) fn key_of(v: f64, schema: i8, bounds: &[f64]) -> i64 {
    let (frac, exp) = frexp(v);
    if schema > 0 {
        bounds.partition_point(|&b| b < frac) as i64 + (i64::from(exp) - 1) * (1i64 << schema)
    } else {
        let mut key = i64::from(exp);
        if frac == 0.5 {
            key -= 1;
        }
        let offset = (1i64 << -schema) - 1;
        (key + offset) >> -schema
    }
}

/// The bucket of an infinite value: the one above the largest finite
/// value's, whose upper bound is past `f64::MAX`. (client_golang uses
/// `i32::MAX`, which no span offset from the finite buckets can reach.)
pub(crate) fn infinite_key(schema: i8, bounds: &[f64]) -> i64 {
    key_of(f64::MAX, schema, bounds) + 1
}

/// `v = frac * 2^exp` with `frac` in `[0.5, 1)`, for finite `v` > 0.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (frac, exp) = frexp(v * 2f64.powi(64));
        return (frac, exp - 64);
    }
    let frac = f64::from_bits((bits & !(0x7FF << 52)) | (1022 << 52));
    (frac, biased - 1022)
}

impl AtomicNative {
    pub(crate) fn new(schema: i8, bounds: Arc<[f64]>) -> Self {
        AtomicNative {
            schema: schema.clamp(MIN_NATIVE_SCHEMA, MAX_NATIVE_SCHEMA),
            bounds,
            zero: AtomicU64::new(0),
            positive: OnceLock::new(),
            negative: OnceLock::new(),
            rare: Mutex::new(BTreeMap::new()),
        }
    }

    /// Buckets per slot: an octave above schema 0, one bucket below.
    fn per_slot(&self) -> i64 {
        1i64 << self.schema.max(0)
    }

    /// Slot index and offset of `key`, if the table has it.
    fn slot_of(&self, key: i64) -> Option<(usize, usize)> {
        let per = self.per_slot();
        let first = if self.schema > 0 {
            FIRST_OCTAVE
        } else {
            FIRST_OCTAVE >> -self.schema
        };
        let slot = key.div_euclid(per) - first;
        let slots = if self.schema > 0 {
            OCTAVES as i64
        } else {
            (OCTAVES as i64) >> -self.schema
        };
        (0..slots)
            .contains(&slot)
            .then(|| (slot as usize, key.rem_euclid(per) as usize))
    }

    /// Counts `n` observations of `v` (not NaN).
    #[inline]
    pub(crate) fn record_n(&self, v: f64, n: u64) {
        let magnitude = v.abs();
        if magnitude <= NATIVE_ZERO_THRESHOLD {
            // Relaxed: counts read for reporting (also below).
            self.zero.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let negative = v < 0.0;
        let key = if magnitude.is_finite() {
            key_of(magnitude, self.schema, &self.bounds)
        } else {
            infinite_key(self.schema, &self.bounds)
        };
        let side = if negative {
            &self.negative
        } else {
            &self.positive
        };
        match self.slot_of(key) {
            Some((slot, offset)) => {
                let per = self.per_slot() as usize;
                let side = side.get_or_init(Side::new);
                let counts = side.octaves[slot]
                    .get_or_init(|| (0..per).map(|_| AtomicU64::new(0)).collect());
                counts[offset].fetch_add(n, Ordering::Relaxed);
            }
            None => *self.rare.lock().entry((negative, key)).or_insert(0) += n,
        }
    }

    /// Populated buckets of one sign, sorted by key.
    fn populated(&self, negative: bool) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        let side = if negative {
            &self.negative
        } else {
            &self.positive
        };
        let per = self.per_slot();
        let first = if self.schema > 0 {
            FIRST_OCTAVE
        } else {
            FIRST_OCTAVE >> -self.schema
        };
        if let Some(side) = side.get() {
            for (slot, counts) in side.octaves.iter().enumerate() {
                let Some(counts) = counts.get() else { continue };
                for (offset, c) in counts.iter().enumerate() {
                    // Relaxed: counts read for reporting.
                    let c = c.load(Ordering::Relaxed);
                    if c > 0 {
                        out.push(((first + slot as i64) * per + offset as i64, c));
                    }
                }
            }
        }
        for (&(sign, key), &c) in self.rare.lock().iter() {
            if sign == negative {
                out.push((key, c));
            }
        }
        out.sort_unstable();
        out
    }

    /// The buckets, lowered to at most `max_buckets` populated ones (both
    /// signs together), and how many times the schema was lowered.
    pub(crate) fn native(&self, max_buckets: u32) -> (Native, u32) {
        let mut positive = self.populated(false);
        let mut negative = self.populated(true);
        let mut schema = self.schema;
        let mut reductions = 0;
        while positive.len() + negative.len() > max_buckets.max(1) as usize
            && schema > MIN_NATIVE_SCHEMA
        {
            positive = halve64(&positive);
            negative = halve64(&negative);
            schema -= 1;
            reductions += 1;
        }
        let narrow = |v: &[(i64, u64)]| -> Vec<(i32, u64)> {
            v.iter()
                .map(|&(k, c)| (k.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32, c))
                .collect()
        };
        let (spans, deltas) = spans(&narrow(&positive));
        let (negative_spans, negative_deltas) = spans_of(&narrow(&negative));
        (
            Native {
                schema: i32::from(schema),
                zero_threshold: NATIVE_ZERO_THRESHOLD,
                // Relaxed: a count read for reporting.
                zero_count: self.zero.load(Ordering::Relaxed),
                spans,
                deltas,
                negative_spans,
                negative_deltas,
            },
            reductions,
        )
    }
}

fn spans_of(populated: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    spans(populated)
}

/// [`halve`] over the keys of [`AtomicNative`].
fn halve64(populated: &[(i64, u64)]) -> Vec<(i64, u64)> {
    let mut out: Vec<(i64, u64)> = Vec::with_capacity(populated.len() / 2 + 1);
    for &(k, c) in populated {
        let j = (k + 1) >> 1;
        match out.last_mut() {
            Some((last, count)) if *last == j => *count += c,
            _ => out.push((j, c)),
        }
    }
    out
}
