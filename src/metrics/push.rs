//! Pushing the metrics to a Prometheus Pushgateway: the public
//! configuration ([`PushGatewayConfig`]), what became of the pushes
//! ([`PushGatewayStats`], [`PushFailure`]) and the counters behind
//! `pushgateway_pushes_total` and `pushgateway_push_failures_total`.
//!
//! The exporter thread that pushes lives in `export`; this module holds
//! what the metrics render and what the builder checks, below it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::http_client::{Endpoint, SendError};
use crate::redact::Redactor;

/// The job name a [`PushGatewayConfig`] pushes under unless told otherwise.
pub const DEFAULT_PUSH_JOB: &str = "agentgate";
/// How often a [`PushGatewayConfig`] pushes unless told otherwise.
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(15);
/// How long shutdown waits for the final push unless told otherwise.
pub const DEFAULT_PUSH_FINAL_WAIT: Duration = Duration::from_secs(5);

/// The shortest interval accepted: a floor against a unit mistake (15 ns
/// for 15 s) flooding the Pushgateway.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest interval and final wait accepted.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most a periodic push may take: its own interval, at most this.
const MAX_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how the metrics are pushed to a Prometheus Pushgateway
/// ([`Builder::push_gateway_config`](crate::Builder::push_gateway_config)).
///
/// The whole exposition (Prometheus text format 0.0.4, exactly what
/// `/metrics` serves) is `PUT` to
/// `URL/metrics/job/JOB/instance/INSTANCE[/NAME/VALUE…]` every
/// [`interval`](Self::interval), and once more at shutdown after the last
/// event is processed. A `PUT` replaces the group: the Pushgateway holds
/// this process's latest figures, never a sum of pushes.
///
/// The grouping key is the job, `instance` (the host name unless
/// [`instance`](Self::instance) is given) and the [`label`](Self::label)s.
/// Each process that pushes at the same time needs a grouping key of its
/// own, or they replace each other's figures.
///
/// ```no_run
/// use agentgate_obs::metrics::PushGatewayConfig;
/// use std::time::Duration;
///
/// let config = PushGatewayConfig::new("http://127.0.0.1:9091")
///     .job("nightly-batch")
///     .instance("runner-7")
///     .label("work_order", "wo-1234")
///     .interval(Duration::from_secs(30))
///     .final_wait(Duration::from_secs(3));
/// let obs = agentgate_obs::Observability::builder()
///     .no_log()
///     .push_gateway_config(config)
///     .start()?;
/// // … the engine runs; at shutdown its final figures are pushed.
/// # drop(obs);
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PushGatewayConfig {
    url: String,
    job: String,
    instance: Option<String>,
    labels: Vec<(String, String)>,
    interval: Duration,
    final_wait: Duration,
    delete_on_shutdown: bool,
    token: Option<String>,
    protobuf: bool,
}

impl std::fmt::Debug for PushGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token, not even in a debug print.
        f.debug_struct("PushGatewayConfig")
            .field("url", &self.url)
            .field("job", &self.job)
            .field("instance", &self.instance)
            .field("labels", &self.labels)
            .field("interval", &self.interval)
            .field("final_wait", &self.final_wait)
            .field("delete_on_shutdown", &self.delete_on_shutdown)
            .field("protobuf", &self.protobuf)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl PushGatewayConfig {
    /// Pushes to the Pushgateway at `url`, its base URL
    /// (`http://host:9091`, or the path a proxy serves it under), with
    /// the defaults: job [`DEFAULT_PUSH_JOB`], instance the host name,
    /// every [`DEFAULT_PUSH_INTERVAL`], a final push waited for up to
    /// [`DEFAULT_PUSH_FINAL_WAIT`], the group kept at shutdown, no token.
    /// `http://` only: a Pushgateway behind TLS is reached through a local
    /// proxy (see `docs/OPERATIONS.md`). The URL is checked by
    /// [`Builder::start`](crate::Builder::start).
    pub fn new(url: impl Into<String>) -> PushGatewayConfig {
        PushGatewayConfig {
            url: url.into(),
            job: DEFAULT_PUSH_JOB.to_owned(),
            instance: None,
            labels: Vec::new(),
            interval: DEFAULT_PUSH_INTERVAL,
            final_wait: DEFAULT_PUSH_FINAL_WAIT,
            delete_on_shutdown: false,
            token: None,
            protobuf: false,
        }
    }

    /// The `job` of the grouping key (default [`DEFAULT_PUSH_JOB`]); not
    /// empty. Prometheus shows it as `exported_job` unless its scrape of
    /// the Pushgateway sets `honor_labels: true`.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    /// The `instance` of the grouping key (default: the host name, from
    /// `/proc/sys/kernel/hostname`, `/etc/hostname` or `$HOSTNAME`).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// One more label of the grouping key, after `job` and `instance`:
    /// the work order or the run, to keep each in a group of its own
    /// (`label("work_order", "wo-1234")`). A label name as Prometheus
    /// takes it, not `job` or `instance` (they have their own setters),
    /// given once. The Pushgateway keeps a group until it is replaced or
    /// deleted: a grouping key that changes with every process leaves one
    /// group per process behind, unless
    /// [`delete_on_shutdown`](Self::delete_on_shutdown) is set.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// How often to push (default [`DEFAULT_PUSH_INTERVAL`]; 10 ms to
    /// 24 h). A periodic push gives up after this long or 10 s, whichever
    /// is shorter; the next one tries again.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long shutdown waits for the final push (default
    /// [`DEFAULT_PUSH_FINAL_WAIT`]; more than zero, at most 24 h). Within
    /// it the push is tried again after a refused connection, a `5xx` or
    /// a `429`; past it the push is given up, counted and logged, and
    /// shutdown returns.
    pub fn final_wait(mut self, wait: Duration) -> Self {
        self.final_wait = wait;
        self
    }

    /// At shutdown, deletes the group instead of pushing the final
    /// figures (default off). For a long-lived engine whose figures must
    /// not outlive it in the Pushgateway; a short-lived one leaves it off,
    /// or its final figures are gone before Prometheus scrapes them.
    pub fn delete_on_shutdown(mut self, delete: bool) -> Self {
        self.delete_on_shutdown = delete;
        self
    }

    /// Pushes the protobuf exposition instead of text 0.0.4 (default
    /// off), so that the duration histograms' native buckets reach the
    /// Pushgateway (one that stores native histograms: 1.5 or later) and
    /// a Prometheus with native histograms enabled scraping it.
    pub fn protobuf(mut self, protobuf: bool) -> Self {
        self.protobuf = protobuf;
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with every request, for a
    /// Pushgateway behind an authenticating proxy. No whitespace or
    /// control characters.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The Pushgateway's base URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks everything and resolves the host name: what the exporter
    /// needs, or the error [`Builder::start`](crate::Builder::start) returns.
    /// The grouping key's values are redacted with `redactor`, as the
    /// engine's label values are: they become labels of every series.
    pub(crate) fn plan(&self, redactor: &Redactor) -> Result<PushPlan, Error> {
        self.plan_with(host_name, redactor)
    }

    fn plan_with(
        &self,
        host: impl FnOnce() -> Option<String>,
        redactor: &Redactor,
    ) -> Result<PushPlan, Error> {
        let config = |reason: String| Error::Config(format!("push gateway: {reason}"));
        let invalid_url = |reason: &'static str| Error::InvalidUrl {
            target: "Pushgateway",
            url: super::remote_write::url_for_message(&self.url),
            reason,
        };
        let endpoint = Endpoint::parse(&self.url).map_err(|e| invalid_url(e.reason))?;
        let base = endpoint.path();
        if base.contains('?') {
            return Err(invalid_url(
                "it has a query: give the Pushgateway's base URL",
            ));
        }
        if base.contains("/metrics/job") {
            return Err(invalid_url(
                "it already names a group: give the Pushgateway's base URL and set the job and labels in the config",
            ));
        }
        if self.job.is_empty() {
            return Err(config("the job name must not be empty".into()));
        }
        if !(MIN_INTERVAL..=MAX_DURATION).contains(&self.interval) {
            return Err(config(format!(
                "the interval must be from 10 ms to 24 h, not {:?}",
                self.interval
            )));
        }
        if self.final_wait.is_zero() || self.final_wait > MAX_DURATION {
            return Err(config(format!(
                "the final wait must be more than zero and at most 24 h, not {:?}",
                self.final_wait
            )));
        }
        if let Some(token) = &self.token
            && (token.is_empty() || token.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(config(
                "the bearer token must not be empty or hold whitespace or control characters"
                    .into(),
            ));
        }
        let instance = match &self.instance {
            Some(instance) => instance.clone(),
            None => host().ok_or_else(|| {
                config(
                    "no host name found for the instance label: set PushGatewayConfig::instance"
                        .into(),
                )
            })?,
        };
        let mut grouping = vec![
            ("job".to_owned(), self.job.clone()),
            ("instance".to_owned(), instance),
        ];
        for (name, value) in &self.labels {
            if let Err(reason) = super::custom::validate_label_name(name) {
                return Err(config(format!("label name {name:?}: {reason}")));
            }
            if grouping.iter().any(|(taken, _)| taken == name) {
                return Err(config(format!(
                    "label {name:?} is given twice (job and instance have their own setters)"
                )));
            }
            grouping.push((name.clone(), value.clone()));
        }
        for (name, value) in &mut grouping {
            *value = super::custom::redact_label_value(redactor, name, value).into_owned();
        }
        let mut path = base.trim_end_matches('/').to_owned();
        path.push_str("/metrics");
        for (name, value) in &grouping {
            push_segment(&mut path, name, value);
        }
        Ok(PushPlan {
            endpoint,
            path,
            grouping,
            authorization: self.token.as_ref().map(|t| format!("Bearer {t}")),
            interval: self.interval,
            timeout: self.interval.min(MAX_PUSH_TIMEOUT),
            final_wait: self.final_wait,
            delete_on_shutdown: self.delete_on_shutdown,
            protobuf: self.protobuf,
        })
    }
}

/// A checked [`PushGatewayConfig`]: where each request goes.
#[derive(Debug, Clone)]
pub(crate) struct PushPlan {
    pub(crate) endpoint: Endpoint,
    /// The group's path: `BASE/metrics/job/JOB/instance/INSTANCE/…`.
    pub(crate) path: String,
    /// The grouping key, `job` and `instance` first, for the logs.
    pub(crate) grouping: Vec<(String, String)>,
    /// The `Authorization` header's value.
    pub(crate) authorization: Option<String>,
    pub(crate) interval: Duration,
    /// The most one periodic push may take.
    pub(crate) timeout: Duration,
    pub(crate) final_wait: Duration,
    pub(crate) delete_on_shutdown: bool,
    /// Push the protobuf exposition rather than text.
    pub(crate) protobuf: bool,
}

/// Appends `/name/value` to a grouping key path as the Pushgateway's API
/// reads it: a value that is empty or holds a `/` goes as
/// `/name@base64/VALUE` (URL-safe base64, no padding; `=` for the empty
/// value), any other is percent-encoded but for unreserved characters.
fn push_segment(path: &mut String, name: &str, value: &str) {
    path.push('/');
    path.push_str(name);
    if value.is_empty() {
        path.push_str("@base64/=");
    } else if value.contains('/') {
        path.push_str("@base64/");
        base64_url(value.as_bytes(), path);
    } else {
        path.push('/');
        for &b in value.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                path.push(b as char);
            } else {
                path.push('%');
                path.push(char::from(HEX[usize::from(b >> 4)]));
                path.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 4648 §5 (URL and file name safe) base64, without padding.
fn base64_url(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
}

/// This machine's host name, for the default `instance`.
fn host_name() -> Option<String> {
    let from_file = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|name| name.trim().to_owned())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
}

/// Why a push (or the delete at shutdown) failed: the `reason` label of
/// `pushgateway_push_failures_total`, a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushFailure {
    /// The host did not resolve, or refused the connection.
    Connect,
    /// The connection failed while sending or reading.
    Io,
    /// What came back is not an HTTP answer.
    Malformed,
    /// The Pushgateway refused the request (a `4xx` other than `401`,
    /// `403` and `429`; the Pushgateway answers `400` to metrics
    /// inconsistent with what other groups pushed).
    Rejected,
    /// `5xx`.
    ServerError,
    /// `429 Too Many Requests`.
    Throttled,
    /// No answer before the deadline.
    Timeout,
    /// `401` or `403`: the token is missing or wrong.
    Unauthorized,
    /// A status that is neither success nor an error (`1xx`, `3xx`).
    UnexpectedStatus,
}

impl PushFailure {
    /// Every reason, in label order (sorted), matching the discriminants.
    pub(crate) const ALL: [PushFailure; 9] = [
        PushFailure::Connect,
        PushFailure::Io,
        PushFailure::Malformed,
        PushFailure::Rejected,
        PushFailure::ServerError,
        PushFailure::Throttled,
        PushFailure::Timeout,
        PushFailure::Unauthorized,
        PushFailure::UnexpectedStatus,
    ];

    /// Its `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PushFailure::Connect => "connect",
            PushFailure::Io => "io",
            PushFailure::Malformed => "malformed",
            PushFailure::Rejected => "rejected",
            PushFailure::ServerError => "server_error",
            PushFailure::Throttled => "throttled",
            PushFailure::Timeout => "timeout",
            PushFailure::Unauthorized => "unauthorized",
            PushFailure::UnexpectedStatus => "unexpected_status",
        }
    }

    /// Whether trying again soon may succeed: the final push retries
    /// these within its wait.
    pub(crate) fn retryable(self) -> bool {
        matches!(
            self,
            PushFailure::Connect
                | PushFailure::Io
                | PushFailure::ServerError
                | PushFailure::Throttled
        )
    }

    /// The failure an answer's status means, `None` for success (`2xx`).
    pub(crate) fn from_status(status: u16) -> Option<PushFailure> {
        match status {
            200..=299 => None,
            401 | 403 => Some(PushFailure::Unauthorized),
            429 => Some(PushFailure::Throttled),
            400..=499 => Some(PushFailure::Rejected),
            500..=599 => Some(PushFailure::ServerError),
            _ => Some(PushFailure::UnexpectedStatus),
        }
    }

    /// The failure a request that got no answer means.
    pub(crate) fn from_send_error(error: &SendError) -> PushFailure {
        match error.kind() {
            "connect" => PushFailure::Connect,
            "timeout" => PushFailure::Timeout,
            "io" => PushFailure::Io,
            _ => PushFailure::Malformed,
        }
    }

    fn index(self) -> usize {
        PushFailure::ALL
            .iter()
            .position(|&f| f == self)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for PushFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of the pushes to the Pushgateway
/// ([`Metrics::push_gateway_stats`](super::Metrics::push_gateway_stats)):
/// the figures of `pushgateway_pushes_total` and
/// `pushgateway_push_failures_total`, and the latest outcome. Final once
/// [`shutdown`](crate::Observability::shutdown) returns, unless the final
/// push outlived its wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushGatewayStats {
    /// Requests sent: every push, every retry of the final one, and the
    /// delete at shutdown.
    pub pushes: u64,
    /// Of those, the ones that failed.
    pub failed: u64,
    /// The outcome of the latest request; `None` before the first.
    pub last: Option<Result<(), PushFailure>>,
}

/// The counters behind the `pushgateway_*` families, written by the
/// exporter thread (zero without a Pushgateway).
#[derive(Debug, Default)]
pub(crate) struct PushCounters {
    pushes: AtomicU64,
    /// Indexed like [`PushFailure::ALL`].
    failures: [AtomicU64; PushFailure::ALL.len()],
    /// 0: none yet, 1: success, 2 + index: that failure.
    last: AtomicU8,
}

impl PushCounters {
    /// Counts one request and its outcome.
    pub(crate) fn record(&self, outcome: Result<(), PushFailure>) {
        // Relaxed: counts read for reporting; `shutdown` joins the thread
        // that wrote them before the final figures are read.
        self.pushes.fetch_add(1, Ordering::Relaxed);
        let last = match outcome {
            Ok(()) => 1,
            Err(failure) => {
                self.failures[failure.index()].fetch_add(1, Ordering::Relaxed);
                2 + failure.index() as u8
            }
        };
        self.last.store(last, Ordering::Relaxed);
    }

    /// Requests sent so far.
    pub(crate) fn pushes(&self) -> u64 {
        // Relaxed: see `record`.
        self.pushes.load(Ordering::Relaxed)
    }

    /// Requests failed for `reason` so far.
    pub(crate) fn failed(&self, reason: PushFailure) -> u64 {
        // Relaxed: see `record`.
        self.failures[reason.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> PushGatewayStats {
        // Relaxed: see `record`.
        let last = match self.last.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(Ok(())),
            n => PushFailure::ALL
                .get(usize::from(n - 2))
                .map(|&failure| Err(failure)),
        };
        PushGatewayStats {
            pushes: self.pushes(),
            failed: PushFailure::ALL.iter().map(|&f| self.failed(f)).sum(),
            last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(config: PushGatewayConfig) -> Result<PushPlan, Error> {
        config.plan_with(|| Some("box-1".to_owned()), Redactor::builtin())
    }

    #[test]
    fn the_default_group_is_the_job_and_the_host_name() {
        let plan = plan(PushGatewayConfig::new("http://127.0.0.1:9091")).unwrap();
        assert_eq!(plan.path, "/metrics/job/agentgate/instance/box-1");
        assert_eq!(plan.interval, DEFAULT_PUSH_INTERVAL);
        assert_eq!(plan.timeout, Duration::from_secs(10));
        assert_eq!(plan.final_wait, DEFAULT_PUSH_FINAL_WAIT);
        assert!(!plan.delete_on_shutdown);
        assert_eq!(plan.authorization, None);
    }

    #[test]
    fn label_values_are_escaped_as_the_pushgateway_api_reads_them() {
        let config = PushGatewayConfig::new("http://gw:9091/prefix/")
            .job("ci/nightly")
            .instance("")
            .label("work_order", "wo 1?&%é")
            .label("run", "a/b");
        let plan = plan(config).unwrap();
        assert_eq!(
            plan.path,
            "/prefix/metrics/job@base64/Y2kvbmlnaHRseQ/instance@base64/=\
             /work_order/wo%201%3F%26%25%C3%A9/run@base64/YS9i"
        );
    }

    #[test]
    fn base64_url_matches_rfc_4648_without_padding() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
            ("\u{fb}\u{ff}", "w7vDvw"),
        ] {
            let mut out = String::new();
            base64_url(input.as_bytes(), &mut out);
            assert_eq!(out, expected, "{input:?}");
        }
    }

    #[test]
    fn bad_urls_and_settings_are_refused_with_what_is_wrong() {
        let url_error = |url: &str| match plan(PushGatewayConfig::new(url)) {
            Err(Error::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        assert!(url_error("https://gw:9091").contains("proxy"));
        assert!(url_error("gw:9091").contains("http://"));
        assert!(url_error("http://gw:9091/metrics/job/x").contains("base URL"));
        assert!(url_error("http://gw:9091/?a=b").contains("query"));
        let config_error = |config: PushGatewayConfig| match plan(config) {
            Err(Error::Config(message)) => message,
            other => panic!("{other:?}"),
        };
        let base = || PushGatewayConfig::new("http://gw:9091");
        assert!(config_error(base().job("")).contains("job"));
        assert!(config_error(base().interval(Duration::from_nanos(15))).contains("interval"));
        assert!(config_error(base().final_wait(Duration::ZERO)).contains("final wait"));
        assert!(config_error(base().bearer_token("a\r\nX-Evil: 1")).contains("token"));
        assert!(config_error(base().label("instance", "x")).contains("twice"));
        assert!(config_error(base().label("run", "1").label("run", "2")).contains("twice"));
        assert!(config_error(base().label("__name__", "x")).contains("reserved"));
        let no_host = base()
            .plan_with(|| None, Redactor::builtin())
            .unwrap_err()
            .to_string();
        assert!(no_host.contains("PushGatewayConfig::instance"), "{no_host}");
    }

    #[test]
    fn the_token_never_shows_in_a_debug_print() {
        let config = PushGatewayConfig::new("http://gw:9091").bearer_token("s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
        let plan = plan(config).unwrap();
        assert_eq!(plan.authorization.as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn statuses_map_to_failures_and_the_counters_keep_the_last_outcome() {
        assert_eq!(PushFailure::from_status(200), None);
        assert_eq!(PushFailure::from_status(202), None);
        assert_eq!(PushFailure::from_status(400), Some(PushFailure::Rejected));
        assert_eq!(
            PushFailure::from_status(403),
            Some(PushFailure::Unauthorized)
        );
        assert_eq!(PushFailure::from_status(429), Some(PushFailure::Throttled));
        assert_eq!(
            PushFailure::from_status(503),
            Some(PushFailure::ServerError)
        );
        assert_eq!(
            PushFailure::from_status(302),
            Some(PushFailure::UnexpectedStatus)
        );
        let mut sorted = PushFailure::ALL.map(PushFailure::as_str);
        sorted.sort_unstable();
        assert_eq!(sorted, PushFailure::ALL.map(PushFailure::as_str));

        let counters = PushCounters::default();
        assert_eq!(counters.stats(), PushGatewayStats::default());
        counters.record(Err(PushFailure::Throttled));
        counters.record(Ok(()));
        counters.record(Err(PushFailure::UnexpectedStatus));
        let stats = counters.stats();
        assert_eq!((stats.pushes, stats.failed), (3, 2));
        assert_eq!(stats.last, Some(Err(PushFailure::UnexpectedStatus)));
        assert_eq!(counters.failed(PushFailure::Throttled), 1);
    }
}
