//! What crosses from the drain thread to the journal writer: events in a
//! compact form the drain thread builds without touching a reference
//! count, and the ids they refer to, sent once per run and correlation.
//!
//! Cloning a `ProgressEvent` per event costs three `Arc` increments on the
//! drain thread, whose cache lines the writer thread then pulls away with
//! the matching decrements, and 160 bytes of fresh memory: measured, that
//! tripled the drain thread's time per event. Here a frequent event is 16
//! bytes: its `seq` and timestamp relative to its batch's first event, its
//! payload inline, and no ids at all. The ids stand in a slot: a slot's ids
//! cross once, before the first event that uses it, a one-item message
//! switches between slots already sent, and the writer keeps one reusable
//! event per slot (as the drain thread keeps one per run).
//!
//! Every byte of an item crosses between cores twice per batch (the drain
//! thread writes it, the writer reads it, and the drain thread's next write
//! to the recycled batch takes the line back): at 40 bytes an event, that
//! copy was a fifth of the drain thread's time with a journal (perf, on a
//! 2-vCPU Xeon), hence the squeeze.

use std::sync::Arc;

use crate::event::{EventKind, EventType, Metadata, Phase, ProgressEvent, Timestamp};

/// Id slots on each side: a direct-mapped cache, so a fleet of runs
/// larger than this only costs more id messages.
pub(super) const SLOTS: usize = 1024;

/// Events per batch at most: an event's `seq` is stored as a `u8` offset
/// from its batch's first.
pub(super) const BATCH: usize = 256;

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

/// A rare event whole but for its ids: any kind other than the four
/// inline ones, one with metadata, or one whose numbers do not fit inline.
pub(super) struct Boxed {
    timestamp: Timestamp,
    kind: EventKind,
    metadata: Option<Arc<Metadata>>,
}

/// An element of a hand-off batch (16 bytes): an event, or a message that
/// sets the slot the following events' ids stand in. In an event, `seq` is
/// its offset from the batch's first event's and `ms` its timestamp's
/// from that event's (see [`Base`]).
pub(super) enum Item {
    PhaseStarted {
        seq: u8,
        ms: i32,
        iteration: u32,
        phase: Phase,
    },
    PhaseCompleted {
        seq: u8,
        ms: i32,
        iteration: u32,
        duration_ms: u32,
        phase: Phase,
        success: bool,
    },
    IterationStarted {
        seq: u8,
        ms: i32,
        iteration: u32,
        max_iterations: u32,
    },
    DeliveryStarted {
        seq: u8,
        ms: i32,
    },
    Other {
        seq: u8,
        event: Box<Boxed>,
    },
    /// From here on, the events' ids are these, kept in `slot`.
    Ids {
        slot: u16,
        ids: Box<Ids>,
    },
    /// From here on, the events' ids are those `slot` holds.
    Slot(u16),
}

impl Item {
    /// The frequent kinds without metadata, when their numbers fit: the
    /// drain thread's per-event path. `None` for the others.
    #[inline]
    fn inline(event: &ProgressEvent, seq: u8, ms: i32) -> Option<Item> {
        if event.metadata.is_some() {
            return None;
        }
        match event.kind {
            EventKind::PhaseStarted { iteration, phase } => Some(Item::PhaseStarted {
                seq,
                ms,
                iteration,
                phase,
            }),
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } => Some(Item::PhaseCompleted {
                seq,
                ms,
                iteration,
                duration_ms: u32::try_from(duration_ms).ok()?,
                phase,
                success,
            }),
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            } => Some(Item::IterationStarted {
                seq,
                ms,
                iteration,
                max_iterations,
            }),
            EventKind::DeliveryStarted => Some(Item::DeliveryStarted { seq, ms }),
            _ => None,
        }
    }

    /// The event's type; `None` for a slot message.
    pub(super) fn event_type(&self) -> Option<EventType> {
        Some(match self {
            Item::PhaseStarted { .. } => EventType::PhaseStarted,
            Item::PhaseCompleted { .. } => EventType::PhaseCompleted,
            Item::IterationStarted { .. } => EventType::IterationStarted,
            Item::DeliveryStarted { .. } => EventType::DeliveryStarted,
            Item::Other { event, .. } => event.kind.event_type(),
            Item::Ids { .. } | Item::Slot(_) => return None,
        })
    }
}

/// What a batch's events' `seq` and `ms` are relative to: its first event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Base {
    seq: u64,
    millis: u64,
}

/// A batch as it crosses: its items and their base.
pub(super) struct Batch {
    pub(super) base: Base,
    pub(super) items: Vec<Item>,
}

/// Items a batch has room for before it grows: its events and as many
/// slot messages (runs interleaved event by event switch at each).
pub(super) const ITEMS: usize = 2 * BATCH;

/// The drain thread's side: the batch being filled, and the id slots.
pub(super) struct Encoder {
    slots: Box<[Option<Ids>; SLOTS]>,
    /// The slot the previous event's ids stand in: runs of one run's events
    /// skip the hash and the slot message.
    last: u16,
    /// The addresses of the ids `last` holds, which that slot keeps alive:
    /// the per-event check compares them without going through the table.
    last_ids: [usize; 3],
    items: Vec<Item>,
    /// Events in `items` (the rest are slot messages).
    events: usize,
    /// Set by the batch's first event.
    base: Base,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            slots: Box::new([const { None }; SLOTS]),
            last: 0,
            // No `Arc` lives at address 0: matches no event.
            last_ids: [0; 3],
            items: Vec::with_capacity(ITEMS),
            events: 0,
            base: Base::default(),
        }
    }

    /// Events in the batch being filled.
    pub(super) fn events(&self) -> usize {
        self.events
    }

    /// Whether the batch being filled holds nothing, not even a slot message.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends `event` if that takes no more than a copy: the batch has an
    /// event already and room for this one below [`BATCH`], the event's
    /// ids are the previous event's, its payload crosses inline and its
    /// `seq` and timestamp fit the batch's base. Returns `false` (and
    /// appends nothing) otherwise; [`push`](Self::push) then does the rest.
    ///
    /// This is the drain thread's whole per-event cost for a stream of
    /// phase events, so it calls nothing: a call would make it save
    /// registers and build a stack frame for every event.
    #[inline]
    pub(super) fn push_fast(&mut self, seq: u64, event: &ProgressEvent) -> bool {
        let offset = seq.wrapping_sub(self.base.seq);
        // Timestamps are below 2^48 ms: the wrapped difference is exact.
        let ms = event.timestamp.as_millis().wrapping_sub(self.base.millis) as i64;
        let [run, correlation, work_order] = id_addresses(event);
        let [last_run, last_correlation, last_work_order] = self.last_ids;
        // One test of the three, not three branches.
        let same_ids =
            (run ^ last_run) | (correlation ^ last_correlation) | (work_order ^ last_work_order)
                == 0;
        // From 1 to BATCH - 2 events: a base is set, and the push that
        // reaches BATCH is the slow path's, which hands the batch over.
        let room =
            self.events.wrapping_sub(1) < BATCH - 2 && self.items.len() < self.items.capacity();
        let fits = offset <= u64::from(u8::MAX) && ms == i64::from(ms as i32);
        if !(same_ids & room & fits) {
            return false;
        }
        let Some(item) = Item::inline(event, offset as u8, ms as i32) else {
            return false;
        };
        self.items.push(item);
        self.events += 1;
        true
    }

    /// Appends `event`, preceded by a slot message when its ids are not
    /// the previous event's. Returns `false` (and appends nothing) when the
    /// batch holds [`BATCH`] events or `seq` is too far past its first:
    /// the caller then hands the batch over with [`take`](Self::take) and
    /// pushes again, which cannot fail.
    pub(super) fn push(&mut self, seq: u64, event: &ProgressEvent) -> bool {
        if self.events == 0 {
            self.base = Base {
                seq,
                millis: event.timestamp.as_millis(),
            };
        }
        let Ok(offset) = u8::try_from(seq.wrapping_sub(self.base.seq)) else {
            return false;
        };
        if self.events >= BATCH {
            return false;
        }
        if !self.holds(self.last, event) {
            let slot = slot_of(event);
            if self.holds(slot, event) {
                self.items.push(Item::Slot(slot));
            } else {
                let ids = Ids::of(event);
                self.items.push(Item::Ids {
                    slot,
                    ids: Box::new(ids.clone()),
                });
                self.slots[usize::from(slot)] = Some(ids);
            }
            self.last = slot;
            self.last_ids = id_addresses(event);
        }
        // Timestamps are below 2^48 ms: the difference is exact in i64.
        let ms = event.timestamp.as_millis() as i64 - self.base.millis as i64;
        let item = i32::try_from(ms)
            .ok()
            .and_then(|ms| Item::inline(event, offset, ms))
            .unwrap_or_else(|| Item::Other {
                seq: offset,
                event: Box::new(Boxed {
                    timestamp: event.timestamp,
                    kind: event.kind.clone(),
                    metadata: event.metadata.clone(),
                }),
            });
        self.items.push(item);
        self.events += 1;
        true
    }

    /// The batch being filled, its items moved into `into` (an empty
    /// vector, recycled: see `JournalSink::hand_off`); a new batch starts.
    pub(super) fn take(&mut self, mut into: Vec<Item>) -> Batch {
        // `append` would put the items after anything left in it.
        debug_assert!(into.is_empty(), "a recycled journal batch was not empty");
        into.append(&mut self.items);
        self.events = 0;
        Batch {
            base: self.base,
            items: into,
        }
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
    /// The slot the next event's ids stand in.
    current: usize,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            slots: vec![None; SLOTS],
            current: 0,
        }
    }

    /// Takes a slot message (`Ok(None)`); for an event of a batch based at
    /// `base`, returns its `seq` and the whole event (valid until the next
    /// call), or its type if its ids never arrived (unreachable: they
    /// always precede it).
    pub(super) fn take(
        &mut self,
        base: Base,
        item: Item,
    ) -> Result<Option<(u64, &ProgressEvent)>, EventType> {
        let at = |ms: i32| Timestamp::from_millis(base.millis.wrapping_add_signed(i64::from(ms)));
        let (seq, timestamp, kind, metadata) = match item {
            Item::Ids { slot, ids } => {
                let Ids {
                    work_order_id,
                    run_id,
                    correlation_id,
                } = *ids;
                self.current = usize::from(slot);
                if let Some(entry) = self.slots.get_mut(self.current) {
                    *entry = Some(ProgressEvent {
                        timestamp: Timestamp::default(),
                        work_order_id,
                        run_id,
                        correlation_id,
                        metadata: None,
                        kind: EventKind::DeliveryStarted,
                    });
                }
                return Ok(None);
            }
            Item::Slot(slot) => {
                self.current = usize::from(slot);
                return Ok(None);
            }
            Item::PhaseStarted {
                seq,
                ms,
                iteration,
                phase,
            } => (
                seq,
                at(ms),
                EventKind::PhaseStarted { iteration, phase },
                None,
            ),
            Item::PhaseCompleted {
                seq,
                ms,
                iteration,
                duration_ms,
                phase,
                success,
            } => (
                seq,
                at(ms),
                EventKind::PhaseCompleted {
                    iteration,
                    phase,
                    success,
                    duration_ms: u64::from(duration_ms),
                },
                None,
            ),
            Item::IterationStarted {
                seq,
                ms,
                iteration,
                max_iterations,
            } => (
                seq,
                at(ms),
                EventKind::IterationStarted {
                    iteration,
                    max_iterations,
                    feedback: None,
                },
                None,
            ),
            Item::DeliveryStarted { seq, ms } => (seq, at(ms), EventKind::DeliveryStarted, None),
            Item::Other { seq, event } => {
                let Boxed {
                    timestamp,
                    kind,
                    metadata,
                } = *event;
                (seq, timestamp, kind, metadata)
            }
        };
        let Some(event) = self.slots.get_mut(self.current).and_then(Option::as_mut) else {
            return Err(kind.event_type());
        };
        event.timestamp = timestamp;
        event.metadata = metadata;
        event.kind = kind;
        Ok(Some((base.seq + u64::from(seq), event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes the events as `JournalSink` does (fast path first, a hand-off
    /// when a push is refused or the batch is full) and decodes every batch;
    /// returns what came out and which events took the fast path.
    fn cross(events: &[(u64, &ProgressEvent)]) -> (Vec<(u64, ProgressEvent)>, Vec<bool>) {
        let mut encoder = Encoder::new();
        let mut batches = Vec::new();
        let mut fast = Vec::new();
        for &(seq, event) in events {
            let took_fast_path = encoder.push_fast(seq, event);
            if !took_fast_path && !encoder.push(seq, event) {
                batches.push(encoder.take(Vec::new()));
                assert!(encoder.push(seq, event), "an empty batch takes any event");
            }
            if encoder.events() >= BATCH {
                batches.push(encoder.take(Vec::new()));
            }
            fast.push(took_fast_path);
        }
        batches.push(encoder.take(Vec::new()));
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for Batch { base, items } in batches {
            for item in items {
                if let Some((seq, event)) = decoder.take(base, item).expect("ids sent first") {
                    out.push((seq, event.clone()));
                }
            }
        }
        (out, fast)
    }

    fn phase_completed(event: &ProgressEvent, duration_ms: u64) -> ProgressEvent {
        let mut next = event.clone();
        next.kind = EventKind::PhaseCompleted {
            iteration: 2,
            phase: Phase::Verify,
            success: true,
            duration_ms,
        };
        next
    }

    #[test]
    fn an_event_crosses_in_16_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 16);
    }

    #[test]
    fn events_come_out_as_they_went_in_with_their_ids_sent_once_per_slot() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let mut b = ProgressEvent::new("wo", "run-b", EventKind::RunFailed { error: "e".into() });
        b.metadata = Some(Arc::new(Metadata::new()));
        let a2 = phase_completed(&a, 5);
        let input = [(1, &a), (2, &b), (3, &a2), (4, &a2), (5, &b), (6, &a2)];
        let (out, fast) = cross(&input);
        // New ids, a boxed payload and a switch of runs take the slow path;
        // a phase event of the previous event's run, only a copy.
        assert_eq!(fast, [false, false, false, true, false, false]);
        let expected: Vec<_> = input.iter().map(|&(s, e)| (s, e.clone())).collect();
        assert_eq!(out, expected);

        let mut encoder = Encoder::new();
        for (seq, event) in input {
            if !encoder.push_fast(seq, event) {
                assert!(encoder.push(seq, event));
            }
        }
        let batch = encoder.take(Vec::new());
        let ids = batch
            .items
            .iter()
            .filter(|i| matches!(i, Item::Ids { .. }))
            .count();
        let switches = batch
            .items
            .iter()
            .filter(|i| matches!(i, Item::Slot(_)))
            .count();
        assert_eq!(
            (ids, switches),
            (2, 3),
            "ids once per run, then slot messages"
        );
    }

    #[test]
    fn numbers_too_large_to_inline_cross_boxed_and_whole() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let long = phase_completed(&a, u64::from(u32::MAX) + 1);
        let mut earlier = phase_completed(&a, 5);
        earlier.timestamp = Timestamp::from_millis(a.timestamp.as_millis() - 1);
        let mut much_later = phase_completed(&a, 5);
        much_later.timestamp = Timestamp::from_millis(a.timestamp.as_millis() + (1 << 31));
        let mut much_earlier = phase_completed(&a, 5);
        much_earlier.timestamp = Timestamp::from_millis(0);
        let input = [
            (1, &a),
            (2, &long),
            (3, &earlier),
            (4, &much_later),
            (5, &much_earlier),
        ];
        let (out, fast) = cross(&input);
        assert_eq!(fast, [false, false, true, false, false]);
        let expected: Vec<_> = input.iter().map(|&(s, e)| (s, e.clone())).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_full_batch_and_a_seq_far_past_the_first_start_a_new_batch() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let p = phase_completed(&a, 5);
        let mut input = vec![(1, &a)];
        input.extend((2..=BATCH as u64 + 3).map(|seq| (seq, &p)));
        // A gap in `seq` past what a batch's offsets reach.
        input.push((1_000, &p));
        input.push((1_001, &p));
        let (out, fast) = cross(&input);
        let expected: Vec<_> = input.iter().map(|&(s, e)| (s, e.clone())).collect();
        assert_eq!(out, expected);
        // Slow: the first event, the BATCH-th (which hands off), the first
        // of the next batch, and the one past the gap.
        let slow: Vec<_> = (0..input.len()).filter(|&i| !fast[i]).collect();
        assert_eq!(slow, [0, BATCH - 1, BATCH, input.len() - 2]);
    }

    #[test]
    fn ids_in_other_allocations_are_sent_again() {
        let mut encoder = Encoder::new();
        let event = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        assert!(encoder.push(1, &event));
        assert!(encoder.push_fast(2, &event));
        // Equal strings in other allocations: the same run to a reader, but
        // ids the writer has not been sent under these addresses.
        let copy = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        assert!(!encoder.push_fast(3, &copy));
        assert!(encoder.push(3, &copy));
        assert!(encoder.push_fast(4, &copy));
        let batch = encoder.take(Vec::new());
        let ids = batch
            .items
            .iter()
            .filter(|i| matches!(i, Item::Ids { .. }))
            .count();
        assert_eq!((ids, batch.items.len()), (2, 6));
    }

    #[test]
    fn an_event_whose_ids_never_arrived_is_reported_by_type() {
        let mut decoder = Decoder::new();
        let item = Item::PhaseStarted {
            seq: 0,
            ms: 0,
            iteration: 1,
            phase: Phase::Build,
        };
        let taken = decoder.take(Base::default(), item).map(|e| e.is_some());
        assert_eq!(taken, Err(EventType::PhaseStarted));
    }
}
