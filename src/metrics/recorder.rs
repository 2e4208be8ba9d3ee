//! A [`metrics::Recorder`](::metrics::Recorder) (feature `metrics`): the
//! `metrics` crate's `counter!`, `gauge!` and `histogram!`, from the engine
//! or any library in it, land on our `/metrics` beside the built-in
//! families, with the same caps, redaction and exemplars as
//! [`Metrics::counter`] and its siblings; no async runtime, no upkeep
//! thread.
//!
//! The macros ask the recorder for a handle on every call unless the
//! caller keeps it, so registration is cached: a read lock and one hash
//! lookup on the `Key`'s precomputed hash. Names the `metrics` crate
//! allows but Prometheus does not (`http.requests`) have every other
//! character turned into `_`, as `metrics-exporter-prometheus` does; what
//! is still invalid, clashes or mismatches gets a no-op handle and is
//! counted in `custom_metrics_rejected_total`, since a macro cannot fail.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use ::metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use parking_lot::{Mutex, RwLock};

use super::Metrics;
use super::custom::handles::{CounterCell, GaugeCell, HistogramCell};
use super::custom::{Cell, Origin, Request};
use crate::exposition::writer::Kind;

/// Descriptions kept at most (they come from code, not data; the bound
/// only guards against a caller making them up at run time).
const MAX_DESCRIPTIONS: usize = 10_000;

/// A recorder writing into a [`Metrics`]; from [`Metrics::recorder`] or
/// installed for the whole process by
/// [`Observability::install_metrics_recorder`](crate::Observability::install_metrics_recorder).
/// Cheap to clone: clones share their caches.
///
/// ```
/// use agentgate_obs::metrics::Metrics;
/// let metrics = Metrics::new("agentgate", Default::default())?;
/// let recorder = metrics.recorder();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("tool_calls_total", "tool" => "grep").increment(1);
/// });
/// assert!(metrics.render().contains("agentgate_tool_calls_total{tool=\"grep\"} 1\n"));
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub struct MetricsRecorder {
    metrics: Metrics,
    caches: Arc<Caches>,
}

/// `Key` hashes itself by writing its precomputed hash once; keep it.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; a plain fold keeps the hasher correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByKey<T> = RwLock<HashMap<Key, Arc<T>, BuildHasherDefault<KeyHasher>>>;

#[derive(Default)]
struct Caches {
    counters: ByKey<CounterCell>,
    gauges: ByKey<GaugeCell>,
    histograms: ByKey<HistogramCell>,
    descriptions: Mutex<HashMap<(u8, String), String>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A `metrics` crate recorder writing into these metrics, for
    /// [`metrics::with_local_recorder`] or
    /// [`metrics::set_global_recorder`].
    /// See [`MetricsRecorder`].
    pub fn recorder(&self) -> MetricsRecorder {
        MetricsRecorder {
            metrics: self.clone(),
            caches: Arc::default(),
        }
    }
}

/// `name` with every character Prometheus does not allow turned into `_`
/// (and a leading digit behind one).
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn kind_tag(kind: Kind) -> u8 {
    match kind {
        Kind::Counter => 0,
        Kind::Gauge => 1,
        Kind::Histogram => 2,
    }
}

impl MetricsRecorder {
    /// Registers `key` in our registry; `None` when refused (counted there).
    fn register(&self, kind: Kind, key: &Key) -> Option<(Cell, bool)> {
        let name = sanitize(key.name());
        let labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (sanitize(l.key()), l.value().to_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let help = self
            .caches
            .descriptions
            .lock()
            .get(&(kind_tag(kind), name.clone()))
            .cloned();
        let request = Request {
            kind,
            name: &name,
            help: help.as_deref(),
            labels: &pairs,
            buckets: None,
        };
        let registered = self
            .metrics
            .custom()
            .register(&request, Origin::Recorder)
            .ok()?;
        Some((registered.cell, registered.overflowed))
    }

    /// Caches `cell` under `key`, unless its labels overflowed (every new
    /// key would then add an entry) or the cache holds as many keys as the
    /// registry holds series (keys that differ only in what redaction
    /// removed share a series).
    fn remember<T>(&self, cache: &ByKey<T>, key: &Key, cell: &Arc<T>, overflowed: bool) {
        if overflowed {
            return;
        }
        let mut cache = cache.write();
        if cache.len() < self.metrics.custom().max_series() {
            cache.insert(key.clone(), cell.clone());
        }
    }

    fn describe(&self, kind: Kind, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name = sanitize(key.as_str());
        let help = match unit {
            Some(unit) => format!("{description} (unit: {})", unit.as_str()),
            None => description.to_string(),
        };
        {
            let mut descriptions = self.caches.descriptions.lock();
            if descriptions.len() < MAX_DESCRIPTIONS {
                descriptions.insert((kind_tag(kind), name.clone()), help.clone());
            }
        }
        self.metrics.custom().describe(kind, &name, &help);
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Counter, key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Gauge, key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Histogram, key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Counter {
        if let Some(cell) = self.caches.counters.read().get(key) {
            return ::metrics::Counter::from_arc(cell.clone());
        }
        match self.register(Kind::Counter, key) {
            Some((Cell::Counter(cell), overflowed)) => {
                self.remember(&self.caches.counters, key, &cell, overflowed);
                ::metrics::Counter::from_arc(cell)
            }
            _ => ::metrics::Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Gauge {
        if let Some(cell) = self.caches.gauges.read().get(key) {
            return ::metrics::Gauge::from_arc(cell.clone());
        }
        match self.register(Kind::Gauge, key) {
            Some((Cell::Gauge(cell), overflowed)) => {
                self.remember(&self.caches.gauges, key, &cell, overflowed);
                ::metrics::Gauge::from_arc(cell)
            }
            _ => ::metrics::Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Histogram {
        if let Some(cell) = self.caches.histograms.read().get(key) {
            return ::metrics::Histogram::from_arc(cell.clone());
        }
        match self.register(Kind::Histogram, key) {
            Some((Cell::Histogram(cell), overflowed)) => {
                self.remember(&self.caches.histograms, key, &cell, overflowed);
                ::metrics::Histogram::from_arc(cell)
            }
            _ => ::metrics::Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;

    #[test]
    fn names_the_metrics_crate_allows_are_made_prometheus_names() {
        assert_eq!(sanitize("http.requests-total"), "http_requests_total");
        assert_eq!(sanitize("9lives"), "_9lives");
    }

    #[test]
    fn a_name_clashing_with_a_built_in_family_gets_a_no_op_handle_and_is_counted() {
        let metrics = Metrics::new("agentgate", MetricsConfig::default()).expect("metrics");
        let recorder = metrics.recorder();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::counter!("runs_started_total").increment(5);
        });
        let text = metrics.render_as(crate::exposition::Format::Prometheus);
        assert!(text.contains("agentgate_runs_started_total 0\n"), "{text}");
        assert!(text.contains("agentgate_custom_metrics_rejected_total{reason=\"clash\"} 1\n"));
    }
}
