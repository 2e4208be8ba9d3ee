//! [`MetricsConfig`]: bucket boundaries and label limits.

use crate::observability::Error;

/// Default bucket upper bounds of the run, iteration and phase duration
/// histograms, in seconds: agent phases take from tens of milliseconds
/// (a snapshot) to an hour (a long build or a whole run).
pub const DEFAULT_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];

/// Default bucket upper bounds of the queue latency histogram (emit to
/// processing on the drain thread), in seconds: 1 µs to 1 s.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The default number of distinct gate names with their own series.
pub const DEFAULT_GATE_LABEL_LIMIT: usize = 100;

/// How the metrics are shaped.
///
/// ```
/// use agentgate_obs::metrics::MetricsConfig;
/// let config = MetricsConfig::default()
///     .duration_buckets(vec![0.1, 1.0, 10.0])
///     .gate_label_limit(20);
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    pub(crate) duration_buckets: Vec<f64>,
    pub(crate) latency_buckets: Vec<f64>,
    pub(crate) gate_label_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            latency_buckets: DEFAULT_LATENCY_BUCKETS.to_vec(),
            gate_label_limit: DEFAULT_GATE_LABEL_LIMIT,
        }
    }
}

impl MetricsConfig {
    /// Upper bounds, in seconds, of the run, iteration and phase duration
    /// buckets (default [`DEFAULT_DURATION_BUCKETS`]); `+Inf` is implied.
    /// Must be finite, positive and strictly increasing.
    pub fn duration_buckets(mut self, bounds: Vec<f64>) -> Self {
        self.duration_buckets = bounds;
        self
    }

    /// Upper bounds, in seconds, of the queue latency buckets (default
    /// [`DEFAULT_LATENCY_BUCKETS`]).
    pub fn latency_buckets(mut self, bounds: Vec<f64>) -> Self {
        self.latency_buckets = bounds;
        self
    }

    /// How many distinct gate names get their own series (default 100);
    /// later names are counted under `gate="other"`.
    pub fn gate_label_limit(mut self, limit: usize) -> Self {
        self.gate_label_limit = limit;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        for (what, bounds) in [
            ("duration_buckets", &self.duration_buckets),
            ("latency_buckets", &self.latency_buckets),
        ] {
            if bounds.len() > 1_000 {
                return Err(Error::Config(format!("{what}: at most 1000 bounds")));
            }
            let valid = bounds.iter().all(|b| b.is_finite() && *b > 0.0)
                && bounds.windows(2).all(|w| w[0] < w[1]);
            if !valid {
                return Err(Error::Config(format!(
                    "{what} must be finite, positive and strictly increasing: {bounds:?}"
                )));
            }
        }
        Ok(())
    }
}
