//! File descriptors: the server raises the process's soft limit on open
//! files, then sizes how many connections it holds to what it got.
//!
//! Every connection the server holds is a descriptor: pending requests,
//! answered connections lingering before their close, the accept thread's
//! hand-off, queued jobs and WebSocket clients. At the soft limit many
//! systems start a process with (1,024), a flood of idle connections used
//! them all before the pending list was full and evicted anything: `accept`
//! then failed with `EMFILE` and health probes waited in the listen
//! backlog until the flood timed out. So at start the soft limit is raised
//! toward the hard limit (never lowered), and whatever it ends up being,
//! the connection bounds are cut to fit in it with room left for the
//! engine's own files: a flood then meets an eviction, never `EMFILE`.

use std::io;

/// The soft limit asked for, at most: enough for every connection bound
/// at its full size many times over. Not the hard limit itself (often a
/// million or more): the engine's child processes inherit the soft limit,
/// and some programs close or scan every descriptor up to it at start.
pub(crate) const RAISE_TO: u64 = 65_536;

/// Complete requests waiting for a worker, per queue (general and priority).
pub(crate) const BACKLOG: usize = 64;

/// What the server did about the limit on open files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileLimit {
    /// The soft limit found at start (`None` where there is no such limit).
    pub(crate) before: Option<u64>,
    /// The soft limit after raising it.
    pub(crate) after: Option<u64>,
    /// The hard limit, the most the soft one could be raised to.
    pub(crate) hard: Option<u64>,
    /// Why raising it failed, if it did.
    pub(crate) error: Option<String>,
}

/// Raises the soft limit on open files to [`RAISE_TO`], or to the hard
/// limit if that is lower; a soft limit already higher is left alone.
#[cfg(unix)]
pub(crate) fn raise_file_limit() -> FileLimit {
    use rlimit::Resource;
    let (soft, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => return unknown(&e),
    };
    let target = RAISE_TO.min(hard);
    let mut limit = FileLimit {
        before: Some(soft),
        after: Some(soft),
        hard: Some(hard),
        error: None,
    };
    if soft < target {
        match Resource::NOFILE.set(target, hard) {
            Ok(()) => limit.after = Resource::NOFILE.get_soft().ok().or(Some(soft)),
            Err(e) => limit.error = Some(e.to_string()),
        }
    }
    limit
}

/// No such limit here: the connection bounds keep their full size.
#[cfg(not(unix))]
pub(crate) fn raise_file_limit() -> FileLimit {
    FileLimit {
        before: None,
        after: None,
        hard: None,
        error: None,
    }
}

#[cfg(unix)]
fn unknown(error: &io::Error) -> FileLimit {
    FileLimit {
        before: None,
        after: None,
        hard: None,
        error: Some(error.to_string()),
    }
}

/// How many connections of each kind the server holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// Connections whose request is still arriving (or waiting for a worker).
    pub(crate) pending: usize,
    /// Answered connections reading away what their client still sends.
    pub(crate) lingering: usize,
    /// Accepted connections waiting for the reader thread.
    pub(crate) intake: usize,
    /// WebSocket clients served at once.
    pub(crate) ws_clients: usize,
}

/// The bounds when descriptors are plentiful.
const FULL: Capacity = Capacity {
    pending: 1024,
    lingering: 1024,
    intake: 256,
    ws_clients: usize::MAX,
};

impl Capacity {
    /// The bounds that fit in a soft limit of `files` (none: no limit),
    /// with `workers` workers and at most `ws_clients` WebSocket clients.
    ///
    /// A quarter of the limit (at least 64) is left to the engine and to
    /// our own files (the listener, logs, the journal); the job queues and
    /// the workers' connections come next; what remains is shared out, a
    /// half to pending connections, a quarter to lingering ones, an eighth
    /// each to the intake and to WebSocket clients. Each bound is at least 1
    /// and never above its full size.
    pub(crate) fn for_files(files: Option<u64>, workers: usize, ws_clients: usize) -> Capacity {
        let full = Capacity { ws_clients, ..FULL };
        let Some(files) = files else {
            return full;
        };
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        let reserve = (files / 4).max(64);
        let fixed = 2 * BACKLOG + workers + 1;
        let budget = files.saturating_sub(reserve).saturating_sub(fixed);
        if budget >= full.total_without_queues() {
            return full;
        }
        Capacity {
            pending: (budget / 2).clamp(1, full.pending),
            lingering: (budget / 4).clamp(1, full.lingering),
            intake: (budget / 8).clamp(1, full.intake),
            ws_clients: (budget / 8).clamp(1, ws_clients.max(1)).min(ws_clients),
        }
    }

    fn total_without_queues(&self) -> usize {
        self.pending
            .saturating_add(self.lingering)
            .saturating_add(self.intake)
            .saturating_add(self.ws_clients)
    }

    /// Every connection the server may hold at once, `workers` workers
    /// and their queues included.
    pub(crate) fn max_connections(&self, workers: usize) -> usize {
        self.total_without_queues()
            .saturating_add(2 * BACKLOG + workers + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plenty_of_files_keeps_every_bound_at_its_full_size() {
        let c = Capacity::for_files(Some(RAISE_TO), 4, 256);
        assert_eq!(
            c,
            Capacity {
                pending: 1024,
                lingering: 1024,
                intake: 256,
                ws_clients: 256
            }
        );
        assert_eq!(Capacity::for_files(None, 4, 256), c);
    }

    #[test]
    fn a_limit_of_1024_files_leaves_a_quarter_to_the_engine() {
        let c = Capacity::for_files(Some(1024), 4, 256);
        assert!(c.max_connections(4) <= 1024 - 256, "{c:?}");
        assert!(c.pending > 256, "{c:?}");
        assert!(c.ws_clients >= 64, "{c:?}");
    }

    #[test]
    fn a_tiny_limit_still_allows_one_of_each_and_a_ws_cap_of_zero_stays_zero() {
        let c = Capacity::for_files(Some(16), 4, 256);
        assert_eq!(
            (c.pending, c.lingering, c.intake, c.ws_clients),
            (1, 1, 1, 1)
        );
        assert_eq!(Capacity::for_files(Some(1024), 4, 0).ws_clients, 0);
        assert_eq!(Capacity::for_files(Some(1024), 4, 3).ws_clients, 3);
    }
}
