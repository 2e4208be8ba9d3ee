//! What crosses from the drain thread to the journal writer: events in a
//! compact form the drain thread builds without touching a reference
//! count, and the ids they refer to, sent once per run and correlation.
//!
//! Cloning a `ProgressEvent` per event costs three `Arc` increments on the
//! drain thread, whose cache lines the writer thread then pulls away with
//! the matching decrements, and 160 bytes of fresh memory: measured, that
//! tripled the drain thread's time per event. Here an event is 40 bytes
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
    /// Any other event, or one with metadata.
    Other(Box<(EventKind, Option<Arc<Metadata>>)>),
    /// Not an event: from here on, the item's slot stands for these ids.
    Ids(Box<Ids>),
}

impl Payload {
    /// The frequent kinds without metadata, which cross inline; `None`
    /// for the others (see [`of`](Self::of)).
    #[inline]
    fn inline(event: &ProgressEvent) -> Option<Payload> {
        if event.metadata.is_some() {
            return None;
        }
        match event.kind {
            EventKind::PhaseStarted { iteration, phase } => {
                Some(Payload::PhaseStarted { iteration, phase })
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => Some(Payload::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            }),
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            } => Some(Payload::IterationStarted {
                iteration,
                max_iterations,
            }),
            EventKind::DeliveryStarted => Some(Payload::DeliveryStarted),
            _ => None,
        }
    }

    /// Any event's payload: inline if it can be, else boxed.
    fn of(event: &ProgressEvent) -> Payload {
        Payload::inline(event).unwrap_or_else(|| {
            Payload::Other(Box::new((event.kind.clone(), event.metadata.clone())))
        })
    }

    /// The event's type; `None` for an id message.
    fn event_type(&self) -> Option<EventType> {
        Some(match self {
            Payload::PhaseStarted { .. } => EventType::PhaseStarted,
            Payload::PhaseCompleted { .. } => EventType::PhaseCompleted,
            Payload::IterationStarted { .. } => EventType::IterationStarted,
            Payload::DeliveryStarted => EventType::DeliveryStarted,
            Payload::Other(other) => other.0.event_type(),
            Payload::Ids(_) => return None,
        })
    }

    /// The event's payload and metadata (not called for id messages).
    fn into_kind(self) -> (EventKind, Option<Arc<Metadata>>) {
        let kind = match self {
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
            Payload::Other(other) => return *other,
            Payload::Ids(_) => EventKind::DeliveryStarted,
        };
        (kind, None)
    }
}

/// An element of a hand-off batch: one event in compact form (40 bytes;
/// metadata, rare, goes boxed with its payload), or an id message.
pub(super) struct Item {
    pub(super) seq: u64,
    timestamp: Timestamp,
    payload: Payload,
    slot: u16,
}

impl Item {
    /// The event's type; `None` for an id message.
    pub(super) fn event_type(&self) -> Option<EventType> {
        self.payload.event_type()
    }
}

/// The drain thread's side of the id slots.
pub(super) struct Encoder {
    slots: Box<[Option<Ids>; SLOTS]>,
    /// The slot of the previous event: runs of one run's events skip the hash.
    last: u16,
    /// The addresses of the ids `last` holds, which that slot keeps alive:
    /// the per-event check compares them without going through the table.
    last_ids: [usize; 3],
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            slots: Box::new([const { None }; SLOTS]),
            last: 0,
            // No `Arc` lives at address 0: matches no event.
            last_ids: [0; 3],
        }
    }

    /// Appends `event` to `batch` if that takes no more than a copy: the
    /// event's ids are the previous event's, its payload crosses inline
    /// and `batch` has room. Returns `false` (and appends nothing)
    /// otherwise; [`push`](Self::push) then does the rest.
    ///
    /// This is the drain thread's whole per-event cost for a stream of
    /// phase events, so it calls nothing: a call would make it save
    /// registers and build a stack frame for every event.
    #[inline]
    pub(super) fn push_fast(&self, batch: &mut Vec<Item>, seq: u64, event: &ProgressEvent) -> bool {
        let Some(payload) = Payload::inline(event) else {
            return false;
        };
        let [run, correlation, work_order] = id_addresses(event);
        let [last_run, last_correlation, last_work_order] = self.last_ids;
        // One test of the three, not three branches.
        let same_ids =
            (run ^ last_run) | (correlation ^ last_correlation) | (work_order ^ last_work_order)
                == 0;
        if batch.len() == batch.capacity() || !same_ids {
            return false;
        }
        batch.push(Item {
            seq,
            timestamp: event.timestamp,
            payload,
            slot: self.last,
        });
        true
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
                batch.push(Item {
                    seq: 0,
                    timestamp: Timestamp::default(),
                    payload: Payload::Ids(Box::new(ids.clone())),
                    slot,
                });
                self.slots[usize::from(slot)] = Some(ids);
            }
            self.last = slot;
            self.last_ids = id_addresses(event);
            slot
        };
        batch.push(Item {
            seq,
            timestamp: event.timestamp,
            payload: Payload::of(event),
            slot,
        });
    }

    #[inline]
    fn holds(&self, slot: u16, event: &ProgressEvent) -> bool {
        // The modulo is a no-op (slots are below SLOTS) that lets the
        // compiler drop the bounds check from the per-event path.
        self.slots[usize::from(slot) % SLOTS]
            .as_ref()
            .is_some_and(|ids| ids.same(event))
    }
}

/// The addresses of an event's run, correlation and work order ids.
#[inline]
fn id_addresses(event: &ProgressEvent) -> [usize; 3] {
    [
        Arc::as_ptr(&event.run_id) as *const u8 as usize,
        Arc::as_ptr(&event.correlation_id) as *const u8 as usize,
        Arc::as_ptr(&event.work_order_id) as *const u8 as usize,
    ]
}

/// The slot for an event's ids: its run and correlation ids' addresses,
/// hashed (a run's events share their `Arc`s on the drain thread).
fn slot_of(event: &ProgressEvent) -> u16 {
    let run = Arc::as_ptr(&event.run_id) as *const u8 as usize as u64;
    let correlation = Arc::as_ptr(&event.correlation_id) as *const u8 as usize as u64;
    let mixed = (run ^ correlation.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top ten bits: 0..1024.
    (mixed >> 54) as u16
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
        let slot = usize::from(item.slot);
        let ty = match item.payload {
            Payload::Ids(ids) => {
                let Ids {
                    work_order_id,
                    run_id,
                    correlation_id,
                } = *ids;
                self.slots[slot] = Some(ProgressEvent {
                    timestamp: Timestamp::default(),
                    work_order_id,
                    run_id,
                    correlation_id,
                    metadata: None,
                    kind: EventKind::DeliveryStarted,
                });
                return Ok(None);
            }
            ref payload => payload.event_type(),
        };
        let Some(event) = self.slots[slot].as_mut() else {
            return Err(ty.unwrap_or(EventType::DeliveryStarted));
        };
        let (kind, metadata) = item.payload.into_kind();
        event.timestamp = item.timestamp;
        event.metadata = metadata;
        event.kind = kind;
        Ok(Some((item.seq, event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_crosses_in_40_bytes() {
        assert!(
            std::mem::size_of::<Item>() <= 40,
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
        let mut batch = Vec::with_capacity(16);
        let mut fast = Vec::new();
        for (seq, event) in [(1, &a), (2, &b), (3, &a2), (4, &a2)] {
            let took_fast_path = encoder.push_fast(&mut batch, seq, event);
            if !took_fast_path {
                encoder.push(&mut batch, seq, event);
            }
            fast.push(took_fast_path);
        }
        // New ids and a boxed payload take the slow path; a phase event of
        // the previous event's run, only a copy.
        assert_eq!(fast, [false, false, false, true]);
        let ids = batch.iter().filter(|i| i.event_type().is_none()).count();
        assert_eq!(ids, 2, "one id message per run");
        let mut out = Vec::new();
        for item in batch {
            if let Ok(Some((seq, event))) = decoder.take(item) {
                out.push((seq, event.clone()));
            }
        }
        assert_eq!(out, vec![(1, a), (2, b), (3, a2.clone()), (4, a2)]);
    }

    #[test]
    fn a_full_batch_and_ids_in_other_allocations_take_the_slow_path() {
        let mut encoder = Encoder::new();
        let event = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let mut batch = Vec::with_capacity(4);
        assert!(!encoder.push_fast(&mut batch, 1, &event), "new ids");
        encoder.push(&mut batch, 1, &event);
        let mut seq = 2;
        while batch.len() < batch.capacity() {
            assert!(encoder.push_fast(&mut batch, seq, &event));
            seq += 1;
        }
        assert!(!encoder.push_fast(&mut batch, seq, &event), "no room");

        // Equal strings in other allocations: the same run to a reader, but
        // ids the writer has not been sent under these addresses.
        batch.clear();
        let copy = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        assert!(!encoder.push_fast(&mut batch, seq, &copy));
        encoder.push(&mut batch, seq, &copy);
        let ids = batch.iter().filter(|i| i.event_type().is_none()).count();
        assert_eq!((ids, batch.len()), (1, 2));
        assert!(encoder.push_fast(&mut batch, seq + 1, &copy));
    }
}
