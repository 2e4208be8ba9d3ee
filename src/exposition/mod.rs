//! Exposition: Prometheus text format 0.0.4, OpenMetrics 1.0, and the
//! protobuf exposition (`proto.rs`, the one with native histograms).
//!
//! [`Exposition::negotiate`] picks the format from a scrape's `Accept` header;
//! the metrics write themselves through a `Writer` (private), which
//! knows each format's rules: OpenMetrics names a counter family without
//! its `_total` suffix, escapes `"` in `# HELP`, carries exemplars and ends
//! with `# EOF`; both get `# HELP` and `# TYPE` for every family and escaped
//! label values.

mod escape;
pub(crate) mod proto;
pub(crate) mod wire;
pub(crate) mod writer;

pub use escape::{canonical_float, escape_help, escape_label_value, write_float};

/// The `Content-Type` of the protobuf exposition: length-delimited
/// `io.prometheus.client.MetricFamily` messages.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// What a scrape is answered with: a text format, or the protobuf
/// exposition (which carries native histograms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exposition {
    /// Prometheus text 0.0.4 or OpenMetrics.
    Text(Format),
    /// Delimited `MetricFamily` messages ([`PROTOBUF_CONTENT_TYPE`]).
    Protobuf,
}

impl Exposition {
    /// The exact `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Exposition::Text(format) => format.content_type(),
            Exposition::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }

    /// Chooses what an `Accept` header asks for: the protobuf exposition
    /// when it lists `application/vnd.google.protobuf` (with
    /// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`,
    /// or without them) at a quality above zero and at least that of every
    /// text format it lists, else the text format [`Format::negotiate`]
    /// picks. `*/*` alone never selects protobuf.
    ///
    /// ```
    /// # use agentgate_obs::metrics::{Exposition, Format};
    /// let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Exposition::negotiate(Some(native)), Exposition::Protobuf);
    /// let classic = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    /// assert_eq!(Exposition::negotiate(Some(classic)), Exposition::Text(Format::OpenMetrics));
    /// let lower = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,text/plain;q=0.5";
    /// assert_eq!(Exposition::negotiate(Some(lower)), Exposition::Text(Format::Prometheus));
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let text = Format::negotiate(accept);
        let Some(accept) = accept else {
            return Exposition::Text(text);
        };
        let mut protobuf: f32 = 0.0;
        let mut others: f32 = 0.0;
        for range in accept.split(',') {
            let (media, quality, params_ok) = media_range(range);
            match media.as_str() {
                "application/vnd.google.protobuf" if params_ok => protobuf = protobuf.max(quality),
                "application/openmetrics-text" | "text/plain" => others = others.max(quality),
                _ => {}
            }
        }
        if protobuf > 0.0 && protobuf >= others {
            Exposition::Protobuf
        } else {
            Exposition::Text(text)
        }
    }
}

/// A media range's type (lowercased), its quality, and whether its
/// protobuf parameters (if any) name the message and encoding we write.
fn media_range(range: &str) -> (String, f32, bool) {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    let mut quality: f32 = 1.0;
    let mut ok = true;
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "q" => quality = value.parse().unwrap_or(0.0),
            "proto" => ok &= value == "io.prometheus.client.MetricFamily",
            "encoding" => ok &= value.eq_ignore_ascii_case("delimited"),
            _ => {}
        }
    }
    if !quality.is_finite() {
        quality = 0.0;
    }
    (media, quality.clamp(0.0, 1.0), ok)
}

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
/// The name a label named like a target label takes, as Prometheus's
/// scrape gives it: `exported_<name>`, prefixed again while `taken` says
/// that name is in use.
pub(crate) fn exported_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut exported = format!("exported_{name}");
    while taken(&exported) {
        exported.insert_str(0, "exported_");
    }
    exported
}
