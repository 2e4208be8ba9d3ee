//! Gate-name label values: user strings, so their number is capped.
//!
//! The first `limit` distinct names get their own series; every later new
//! name is counted under the value `other` (a gate actually named `other`
//! shares that series). Memory is therefore bounded by the limit whatever
//! the engine sends, with no upkeep task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::exposition::escape_label_value;

/// The label value that stands for every name past the limit.
pub(crate) const OTHER: &str = "other";

/// One gate's counters.
#[derive(Debug)]
pub(crate) struct GateSeries {
    pub(crate) name: Box<str>,
    /// The name escaped once, at registration, so scrapes only copy it.
    pub(crate) escaped: Box<str>,
    /// Checks that failed (`[0]`) and passed (`[1]`).
    pub(crate) checks: [AtomicU64; 2],
}

impl GateSeries {
    fn new(name: &str) -> Self {
        let mut escaped = String::new();
        escape_label_value(name, &mut escaped);
        GateSeries {
            name: name.into(),
            escaped: escaped.into(),
            checks: Default::default(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct GateLabels {
    limit: usize,
    /// Writers' lookup; only writers lock it.
    by_name: Mutex<HashMap<Box<str>, Arc<GateSeries>>>,
    /// Readers' view, sorted by name; replaced whole when a gate is added,
    /// so a scrape never takes a lock a writer needs.
    sorted: ArcSwap<Vec<Arc<GateSeries>>>,
}

impl GateLabels {
    pub(crate) fn new(limit: usize) -> Self {
        GateLabels {
            limit,
            by_name: Mutex::new(HashMap::new()),
            sorted: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Counts one check of `gate`.
    pub(crate) fn record(&self, gate: &str, passed: bool) {
        let series = {
            let mut by_name = self.by_name.lock();
            match by_name.get(gate) {
                Some(series) => series.clone(),
                None => self.add(&mut by_name, gate),
            }
        };
        // Relaxed: a count, read for reporting.
        series.checks[usize::from(passed)].fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn add(&self, by_name: &mut HashMap<Box<str>, Arc<GateSeries>>, gate: &str) -> Arc<GateSeries> {
        // `other` itself does not count towards the limit.
        let named = by_name.len() - usize::from(by_name.contains_key(OTHER));
        let name = if named < self.limit { gate } else { OTHER };
        if let Some(existing) = by_name.get(name) {
            return existing.clone();
        }
        let series = Arc::new(GateSeries::new(name));
        by_name.insert(name.into(), series.clone());
        let mut sorted = Vec::clone(&self.sorted.load());
        let at = sorted.partition_point(|s| *s.name < *name);
        sorted.insert(at, series.clone());
        self.sorted.store(Arc::new(sorted));
        series
    }

    /// Every series, sorted by gate name.
    pub(crate) fn sorted(&self) -> Arc<Vec<Arc<GateSeries>>> {
        self.sorted.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(labels: &GateLabels) -> Vec<(String, u64, u64)> {
        labels
            .sorted()
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.checks[0].load(Ordering::Relaxed),
                    s.checks[1].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    #[test]
    fn names_past_the_limit_are_counted_under_other() {
        let labels = GateLabels::new(2);
        labels.record("lint", true);
        labels.record("build", false);
        labels.record("tests", true);
        labels.record("fuzz", true);
        labels.record("lint", false);
        assert_eq!(
            counts(&labels),
            vec![
                ("build".into(), 1, 0),
                ("lint".into(), 1, 1),
                ("other".into(), 0, 2)
            ]
        );
    }

    #[test]
    fn a_gate_named_other_within_the_limit_shares_the_overflow_series() {
        let labels = GateLabels::new(1);
        labels.record("other", true);
        labels.record("x", true);
        labels.record("y", false);
        assert_eq!(
            counts(&labels),
            vec![("other".into(), 1, 1), ("x".into(), 0, 1)]
        );
    }
}
