//! Prometheus remote write 1.0: the metrics as `/metrics` shows them,
//! each series with `job`, `instance` and the configured labels, one
//! sample each at the time of the send, in a snappy-compressed protobuf
//! `WriteRequest`.
//!
//! Each delivery renders the metrics into one request and appends it to a
//! bounded queue; then it sends the queue oldest first (so every series'
//! samples reach the receiver in time order), within the delivery's
//! deadline. A `2xx` counts the request's samples as sent. A `5xx`, a
//! `429` or a connection error is retried after a backoff that doubles
//! (or the receiver's `Retry-After`, when longer, up to 5 minutes); a wait that would pass
//! the deadline leaves the request queued for the next delivery. Out of
//! retries, or still queued when the final delivery's wait ends, its
//! samples are counted as failed. Any other answer (a `4xx`, a `3xx`) drops it: the
//! same bytes would be refused again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::parse::{self, TextSample};
use super::prompb::{self, Series};
use super::{Pause, Target, Warnings};
use crate::http_client::{self, Endpoint, Request, Response, SendError};
use crate::log::{Dispatch, FieldValue, Logger};
use crate::metrics::Metrics;
use crate::metrics::RemoteWriteConfig;
use crate::metrics::delivery::{DeliveryCounters, DropReason, FailReason};

/// The protocol version header's value for remote write 1.0.
const VERSION: &str = "0.1.0";

/// One request waiting to be sent.
#[derive(Debug)]
struct Batch {
    /// The compressed body.
    body: Vec<u8>,
    samples: u64,
    /// Failed tries that count against `max_retries`.
    retries: u32,
    /// Sent at least once: sending it again is a retry on
    /// `remote_write_retries_total`.
    sent: bool,
}

/// What one delivery achieved, for a caller that must know
/// ([`Observability::remote_write_once`](crate::Observability::remote_write_once)).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    /// The last error, for a message.
    pub(crate) error: Option<String>,
}

/// The remote write receiver, as an exporter [`Target`].
pub(crate) struct RemoteWrite {
    endpoint: Endpoint,
    config: RemoteWriteConfig,
    /// `job`, `instance` and the extra labels, sorted by name.
    target_labels: Vec<(String, String)>,
    authorization: Option<String>,
    /// Every sample's timestamp when set (a one-shot delivery of figures
    /// rebuilt from a journal); the time of the send otherwise.
    fixed_timestamp_ms: Option<i64>,
    counters: Arc<DeliveryCounters>,
    log: Option<Logger>,
    pending: VecDeque<Batch>,
    /// The next retry's wait.
    backoff: Duration,
    /// No request before this (the receiver's `Retry-After`, or the
    /// backoff a delivery ended in).
    not_before: Option<Instant>,
    /// Why the last try failed, until one succeeds: also why the requests
    /// queued behind it were not sent.
    last_error: Option<FailReason>,
    warnings: Warnings,
    /// A warning was logged since the last success: say when it works again.
    troubled: bool,
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWrite")
            .field("url", &self.endpoint.url())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl RemoteWrite {
    /// A sender to `config`'s receiver, counting into `metrics`' counters.
    /// `fixed_timestamp_ms` stamps every sample with that time instead of
    /// the send's: for a delivery of cumulative figures rebuilt from a
    /// journal, the time of its last event, so that sending them again is
    /// the same sample at the same time (which Prometheus accepts as a
    /// duplicate) rather than a new point. Such a delivery leaves out the
    /// families of the sending process's own pipeline
    /// ([`Metrics::is_process_series`]): they are not the journal's, and
    /// they change from one send to the next (remote write's own counters
    /// first), which Prometheus would refuse at a timestamp already written.
    pub(crate) fn new(
        config: RemoteWriteConfig,
        metrics: &Metrics,
        log: Option<Arc<Dispatch>>,
        fixed_timestamp_ms: Option<i64>,
    ) -> Result<RemoteWrite, crate::error::Error> {
        let endpoint = config.validate()?;
        Ok(RemoteWrite {
            endpoint,
            // Redacted as the engine's label values are: every series has them.
            target_labels: config
                .target_labels()
                .into_iter()
                .map(|(name, value)| {
                    let value = metrics.redact_label_value(&name, &value);
                    (name, value)
                })
                .collect(),
            authorization: config.bearer_token.as_ref().map(|t| format!("Bearer {t}")),
            backoff: config.min_backoff,
            config,
            fixed_timestamp_ms,
            counters: metrics.remote_write_counters(),
            log: log.map(|log| Logger::bound("agentgate_obs::remote_write", log)),
            pending: VecDeque::new(),
            not_before: None,
            last_error: None,
            warnings: Warnings::default(),
            troubled: false,
        })
    }

    /// Renders `metrics` into a request and queues it, dropping the oldest
    /// when the queue is full.
    fn enqueue(&mut self, metrics: &Metrics, outcome: &mut Outcome) {
        let timestamp_ms = self.fixed_timestamp_ms.unwrap_or_else(now_ms);
        let text = metrics.render_for_export();
        let (mut samples, skipped) = parse::samples(&text);
        if self.fixed_timestamp_ms.is_some() {
            // Figures rebuilt from a journal: only what the events say.
            samples.retain(|s| !metrics.is_process_series(&s.name));
        }
        if skipped > 0 {
            self.warn(
                "some lines of the exposition were not understood and are not sent",
                vec![("lines", (skipped as u64).into())],
            );
        }
        let body = self.encode(&mut samples, timestamp_ms);
        let compressed = match snap::raw::Encoder::new().compress_vec(&body) {
            Ok(compressed) => compressed,
            Err(error) => {
                // Only an input past snappy's 4 GiB block limit fails.
                self.counters
                    .dropped(DropReason::Rejected, samples.len() as u64);
                outcome.dropped += samples.len() as u64;
                self.warn(
                    "could not compress the request; its samples are dropped",
                    vec![("error", error.to_string().into())],
                );
                return;
            }
        };
        self.pending.push_back(Batch {
            body: compressed,
            samples: samples.len() as u64,
            retries: 0,
            sent: false,
        });
        while self.pending.len() > self.config.max_pending {
            if let Some(oldest) = self.pending.pop_front() {
                self.counters.dropped(DropReason::QueueFull, oldest.samples);
                outcome.dropped += oldest.samples;
                self.warn(
                    "the queue of requests is full: the oldest is dropped",
                    vec![
                        ("samples", oldest.samples.into()),
                        ("maxPending", (self.config.max_pending as u64).into()),
                    ],
                );
            }
        }
    }

    /// The `WriteRequest` of `samples`, unframed and uncompressed.
    fn encode(&self, samples: &mut [TextSample], timestamp_ms: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(samples.len() * 96);
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(16);
        for sample in samples.iter_mut() {
            // An empty value is no label to Prometheus.
            sample.labels.retain(|(_, value)| !value.is_empty());
            // A label of the engine's named like a target label keeps its
            // value under another name, as a scrape without honor_labels:
            // `exported_<name>`, prefixed again while that name is taken.
            for i in 0..sample.labels.len() {
                let name = &sample.labels[i].0;
                if self.target_labels.iter().any(|(n, _)| n == name) {
                    let exported = crate::exposition::exported_name(name, |candidate| {
                        sample.labels.iter().any(|(n, _)| n == candidate)
                            || self.target_labels.iter().any(|(n, _)| n == candidate)
                    });
                    sample.labels[i].0 = exported;
                }
            }
        }
        for sample in samples.iter() {
            labels.clear();
            labels.push(("__name__", &sample.name));
            labels.extend(sample.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            labels.extend(
                self.target_labels
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str())),
            );
            labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
            prompb::encode_write_request(
                &[Series {
                    labels: &labels,
                    value: sample.value,
                    timestamp_ms,
                }],
                &mut body,
            );
        }
        body
    }

    /// Sends the queue, oldest first, until it is empty, `deadline`, or
    /// `pause` says shutdown began.
    fn send_pending(&mut self, deadline: Instant, pause: &Pause<'_>, outcome: &mut Outcome) {
        let mut headers: Vec<(&str, &str)> = vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", VERSION),
        ];
        let authorization = self.authorization.clone();
        if let Some(value) = &authorization {
            headers.push(("Authorization", value));
        }
        loop {
            if pause.stopped() {
                // The final delivery sends what is queued, now.
                return;
            }
            if let Some(at) = self.not_before {
                if at >= deadline {
                    return;
                }
                if !pause.sleep(at.saturating_duration_since(Instant::now())) {
                    return;
                }
                self.not_before = None;
            }
            let Some(batch) = self.pending.front_mut() else {
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            // Counted when it goes out, not when it is planned: a retry
            // the deadline forestalls was never sent.
            if batch.sent {
                self.counters.retried();
            }
            batch.sent = true;
            let batch = &*batch;
            let request = Request {
                method: "POST",
                path: None,
                headers: &headers,
                body: &batch.body,
            };
            // A periodic delivery stops waiting when shutdown begins: the
            // final one sends this request again, within its own wait.
            let answer =
                http_client::send_unless(&self.endpoint, &request, deadline, &|| pause.stopped());
            if let Err(http_client::SendError::Stopped { .. }) = answer {
                return;
            }
            match classify(answer) {
                Verdict::Sent => {
                    let samples = batch.samples;
                    self.pending.pop_front();
                    self.counters.delivered(samples);
                    outcome.sent += samples;
                    self.backoff = self.config.min_backoff;
                    self.last_error = None;
                    if self.troubled {
                        self.troubled = false;
                        if let Some(log) = &self.log {
                            log.info(
                                "remote write delivers again",
                                [("url", self.endpoint.url().into())],
                            );
                        }
                    }
                }
                Verdict::Rejected(status, body) => {
                    let samples = batch.samples;
                    self.pending.pop_front();
                    self.counters.dropped(DropReason::Rejected, samples);
                    outcome.dropped += samples;
                    let message = format!("the receiver answered {status}: {body}");
                    self.warn(
                        "the receiver refused a request; its samples are dropped",
                        vec![
                            ("status", u64::from(status).into()),
                            ("body", body.into()),
                            ("samples", samples.into()),
                        ],
                    );
                    outcome.error = Some(message);
                }
                Verdict::Retry(reason, retry_after, message) => {
                    outcome.error = Some(message.clone());
                    self.last_error = Some(reason);
                    let Some(batch) = self.pending.front_mut() else {
                        return;
                    };
                    if Instant::now() >= deadline {
                        // The deadline cut this try short: the next
                        // delivery tries again, and the final one gives up.
                        return;
                    }
                    if batch.retries >= self.config.max_retries {
                        let samples = batch.samples;
                        self.pending.pop_front();
                        self.give_up(reason, samples, &message, outcome);
                        continue;
                    }
                    let wait = retry_after.map_or(self.backoff, |after| after.max(self.backoff));
                    self.backoff = (self.backoff * 2).min(self.config.max_backoff);
                    batch.retries += 1;
                    // Slept at the top of the loop, or by the next delivery
                    // when it would pass this one's deadline.
                    self.not_before = Some(Instant::now() + wait);
                }
            }
        }
    }

    fn give_up(&mut self, reason: FailReason, samples: u64, message: &str, outcome: &mut Outcome) {
        self.counters.failed(reason, samples);
        outcome.failed += samples;
        self.warn(
            "remote write gave up on a request after retries",
            vec![
                ("reason", reason.as_str().into()),
                ("error", message.to_owned().into()),
                ("samples", samples.into()),
            ],
        );
    }

    /// One delivery, returning what it achieved.
    pub(crate) fn deliver_now(
        &mut self,
        metrics: &Metrics,
        deadline: Instant,
        last: bool,
        pause: &Pause<'_>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        self.enqueue(metrics, &mut outcome);
        self.send_pending(deadline, pause, &mut outcome);
        if last {
            // Nothing will try these again.
            let reason = self.last_error.unwrap_or(FailReason::Timeout);
            while let Some(batch) = self.pending.pop_front() {
                let message = outcome.error.clone().unwrap_or_else(|| {
                    "the final send's wait ended before this request could be sent".to_owned()
                });
                self.give_up(reason, batch.samples, &message, &mut outcome);
            }
        }
        outcome
    }

    /// A warning, at most one a minute (see [`Warnings`]).
    fn warn(&mut self, message: &'static str, fields: Vec<(&'static str, FieldValue)>) {
        self.troubled = true;
        self.warnings
            .warn(self.log.as_ref(), || self.endpoint.url(), message, fields);
    }
}

impl Target for RemoteWrite {
    fn name(&self) -> &'static str {
        "remote_write"
    }

    fn deliver(&mut self, metrics: &Metrics, deadline: Instant, last: bool, pause: &Pause<'_>) {
        self.deliver_now(metrics, deadline, last, pause);
    }
}

/// What to do after one try.
enum Verdict {
    Sent,
    /// Status and the start of the body.
    Rejected(u16, String),
    /// Why, the receiver's `Retry-After`, a message.
    Retry(FailReason, Option<Duration>, String),
}

fn classify(answer: Result<Response, SendError>) -> Verdict {
    match answer {
        Ok(response) if (200..300).contains(&response.status) => Verdict::Sent,
        Ok(response) if response.status == 429 || response.status >= 500 => {
            let reason = if response.status == 429 {
                FailReason::Throttled
            } else {
                FailReason::ServerError
            };
            let message = format!(
                "the receiver answered {}: {}",
                response.status,
                response.body_text()
            );
            Verdict::Retry(reason, response.retry_after, message)
        }
        Ok(response) => Verdict::Rejected(response.status, response.body_text()),
        Err(error) => {
            let reason = match error.kind() {
                "connect" => FailReason::Connect,
                "io" => FailReason::Io,
                "malformed" => FailReason::Malformed,
                _ => FailReason::Timeout,
            };
            Verdict::Retry(reason, None, error.to_string())
        }
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A receiver answering each connection with the next of `statuses`
    /// (the last one again once they run out), keeping every request.
    struct Fake {
        url: String,
        requests: Arc<parking_lot::Mutex<Vec<Vec<u8>>>>,
    }

    fn fake(statuses: &[u16]) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let requests = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 65536];
                // The head, then Content-Length bytes of body.
                loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                seen.lock().push(request);
                let status = statuses[i.min(statuses.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Fake { url, requests }
    }

    fn metrics() -> Metrics {
        Metrics::new("agentgate", MetricsConfig::default()).unwrap()
    }

    fn sender(url: &str, metrics: &Metrics, at: Option<i64>) -> RemoteWrite {
        let config = RemoteWriteConfig::new(url)
            .instance("box-1")
            .backoff(Duration::from_millis(1), Duration::from_millis(4))
            .max_retries(2);
        RemoteWrite::new(config, metrics, None, at).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// The request's body, decompressed.
    fn body(request: &[u8]) -> Vec<u8> {
        let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        snap::raw::Decoder::new()
            .decompress_vec(&request[end + 4..])
            .unwrap()
    }

    #[test]
    fn a_request_carries_the_remote_write_headers_and_a_snappy_protobuf_body() {
        let receiver = fake(&[204]);
        let metrics = metrics();
        let mut rw = sender(&receiver.url, &metrics, Some(1_700_000_000_000));
        let outcome = rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        let requests = receiver.requests.lock();
        let head = String::from_utf8_lossy(&requests[0]).to_string();
        assert!(
            head.starts_with("POST /api/v1/write HTTP/1.1\r\n"),
            "{head}"
        );
        for header in [
            "Content-Encoding: snappy",
            "Content-Type: application/x-protobuf",
            "X-Prometheus-Remote-Write-Version: 0.1.0",
        ] {
            assert!(head.contains(header), "{header} missing from {head}");
        }
        // The runs counter, labelled, sorted, at the fixed time.
        let labels = [
            ("__name__", "agentgate_runs_completed_total"),
            ("instance", "box-1"),
            ("job", "agentgate"),
            ("result", "failed"),
        ];
        let mut expected = Vec::new();
        prompb::encode_write_request(
            &[Series {
                labels: &labels,
                value: 0.0,
                timestamp_ms: 1_700_000_000_000,
            }],
            &mut expected,
        );
        let body = body(&requests[0]);
        assert!(
            body.windows(expected.len()).any(|w| w == expected),
            "the series is not in the body"
        );
        // With a fixed timestamp, the series of the events alone.
        let (all, _) = parse::samples(&metrics.render());
        let of_events = all
            .iter()
            .filter(|s| !metrics.is_process_series(&s.name))
            .count() as u64;
        assert!(of_events < all.len() as u64);
        assert!(of_events > 0);
        assert_eq!(outcome.sent, of_events);
        assert_eq!(metrics.remote_write_counters().stats().delivered, of_events);
        let name = b"agentgate_remote_write_samples_sent_total";
        assert!(!body.windows(name.len()).any(|w| w == name));
    }

    #[test]
    fn a_bearer_token_goes_in_the_authorization_header() {
        let receiver = fake(&[200]);
        let metrics = metrics();
        let config = RemoteWriteConfig::new(&receiver.url).bearer_token("t0k3n");
        let mut rw = RemoteWrite::new(config, &metrics, None, None).unwrap();
        rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        let head = String::from_utf8_lossy(&receiver.requests.lock()[0]).to_string();
        assert!(
            head.contains("\r\nAuthorization: Bearer t0k3n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_label_of_the_engines_named_like_a_target_label_is_kept_as_exported() {
        let receiver = fake(&[200]);
        let metrics = metrics();
        metrics
            .counter("builds_total", "Builds.", &[("job", "nightly")])
            .unwrap()
            .increment(1);
        let mut rw = sender(&receiver.url, &metrics, Some(5));
        rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        let labels = [
            ("__name__", "agentgate_builds_total"),
            ("exported_job", "nightly"),
            ("instance", "box-1"),
            ("job", "agentgate"),
        ];
        let mut expected = Vec::new();
        prompb::encode_write_request(
            &[Series {
                labels: &labels,
                value: 1.0,
                timestamp_ms: 5,
            }],
            &mut expected,
        );
        let body = body(&receiver.requests.lock()[0]);
        assert!(body.windows(expected.len()).any(|w| w == expected));
    }

    #[test]
    fn server_errors_are_retried_then_sent_when_the_receiver_recovers() {
        let receiver = fake(&[503, 500, 200]);
        let metrics = metrics();
        let mut rw = sender(&receiver.url, &metrics, None);
        let outcome = rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        assert!(outcome.sent > 0);
        let stats = metrics.remote_write_counters().stats();
        assert_eq!(stats.retries, 2);
        assert_eq!(stats.delivered, outcome.sent);
        assert_eq!(stats.failed, [0; 6]);
        assert_eq!(receiver.requests.lock().len(), 3);
    }

    #[test]
    fn out_of_retries_the_samples_are_counted_failed_by_the_last_error() {
        let receiver = fake(&[429]);
        let metrics = metrics();
        let mut rw = sender(&receiver.url, &metrics, None);
        let outcome = rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        let stats = metrics.remote_write_counters().stats();
        assert_eq!(stats.retries, 2);
        assert_eq!(stats.delivered, 0);
        assert!(outcome.failed > 0);
        assert_eq!(stats.failed[FailReason::Throttled as usize], outcome.failed);
        assert_eq!(receiver.requests.lock().len(), 3, "one try and two retries");
    }

    #[test]
    fn a_4xx_drops_the_request_without_a_retry() {
        let receiver = fake(&[400]);
        let metrics = metrics();
        let mut rw = sender(&receiver.url, &metrics, None);
        let outcome = rw.deliver_now(&metrics, soon(), true, &Pause::plain());
        let stats = metrics.remote_write_counters().stats();
        assert_eq!(stats.retries, 0);
        assert!(outcome.dropped > 0);
        assert_eq!(
            stats.dropped[DropReason::Rejected as usize],
            outcome.dropped
        );
        assert_eq!(receiver.requests.lock().len(), 1);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_request_and_counts_its_samples() {
        let metrics = metrics();
        // Nothing listens there: every try fails to connect.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RemoteWriteConfig::new(format!("http://127.0.0.1:{port}/"))
            .max_pending(2)
            .max_retries(100)
            .backoff(Duration::from_secs(60), Duration::from_secs(60));
        let mut rw = RemoteWrite::new(config, &metrics, None, None).unwrap();
        for _ in 0..3 {
            rw.deliver_now(&metrics, soon(), false, &Pause::plain());
        }
        assert_eq!(rw.pending.len(), 2);
        let stats = metrics.remote_write_counters().stats();
        assert!(stats.dropped[DropReason::QueueFull as usize] > 0);
        assert_eq!(stats.retries, 0, "the next retry waits for the backoff");
        // The final delivery's wait ends before the backoff: both fail.
        let last = rw.deliver_now(
            &metrics,
            Instant::now() + Duration::from_millis(50),
            true,
            &Pause::plain(),
        );
        assert!(rw.pending.is_empty());
        let stats = metrics.remote_write_counters().stats();
        assert_eq!(stats.failed[FailReason::Connect as usize], last.failed);
        assert!(last.failed > 0);
    }
}
