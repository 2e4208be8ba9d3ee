//! Where a duration falls, found in one table lookup and a comparison or
//! two: the search the drain thread runs per observation.
//!
//! With native buckets on, a duration histogram counts into *cells*: the
//! native buckets of its schema cut again at its classic bounds. Every
//! cell lies inside one native bucket and one classic bucket, so both
//! sets of counts are sums of cell counts, exact, made when the histogram
//! is read. An observation costs one search and one increment, as the
//! classic buckets alone do; counting native buckets beside them is
//! nearly free on the drain thread.

use super::native::Layout;

/// How finely each power of two is cut for the start table.
const SUB_BITS: u32 = 6;

/// A search over increasing upper bounds (nanoseconds, the last `u64::MAX`).
///
/// Each power of two `2^j` is cut into `2^SUB_BITS` equal parts, and the
/// start table holds, per part, the slot of its smallest value; its rows
/// go by leading zeros, so that 0 (64 of them) has a row of its own. Where
/// no part spans more than three slots (native buckets up to schema 6, cut
/// at classic bounds no closer than a part's width), a value's slot is
/// found with two comparisons and no branch to mispredict; a binary search
/// cost the drain thread a sixth of its time in mispredicted branches.
/// Where some part spans more (finer schemas, bounds packed closely), every
/// search walks on from there. The table is 16.25 KiB, of which the few
/// parts an engine's durations fall into are read.
#[derive(Debug)]
pub(crate) struct Search {
    /// The bounds, then `u64::MAX` twice more, so that the two
    /// comparisons stay in bounds.
    upper: Box<[u64]>,
    start: Box<[u32; ROWS << SUB_BITS]>,
    /// Whether a part spans more than three slots, so that the search
    /// walks on after its two comparisons.
    walk: bool,
}

/// Rows of the start table: one per count of leading zeros, 0 to 64.
const ROWS: usize = 65;

impl Search {
    /// `upper`: increasing, ending with `u64::MAX`.
    pub(crate) fn new(mut upper: Vec<u64>) -> Search {
        if upper.last() != Some(&u64::MAX) {
            upper.push(u64::MAX);
        }
        let parts = 1u64 << SUB_BITS;
        // The smallest value of part `t` of `2^j`, `2^j + ceil(t * 2^j /
        // parts)`; the part after the last is past `u64::MAX`.
        let lowest = |j: u32, t: u64| -> u128 {
            if j >= 64 {
                return 1 << 64;
            }
            let power = 1u128 << j;
            power + (u128::from(t) * power).div_ceil(u128::from(parts))
        };
        let slot_of = |n: u64| upper.partition_point(|&u| u < n);
        let mut walk = false;
        let mut start = Box::new([0u32; ROWS << SUB_BITS]);
        for (row, entries) in start.chunks_mut(parts as usize).enumerate() {
            let Some(j) = 63u32.checked_sub(row as u32) else {
                // Leading zeros 64: the value 0 alone.
                entries.fill(u32::try_from(slot_of(0)).unwrap_or(u32::MAX));
                continue;
            };
            for (t, entry) in (0..parts).zip(entries.iter_mut()) {
                let first = u64::try_from(lowest(j, t)).unwrap_or(u64::MAX);
                let next = if t + 1 < parts {
                    lowest(j, t + 1)
                } else {
                    lowest(j + 1, 0)
                };
                let last = u64::try_from(next - 1).unwrap_or(u64::MAX).max(first);
                let slot = slot_of(first);
                walk |= slot_of(last) > slot + 2;
                *entry = u32::try_from(slot).unwrap_or(u32::MAX);
            }
        }
        upper.extend([u64::MAX; 2]);
        Search {
            upper: upper.into_boxed_slice(),
            start,
            walk,
        }
    }

    /// How many slots there are.
    pub(crate) fn len(&self) -> usize {
        self.upper.len() - 2
    }

    /// The slot of `nanos`: the first whose upper bound it does not
    /// exceed.
    #[inline(always)]
    pub(crate) fn slot_of(&self, nanos: u64) -> usize {
        let zeros = nanos.leading_zeros();
        // The SUB_BITS bits after the leading one (zeros past the last; 0
        // has none, and shifting it by 64 wraps to shifting it by 0).
        let part = ((nanos.wrapping_shl(zeros) << 1) >> (64 - SUB_BITS)) as usize;
        let start = self.start[((zeros as usize) << SUB_BITS) | part] as usize;
        // `upper` ends with two more u64::MAX, so the pair is always there.
        let (first, second) = match self.upper.get(start..start + 2) {
            Some(&[first, second]) => (first, second),
            _ => (u64::MAX, u64::MAX),
        };
        let mut i = start + usize::from(first < nanos) + usize::from(second < nanos);
        if self.walk {
            while self.upper[i] < nanos {
                i += 1;
            }
        }
        i
    }

    /// Whether a search walks past its two comparisons.
    #[cfg(test)]
    pub(crate) fn walks(&self) -> bool {
        self.walk
    }
}

/// The native bucket of the cell holding 0: the zero bucket.
const ZERO: u32 = u32::MAX;

/// The native buckets of one schema cut at one histogram's classic
/// bounds, shared by every series with those bounds.
#[derive(Debug)]
pub(crate) struct Cells {
    /// The classic bounds in nanoseconds it was built for.
    bounds: Box<[u64]>,
    search: Search,
    /// Per cell: its native bucket (an index of the layout) and its
    /// classic bucket.
    owner: Box<[(u32, u32)]>,
}

impl Cells {
    /// The cells of `layout` cut at `bounds` (classic upper bounds in
    /// nanoseconds, increasing).
    pub(crate) fn new(layout: &Layout, bounds: &[u64]) -> Cells {
        let native = layout.upper();
        // Cell 0 holds the value 0 alone: the native zero bucket.
        let mut upper: Vec<u64> = std::iter::once(0)
            .chain(native.iter().copied())
            .chain(bounds.iter().copied())
            .collect();
        upper.sort_unstable();
        upper.dedup();
        let mut below = 0;
        let owner = std::iter::once((ZERO, 0))
            .chain(upper[1..].iter().map(|&cell| {
                // The cell holds `below + 1 ..= cell`: no bound and no
                // native bucket boundary is inside it, so each of its
                // values is past the same classic bounds (those up to
                // `below`) and in the native bucket whose upper bound is
                // the first at or above `cell`.
                let classic = bounds.partition_point(|&b| b <= below);
                let bucket = native.partition_point(|&u| u < cell);
                below = cell;
                (
                    u32::try_from(bucket).unwrap_or(u32::MAX),
                    u32::try_from(classic).unwrap_or(u32::MAX),
                )
            }))
            .collect();
        Cells {
            bounds: bounds.into(),
            search: Search::new(upper),
            owner,
        }
    }

    /// Whether it was built for these classic bounds.
    pub(crate) fn serves(&self, bounds: &[u64]) -> bool {
        *self.bounds == *bounds
    }

    /// How many cells a series counts in.
    pub(crate) fn len(&self) -> usize {
        self.search.len()
    }

    /// The cell of `nanos`.
    #[inline(always)]
    pub(crate) fn cell_of(&self, nanos: u64) -> usize {
        self.search.slot_of(nanos)
    }

    /// The classic bucket of every value of `cell`.
    #[inline]
    pub(crate) fn classic_of(&self, cell: usize) -> usize {
        self.owner
            .get(cell)
            .map_or(self.bounds.len(), |o| o.1 as usize)
    }

    /// Adds each cell's count to its classic bucket (`classic`, one per
    /// bound plus `+Inf`) and, when given, to its native bucket (`native`,
    /// one per bucket of the layout). Returns the native zero bucket's
    /// count: the observations of 0.
    pub(crate) fn fold(
        &self,
        counts: &[u64],
        classic: &mut [u64],
        mut native: Option<&mut [u64]>,
    ) -> u64 {
        let mut zero = 0;
        for (&count, &(bucket, bound)) in counts.iter().zip(self.owner.iter()) {
            if count == 0 {
                continue;
            }
            if let Some(c) = classic.get_mut(bound as usize) {
                *c += count;
            }
            if bucket == ZERO {
                zero += count;
            } else if let Some(n) = native
                .as_deref_mut()
                .and_then(|n| n.get_mut(bucket as usize))
            {
                *n += count;
            }
        }
        zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::config::{DEFAULT_DURATION_BUCKETS, DEFAULT_LATENCY_BUCKETS};

    fn nanos(bounds: &[f64]) -> Vec<u64> {
        bounds.iter().map(|&s| (s * 1e9).round() as u64).collect()
    }

    /// Every bound and its neighbours, every power of two and its
    /// neighbours, and a spread of others: where a search is off by one.
    fn values(bounds: &[u64]) -> Vec<u64> {
        let mut values = vec![0, 1, 2, 3, u64::MAX - 1, u64::MAX];
        for &b in bounds {
            values.extend([b.saturating_sub(1).max(1), b, b.saturating_add(1)]);
        }
        for k in 1..64 {
            values.extend([(1u64 << k) - 1, 1 << k, (1u64 << k) + 1]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x >> (x % 64)).max(1));
        }
        values
    }

    #[test]
    fn each_value_lies_in_the_cell_of_its_native_bucket_and_of_its_classic_bucket() {
        let fine = nanos(&[
            1e-9, 2e-9, 2.5e-6, 2.6e-6, 5e-6, 1e-5, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]);
        let bound_sets = [
            nanos(DEFAULT_DURATION_BUCKETS),
            nanos(DEFAULT_LATENCY_BUCKETS),
            fine,
            // Bounds that round to 0 ns and to the same nanosecond.
            nanos(&[1e-10, 4e-10, 1e-9, 1.2e-9, 3e-9, 1.0]),
            // A bound at the clock's end.
            vec![5, 1_000, u64::MAX],
        ];
        for schema in [-4, 0, 3, 5, 8] {
            let layout = Layout::new(schema);
            for bounds in &bound_sets {
                let cells = Cells::new(&layout, bounds);
                for &v in &values(bounds) {
                    let cell = cells.cell_of(v);
                    let native = match v {
                        0 => ZERO,
                        v => layout.upper().partition_point(|&u| u < v) as u32,
                    };
                    let classic = bounds.partition_point(|&b| b < v);
                    assert_eq!(cells.owner[cell].0, native, "schema {schema}, {v} ns");
                    assert_eq!(cells.classic_of(cell), classic, "schema {schema}, {v} ns");
                }
            }
        }
    }

    #[test]
    fn two_comparisons_find_the_cell_at_the_default_schema_and_bounds() {
        let layout = Layout::new(crate::metrics::DEFAULT_NATIVE_SCHEMA);
        for bounds in [DEFAULT_DURATION_BUCKETS, DEFAULT_LATENCY_BUCKETS] {
            assert!(!Cells::new(&layout, &nanos(bounds)).search.walks());
        }
        assert!(Search::new(Layout::new(8).upper().to_vec()).walks());
    }

    #[test]
    fn folding_the_cells_gives_each_native_and_classic_bucket_its_count() {
        let layout = Layout::new(3);
        let bounds = nanos(DEFAULT_DURATION_BUCKETS);
        let cells = Cells::new(&layout, &bounds);
        let mut counts = vec![0u64; cells.len()];
        let mut classic_expected = vec![0u64; bounds.len() + 1];
        let mut native_expected = vec![0u64; layout.len()];
        let mut zeros = 0;
        for &v in &values(&bounds).repeat(2) {
            counts[cells.cell_of(v)] += 1;
            classic_expected[bounds.partition_point(|&b| b < v)] += 1;
            match v {
                0 => zeros += 1,
                v => native_expected[layout.upper().partition_point(|&u| u < v)] += 1,
            }
        }
        let mut classic = vec![0u64; bounds.len() + 1];
        let mut native = vec![0u64; layout.len()];
        assert_eq!(cells.fold(&counts, &mut classic, Some(&mut native)), zeros);
        assert_eq!(zeros, 2);
        assert_eq!(classic, classic_expected);
        assert_eq!(native, native_expected);
    }
}
