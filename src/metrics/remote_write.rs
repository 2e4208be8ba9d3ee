//! Prometheus remote write's settings ([`RemoteWriteConfig`]) and the
//! counters its sender keeps (`remote_write_*` on `/metrics`). The sender
//! itself is an exporter thread (`src/export/remote_write.rs`).

use std::time::Duration;

use crate::error::Error;
use crate::http_client::{Endpoint, without_user_info};
use crate::redact::Redactor;

/// The `job` label every series carries unless [`RemoteWriteConfig::job`]
/// says otherwise.
pub const DEFAULT_REMOTE_WRITE_JOB: &str = "agentgate";

/// The longest interval, timeout, final wait and backoff accepted, as for
/// the Pushgateway: a longer one is a mistake, and one near
/// `Duration::MAX` overflows the clock when the sender adds it to `now`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Where and how [`Builder::remote_write_config`](crate::Builder::remote_write_config)
/// sends the metrics: Prometheus remote write 1.0 (a snappy-compressed
/// protobuf `WriteRequest`), every [`interval`](Self::interval) and once
/// more at shutdown.
///
/// Remote write has no scrape, hence no target labels: every series gets
/// `job` (default `agentgate`) and `instance` (default: this host's name),
/// plus any [`label`](Self::label)s, so that several engines writing to one
/// Prometheus stay apart. A series of the engine's own that already has a
/// label of one of these names keeps its value as `exported_<name>`, as a
/// scrape with `honor_labels: false` does.
///
/// ```
/// use agentgate_obs::metrics::RemoteWriteConfig;
/// use std::time::Duration;
///
/// let config = RemoteWriteConfig::new("http://127.0.0.1:9090/api/v1/write")
///     .interval(Duration::from_secs(30))
///     .job("batch-engine")
///     .instance("ci-runner-7")
///     .label("team", "agents");
/// assert_eq!(config.url(), "http://127.0.0.1:9090/api/v1/write");
/// let builder = agentgate_obs::Observability::builder().remote_write_config(config);
/// // builder.start()? sends every 30 s and once more at shutdown.
/// # drop(builder);
/// ```
#[derive(Clone)]
pub struct RemoteWriteConfig {
    pub(crate) url: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) final_wait: Duration,
    pub(crate) max_pending: usize,
    pub(crate) max_retries: u32,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) bearer_token: Option<String>,
    pub(crate) job: String,
    pub(crate) instance: Option<String>,
    pub(crate) labels: Vec<(String, String)>,
}

impl std::fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token, not even in a debug print.
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.url)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("final_wait", &self.final_wait)
            .field("max_pending", &self.max_pending)
            .field("max_retries", &self.max_retries)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "…"))
            .field("job", &self.job)
            .field("instance", &self.instance)
            .field("labels", &self.labels)
            .finish()
    }
}

impl RemoteWriteConfig {
    /// Sends to `url`, an `http://` URL (a receiver behind TLS is reached
    /// through a local proxy), e.g. Prometheus's
    /// `http://HOST:9090/api/v1/write` (started with
    /// `--web.enable-remote-write-receiver`). Checked at
    /// [`start`](crate::Builder::start): [`Error::InvalidUrl`] when it is
    /// not such a URL.
    pub fn new(url: impl Into<String>) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: url.into(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            final_wait: Duration::from_secs(5),
            max_pending: 8,
            max_retries: 10,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            bearer_token: None,
            job: DEFAULT_REMOTE_WRITE_JOB.to_owned(),
            instance: None,
            labels: Vec::new(),
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Between two sends (default 15 s; at most 24 h). The first comes one interval
    /// after start; the last at shutdown, whatever the interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The most one periodic send may take, retries included (default
    /// 10 s; at most 24 h). What it could not send waits for the next one, in the queue.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long shutdown waits for the final send, retries included
    /// (default 5 s; at most 24 h). Past it what is unsent is counted as failed and
    /// shutdown returns.
    pub fn final_wait(mut self, wait: Duration) -> Self {
        self.final_wait = wait;
        self
    }

    /// Requests kept while the receiver cannot take them (default 8, one
    /// per interval: two minutes at the default interval). When a new one
    /// finds the queue full, the oldest is dropped and its samples counted
    /// in `remote_write_samples_dropped_total{reason="queue_full"}`.
    pub fn max_pending(mut self, requests: usize) -> Self {
        self.max_pending = requests;
        self
    }

    /// Retries of one request after a `5xx`, a `429` or a connection
    /// error (default 10), across sends; then its samples are counted in
    /// `remote_write_samples_failed_total`.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The wait before the first retry and the most a wait grows to,
    /// doubling after each retry (defaults 100 ms and 5 s; the maximum at
    /// most 24 h). A `Retry-After` of the receiver's is waited for when it
    /// is longer, up to 5 minutes.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The `job` label of every series (default `agentgate`).
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    /// The `instance` label of every series (default: the host's name, as
    /// the kernel gives it, or `unknown`).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// One more label on every series (a valid label name, not starting
    /// with `__`, not `job`, `instance`, `le` or `quantile`, each name
    /// once). Calls add up.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// The labels every series gets, sorted by name: `job`, `instance`
    /// and the extra ones.
    pub(crate) fn target_labels(&self) -> Vec<(String, String)> {
        let mut labels = self.labels.clone();
        labels.push(("job".to_owned(), self.job.clone()));
        let instance = self.instance.clone().unwrap_or_else(host_name);
        labels.push(("instance".to_owned(), instance));
        labels.sort();
        labels
    }

    /// Checks every setting; the URL through the HTTP client's own parser.
    pub(crate) fn validate(&self) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::parse(&self.url).map_err(|e| Error::InvalidUrl {
            target: "remote write",
            url: url_for_message(&self.url),
            reason: e.reason,
        })?;
        let config = |reason: String| Err(Error::Config(format!("remote write: {reason}")));
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
        for (what, value) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("final_wait", self.final_wait),
            ("the maximum backoff", self.max_backoff),
        ] {
            if value > MAX_DURATION {
                return config(format!("{what} must be at most 24 h, not {value:?}"));
            }
        }
        if self.min_backoff > self.max_backoff {
            return config(format!(
                "the minimum backoff {:?} is above the maximum {:?}",
                self.min_backoff, self.max_backoff
            ));
        }
        if self.max_pending == 0 {
            return config("max_pending must be at least 1".to_owned());
        }
        if let Some(token) = &self.bearer_token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return config(
                "the bearer token must be non-empty visible ASCII (no spaces or line breaks)"
                    .to_owned(),
            );
        }
        if self.job.is_empty() {
            return config("the job label must not be empty".to_owned());
        }
        if self.instance.as_deref() == Some("") {
            return config("the instance label must not be empty".to_owned());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &self.labels {
            if matches!(name.as_str(), "job" | "instance") {
                return config(format!(
                    "label {name:?}: set it with RemoteWriteConfig::{name}"
                ));
            }
            if let Err(reason) = crate::metrics::custom::validate_label_name(name) {
                return config(format!("label {name:?}: {reason}"));
            }
            if value.is_empty() {
                return config(format!(
                    "label {name:?}: an empty value is no label in Prometheus"
                ));
            }
            if !seen.insert(name) {
                return config(format!("label {name:?} is given twice"));
            }
        }
        Ok(endpoint)
    }
}

/// A receiver's URL as an error may quote it: no user info, and the
/// built-in redaction rules applied (an `api_key=…` in the query).
pub(crate) fn url_for_message(url: &str) -> String {
    Redactor::builtin()
        .redact_str(&without_user_info(url))
        .into_owned()
}

/// The host's name, for the default `instance` label: what the kernel
/// says (Linux), then `/etc/hostname`, then the `HOSTNAME` variable.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: RemoteWriteConfig) -> Result<Endpoint, Error> {
        config.validate()
    }

    #[test]
    fn the_defaults_are_valid_and_label_every_series_with_job_and_instance() {
        let config = RemoteWriteConfig::new("http://127.0.0.1:9090/api/v1/write");
        assert!(check(config.clone()).is_ok());
        let labels = config.target_labels();
        assert_eq!(labels[0].0, "instance");
        assert!(!labels[0].1.is_empty());
        assert_eq!(labels[1], ("job".to_owned(), "agentgate".to_owned()));
    }

    #[test]
    fn extra_labels_come_sorted_beside_job_and_instance() {
        let config = RemoteWriteConfig::new("http://h/")
            .instance("box-1")
            .label("zone", "b")
            .label("cluster", "a");
        let names: Vec<_> = config
            .target_labels()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        assert_eq!(
            names,
            ["cluster=a", "instance=box-1", "job=agentgate", "zone=b"]
        );
    }

    #[test]
    fn a_url_the_client_cannot_send_to_is_an_invalid_url_error() {
        for url in ["https://prom.example/api/v1/write", "prom:9090", "http://"] {
            match check(RemoteWriteConfig::new(url)) {
                Err(Error::InvalidUrl { url: got, .. }) => assert_eq!(got, url),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn settings_out_of_range_are_config_errors_naming_them() {
        let base = || RemoteWriteConfig::new("http://127.0.0.1:9090/api/v1/write");
        let cases = [
            (base().interval(Duration::ZERO), "interval"),
            (base().final_wait(Duration::ZERO), "final_wait"),
            (base().max_pending(0), "max_pending"),
            (
                base().backoff(Duration::from_secs(2), Duration::from_secs(1)),
                "backoff",
            ),
            (base().bearer_token("a b"), "bearer token"),
            (base().bearer_token("x\r\nHost: evil"), "bearer token"),
            (base().job(""), "job"),
            (base().instance(""), "instance"),
            (base().label("job", "x"), "RemoteWriteConfig::job"),
            (base().label("__name__", "x"), "reserved"),
            (base().label("le", "1"), "reserved"),
            (base().label("team", ""), "empty value"),
            (base().label("team", "a").label("team", "b"), "twice"),
            (base().label("9lives", "x"), "digit"),
        ];
        for (config, needle) in cases {
            match check(config) {
                Err(Error::Config(message)) => {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn durations_too_long_for_the_clock_are_config_errors_not_a_panic_at_shutdown() {
        let base = || RemoteWriteConfig::new("http://127.0.0.1:9090/api/v1/write");
        let day = Duration::from_secs(24 * 3600);
        let cases = [
            (base().interval(Duration::MAX), "interval"),
            (base().timeout(Duration::MAX), "timeout"),
            (base().final_wait(Duration::MAX), "final_wait"),
            (base().backoff(day, Duration::MAX), "maximum backoff"),
        ];
        for (config, needle) in cases {
            match check(config) {
                Err(Error::Config(message)) => {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                    assert!(message.contains("24 h"), "{message:?}");
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
        let longest = base()
            .interval(day)
            .timeout(day)
            .final_wait(day)
            .backoff(day, day);
        assert!(check(longest).is_ok());
    }

    #[test]
    fn the_token_never_shows_in_a_debug_print() {
        let config = RemoteWriteConfig::new("http://h/").bearer_token("s3cr3t-value");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
