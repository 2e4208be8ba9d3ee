//! The Pushgateway as a [`Target`]: the whole exposition `PUT` to the
//! group's URL (a `PUT` replaces the group, so the Pushgateway holds the
//! latest figures, never a sum), or the group deleted at shutdown. A label
//! of the engine's named like one of the grouping key goes as
//! `exported_<name>`, as a scrape without `honor_labels` would have it.
//!
//! Every request is counted (`pushgateway_pushes_total`, failures by
//! reason in `pushgateway_push_failures_total`). Failures are logged the
//! first time, then at most once per [`LOG_EVERY`] while they go on,
//! then once when pushes succeed again: a Pushgateway that stays down for
//! a day costs a few hundred lines, not one per interval. The final push
//! is always logged when it fails, since its figures are then lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Pause, Target};
use crate::exposition::{Format, PROTOBUF_CONTENT_TYPE};
use crate::http_client::{self, Request};
use crate::log::{Dispatch, Logger};
use crate::metrics::Metrics;
use crate::metrics::PushFailure;
use crate::metrics::push::{PushCounters, PushPlan};

/// How often a run of failures is logged again.
const LOG_EVERY: Duration = Duration::from_secs(300);
/// The first pause before the final push is tried again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two tries of the final push.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Pushes to one Pushgateway group.
pub(crate) struct PushGateway {
    plan: PushPlan,
    counters: Arc<PushCounters>,
    log: Logger,
    /// The exposition, rendered into the same buffer every time.
    rendered: String,
    /// What is pushed: `rendered` with the engine's labels named like the
    /// grouping key renamed `exported_<name>`.
    body: String,
    /// The protobuf exposition, when the plan asks for it.
    protobuf: Vec<u8>,
    /// Failed requests since the last success.
    failing: u64,
    /// When the current run of failures was last logged.
    logged: Option<Instant>,
}

/// A failed request: why, and the detail for the log.
struct Failed {
    reason: PushFailure,
    detail: String,
    retry_after: Option<Duration>,
}

impl PushGateway {
    pub(crate) fn new(
        plan: PushPlan,
        metrics: &Metrics,
        log: Option<Arc<Dispatch>>,
    ) -> PushGateway {
        let module = "agentgate_obs::pushgateway";
        let log = match log {
            Some(dispatch) => Logger::bound(module, dispatch),
            None => Logger::disabled(module),
        };
        PushGateway {
            plan,
            counters: metrics.push_counters(),
            log,
            rendered: String::with_capacity(16 * 1024),
            body: String::with_capacity(16 * 1024),
            protobuf: Vec::new(),
            failing: 0,
            logged: None,
        }
    }

    /// Says at start where the metrics go (never the token).
    pub(crate) fn announce(&self) {
        self.log.info(
            "pushing the metrics to a Pushgateway",
            [
                ("url", self.url().into()),
                (
                    "groupingKey",
                    serde_json::Value::Object(
                        self.plan
                            .grouping
                            .iter()
                            .map(|(name, value)| (name.clone(), value.clone().into()))
                            .collect(),
                    )
                    .into(),
                ),
                ("intervalMs", (self.plan.interval.as_millis() as u64).into()),
                (
                    "finalWaitMs",
                    (self.plan.final_wait.as_millis() as u64).into(),
                ),
                ("deleteOnShutdown", self.plan.delete_on_shutdown.into()),
                ("protobuf", self.plan.protobuf.into()),
            ],
        );
    }

    /// The group's URL, for messages.
    fn url(&self) -> String {
        let base = self.plan.endpoint.url();
        let base = base
            .strip_suffix(self.plan.endpoint.path())
            .unwrap_or(&base);
        format!("{base}{}", self.plan.path)
    }

    /// One request: `PUT` of the exposition, or `DELETE` of the group. A
    /// periodic one (`pause`) stops waiting when shutdown begins, so that
    /// the final push comes within its own wait.
    fn send(
        &self,
        delete: bool,
        deadline: Instant,
        pause: Option<&Pause<'_>>,
    ) -> Result<(), Failed> {
        let mut headers = Vec::with_capacity(2);
        if !delete {
            headers.push((
                "Content-Type",
                if self.plan.protobuf {
                    PROTOBUF_CONTENT_TYPE
                } else {
                    CONTENT_TYPE
                },
            ));
        }
        if let Some(authorization) = &self.plan.authorization {
            headers.push(("Authorization", authorization.as_str()));
        }
        let request = Request {
            method: if delete { "DELETE" } else { "PUT" },
            path: Some(&self.plan.path),
            headers: &headers,
            body: match (delete, self.plan.protobuf) {
                (true, _) => b"",
                (false, true) => &self.protobuf,
                (false, false) => self.body.as_bytes(),
            },
        };
        let answer = match pause {
            Some(pause) => {
                http_client::send_unless(&self.plan.endpoint, &request, deadline, &|| {
                    pause.stopped()
                })
            }
            None => http_client::send(&self.plan.endpoint, &request, deadline),
        };
        match answer {
            Ok(response) => match PushFailure::from_status(response.status) {
                None => Ok(()),
                Some(reason) => Err(Failed {
                    reason,
                    detail: format!("HTTP {}: {}", response.status, response.body_text()),
                    retry_after: response.retry_after,
                }),
            },
            Err(error) => Err(Failed {
                reason: PushFailure::from_send_error(&error),
                detail: error.to_string(),
                retry_after: None,
            }),
        }
    }

    /// The final request: tried again after a failure that may pass, while
    /// the deadline leaves room for the pause and another try.
    fn send_final(&self, delete: bool, deadline: Instant) -> Result<(), Failed> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let outcome = self.send(delete, deadline, None);
            let failed = match outcome {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            };
            // Retry-After is the least the receiver asks for, never less
            // than the backoff (a `Retry-After: 0` must not make a tight loop).
            let pause = failed
                .retry_after
                .map_or(backoff, |asked| asked.max(backoff));
            let left = deadline.saturating_duration_since(Instant::now());
            // A pause that leaves less than the first backoff for the
            // request itself is not worth taking.
            if !failed.reason.retryable() || pause + FIRST_BACKOFF > left {
                return Err(failed);
            }
            self.counters.record(Err(failed.reason));
            std::thread::sleep(pause);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Counts the outcome and logs what needs logging.
    fn outcome(&mut self, outcome: Result<(), Failed>, last: bool, delete: bool) {
        match outcome {
            Ok(()) => {
                self.counters.record(Ok(()));
                if self.failing > 0 {
                    self.log.info(
                        "pushes to the Pushgateway succeed again",
                        [
                            ("url", self.url().into()),
                            ("failedPushes", self.failing.into()),
                        ],
                    );
                }
                self.failing = 0;
                self.logged = None;
            }
            Err(failed) => {
                self.counters.record(Err(failed.reason));
                self.failing += 1;
                let fields = [
                    ("url", self.url().into()),
                    ("reason", failed.reason.as_str().into()),
                    ("error", failed.detail.into()),
                    ("failedPushes", self.failing.into()),
                ];
                if last {
                    let message = if delete {
                        "could not delete the group from the Pushgateway at shutdown; it keeps the last figures pushed"
                    } else {
                        "the final push to the Pushgateway failed: the Pushgateway does not have this process's final figures"
                    };
                    self.log.error(message, fields);
                } else if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    self.log.warn(
                        "push to the Pushgateway failed; failures are logged again every 5 minutes while they go on",
                        fields,
                    );
                    self.logged = Some(Instant::now());
                }
            }
        }
    }
}

impl Target for PushGateway {
    fn name(&self) -> &'static str {
        "pushgateway"
    }

    fn deliver(&mut self, metrics: &Metrics, deadline: Instant, last: bool, pause: &Pause<'_>) {
        // A periodic push is one request, not retried.
        let delete = last && self.plan.delete_on_shutdown;
        if !delete {
            // The Pushgateway overwrites a pushed label named like the
            // grouping key with the key's value: two series that differ
            // only in it collide, and it refuses the whole push.
            let names: Vec<&str> = self.plan.grouping.iter().map(|(n, _)| n.as_str()).collect();
            if self.plan.protobuf {
                self.protobuf = metrics.render_protobuf_renaming(&names);
            } else {
                self.rendered.clear();
                metrics.render_into(Format::Prometheus, &mut self.rendered);
                self.body.clear();
                super::parse::rename_labels(&self.rendered, &names, &mut self.body);
            }
        }
        let outcome = if last {
            self.send_final(delete, deadline)
        } else {
            self.send(false, deadline, Some(pause))
        };
        self.outcome(outcome, last, delete);
    }
}
