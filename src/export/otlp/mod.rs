//! Runs exported as OTLP traces over HTTP, with no async runtime: the
//! drain thread ([`feed::TraceFeed`]) hands each event of a run as a
//! compact step ([`steps::Steps`]) through a bounded queue to an exporter
//! thread ([`super::Exporter`]) that builds the spans
//! ([`builder::SpanBuilder`]), encodes them and sends them with our
//! blocking HTTP/1.1 client (`src/http_client/`).
//!
//! The thread takes the drain thread's batches when it rings, builds and
//! encodes their spans in requests of at most `max_batch` spans (protobuf
//! or JSON), and every interval sends the requests oldest first within
//! the delivery's deadline. A `2xx` counts the request's spans as
//! exported. A `429`, `502`, `503`, `504` or a
//! connection error is retried after a backoff that doubles (or the
//! receiver's `Retry-After`, when longer), as OTLP/HTTP specifies; a wait
//! past the deadline leaves the request for the next delivery. Another
//! `4xx` drops the request (counted `rejected`); another `5xx` gives up on
//! it (counted `failed`, `server_error`). At shutdown, after the last
//! event is processed, one more delivery gets the final wait; what is
//! still unsent then is counted failed. The drain thread never waits: a
//! batch of steps that finds the queue full is dropped, and the spans it
//! would have ended are counted.

pub(crate) mod builder;
pub(crate) mod encode;
pub(crate) mod feed;
pub(crate) mod spans;
pub(crate) mod steps;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::{Idle, Pause, Target, Warnings};
use crate::http_client::{self, Endpoint, Request, Response, SendError};
use crate::log::{Dispatch, FieldValue, Logger};
use crate::metrics::delivery::{DeliveryCounters, DropReason, FailReason};
use crate::metrics::{Metrics, OtlpConfig, OtlpProtocol};
use builder::SpanBuilder;
use encode::Resource;
use feed::{HandOff, TraceFeed};
use spans::SpanData;
use steps::Steps;

/// One request waiting to be sent.
struct Batch {
    body: Vec<u8>,
    spans: u64,
    retries: u32,
}

/// The OTLP receiver, as an exporter [`Target`].
pub(crate) struct Otlp {
    endpoint: Endpoint,
    config: OtlpConfig,
    resource: Resource,
    headers: Vec<(String, String)>,
    steps: Receiver<Steps>,
    /// Rung by the drain thread when it rests or half the queue is taken.
    rung: Receiver<()>,
    builder: SpanBuilder,
    /// Spans built, not yet in a request.
    waiting: Vec<SpanData>,
    /// Emptied batches, back to the drain thread to fill again.
    recycle: Sender<Steps>,
    /// Steps in the channel, shared with the feed (its bound).
    queued: Arc<AtomicUsize>,
    counters: Arc<DeliveryCounters>,
    log: Option<Logger>,
    pending: VecDeque<Batch>,
    backoff: Duration,
    not_before: Option<Instant>,
    last_error: Option<FailReason>,
    warnings: Warnings,
}

/// The feed for the drain thread and the target for the exporter thread,
/// joined by a queue of `4 * config.max_queue` steps.
pub(crate) fn start(
    config: OtlpConfig,
    metrics: &Metrics,
    log: Option<Arc<Dispatch>>,
) -> Result<(TraceFeed, Otlp), crate::error::Error> {
    let endpoint = config.validate()?;
    // Unbounded as a channel, bounded in steps by `queued`: the feed hands
    // over batches and counts what finds no room.
    let (tx, rx) = crossbeam_channel::unbounded();
    let capacity = config.max_queue.saturating_mul(feed::STEPS_PER_SPAN);
    // Emptied batches wait for the drain thread to fill them again, as
    // many as the queue can hold: a burst that allocated fresh ones paid
    // for the page faults of memory the exporter thread had just freed.
    let (recycle, recycled) = crossbeam_channel::bounded(capacity.div_ceil(feed::BATCH) + 2);
    let queued = Arc::new(AtomicUsize::new(0));
    let (doorbell, rung) = crossbeam_channel::bounded(1);
    let counters = metrics.otlp_counters();
    let mut attributes = vec![("service.name".to_owned(), config.resolved_service_name())];
    attributes.extend(
        config
            .resource
            .iter()
            .filter(|(k, _)| k != "service.name")
            .cloned(),
    );
    let content_type = match config.protocol {
        OtlpProtocol::HttpProtobuf => "application/x-protobuf",
        OtlpProtocol::HttpJson => "application/json",
    };
    let mut headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
    headers.extend(
        config
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .cloned(),
    );
    let target = Otlp {
        endpoint,
        backoff: config.min_backoff,
        resource: Resource {
            attributes,
            scope_name: env!("CARGO_PKG_NAME"),
            scope_version: env!("CARGO_PKG_VERSION"),
        },
        headers,
        config,
        steps: rx,
        rung,
        builder: SpanBuilder::new(),
        waiting: Vec::new(),
        recycle,
        queued: queued.clone(),
        counters: counters.clone(),
        log: log.map(|log| Logger::bound("agentgate_obs::otlp", log)),
        pending: VecDeque::new(),
        not_before: None,
        last_error: None,
        warnings: Warnings::default(),
    };
    let hand_off = HandOff {
        queue: tx,
        recycled,
        doorbell,
        queued,
        capacity,
    };
    Ok((TraceFeed::new(hand_off, counters), target))
}

impl Otlp {
    /// Takes a batch from the drain thread: the spans its steps end join
    /// those waiting to make a request, and the emptied batch goes back to
    /// be filled again while its memory is still warm.
    fn take(&mut self, mut batch: Steps) {
        // Relaxed: the feed's bound, see `TraceFeed::hand_off`.
        self.queued.fetch_sub(batch.steps.len(), Ordering::Relaxed);
        self.builder.read(&batch, &mut self.waiting);
        batch.clear();
        let _ = self.recycle.try_send(batch);
        self.package(false);
    }

    /// Encodes the waiting spans into requests of `max_batch` spans, and
    /// the rest into a smaller one when `all`.
    fn package(&mut self, all: bool) {
        // A request never holds more than the queue may: with `max_batch`
        // above `max_queue`, spans would otherwise wait here unbounded.
        let max_batch = self.config.max_batch.min(self.config.max_queue).max(1);
        let whole = if all {
            self.waiting.len()
        } else {
            self.waiting.len() - self.waiting.len() % max_batch
        };
        // Encoded in place: splitting the rest off request by request
        // copied it every time.
        for request in self.waiting[..whole].chunks(max_batch) {
            let body = match self.config.protocol {
                OtlpProtocol::HttpProtobuf => encode::protobuf(&self.resource, request),
                OtlpProtocol::HttpJson => encode::json(&self.resource, request),
            };
            self.pending.push_back(Batch {
                body,
                spans: request.len() as u64,
                retries: 0,
            });
        }
        self.waiting.drain(..whole);
        // Bounded in spans, as the queue is: what waits for the receiver
        // and what waits in the queue stay within `max_queue` each.
        while self.pending.len() > 1 && self.pending_spans() > self.config.max_queue as u64 {
            if let Some(oldest) = self.pending.pop_front() {
                self.counters.dropped(DropReason::QueueFull, oldest.spans);
                self.warn(
                    "the OTLP requests waiting for the receiver are too many: the oldest is dropped",
                    vec![("spans", oldest.spans.into())],
                );
            }
        }
    }

    /// The spans in the requests waiting for the receiver (`max_queue`
    /// at most, in requests of `max_batch`).
    fn pending_spans(&self) -> u64 {
        self.pending.iter().map(|b| b.spans).sum()
    }

    /// Takes what the queue holds into requests.
    fn enqueue(&mut self) {
        while let Ok(batch) = self.steps.try_recv() {
            self.take(batch);
        }
        self.package(true);
    }

    fn send_pending(&mut self, deadline: Instant, pause: &Pause<'_>) {
        let headers: Vec<(String, String)> = self.headers.clone();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        loop {
            if pause.stopped() {
                // The final delivery sends what is pending, now.
                return;
            }
            if let Some(at) = self.not_before {
                if at >= deadline {
                    return;
                }
                // Shutdown cuts a periodic delivery's wait short: the
                // final flush sends what is pending, within its own wait.
                if !pause.sleep(at.saturating_duration_since(Instant::now())) {
                    return;
                }
                self.not_before = None;
            }
            let Some(batch) = self.pending.front() else {
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            let request = Request {
                method: "POST",
                path: None,
                headers: &headers,
                body: &batch.body,
            };
            // A retry is counted when it goes out, not when it is planned:
            // shutdown may forestall it.
            if batch.retries > 0 {
                self.counters.retried();
            }
            // A periodic delivery stops waiting when shutdown begins: the
            // final one sends this request again, within its own wait.
            let answer =
                http_client::send_unless(&self.endpoint, &request, deadline, &|| pause.stopped());
            if let Err(http_client::SendError::Stopped { .. }) = answer {
                // Sent again by the final delivery: a retry, as in remote
                // write.
                if let Some(batch) = self.pending.front_mut() {
                    batch.retries += 1;
                }
                return;
            }
            match classify(answer) {
                Verdict::Sent => {
                    let spans = batch.spans;
                    self.pending.pop_front();
                    self.counters.delivered(spans);
                    self.backoff = self.config.min_backoff;
                    self.last_error = None;
                }
                Verdict::Rejected(status, body) => {
                    let spans = batch.spans;
                    self.pending.pop_front();
                    self.counters.dropped(DropReason::Rejected, spans);
                    self.warn(
                        "the OTLP receiver refused a request; its spans are dropped",
                        vec![
                            ("status", u64::from(status).into()),
                            ("body", body.into()),
                            ("spans", spans.into()),
                        ],
                    );
                }
                Verdict::Fail(reason, message) => {
                    let spans = batch.spans;
                    self.pending.pop_front();
                    self.give_up(reason, spans, message);
                }
                Verdict::Retry(reason, retry_after, message) => {
                    self.last_error = Some(reason);
                    if Instant::now() >= deadline {
                        return;
                    }
                    let Some(batch) = self.pending.front_mut() else {
                        return;
                    };
                    if batch.retries >= self.config.max_retries {
                        let spans = batch.spans;
                        self.pending.pop_front();
                        self.give_up(reason, spans, message);
                        continue;
                    }
                    let wait = retry_after.map_or(self.backoff, |after| after.max(self.backoff));
                    self.backoff = (self.backoff * 2).min(self.config.max_backoff);
                    batch.retries += 1;
                    self.not_before = Some(Instant::now() + wait);
                }
            }
        }
    }

    fn give_up(&mut self, reason: FailReason, spans: u64, message: String) {
        self.counters.failed(reason, spans);
        self.warn(
            "the OTLP exporter gave up on a request",
            vec![
                ("reason", reason.as_str().into()),
                ("error", message.into()),
                ("spans", spans.into()),
            ],
        );
    }

    /// A warning, at most one a minute (see [`Warnings`]).
    fn warn(&mut self, message: &'static str, fields: Vec<(&'static str, FieldValue)>) {
        self.warnings
            .warn(self.log.as_ref(), || self.endpoint.url(), message, fields);
    }
}

impl Target for Otlp {
    fn name(&self) -> &'static str {
        "otlp"
    }

    /// Takes the drain thread's batches when it rings (as it rests, or
    /// when half the queue is taken): their memory goes back to it then
    /// instead of a delivery later, when it had to take fresh memory for
    /// the batches in between.
    ///
    /// Not while the requests waiting for the receiver hold `max_queue`
    /// spans: the batches then stay in the queue, whose bound drops the
    /// newest on the drain thread, before they cost the work of building
    /// and encoding spans only to be dropped here.
    fn idle(&mut self, until: Instant, finish: &Receiver<Instant>) -> Idle {
        loop {
            // A ring always wins a select over its timeout: under a steady
            // stream of batches the delivery must still come. Shutdown
            // first, as the other targets' wait has it: a delivery that
            // ran late must not keep the final one waiting.
            let now = Instant::now();
            if now >= until || self.pending_spans() >= self.config.max_queue as u64 {
                return super::idle(until, finish);
            }
            let wait = until.saturating_duration_since(now);
            crossbeam_channel::select! {
                recv(self.rung) -> rung => match rung {
                    Ok(()) => {
                        // Not past `max_queue` spans waiting, as above.
                        while self.pending_spans() < self.config.max_queue as u64
                            && let Ok(batch) = self.steps.try_recv()
                        {
                            self.take(batch);
                        }
                    }
                    // The pipeline is gone: only the final delivery is left.
                    Err(_) => return super::idle(until, finish),
                },
                recv(finish) -> deadline => return match deadline {
                    Ok(deadline) => Idle::Finish(deadline),
                    Err(_) => Idle::Dropped,
                },
                default(wait) => return Idle::Due,
            }
        }
    }

    fn deliver(&mut self, _metrics: &Metrics, deadline: Instant, last: bool, pause: &Pause<'_>) {
        self.enqueue();
        self.send_pending(deadline, pause);
        if last {
            // Nothing will try these again.
            let reason = self.last_error.unwrap_or(FailReason::Timeout);
            while let Some(batch) = self.pending.pop_front() {
                self.give_up(
                    reason,
                    batch.spans,
                    "the final flush's wait ended before this request could be sent".to_owned(),
                );
            }
        }
    }
}

enum Verdict {
    Sent,
    Rejected(u16, String),
    /// Not to be retried: a 5xx that OTLP does not retry.
    Fail(FailReason, String),
    Retry(FailReason, Option<Duration>, String),
}

fn classify(answer: Result<Response, SendError>) -> Verdict {
    match answer {
        Ok(response) if (200..300).contains(&response.status) => Verdict::Sent,
        Ok(response) => {
            let message = format!(
                "the receiver answered {}: {}",
                response.status,
                response.body_text()
            );
            match response.status {
                429 => Verdict::Retry(FailReason::Throttled, response.retry_after, message),
                502..=504 => Verdict::Retry(FailReason::ServerError, response.retry_after, message),
                500.. => Verdict::Fail(FailReason::ServerError, message),
                status => Verdict::Rejected(status, response.body_text()),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Phase, ProgressEvent, TraceId};
    use crate::pipeline::drain::{EventInfo, Sink};
    use crate::tracker::RunSlot;

    /// A sink and its target for a receiver nobody listens on.
    fn otlp(max_queue: usize) -> (TraceFeed, Otlp, Metrics) {
        let metrics = Metrics::new("agentgate", Default::default()).expect("metrics");
        let config = OtlpConfig::new("http://127.0.0.1:9")
            .max_queue(max_queue)
            .max_batch(64);
        let (sink, target) = start(config, &metrics, None).expect("a valid configuration");
        (sink, target, metrics)
    }

    /// `runs` whole runs of one phase each: two spans and three steps a
    /// run.
    fn feed(sink: &mut TraceFeed, runs: std::ops::Range<u32>) {
        for i in runs {
            let slot = RunSlot {
                index: i % 64,
                generation: i / 64,
            };
            let info = EventInfo::at_slot(slot, None);
            let done = EventKind::PhaseCompleted {
                iteration: 1,
                phase: Phase::Build,
                success: true,
                duration_ms: 1,
            };
            let failed = EventKind::RunFailed { error: "e".into() };
            for kind in [done, failed] {
                let mut event = ProgressEvent::new("wo", "r", kind);
                event.trace_id = Some(TraceId::random());
                sink.event(&event, &info);
            }
        }
        sink.flush();
    }

    #[test]
    fn batches_ready_when_a_delivery_is_due_do_not_keep_it_from_coming() {
        // Regression: a ready batch always won the select over its
        // timeout, so a steady stream of batches kept deliveries away.
        let (mut sink, mut target, _metrics) = otlp(1 << 20);
        let (_finish, finish) = crossbeam_channel::bounded::<Instant>(1);
        feed(&mut sink, 0..2_560);
        assert_eq!(target.queued.load(Ordering::Relaxed), 7_680);
        let idled = target.idle(Instant::now(), &finish);
        assert!(matches!(idled, Idle::Due), "{idled:?}");
        // The delivery takes them, not the wait before it.
        assert_eq!(target.queued.load(Ordering::Relaxed), 7_680);
    }

    #[test]
    fn a_shutdown_waiting_when_a_delivery_is_due_comes_first() {
        // Regression: after a late delivery the next
        // was due at once, again and again, and the final one never came.
        let (_sink, mut target, _metrics) = otlp(16);
        let (finish_tx, finish) = crossbeam_channel::bounded::<Instant>(1);
        let deadline = Instant::now() + Duration::from_secs(1);
        finish_tx.send(deadline).expect("room for the deadline");
        let idled = target.idle(Instant::now(), &finish);
        assert!(
            matches!(idled, Idle::Finish(d) if d == deadline),
            "{idled:?}"
        );
    }

    #[test]
    fn batches_stay_in_the_queue_while_the_waiting_requests_hold_max_queue_spans() {
        // A queue of 512 steps, in batches of 256 at most: 64 runs of
        // this kind go in one.
        let (mut sink, mut target, metrics) = otlp(128);
        let (_finish, finish) = crossbeam_channel::bounded::<Instant>(1);
        feed(&mut sink, 0..64);
        let _ = target.idle(Instant::now() + Duration::from_millis(20), &finish);
        assert_eq!(target.pending_spans(), 128, "taken, built and encoded");
        // The receiver holds nothing more: these wait in the queue, and
        // what does not fit there is dropped by the feed, not built.
        feed(&mut sink, 64..128);
        let _ = target.idle(Instant::now() + Duration::from_millis(20), &finish);
        feed(&mut sink, 128..192);
        assert_eq!(target.pending_spans(), 128);
        assert_eq!(target.queued.load(Ordering::Relaxed), 384);
        feed(&mut sink, 192..256);
        assert_eq!(target.queued.load(Ordering::Relaxed), 384);
        let dropped = metrics.otlp_counters().stats().dropped[DropReason::QueueFull as usize];
        assert_eq!(dropped, 128, "the last batch's two spans a run");
    }
}
