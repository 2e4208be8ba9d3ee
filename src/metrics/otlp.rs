//! OTLP trace export's settings ([`OtlpConfig`], also read from the
//! standard `OTEL_*` variables) and the counters its sender keeps
//! (`otlp_*` on `/metrics`). The drain thread hands the events of each
//! run to an exporter thread, which builds the spans and sends them
//! (`src/export/otlp/`).

use std::time::Duration;

use crate::error::Error;
use crate::http_client::Endpoint;

/// The service name when neither [`OtlpConfig::service_name`] nor
/// `OTEL_SERVICE_NAME` nor `service.name` in `OTEL_RESOURCE_ATTRIBUTES`
/// gives one.
pub const DEFAULT_SERVICE_NAME: &str = "agentgate";

/// How spans are encoded on the wire: OTLP/HTTP's two encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf`: `application/x-protobuf`, the default.
    #[default]
    HttpProtobuf,
    /// `http/json`: `application/json`, ids in hex as OTLP requires.
    HttpJson,
}

impl OtlpProtocol {
    /// `http/protobuf` or `http/json`, as `OTEL_EXPORTER_OTLP_PROTOCOL` spells them.
    pub fn parse(value: &str) -> Result<OtlpProtocol, Error> {
        match value.trim() {
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Ok(OtlpProtocol::HttpJson),
            other => Err(Error::Config(format!(
                "OTLP protocol {other:?}: only http/protobuf and http/json are supported (no gRPC)"
            ))),
        }
    }
}

/// Where and how runs are exported as OTLP traces
/// ([`Builder::otlp_config`](crate::Builder::otlp_config)): OTLP/HTTP
/// `POST`s to the traces endpoint, batched, from an exporter thread.
///
/// ```
/// use agentgate_obs::metrics::{OtlpConfig, OtlpProtocol};
/// let config = OtlpConfig::new("http://127.0.0.1:4318")
///     .protocol(OtlpProtocol::HttpJson)
///     .service_name("batch-engine")
///     .header("x-team", "agents");
/// assert_eq!(config.traces_url(), "http://127.0.0.1:4318/v1/traces");
/// ```
#[derive(Clone)]
pub struct OtlpConfig {
    pub(crate) url: String,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) service_name: Option<String>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) max_queue: usize,
    pub(crate) max_batch: usize,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) final_wait: Duration,
    pub(crate) max_retries: u32,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are often API keys: names only.
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("url", &self.traces_url())
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .field("interval", &self.interval)
            .field("final_wait", &self.final_wait)
            .finish_non_exhaustive()
    }
}

impl OtlpConfig {
    /// Exports to `endpoint`, an `http://` URL: a collector's base
    /// (`http://HOST:4318`, to which `/v1/traces` is added, as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) or the full traces URL (one ending
    /// in `/v1/traces`, used as it is). Checked at
    /// [`start`](crate::Builder::start).
    pub fn new(endpoint: impl Into<String>) -> OtlpConfig {
        let endpoint = endpoint.into();
        OtlpConfig {
            url: base_to_traces(&endpoint),
            protocol: OtlpProtocol::default(),
            headers: Vec::new(),
            service_name: None,
            resource: Vec::new(),
            max_queue: 2048,
            max_batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            final_wait: Duration::from_secs(5),
            max_retries: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The configuration the standard variables describe, or `None`
    /// when neither `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set: the endpoint (the traces one
    /// as it is, the base one with `/v1/traces` added),
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (`k=v,k2=v2`, values
    /// percent-decoded), `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn from_env() -> Result<Option<OtlpConfig>, Error> {
        OtlpConfig::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// `endpoint` (as [`new`](Self::new) takes it) with every other
    /// setting from the standard variables, as [`from_env`](Self::from_env)
    /// reads them: what a `--otlp URL` flag means.
    pub fn from_env_with_endpoint(endpoint: &str) -> Result<OtlpConfig, Error> {
        OtlpConfig::from_vars_with(
            |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()),
            Some(endpoint),
        )
        .map(|config| config.unwrap_or_else(|| OtlpConfig::new(endpoint)))
    }

    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, Error> {
        OtlpConfig::from_vars_with(var, None)
    }

    fn from_vars_with(
        var: impl Fn(&str) -> Option<String>,
        endpoint: Option<&str>,
    ) -> Result<Option<OtlpConfig>, Error> {
        let mut config = match (
            endpoint,
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(endpoint), _, _) => OtlpConfig::new(endpoint),
            (None, Some(traces), _) => {
                let mut config = OtlpConfig::new(traces.trim());
                config.url = traces.trim().to_owned();
                config
            }
            (None, None, Some(base)) => OtlpConfig::new(base.trim()),
            (None, None, None) => return Ok(None),
        };
        if let Some(protocol) =
            var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            config.protocol = OtlpProtocol::parse(&protocol)?;
        }
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = var(name) {
                for (key, value) in key_values(&list, name)? {
                    // The traces-specific variable wins over the general one.
                    config
                        .headers
                        .retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                    config.headers.push((key, value));
                }
            }
        }
        if let Some(list) = var("OTEL_RESOURCE_ATTRIBUTES") {
            config.resource = key_values(&list, "OTEL_RESOURCE_ATTRIBUTES")?;
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            config.service_name = Some(name.trim().to_owned());
        }
        Ok(Some(config))
    }

    /// Another endpoint, as [`new`](Self::new) takes it, the other
    /// settings kept (a `--otlp` flag over the `OTEL_*` variables).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.url = base_to_traces(&endpoint.into());
        self
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> &str {
        &self.url
    }

    /// The encoding (default [`OtlpProtocol::HttpProtobuf`]).
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// A header sent with every request (an API key, a tenant). Calls add up.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The resource's `service.name` (default: `OTEL_SERVICE_NAME` when
    /// read from the environment, else `service.name` among the resource
    /// attributes, else [`DEFAULT_SERVICE_NAME`]).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// One more resource attribute. Calls add up.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// Spans in requests waiting for the receiver at most (default 2048;
    /// the oldest request makes room). The queue of events from the drain
    /// thread to the exporter thread holds 4 × this many. A batch of
    /// events that finds no room there is dropped: the spans it would
    /// have ended, and the later spans of the runs it touched, are counted
    /// in `otlp_spans_dropped_total{reason="queue_full"}`. The drain
    /// thread never waits for the receiver.
    pub fn max_queue(mut self, spans: usize) -> Self {
        self.max_queue = spans;
        self
    }

    /// Spans per request at most (default 512).
    pub fn max_batch(mut self, spans: usize) -> Self {
        self.max_batch = spans;
        self
    }

    /// The longest a finished span waits before it is sent (default 1 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The most one periodic delivery may take, retries included
    /// (default 10 s); what it could not send waits for the next one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long shutdown waits for the last spans (default 5 s); what is
    /// unsent then is counted in `otlp_spans_failed_total`.
    pub fn final_wait(mut self, wait: Duration) -> Self {
        self.final_wait = wait;
        self
    }

    /// Retries of a request after a `429`, `502`, `503`, `504` or a
    /// connection error (default 5).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first retry's wait and the most it grows to, doubling
    /// (defaults 100 ms and 5 s); a longer `Retry-After` is honoured.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// The resource's `service.name`.
    pub(crate) fn resolved_service_name(&self) -> String {
        self.service_name
            .clone()
            .or_else(|| {
                self.resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
    }

    /// Checks every setting; the URL through the HTTP client's parser.
    pub(crate) fn validate(&self) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::parse(&self.url).map_err(|e| Error::InvalidUrl {
            target: "OTLP",
            url: e.url,
            reason: e.reason,
        })?;
        let config = |reason: String| Err(Error::Config(format!("OTLP: {reason}")));
        for (what, value) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("final_wait", self.final_wait),
            ("the minimum backoff", self.min_backoff),
        ] {
            if value.is_zero() {
                return config(format!("{what} must be more than zero"));
            }
        }
        if self.min_backoff > self.max_backoff {
            return config("the minimum backoff is above the maximum".to_owned());
        }
        if self.max_queue == 0 || self.max_batch == 0 {
            return config("max_queue and max_batch must be at least 1".to_owned());
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return config(format!("header name {name:?} is not an HTTP token"));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return config(format!(
                    "header {name:?}: a value without control characters"
                ));
            }
        }
        Ok(endpoint)
    }
}

/// A base endpoint's traces URL: `/v1/traces` appended, unless the URL
/// already names it.
fn base_to_traces(endpoint: &str) -> String {
    let trimmed = endpoint.trim();
    if trimmed.trim_end_matches('/').ends_with("/v1/traces") {
        return trimmed.to_owned();
    }
    format!("{}/v1/traces", trimmed.trim_end_matches('/'))
}

/// `k=v,k2=v2` with percent-encoded values (W3C Baggage's format, as the
/// OpenTelemetry variables use it).
fn key_values(list: &str, variable: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(Error::Config(format!(
                "{variable}: {item:?} is not key=value"
            )));
        };
        let key = percent_decode(key.trim());
        if key.is_empty() {
            return Err(Error::Config(format!("{variable}: an empty key")));
        }
        out.push((key, percent_decode(value.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_standard_variables_make_the_configuration() {
        let config = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, x-tenant=t1",
            ),
            ("OTEL_SERVICE_NAME", "engine"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=ci,service.name=ignored",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(config.protocol, OtlpProtocol::HttpJson);
        assert_eq!(
            config.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("x-tenant".into(), "t1".into())
            ]
        );
        assert_eq!(config.resolved_service_name(), "engine");
        assert!(config.validate().is_ok());
        assert!(
            !format!("{config:?}").contains("cret"),
            "no header value in a debug print"
        );
    }

    #[test]
    fn the_traces_endpoint_is_used_as_it_is_and_wins_over_the_base_one() {
        let config = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom/path",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.traces_url(), "http://traces:9999/custom/path");
        assert!(OtlpConfig::from_vars(vars(&[])).unwrap().is_none());
    }

    #[test]
    fn an_endpoint_given_in_code_wins_and_the_variables_set_the_rest() {
        let config = OtlpConfig::from_vars_with(
            vars(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://env:1/v1/traces",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t1"),
                ("OTEL_SERVICE_NAME", "engine"),
            ]),
            Some("http://code:4318"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.traces_url(), "http://code:4318/v1/traces");
        assert_eq!(config.protocol, OtlpProtocol::HttpJson);
        assert_eq!(config.headers, [("x-tenant".into(), "t1".into())]);
        assert_eq!(config.resolved_service_name(), "engine");
    }

    #[test]
    fn grpc_and_malformed_lists_are_config_errors() {
        for pairs in [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ],
        ] {
            assert!(matches!(
                OtlpConfig::from_vars(vars(&pairs)),
                Err(Error::Config(_))
            ));
        }
        assert!(
            OtlpConfig::new("http://h/")
                .header("bad name", "v")
                .validate()
                .is_err()
        );
        assert!(
            OtlpConfig::new("http://h/")
                .header("x", "a\r\nb: c")
                .validate()
                .is_err()
        );
        assert!(matches!(
            OtlpConfig::new("https://h/").validate(),
            Err(Error::InvalidUrl { .. })
        ));
    }
}
