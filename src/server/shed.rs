//! What the server's flood defences cost: connections answered with an
//! error (or closed) because of a limit rather than because of what they
//! sent, counted by reason, rendered as
//! `<namespace>_http_connections_shed_total{reason}` on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShedReason {
    /// The pending list was full: the oldest connection that had not sent
    /// a whole request was answered 503 and closed to make room.
    IdleEvicted,
    /// The pending list was full of complete requests waiting for a
    /// worker: the new connection was answered 503.
    PendingFull,
    /// A complete request waited for a worker until its deadline: 503.
    WorkersBusy,
    /// The request did not arrive within the request timeout: 408.
    RequestTimeout,
    /// A WebSocket upgrade found every client slot taken: 503.
    WsClientsFull,
}

impl ShedReason {
    /// Every reason, sorted by label value (the order they are rendered in).
    pub(crate) const ALL: [ShedReason; 5] = [
        ShedReason::IdleEvicted,
        ShedReason::PendingFull,
        ShedReason::RequestTimeout,
        ShedReason::WorkersBusy,
        ShedReason::WsClientsFull,
    ];

    /// The `reason` label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ShedReason::IdleEvicted => "idle_evicted",
            ShedReason::PendingFull => "pending_full",
            ShedReason::RequestTimeout => "request_timeout",
            ShedReason::WorkersBusy => "workers_busy",
            ShedReason::WsClientsFull => "ws_clients_full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The counters, shared by the server (which counts) and the metrics
/// (which render them).
#[derive(Debug, Default)]
pub(crate) struct ShedCounts {
    counts: [AtomicU64; ShedReason::ALL.len()],
}

impl ShedCounts {
    pub(crate) fn count(&self, reason: ShedReason) {
        // Relaxed: counters read for reporting only.
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, reason: ShedReason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }
}
