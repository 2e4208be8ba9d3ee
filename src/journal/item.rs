//! What crosses from the drain thread to the journal writer: events in a
//! compact form the drain thread builds without touching a reference
//! count, and the ids they refer to, sent once per run and correlation.
//!
//! Cloning a `ProgressEvent` per event costs three `Arc` increments on the
//! drain thread, whose cache lines the writer thread then pulls away with
//! the matching decrements, and 160 bytes of fresh memory: measured, that
//! tripled the drain thread's time per event. Here an event is 56 bytes
//! with its ids as a slot number; a slot's ids cross once, before the
//! first event that uses it, and the writer keeps one reusable event per
//! slot (as the drain thread keeps one per run).

use std::sync::Arc;

use crate::event::{EventKind, EventType, Metadata, Phase, ProgressEvent, Timestamp};

/// Id slots on each side: a direct-mapped cache, so a fleet of runs
/// larger than this only costs more id messages.
pub(super) const SLOTS: usize = 1024;

/// The three ids of an event.
#[derive(Clone)]
pub(super) struct Ids {
    work_order_id: Arc<str>,
    run_id: Arc<str>,
    correlation_id: Arc<str>,
}

impl Ids {
    fn of(event: &ProgressEvent) -> Ids {
        Ids {
            work_order_id: event.work_order_id.clone(),
            run_id: event.run_id.clone(),
            correlation_id: event.correlation_id.clone(),
        }
    }

    fn same(&self, event: &ProgressEvent) -> bool {
        Arc::ptr_eq(&self.run_id, &event.run_id)
            && Arc::ptr_eq(&self.correlation_id, &event.correlation_id)
            && Arc::ptr_eq(&self.work_order_id, &event.work_order_id)
    }
}

/// An event's payload: the frequent kinds inline, the others boxed.
pub(super) enum Payload {
    PhaseStarted {
        iteration: u32,
        phase: Phase,
    },
    PhaseCompleted {
        iteration: u32,
        phase: Phase,
        success: bool,
        duration_ms: u64,
    },
    IterationStarted {
        iteration: u32,
        max_iterations: u32,
    },
    DeliveryStarted,
    Other(Box<EventKind>),
}

impl Payload {
    fn of(kind: &EventKind) -> Payload {
        match *kind {
            EventKind::PhaseStarted { iteration, phase } => {
                Payload::PhaseStarted { iteration, phase }
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => Payload::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            },
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            } => Payload::IterationStarted {
                iteration,
                max_iterations,
            },
            EventKind::DeliveryStarted => Payload::DeliveryStarted,
            ref other => Payload::Other(Box::new(other.clone())),
        }
    }

    pub(super) fn event_type(&self) -> EventType {
        match self {
            Payload::PhaseStarted { .. } => EventType::PhaseStarted,
            Payload::PhaseCompleted { .. } => EventType::PhaseCompleted,
            Payload::IterationStarted { .. } => EventType::IterationStarted,
            Payload::DeliveryStarted => EventType::DeliveryStarted,
            Payload::Other(kind) => kind.event_type(),
        }
    }

    fn into_kind(self) -> EventKind {
        match self {
            Payload::PhaseStarted { iteration, phase } => {
                EventKind::PhaseStarted { iteration, phase }
            }
            Payload::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            },
            Payload::IterationStarted {
                iteration,
                max_iterations,
            } => EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            },
            Payload::DeliveryStarted => EventKind::DeliveryStarted,
            Payload::Other(kind) => *kind,
        }
    }
}

/// One event in compact form.
pub(super) struct Compact {
    pub(super) seq: u64,
    timestamp: Timestamp,
    slot: u32,
    metadata: Option<Arc<Metadata>>,
    pub(super) payload: Payload,
}

/// An element of a hand-off batch.
pub(super) enum Item {
    /// From here on, `slot` stands for these ids.
    Ids(u32, Box<Ids>),
    Event(Compact),
}

impl Item {
    /// The event's type; `None` for an id message.
    pub(super) fn event_type(&self) -> Option<EventType> {
        match self {
            Item::Ids(..) => None,
            Item::Event(e) => Some(e.payload.event_type()),
        }
    }
}

/// The drain thread's side of the id slots.
pub(super) struct Encoder {
    slots: Vec<Option<Ids>>,
    /// The slot of the previous event: runs of one run's events skip the hash.
    last: u32,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            slots: vec![None; SLOTS],
            last: 0,
        }
    }

    /// Appends `event` to `batch`, preceded by its ids when its slot held
    /// others.
    pub(super) fn push(&mut self, batch: &mut Vec<Item>, seq: u64, event: &ProgressEvent) {
        let slot = if self.holds(self.last, event) {
            self.last
        } else {
            let slot = slot_of(event);
            if !self.holds(slot, event) {
                let ids = Ids::of(event);
                batch.push(Item::Ids(slot, Box::new(ids.clone())));
                self.slots[slot as usize] = Some(ids);
            }
            self.last = slot;
            slot
        };
        batch.push(Item::Event(Compact {
            seq,
            timestamp: event.timestamp,
            slot,
            metadata: event.metadata.clone(),
            payload: Payload::of(&event.kind),
        }));
    }

    fn holds(&self, slot: u32, event: &ProgressEvent) -> bool {
        self.slots[slot as usize]
            .as_ref()
            .is_some_and(|ids| ids.same(event))
    }
}

/// The slot for an event's ids: its run and correlation ids' addresses,
/// hashed (a run's events share their `Arc`s on the drain thread).
fn slot_of(event: &ProgressEvent) -> u32 {
    let run = Arc::as_ptr(&event.run_id) as *const u8 as usize as u64;
    let correlation = Arc::as_ptr(&event.correlation_id) as *const u8 as usize as u64;
    let mixed = (run ^ correlation.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 54) as u32 % SLOTS as u32
}

/// The writer thread's side: a reusable event per slot.
pub(super) struct Decoder {
    slots: Vec<Option<ProgressEvent>>,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            slots: vec![None; SLOTS],
        }
    }

    /// Takes an id message (`Ok(None)`); for an event, returns its `seq`
    /// and the whole event (valid until the next call), or its type if its
    /// ids never arrived (unreachable: they always precede it).
    pub(super) fn take(&mut self, item: Item) -> Result<Option<(u64, &ProgressEvent)>, EventType> {
        match item {
            Item::Ids(slot, ids) => {
                let Ids {
                    work_order_id,
                    run_id,
                    correlation_id,
                } = *ids;
                self.slots[slot as usize] = Some(ProgressEvent {
                    timestamp: Timestamp::default(),
                    work_order_id,
                    run_id,
                    correlation_id,
                    metadata: None,
                    kind: EventKind::DeliveryStarted,
                });
                Ok(None)
            }
            Item::Event(compact) => {
                let Some(event) = self.slots[compact.slot as usize].as_mut() else {
                    return Err(compact.payload.event_type());
                };
                event.timestamp = compact.timestamp;
                event.metadata = compact.metadata;
                event.kind = compact.payload.into_kind();
                Ok(Some((compact.seq, event)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_crosses_in_one_cache_line() {
        assert!(
            std::mem::size_of::<Item>() <= 64,
            "{}",
            std::mem::size_of::<Item>()
        );
    }

    #[test]
    fn events_come_out_as_they_went_in_with_their_ids_sent_once_per_slot() {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let mut b = ProgressEvent::new("wo", "run-b", EventKind::RunFailed { error: "e".into() });
        b.metadata = Some(Arc::new(Metadata::new()));
        let mut a2 = a.clone();
        a2.kind = EventKind::PhaseCompleted {
            iteration: 2,
            phase: Phase::Verify,
            success: true,
            duration_ms: 5,
        };
        let mut batch = Vec::new();
        for (seq, event) in [(1, &a), (2, &b), (3, &a2)] {
            encoder.push(&mut batch, seq, event);
        }
        let ids = batch.iter().filter(|i| i.event_type().is_none()).count();
        assert_eq!(ids, 2, "one id message per run");
        let mut out = Vec::new();
        for item in batch {
            if let Ok(Some((seq, event))) = decoder.take(item) {
                out.push((seq, event.clone()));
            }
        }
        assert_eq!(out, vec![(1, a), (2, b), (3, a2)]);
    }
}
