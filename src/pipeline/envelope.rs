//! What crosses the ring. Hot events are plain `Copy` data: a run key
//! registered once instead of strings or `Arc`s, so that sending one costs
//! only the queue's own cache-line transfers.

use std::sync::Arc;

use crate::event::{EventKind, EventType, Metadata, Phase, PhaseTimings, ProgressEvent, RunTrace};
use crate::pipeline::drain::Drain;

/// A key standing for a string registered with the drain thread.
pub(crate) type Key = u64;

/// "No correlation id in context": the event is correlated by its run id.
pub(crate) const NO_CORRELATION: Key = 0;

/// One message on the ring, stamped with the raw clock when it was made.
pub(crate) struct Envelope {
    pub(crate) ticks: u64,
    pub(crate) msg: Msg,
}

pub(crate) enum Msg {
    /// An event about a registered run.
    Event {
        run: Key,
        correlation: Key,
        body: Body,
    },
    /// An event about a registered run with metadata attached
    /// ([`crate::RunHandle::with_metadata`]). Boxed so that the common
    /// case, [`Msg::Event`], keeps the envelope within one cache line.
    Annotated(Box<Annotated>),
    /// A complete event from [`crate::Emitter::emit`].
    Owned(Box<ProgressEvent>),
    /// Complete events in order, from a replay.
    OwnedBatch(Vec<ProgressEvent>),
    RegisterRun {
        key: Key,
        ids: Box<RunIds>,
    },
    UnregisterRun(Key),
    RegisterCorrelation {
        key: Key,
        id: Arc<str>,
    },
    UnregisterCorrelation(Key),
    /// Work to run on the drain thread in queue order: flush barriers,
    /// snapshots, attaching sinks.
    Control(Box<dyn FnOnce(&mut Drain) + Send>),
}

impl Msg {
    /// Calls `f` with the type of each event this message carries (none
    /// for a control message), so that a message dropped whole is counted
    /// event by event, whatever kind it is.
    pub(crate) fn for_each_event_type(&self, mut f: impl FnMut(EventType)) {
        match self {
            Msg::Event { body, .. } => f(body.event_type()),
            Msg::Annotated(annotated) => f(annotated.body.event_type()),
            Msg::Owned(event) => f(event.event_type()),
            Msg::OwnedBatch(events) => events.iter().for_each(|e| f(e.event_type())),
            Msg::RegisterRun { .. }
            | Msg::UnregisterRun(_)
            | Msg::RegisterCorrelation { .. }
            | Msg::UnregisterCorrelation(_)
            | Msg::Control(_) => {}
        }
    }
}

/// [`Msg::Event`]'s fields plus the metadata the caller attached.
pub(crate) struct Annotated {
    pub(crate) run: Key,
    pub(crate) correlation: Key,
    pub(crate) body: Body,
    pub(crate) metadata: Arc<Metadata>,
}

/// The two ids of a run, shared by every event of it, and its trace when
/// the handle registering it chose one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunIds {
    pub(crate) work_order_id: Arc<str>,
    pub(crate) run_id: Arc<str>,
    pub(crate) trace: Option<RunTrace>,
}

/// An event's payload. The frequent ones are inline `Copy` data; the rest,
/// which carry caller strings anyway, are boxed.
pub(crate) enum Body {
    IterationStarted {
        iteration: u32,
        max_iterations: u32,
    },
    IterationCompleted {
        iteration: u32,
        success: bool,
        timings: CompactTimings,
    },
    PhaseStarted {
        iteration: u32,
        phase: Phase,
    },
    PhaseCompleted {
        iteration: u32,
        phase: Phase,
        success: bool,
        nanos: u64,
    },
    GateChecked {
        iteration: u32,
        gate: InlineName,
        passed: bool,
        duration_ms: Option<u32>,
    },
    DeliveryStarted,
    Boxed(Box<EventKind>),
}

impl Body {
    pub(crate) fn event_type(&self) -> EventType {
        match self {
            Body::IterationStarted { .. } => EventType::IterationStarted,
            Body::IterationCompleted { .. } => EventType::IterationCompleted,
            Body::PhaseStarted { .. } => EventType::PhaseStarted,
            Body::PhaseCompleted { .. } => EventType::PhaseCompleted,
            Body::GateChecked { .. } => EventType::GateChecked,
            Body::DeliveryStarted => EventType::DeliveryStarted,
            Body::Boxed(kind) => kind.event_type(),
        }
    }
}

/// Phase timings in 16 bytes: milliseconds, `u32::MAX` for "did not run".
/// Timings of 49 days or more take the boxed path instead.
#[derive(Clone, Copy)]
pub(crate) struct CompactTimings([u32; 4]);

impl CompactTimings {
    /// `None` when a timing does not fit in 32 bits.
    pub(crate) fn new(t: &PhaseTimings) -> Option<Self> {
        let mut out = [u32::MAX; 4];
        for (slot, phase) in out.iter_mut().zip(Phase::ALL) {
            if let Some(ms) = t.get(*phase) {
                *slot = u32::try_from(ms).ok().filter(|&ms| ms != u32::MAX)?;
            }
        }
        Some(CompactTimings(out))
    }
}

impl From<CompactTimings> for PhaseTimings {
    fn from(c: CompactTimings) -> Self {
        let mut t = PhaseTimings::default();
        for (phase, ms) in Phase::ALL.iter().zip(c.0) {
            t.set(*phase, (ms != u32::MAX).then_some(u64::from(ms)));
        }
        t
    }
}

/// A gate name short enough to travel inline.
#[derive(Clone, Copy)]
pub(crate) struct InlineName {
    len: u8,
    bytes: [u8; InlineName::CAPACITY],
}

impl InlineName {
    pub(crate) const CAPACITY: usize = 15;

    /// `None` when `name` does not fit.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let src = name.as_bytes();
        if src.len() > Self::CAPACITY {
            return None;
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..src.len()].copy_from_slice(src);
        Some(InlineName {
            len: src.len() as u8,
            bytes,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Built from a whole `&str`, so the bytes are UTF-8; the fallback
        // is unreachable but costs nothing.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_event_stays_within_one_cache_line() {
        assert!(
            std::mem::size_of::<Envelope>() <= 64,
            "{}",
            std::mem::size_of::<Envelope>()
        );
    }

    #[test]
    fn inline_names_round_trip_and_refuse_what_does_not_fit() {
        assert_eq!(InlineName::new("typecheck").unwrap().as_str(), "typecheck");
        assert_eq!(
            InlineName::new("ü".repeat(7).as_str()).unwrap().as_str(),
            "ü".repeat(7)
        );
        assert!(InlineName::new(&"x".repeat(16)).is_none());
    }

    #[test]
    fn compact_timings_keep_absent_phases_absent() {
        let t = PhaseTimings {
            build: Some(5),
            verify: Some(0),
            ..Default::default()
        };
        assert_eq!(PhaseTimings::from(CompactTimings::new(&t).unwrap()), t);
        assert!(
            CompactTimings::new(&PhaseTimings {
                build: Some(1 << 40),
                ..t
            })
            .is_none()
        );
    }
}
