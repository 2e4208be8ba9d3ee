//! [`MetricsConfig`]: bucket boundaries and label limits.

use crate::error::Error;

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

/// Default bucket upper bounds of the engine's own histograms
/// ([`Metrics::histogram`](super::Metrics::histogram) and the `metrics`
/// crate's `histogram!`): the Prometheus client libraries' defaults, in
/// seconds, stretched to five minutes, since most such histograms time
/// something (tool calls, model requests).
pub const DEFAULT_CUSTOM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The default number of the engine's own metric families.
pub const DEFAULT_CUSTOM_FAMILY_LIMIT: usize = 200;

/// The default number of series (distinct label values) per family of the
/// engine's own metrics.
pub const DEFAULT_CUSTOM_SERIES_LIMIT: usize = 100;

/// Bounds a histogram of the engine's may have at most.
pub(crate) const MAX_CUSTOM_BUCKETS: usize = 200;

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
    pub(crate) custom_buckets: Vec<f64>,
    pub(crate) custom_family_limit: usize,
    pub(crate) custom_series_limit: usize,
    pub(crate) native_histograms: bool,
    pub(crate) custom_native_histograms: bool,
    pub(crate) native_schema: i8,
    pub(crate) native_max_buckets: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            latency_buckets: DEFAULT_LATENCY_BUCKETS.to_vec(),
            gate_label_limit: DEFAULT_GATE_LABEL_LIMIT,
            custom_buckets: DEFAULT_CUSTOM_BUCKETS.to_vec(),
            custom_family_limit: DEFAULT_CUSTOM_FAMILY_LIMIT,
            custom_series_limit: DEFAULT_CUSTOM_SERIES_LIMIT,
            native_histograms: true,
            custom_native_histograms: true,
            native_schema: super::native::DEFAULT_NATIVE_SCHEMA,
            native_max_buckets: super::native::DEFAULT_NATIVE_MAX_BUCKETS,
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

    /// Bucket upper bounds of the engine's own histograms that do not name
    /// theirs (default [`DEFAULT_CUSTOM_BUCKETS`]): finite and strictly
    /// increasing, at most 200; `+Inf` is implied.
    ///
    /// ```
    /// use agentgate_obs::metrics::MetricsConfig;
    /// let config = MetricsConfig::default().custom_buckets(vec![1.0, 10.0, 100.0]);
    /// # let _ = config;
    /// ```
    pub fn custom_buckets(mut self, bounds: Vec<f64>) -> Self {
        self.custom_buckets = bounds;
        self
    }

    /// How many metric families the engine may register of its own
    /// (default 200); the next registration is an error.
    pub fn custom_family_limit(mut self, limit: usize) -> Self {
        self.custom_family_limit = limit;
        self
    }

    /// How many series (distinct label values) each of the engine's own
    /// families may have (default 100); later label values are counted
    /// under the value `other`, and in `custom_series_overflow_total`.
    pub fn custom_series_limit(mut self, limit: usize) -> Self {
        self.custom_series_limit = limit;
        self
    }

    /// Whether the duration histograms (run, iteration and phase
    /// durations, queue latency) keep native buckets beside their classic
    /// ones, served in the protobuf exposition (default `true`). The text
    /// formats never carry them.
    pub fn native_histograms(mut self, enabled: bool) -> Self {
        self.native_histograms = enabled;
        self
    }

    /// Whether the engine's own histograms ([`Metrics::histogram`](super::Metrics::histogram),
    /// the `metrics` crate's `histogram!`) keep native buckets too
    /// (default `true`, and only while
    /// [`native_histograms`](Self::native_histograms) is on). Off, they
    /// keep their classic buckets alone and recording skips the native
    /// count: the opt-out for an engine whose histograms are not
    /// durations, or that records on its hottest path.
    pub fn custom_native_histograms(mut self, enabled: bool) -> Self {
        self.custom_native_histograms = enabled;
        self
    }

    /// The native buckets' schema, from -4 to 8 (default
    /// [`DEFAULT_NATIVE_SCHEMA`](super::DEFAULT_NATIVE_SCHEMA), 3): each
    /// bucket is `2^(2^-schema)` times as wide as the one below it, about
    /// 1.09 at 3. A series keeps `64 * 2^schema` counters (4 KiB at 3,
    /// 128 KiB at 8).
    pub fn native_schema(mut self, schema: i8) -> Self {
        self.native_schema = schema;
        self
    }

    /// The most native buckets a series exposes (default
    /// [`DEFAULT_NATIVE_MAX_BUCKETS`](super::DEFAULT_NATIVE_MAX_BUCKETS),
    /// 160): past it, the schema is lowered (pairs of buckets merged)
    /// until it fits, and each step is counted in
    /// `native_schema_reductions_total`.
    pub fn native_max_buckets(mut self, max: u32) -> Self {
        self.native_max_buckets = max;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        use super::native::{MAX_NATIVE_SCHEMA, MIN_NATIVE_SCHEMA};
        if !(MIN_NATIVE_SCHEMA..=MAX_NATIVE_SCHEMA).contains(&self.native_schema) {
            return Err(Error::Config(format!(
                "native_schema must be from {MIN_NATIVE_SCHEMA} to {MAX_NATIVE_SCHEMA}: {}",
                self.native_schema
            )));
        }
        if self.native_max_buckets == 0 {
            return Err(Error::Config(
                "native_max_buckets must be at least 1".to_owned(),
            ));
        }
        crate::metrics::custom::validate_buckets(&self.custom_buckets)
            .map_err(|reason| Error::Config(format!("custom_buckets: {reason}")))?;
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
