//! Families registered by label *names*, whose series are picked by label
//! values later: `metrics.counter_vec(name, help, &["tool"])?.with(&["grep"])?`.
//!
//! The family (with its `# HELP` and `# TYPE`) exists from the start, and
//! a mistake in its name or label names surfaces once, at registration.
//! [`with`](CounterVec::with) is the registration path (a lock and a
//! lookup): keep the handle it gives when the values repeat.

use std::sync::Arc;

use super::handles::{Counter, Gauge, Histogram};
use super::{Cell, MetricError, Request};
use crate::exposition::writer::Kind;
use crate::metrics::Metrics;

/// What a vector of any type keeps.
#[derive(Clone, Debug)]
struct Spec {
    metrics: Metrics,
    kind: Kind,
    name: Arc<str>,
    help: Arc<str>,
    label_names: Arc<[Box<str>]>,
    buckets: Option<Arc<[f64]>>,
}

impl Spec {
    fn new(
        metrics: &Metrics,
        kind: Kind,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: Option<&[f64]>,
    ) -> Result<Spec, MetricError> {
        let labels: Vec<(&str, &str)> = label_names.iter().map(|&n| (n, "")).collect();
        metrics.custom().register_family(&Request {
            kind,
            name,
            help: Some(help),
            labels: &labels,
            buckets,
        })?;
        Ok(Spec {
            metrics: metrics.clone(),
            kind,
            name: name.into(),
            help: help.into(),
            label_names: label_names.iter().map(|&n| n.into()).collect(),
            buckets: buckets.map(Arc::from),
        })
    }

    fn with(&self, values: &[&str]) -> Result<Cell, MetricError> {
        if values.len() != self.label_names.len() {
            return Err(MetricError::LabelCount {
                name: self.metrics.custom().full_name(self.kind, &self.name),
                expected: self.label_names.len(),
                got: values.len(),
            });
        }
        let labels: Vec<(&str, &str)> = self
            .label_names
            .iter()
            .map(|n| &**n)
            .zip(values.iter().copied())
            .collect();
        self.metrics.register(
            self.kind,
            &self.name,
            &self.help,
            &labels,
            self.buckets.as_deref(),
        )
    }
}

/// Counters of one family by label values, from [`Metrics::counter_vec`].
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// let calls = metrics.counter_vec("tool_calls_total", "Tool calls, by tool.", &["tool"])?;
/// calls.with(&["grep"])?.increment(1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CounterVec {
    spec: Spec,
}

/// Gauges of one family by label values, from [`Metrics::gauge_vec`].
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// let open = metrics.gauge_vec("open_sandboxes", "Sandboxes open, by image.", &["image"])?;
/// open.with(&["rust:1.85"])?.set(2.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct GaugeVec {
    spec: Spec,
}

/// Histograms of one family by label values, from [`Metrics::histogram_vec`].
///
/// ```
/// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
/// let requests = metrics.histogram_vec("model_request_seconds", "Model requests.", &["model"])?;
/// requests.with(&["m1"])?.record(0.42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct HistogramVec {
    spec: Spec,
}

impl CounterVec {
    /// The counter of these label values, in the order of the label names
    /// (capped like [`Metrics::counter`]'s).
    pub fn with(&self, values: &[&str]) -> Result<Counter, MetricError> {
        match self.spec.with(values)? {
            Cell::Counter(cell) => Ok(Counter { cell }),
            _ => unreachable!("a counter family holds counter cells"),
        }
    }
}

impl GaugeVec {
    /// The gauge of these label values, in the order of the label names.
    pub fn with(&self, values: &[&str]) -> Result<Gauge, MetricError> {
        match self.spec.with(values)? {
            Cell::Gauge(cell) => Ok(Gauge { cell }),
            _ => unreachable!("a gauge family holds gauge cells"),
        }
    }
}

impl HistogramVec {
    /// The histogram of these label values, in the order of the label names.
    pub fn with(&self, values: &[&str]) -> Result<Histogram, MetricError> {
        match self.spec.with(values)? {
            Cell::Histogram(cell) => Ok(Histogram { cell }),
            _ => unreachable!("a histogram family holds histogram cells"),
        }
    }
}

impl Metrics {
    /// A counter family with these label names, its series picked later by
    /// [`CounterVec::with`]; the same rules as [`Metrics::counter`].
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<CounterVec, MetricError> {
        let spec = Spec::new(self, Kind::Counter, name, help, label_names, None)?;
        Ok(CounterVec { spec })
    }

    /// A gauge family with these label names; see [`Metrics::counter_vec`].
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<GaugeVec, MetricError> {
        let spec = Spec::new(self, Kind::Gauge, name, help, label_names, None)?;
        Ok(GaugeVec { spec })
    }

    /// A histogram family with these label names and the default buckets;
    /// see [`Metrics::counter_vec`] and [`Metrics::histogram`].
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<HistogramVec, MetricError> {
        let spec = Spec::new(self, Kind::Histogram, name, help, label_names, None)?;
        Ok(HistogramVec { spec })
    }

    /// A histogram family with these label names and bucket bounds.
    ///
    /// ```
    /// # let metrics = agentgate_obs::metrics::Metrics::new("agentgate", Default::default())?;
    /// let tokens = metrics.histogram_vec_with_buckets(
    ///     "prompt_tokens", "Tokens per prompt.", &["model"], &[256.0, 1024.0, 4096.0])?;
    /// tokens.with(&["m1"])?.record(900.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram_vec_with_buckets(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricError> {
        let spec = Spec::new(
            self,
            Kind::Histogram,
            name,
            help,
            label_names,
            Some(buckets),
        )?;
        Ok(HistogramVec { spec })
    }
}
