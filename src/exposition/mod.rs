//! Text exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0.
//!
//! [`Format::negotiate`] picks the format from a scrape's `Accept` header;
//! the metrics write themselves through a `Writer` (private), which
//! knows each format's rules: OpenMetrics names a counter family without
//! its `_total` suffix, escapes `"` in `# HELP`, carries exemplars and ends
//! with `# EOF`; both get `# HELP` and `# TYPE` for every family and escaped
//! label values.

mod escape;
pub(crate) mod writer;

pub use escape::{canonical_float, escape_help, escape_label_value, write_float};

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0, with exemplars.
    OpenMetrics,
}

impl Format {
    /// The exact `Content-Type` of a response in this format.
    ///
    /// ```
    /// # use agentgate_obs::metrics::Format;
    /// assert_eq!(Format::Prometheus.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    /// ```
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Chooses the format an `Accept` header asks for: OpenMetrics when it
    /// lists `application/openmetrics-text` (version 1.x or unversioned)
    /// with a quality at least that of `text/plain`, else Prometheus text.
    ///
    /// ```
    /// # use agentgate_obs::metrics::Format;
    /// let prometheus_server = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::negotiate(Some(prometheus_server)), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    /// assert_eq!(Format::negotiate(None), Format::Prometheus);
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut quality: f32 = 1.0;
            let mut version_ok = true;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.parse().unwrap_or(0.0),
                    "version" => version_ok = value.starts_with("1."),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text" if version_ok => {
                    openmetrics = openmetrics.max(quality)
                }
                "text/plain" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}
