//! What the exporters that queue and retry (remote write, OTLP) count,
//! and why: one set of counters, samples for one, spans for the other.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why what was sent (samples, spans) was given up on after a retryable
/// error: the label `reason` of `remote_write_samples_failed_total` and
/// `otlp_spans_failed_total`, a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailReason {
    /// No connection: the host did not resolve or refused.
    Connect = 0,
    /// The connection broke while sending or reading.
    Io = 1,
    /// The answer was not HTTP.
    Malformed = 2,
    /// The receiver answered `5xx`.
    ServerError = 3,
    /// The receiver answered `429 Too Many Requests`.
    Throttled = 4,
    /// No answer before the deadline, or no time left to try.
    Timeout = 5,
}

impl FailReason {
    /// Every reason, in label order (sorted), matching the discriminants.
    pub(crate) const ALL: [FailReason; 6] = [
        FailReason::Connect,
        FailReason::Io,
        FailReason::Malformed,
        FailReason::ServerError,
        FailReason::Throttled,
        FailReason::Timeout,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailReason::Connect => "connect",
            FailReason::Io => "io",
            FailReason::Malformed => "malformed",
            FailReason::ServerError => "server_error",
            FailReason::Throttled => "throttled",
            FailReason::Timeout => "timeout",
        }
    }
}

/// Why what was sent was dropped without a retry: the label `reason` of
/// `remote_write_samples_dropped_total` and `otlp_spans_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The queue was full: the oldest made room for the newest.
    QueueFull = 0,
    /// The receiver refused the request (a `4xx` other than `429`), or
    /// redirected it (a `3xx`: redirects are not followed).
    Rejected = 1,
}

impl DropReason {
    /// Every reason, in label order (sorted), matching the discriminants.
    pub(crate) const ALL: [DropReason; 2] = [DropReason::QueueFull, DropReason::Rejected];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
        }
    }
}

/// What an exporter of samples or spans counts (zero without it),
/// rendered as `remote_write_*` and `otlp_*`.
#[derive(Debug, Default)]
pub(crate) struct DeliveryCounters {
    delivered: AtomicU64,
    failed: [AtomicU64; FailReason::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    retries: AtomicU64,
}

/// The counters' values, for rendering and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeliveryStats {
    pub(crate) delivered: u64,
    pub(crate) failed: [u64; FailReason::ALL.len()],
    pub(crate) dropped: [u64; DropReason::ALL.len()],
    pub(crate) retries: u64,
}

impl DeliveryCounters {
    // Relaxed throughout: counts written by the exporter thread alone
    // (and the drain thread, for spans dropped on their way) and read for
    // reporting.
    pub(crate) fn delivered(&self, count: u64) {
        self.delivered.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, reason: FailReason, count: u64) {
        self.failed[reason as usize].fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason, count: u64) {
        self.dropped[reason as usize].fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> DeliveryStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryStats {
            delivered: load(&self.delivered),
            failed: std::array::from_fn(|i| load(&self.failed[i])),
            dropped: std::array::from_fn(|i| load(&self.dropped[i])),
            retries: load(&self.retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_by_reason() {
        let counters = DeliveryCounters::default();
        counters.delivered(10);
        counters.failed(FailReason::Throttled, 3);
        counters.dropped(DropReason::Rejected, 4);
        counters.retried();
        let stats = counters.stats();
        assert_eq!(stats.delivered, 10);
        assert_eq!(stats.failed[FailReason::Throttled as usize], 3);
        assert_eq!(stats.dropped[DropReason::Rejected as usize], 4);
        assert_eq!(stats.retries, 1);
    }
}
