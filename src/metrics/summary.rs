//! `/api/summary`: quantiles straight from the hdrhistograms.

use serde::Serialize;

use super::Metrics;
use super::histogram::TimeHistogram;
use super::render::phases_sorted;
use crate::event::Phase;

/// One histogram series' statistics, in seconds. Count and sum are exact;
/// quantiles and max come from the hdrhistogram (3 significant digits).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramSummary {
    /// The metric name, e.g. `agentgate_phase_duration_seconds`.
    pub name: String,
    /// The series' labels, e.g. `{"phase": "build"}`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest observation.
    pub max: f64,
    /// The Prometheus buckets, cumulative as on `/metrics`: each bound
    /// (`le`, as `/metrics` writes it, ending with `+Inf`) with the number
    /// of observations at or under it.
    pub buckets: Vec<Bucket>,
}

/// One cumulative bucket of a histogram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// The upper bound, in seconds, as the exposition writes it (`"0.5"`,
    /// `"+Inf"`).
    pub le: String,
    /// Observations at or under `le`.
    pub count: u64,
}

/// Every histogram series' statistics, as `/api/summary` returns them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// One entry per series, sorted by name and labels.
    pub histograms: Vec<HistogramSummary>,
}

impl Summary {
    /// The `phase_duration_seconds` series of `phase`.
    pub fn phase(&self, phase: Phase) -> Option<&HistogramSummary> {
        self.histograms.iter().find(|h| {
            h.name.ends_with("_phase_duration_seconds")
                && h.labels.get("phase").map(String::as_str) == Some(phase.as_str())
        })
    }
}

pub(super) fn summary(metrics: &Metrics) -> Summary {
    let m = &*metrics.inner;
    let n = &m.names;
    let mut series: Vec<(&str, Option<&str>, &TimeHistogram)> = vec![
        (&n.queue_latency, None, &m.queue_latency),
        (&n.iteration_duration, None, &m.iteration_duration),
        (&n.run_duration, None, &m.run_duration),
    ];
    for phase in phases_sorted() {
        series.push((
            &n.phase_duration,
            Some(phase.as_str()),
            &m.phase_duration[phase.index()],
        ));
    }
    series.sort_by_key(|(name, phase, _)| (*name, *phase));
    let histograms = series
        .into_iter()
        .map(|(name, phase, h)| {
            let q = h.quantiles();
            let read = h.read(false);
            let buckets = h
                .le()
                .iter()
                .zip(&read.cumulative)
                .map(|(le, &count)| Bucket {
                    le: le.clone(),
                    count,
                })
                .collect();
            HistogramSummary {
                name: name.to_owned(),
                labels: phase
                    .map(|p| ("phase".to_owned(), p.to_owned()))
                    .into_iter()
                    .collect(),
                count: q.count,
                sum: q.sum_seconds,
                p50: q.p50,
                p90: q.p90,
                p99: q.p99,
                max: q.max,
                buckets,
            }
        })
        .collect();
    Summary { histograms }
}
