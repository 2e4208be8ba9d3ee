//! The `hello` that starts every connection: serialized once per snapshot
//! and shared by every client that starts from it, never copied per client.
//!
//! A full `hello` carries every tracked run: at the tracker's bounds
//! (`Builder::max_runs` runs, each within the byte bounds of
//! [`crate::tracker`]) it is megabytes. So the runs are serialized once
//! into a [`Snapshot`], which a client holds by `Arc` only until it has
//! written it to its socket; its own part is the frame header and the
//! fields before `runs` (some 100 bytes). A new client reuses the newest
//! snapshot still alive while the replay ring holds every event after it,
//! and then gets those events, as a resuming client does: no gap, no
//! duplicate. At most [`MAX_SNAPSHOTS`] snapshots are alive at once (held
//! by clients that have not taken theirs yet); an upgrade that would need
//! another is refused with `503`.

use std::io::Write;
use std::sync::{Arc, Weak};

use super::frame;
use super::protocol::PROTOCOL_VERSION;
use crate::tracker::{RunSnapshot, sort_runs};

/// Snapshots alive at once at most: the newest, and older ones that slow
/// clients are still taking (each new one needs the replay ring to have
/// turned over since the newest).
pub(crate) const MAX_SNAPSHOTS: usize = 4;

/// The runs as of event `seq`, serialized: `,"runs":[…]}`, the end of a
/// `hello`.
pub(crate) struct Snapshot {
    seq: u64,
    body: Vec<u8>,
}

impl Snapshot {
    /// Sorts and serializes `runs`, into an allocation of the exact size
    /// (counted first: a growing buffer would double the peak).
    pub(crate) fn build(seq: u64, mut runs: Vec<Arc<RunSnapshot>>) -> Snapshot {
        sort_runs(&mut runs);
        let mut counter = Counter(0);
        let _ = write_body(&mut counter, &runs);
        let mut body = Vec::with_capacity(counter.0);
        let _ = write_body(&mut body, &runs);
        Snapshot { seq, body }
    }

    /// The processing number the runs reflect.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The serialized bytes.
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }
}

fn write_body(out: &mut impl Write, runs: &[Arc<RunSnapshot>]) -> std::io::Result<()> {
    out.write_all(br#","runs":"#)?;
    serde_json::to_writer(&mut *out, runs)?;
    out.write_all(b"}")
}

/// Counts the bytes written to it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The snapshots handed to clients, newest last; the hub keeps only weak
/// references, so a snapshot is freed once the last client has sent it.
#[derive(Default)]
pub(crate) struct Snapshots {
    issued: Vec<Weak<Snapshot>>,
}

impl Snapshots {
    /// Forgets the snapshots no client holds any more; returns how many
    /// are alive.
    pub(crate) fn alive(&mut self) -> usize {
        self.issued.retain(|s| s.strong_count() > 0);
        self.issued.len()
    }

    /// The newest snapshot alive, if `usable` accepts its seq.
    pub(crate) fn newest(&mut self, usable: impl FnOnce(u64) -> bool) -> Option<Arc<Snapshot>> {
        self.alive();
        let newest = self.issued.last()?.upgrade()?;
        usable(newest.seq).then_some(newest)
    }

    /// Records a snapshot handed out.
    pub(crate) fn issue(&mut self, snapshot: &Arc<Snapshot>) {
        self.issued.push(Arc::downgrade(snapshot));
    }
}

/// One client's `hello`: its own header, then the shared snapshot (a
/// resuming client's `hello` has none), written from `sent` on. The client
/// drops it, and its hold on the snapshot, once it is all written.
pub(crate) struct Hello {
    head: Vec<u8>,
    snapshot: Option<Arc<Snapshot>>,
    sent: usize,
}

impl Hello {
    /// `{"type":"hello",…,"seq":SEQ,"resumed":true}`: no runs.
    pub(crate) fn resumed(instance: &str, seq: u64, from_journal: bool) -> Hello {
        Hello::new(instance, seq, false, from_journal, None)
    }

    /// A full `hello` starting from `snapshot`.
    pub(crate) fn full(
        instance: &str,
        reset: bool,
        from_journal: bool,
        snapshot: Arc<Snapshot>,
    ) -> Hello {
        Hello::new(instance, snapshot.seq, reset, from_journal, Some(snapshot))
    }

    /// `from_journal` adds `"source":"replay"`: the events are a journal's,
    /// not a live engine's.
    fn new(
        instance: &str,
        seq: u64,
        reset: bool,
        from_journal: bool,
        snapshot: Option<Arc<Snapshot>>,
    ) -> Hello {
        let instance = serde_json::to_string(instance).unwrap_or_else(|_| "\"\"".into());
        let mut fields = format!(
            r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"instance":{instance},"seq":{seq}"#
        );
        if reset {
            fields.push_str(r#","reset":true"#);
        }
        if from_journal {
            fields.push_str(r#","source":"replay""#);
        }
        if snapshot.is_none() {
            fields.push_str(r#","resumed":true}"#);
        }
        let len = fields.len() + snapshot.as_ref().map_or(0, |s| s.len());
        let mut head = Vec::with_capacity(fields.len() + 10);
        frame::push_text_header(&mut head, len);
        head.extend_from_slice(fields.as_bytes());
        Hello {
            head,
            snapshot,
            sent: 0,
        }
    }

    /// Bytes not written yet.
    pub(crate) fn remaining(&self) -> usize {
        self.head.len() + self.snapshot.as_ref().map_or(0, |s| s.len()) - self.sent
    }

    /// Whether part of it is written (the socket is inside its frame).
    pub(crate) fn started(&self) -> bool {
        self.sent > 0
    }

    /// The next bytes to write; empty once all are written.
    pub(crate) fn unsent(&self) -> &[u8] {
        match self.head.get(self.sent..) {
            Some(head) if !head.is_empty() => head,
            _ => self
                .snapshot
                .as_ref()
                .and_then(|s| s.body.get(self.sent - self.head.len()..))
                .unwrap_or_default(),
        }
    }

    /// Notes `n` more bytes written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent += n;
    }

    /// The whole frame, for tests.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut all = self.head.clone();
        if let Some(s) = &self.snapshot {
            all.extend_from_slice(&s.body);
        }
        all
    }

    /// The shared snapshot, for tests.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }
}
