//! What crosses from the drain thread to the journal writer: events in a
//! compact form the drain thread builds without touching a reference
//! count, and the ids they refer to, sent once per run and correlation.
//!
//! Cloning a `ProgressEvent` per event costs three `Arc` increments on the
//! drain thread, whose cache lines the writer thread then pulls away with
//! the matching decrements, and 160 bytes of fresh memory: measured, that
//! tripled the drain thread's time per event. Here a frequent event is one
//! `u64`: its kind, its timestamp relative to its batch's first event and
//! its numbers, packed; its `seq` follows from its place in the batch, and
//! its ids from the slot last set. A slot's ids cross once, before the
//! first event that uses them, a one-word message switches between slots
//! already sent, and the writer keeps one reusable event per slot (as the
//! drain thread keeps one per run). Whatever does not fit a word (other
//! kinds, metadata, large numbers) goes whole in the batch's side list.
//!
//! Every byte of a batch crosses between cores twice (the drain thread
//! writes it, the writer reads it, and the drain thread's next write to
//! the recycled batch takes the line back): at 40 bytes an event this
//! crossing was a fifth of the drain thread's time with a journal (perf,
//! on a 2-vCPU Xeon), hence the squeeze.

use std::sync::Arc;

use crate::event::{EventKind, EventType, Metadata, Phase, ProgressEvent, Timestamp, TraceId};

/// Id slots on each side: a direct-mapped cache, so a fleet of runs
/// larger than this only costs more id messages.
pub(super) const SLOTS: usize = 1024;

/// Items per batch before it is handed over: each hand-off costs the drain
/// thread a few cross-core atomics and cache lines, so a batch of 1,024
/// events (8 KiB) cost it about 2 points less with a journal than one of 256
/// (interleaved bench, drain thread CPU time).
pub(super) const BATCH: usize = 1024;

/// A batch's room: the fast path fills it to here, past [`BATCH`].
const CAPACITY: usize = BATCH + 2;

/// Side-list entries a recycled batch keeps room for (about 7 KiB).
const SIDE_KEPT: usize = 64;

/// The three ids of an event.
#[derive(Clone)]
pub(super) struct Ids {
    work_order_id: Arc<str>,
    run_id: Arc<str>,
    correlation_id: Arc<str>,
    /// Part of the ids: a run's trace is set once, by its first event, so
    /// it changes for the same strings at most once.
    trace_id: Option<TraceId>,
}

impl Ids {
    fn of(event: &ProgressEvent) -> Ids {
        Ids {
            work_order_id: event.work_order_id.clone(),
            run_id: event.run_id.clone(),
            correlation_id: event.correlation_id.clone(),
            trace_id: event.trace_id,
        }
    }

    fn same(&self, event: &ProgressEvent) -> bool {
        Arc::ptr_eq(&self.run_id, &event.run_id)
            && Arc::ptr_eq(&self.correlation_id, &event.correlation_id)
            && Arc::ptr_eq(&self.work_order_id, &event.work_order_id)
            && self.trace_id == event.trace_id
    }
}

/// What a word of a batch cannot hold.
pub(super) enum Side {
    /// An event whole but for its ids.
    Event {
        timestamp: Timestamp,
        kind: EventKind,
        metadata: Option<Arc<Metadata>>,
    },
    Ids(Ids),
}

/// An element of a batch, packed in a `u64`: the low three bits are a tag.
///
/// | tag | meaning | bits 3.. |
/// |---|---|---|
/// | 0-3 | an inline event: phase started, phase completed, iteration started, delivery started | ms delta (16 bits, signed) · phase (2) · success (1) · iteration (20) · duration ms or max iterations (22) |
/// | 4 | an event in the side list | side index (32) · event type (8) |
/// | 5 | ids in the side list, for a slot | side index (32) · slot (16) |
/// | 6 | switch to a slot already sent | slot (16) |
/// | 7 | events dropped here (shed) | how many |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Item(u64);

const TAG_MASK: u64 = 0b111;
const PHASE_STARTED: u64 = 0;
const PHASE_COMPLETED: u64 = 1;
const ITERATION_STARTED: u64 = 2;
const DELIVERY_STARTED: u64 = 3;
const SIDE_EVENT: u64 = 4;
const SIDE_IDS: u64 = 5;
const SLOT: u64 = 6;
const SKIP: u64 = 7;

/// Where an item's payload starts, above its tag.
const PAYLOAD_SHIFT: u32 = 3;
/// Where a side item's second field (event type, slot) starts, above
/// its 32-bit index.
const SIDE_REST_SHIFT: u32 = 35;

const MS_SHIFT: u32 = PAYLOAD_SHIFT;
const MS_BITS: u32 = 16;
const MS_MASK: u64 = (1 << MS_BITS) - 1;
const PHASE_SHIFT: u32 = 19;
const SUCCESS_SHIFT: u32 = 21;
const A_SHIFT: u32 = 22;
const A_BITS: u32 = 20;
const B_SHIFT: u32 = 42;
const B_BITS: u32 = 22;

impl Item {
    fn tag(self) -> u64 {
        self.0 & TAG_MASK
    }

    /// The inline word for the frequent kinds without metadata whose
    /// numbers fit, with `ms` its timestamp's offset (already masked to
    /// [`MS_BITS`]); `None` for the others.
    #[inline]
    fn inline(event: &ProgressEvent, ms: u64) -> Option<Item> {
        if event.metadata.is_some() {
            return None;
        }
        let fits = |a: u32, b: u64| (u64::from(a) >> A_BITS) | (b >> B_BITS) == 0;
        let word = |tag: u64, phase: Phase, success: bool, a: u32, b: u64| {
            tag | ms << MS_SHIFT
                | (phase.index() as u64) << PHASE_SHIFT
                | u64::from(success) << SUCCESS_SHIFT
                | u64::from(a) << A_SHIFT
                | b << B_SHIFT
        };
        let packed = match event.kind {
            EventKind::PhaseStarted { iteration, phase } if fits(iteration, 0) => {
                word(PHASE_STARTED, phase, false, iteration, 0)
            }
            EventKind::PhaseCompleted {
                iteration,
                phase,
                success,
                duration_ms,
            } if fits(iteration, duration_ms) => {
                word(PHASE_COMPLETED, phase, success, iteration, duration_ms)
            }
            EventKind::IterationStarted {
                iteration,
                max_iterations,
                feedback: None,
            } if fits(iteration, u64::from(max_iterations)) => word(
                ITERATION_STARTED,
                Phase::Build,
                false,
                iteration,
                u64::from(max_iterations),
            ),
            EventKind::DeliveryStarted => DELIVERY_STARTED | ms << MS_SHIFT,
            _ => return None,
        };
        Some(Item(packed))
    }

    /// The kind of an inline event.
    fn inline_kind(self) -> EventKind {
        let w = self.0;
        let phase = Phase::ALL[(w >> PHASE_SHIFT) as usize & 0b11];
        let a = ((w >> A_SHIFT) & ((1 << A_BITS) - 1)) as u32;
        let b = w >> B_SHIFT;
        match self.tag() {
            PHASE_STARTED => EventKind::PhaseStarted {
                iteration: a,
                phase,
            },
            PHASE_COMPLETED => EventKind::PhaseCompleted {
                iteration: a,
                phase,
                success: (w >> SUCCESS_SHIFT) & 1 == 1,
                duration_ms: b,
            },
            ITERATION_STARTED => EventKind::IterationStarted {
                iteration: a,
                max_iterations: b as u32,
                feedback: None,
            },
            _ => EventKind::DeliveryStarted,
        }
    }

    /// The timestamp of an inline event of a batch based at `base`.
    fn inline_timestamp(self, base: Base) -> Timestamp {
        // The field's top bit is its sign: shifted up to the word's, then
        // arithmetically back down.
        let ms = ((self.0 >> MS_SHIFT) << (64 - MS_BITS)) as i64 >> (64 - MS_BITS);
        Timestamp::from_millis(base.millis.wrapping_add_signed(ms))
    }

    fn side(tag: u64, index: usize, rest: u64) -> Item {
        Item(tag | (index as u64) << PAYLOAD_SHIFT | rest << SIDE_REST_SHIFT)
    }

    fn side_index(self) -> usize {
        ((self.0 >> PAYLOAD_SHIFT) & u64::from(u32::MAX)) as usize
    }

    /// The same side item pointing at another entry.
    fn with_side_index(self, index: usize) -> Item {
        Item::side(self.tag(), index, self.0 >> SIDE_REST_SHIFT)
    }

    fn slot_message(slot: u16) -> Item {
        Item(SLOT | u64::from(slot) << PAYLOAD_SHIFT)
    }

    /// The slot a slot message or an ids item sets.
    fn slot(self) -> usize {
        let shift = if self.tag() == SLOT {
            PAYLOAD_SHIFT
        } else {
            SIDE_REST_SHIFT
        };
        usize::from((self.0 >> shift) as u16) % SLOTS
    }

    /// The event's type; `None` for a slot message or a skip.
    pub(super) fn event_type(self) -> Option<EventType> {
        Some(match self.tag() {
            PHASE_STARTED => EventType::PhaseStarted,
            PHASE_COMPLETED => EventType::PhaseCompleted,
            ITERATION_STARTED => EventType::IterationStarted,
            DELIVERY_STARTED => EventType::DeliveryStarted,
            SIDE_EVENT => EventType::ALL[(self.0 >> SIDE_REST_SHIFT) as usize % EventType::COUNT],
            _ => return None,
        })
    }

    /// An event dropped in place (by `JournalSink::shed`): `seq` moves on.
    pub(super) fn skip(count: u64) -> Item {
        Item(SKIP | count << PAYLOAD_SHIFT)
    }

    /// The events a skip stands for; 0 for any other item.
    pub(super) fn skipped(self) -> u64 {
        if self.tag() == SKIP {
            self.0 >> PAYLOAD_SHIFT
        } else {
            0
        }
    }
}

/// What a batch's events' `seq` and timestamps are relative to: its first
/// event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Base {
    seq: u64,
    millis: u64,
}

/// A batch as it crosses, and as it comes back empty to be reused.
pub(super) struct Batch {
    pub(super) base: Base,
    pub(super) items: Vec<Item>,
    /// Taken by the writer as it meets the items that refer to them.
    pub(super) side: Vec<Option<Side>>,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            base: Base::default(),
            items: Vec::with_capacity(CAPACITY),
            side: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.side.is_empty()
    }

    /// Empties it for reuse.
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.side.clear();
    }

    /// Shrinks the batch to what it holds: after a shed, a batch of a few
    /// kept events must not hold its full buffers while it waits for the
    /// writer. The side list's live entries move to the front and their
    /// items are re-pointed.
    pub(super) fn compact(&mut self) {
        let mut side = Vec::new();
        for item in &mut self.items {
            if matches!(item.tag(), SIDE_EVENT | SIDE_IDS)
                && let Some(entry) = self.side.get_mut(item.side_index()).and_then(Option::take)
            {
                *item = item.with_side_index(side.len());
                side.push(Some(entry));
            }
        }
        self.side = side;
        self.items.shrink_to_fit();
    }

    /// Frees what a dropped event held in the side list.
    pub(super) fn release_side(&mut self, item: Item) {
        if item.tag() == SIDE_EVENT
            && let Some(entry) = self.side.get_mut(item.side_index())
        {
            *entry = None;
        }
    }
}

/// Whether a timestamp offset (a wrapped difference of millis) fits the
/// word's signed 16 bits: within 32 seconds of the batch's first event,
/// as a batch holds what the drain thread took in one go.
#[inline]
fn ms_fits(ms: u64) -> bool {
    ms.wrapping_add(1 << (MS_BITS - 1)) < (1 << MS_BITS)
}

/// `next_seq` while the batch being filled has no event: no `seq` is ever
/// this, so the fast path refuses the batch's first event.
const NO_EVENT: u64 = u64::MAX;

/// The drain thread's side: the batch being filled, and the id slots.
pub(super) struct Encoder {
    slots: Box<[Option<Ids>; SLOTS]>,
    /// The slot the previous event's ids stand in: runs of one run's events
    /// skip the hash and the slot message.
    last: u16,
    /// The addresses of the ids `last` holds, which that slot keeps alive:
    /// the per-event check compares them without going through the table.
    last_ids: [usize; 3],
    /// The trace id of the last event's ids.
    last_trace: Option<TraceId>,
    batch: Batch,
    /// The `seq` the batch's next event takes: its events' `seq` follow
    /// from their places, so they must run on without a gap.
    next_seq: u64,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            slots: Box::new([const { None }; SLOTS]),
            last: 0,
            // No `Arc` lives at address 0: matches no event.
            last_ids: [0; 3],
            last_trace: None,
            batch: Batch::new(),
            next_seq: NO_EVENT,
        }
    }

    /// Events in the batch being filled.
    pub(super) fn events(&self) -> usize {
        if self.next_seq == NO_EVENT {
            0
        } else {
            (self.next_seq - self.batch.base.seq) as usize
        }
    }

    /// Whether the batch being filled holds nothing, not even a slot message.
    pub(super) fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Whether the batch is due to be handed over before the next push.
    pub(super) fn is_full(&self) -> bool {
        self.batch.items.len() >= BATCH
    }

    /// Appends `event` if that takes one word: the batch has an event
    /// already, `seq` is the next one and there is room; the event's ids
    /// are the previous event's, and its kind and numbers fit a word.
    /// Returns `false` (and appends nothing) otherwise; [`push`](Self::push)
    /// then does the rest.
    ///
    /// This is the drain thread's whole per-event cost for a stream of
    /// phase events, so it calls nothing: a call would make it save
    /// registers and build a stack frame for every event.
    #[inline]
    pub(super) fn push_fast(&mut self, seq: u64, event: &ProgressEvent) -> bool {
        let ms = event
            .timestamp
            .as_millis()
            .wrapping_sub(self.batch.base.millis);
        let [run, correlation, work_order] = id_addresses(event);
        let [last_run, last_correlation, last_work_order] = self.last_ids;
        // One test of the three, not three branches.
        let same_ids =
            (run ^ last_run) | (correlation ^ last_correlation) | (work_order ^ last_work_order)
                == 0;
        let items = &mut self.batch.items;
        let ms_fits = ms_fits(ms);
        let room = items.len() < items.capacity();
        let same_trace = event.trace_id == self.last_trace;
        if !(same_ids & same_trace & room & ms_fits & (seq == self.next_seq)) {
            return false;
        }
        let Some(item) = Item::inline(event, ms & MS_MASK) else {
            return false;
        };
        items.push(item);
        self.next_seq = seq + 1;
        true
    }

    /// Appends `event`, preceded by a slot message when its ids are not
    /// the previous event's. Returns `false` (and appends nothing) when the
    /// batch has events and `seq` does not follow them: the caller then
    /// hands the batch over with [`take`](Self::take) and pushes again,
    /// which cannot fail.
    pub(super) fn push(&mut self, seq: u64, event: &ProgressEvent) -> bool {
        // The drain thread counts from 1; `NO_EVENT` is never reached.
        debug_assert!(seq < NO_EVENT - 1, "journal seq {seq} out of range");
        let millis = event.timestamp.as_millis();
        if self.next_seq == NO_EVENT {
            self.batch.base = Base { seq, millis };
        } else if seq != self.next_seq {
            return false;
        }
        if !self.holds(self.last, event) {
            let slot = slot_of(event);
            if self.holds(slot, event) {
                self.batch.items.push(Item::slot_message(slot));
            } else {
                let ids = Ids::of(event);
                let index = self.batch.side.len();
                self.batch.side.push(Some(Side::Ids(ids.clone())));
                self.batch
                    .items
                    .push(Item::side(SIDE_IDS, index, u64::from(slot)));
                self.slots[usize::from(slot)] = Some(ids);
            }
            self.last = slot;
            self.last_ids = id_addresses(event);
            self.last_trace = event.trace_id;
        }
        let ms = millis.wrapping_sub(self.batch.base.millis);
        let inline = if ms_fits(ms) {
            Item::inline(event, ms & MS_MASK)
        } else {
            None
        };
        let item = inline.unwrap_or_else(|| {
            let index = self.batch.side.len();
            self.batch.side.push(Some(Side::Event {
                timestamp: event.timestamp,
                kind: event.kind.clone(),
                metadata: event.metadata.clone(),
            }));
            Item::side(SIDE_EVENT, index, event.event_type().index() as u64)
        });
        self.batch.items.push(item);
        self.next_seq = seq + 1;
        true
    }

    /// Forgets which ids the writer was sent, after a batch that carried
    /// some was dropped whole: every run's next event sends its ids again.
    pub(super) fn forget_ids(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.last_ids = [0; 3];
    }

    /// The batch being filled, its contents moved into `into` (an empty
    /// batch, recycled: see `JournalSink::hand_off`); a new batch starts.
    pub(super) fn take(&mut self, mut into: Batch) -> Batch {
        // `append` would put the items after anything left in it.
        debug_assert!(into.is_empty(), "a recycled journal batch was not empty");
        into.base = self.batch.base;
        into.items.append(&mut self.batch.items);
        into.side.append(&mut self.batch.side);
        self.next_seq = NO_EVENT;
        into
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

    /// Empties `batch` in order, handing `each` every event with its `seq`
    /// (the event is reused after the call), or its type if its ids never
    /// arrived (unreachable: they always precede it).
    pub(super) fn decode(
        &mut self,
        batch: &mut Batch,
        mut each: impl FnMut(Result<(u64, &ProgressEvent), EventType>),
    ) {
        let base = batch.base;
        let mut seq = base.seq;
        for item in batch.items.drain(..) {
            let (timestamp, kind, metadata) = match item.tag() {
                SLOT => {
                    self.current = item.slot();
                    continue;
                }
                SIDE_IDS => {
                    self.current = item.slot();
                    if let Some(Some(Side::Ids(ids))) =
                        batch.side.get_mut(item.side_index()).map(Option::take)
                    {
                        self.slots[self.current] = Some(ProgressEvent {
                            timestamp: Timestamp::default(),
                            work_order_id: ids.work_order_id,
                            run_id: ids.run_id,
                            correlation_id: ids.correlation_id,
                            trace_id: ids.trace_id,
                            metadata: None,
                            kind: EventKind::DeliveryStarted,
                        });
                    }
                    continue;
                }
                SKIP => {
                    seq += item.skipped();
                    continue;
                }
                SIDE_EVENT => match batch.side.get_mut(item.side_index()).map(Option::take) {
                    Some(Some(Side::Event {
                        timestamp,
                        kind,
                        metadata,
                    })) => (timestamp, kind, metadata),
                    // Unreachable: the item and its entry are pushed together.
                    _ => {
                        seq += 1;
                        each(Err(item.event_type().unwrap_or(EventType::DeliveryStarted)));
                        continue;
                    }
                },
                _ => (item.inline_timestamp(base), item.inline_kind(), None),
            };
            let this = seq;
            seq += 1;
            match self.slots[self.current].as_mut() {
                Some(event) => {
                    event.timestamp = timestamp;
                    event.metadata = metadata;
                    event.kind = kind;
                    each(Ok((this, event)));
                }
                None => each(Err(kind.event_type())),
            }
        }
        // A burst of side-listed events must not leave every recycled
        // batch holding a side list of its size.
        if batch.side.capacity() > SIDE_KEPT {
            batch.side = Vec::new();
        } else {
            batch.side.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes the events as `JournalSink` does (fast path first, a hand-off
    /// when the batch is full or a push is refused), decodes every batch,
    /// and returns what came out and which events took the fast path.
    fn cross(events: &[(u64, &ProgressEvent)]) -> (Vec<(u64, ProgressEvent)>, Vec<bool>) {
        let mut encoder = Encoder::new();
        let mut batches = Vec::new();
        let mut fast = Vec::new();
        for &(seq, event) in events {
            let took_fast_path = encoder.push_fast(seq, event);
            if !took_fast_path && (encoder.is_full() || !encoder.push(seq, event)) {
                batches.push(encoder.take(Batch::new()));
                assert!(encoder.push(seq, event), "an empty batch takes any event");
            }
            fast.push(took_fast_path);
        }
        batches.push(encoder.take(Batch::new()));
        (decode_all(batches), fast)
    }

    fn decode_all(batches: Vec<Batch>) -> Vec<(u64, ProgressEvent)> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for mut batch in batches {
            decoder.decode(&mut batch, |event| {
                let (seq, event) = event.expect("ids sent first");
                out.push((seq, event.clone()));
            });
            assert!(batch.is_empty(), "decoding empties a batch for reuse");
        }
        out
    }

    fn owned(events: &[(u64, &ProgressEvent)]) -> Vec<(u64, ProgressEvent)> {
        events.iter().map(|&(s, e)| (s, e.clone())).collect()
    }

    fn phase_completed(event: &ProgressEvent, iteration: u32, duration_ms: u64) -> ProgressEvent {
        let mut next = event.clone();
        next.kind = EventKind::PhaseCompleted {
            iteration,
            phase: Phase::Verify,
            success: true,
            duration_ms,
        };
        next
    }

    #[test]
    fn an_event_crosses_in_8_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 8);
    }

    #[test]
    fn events_come_out_as_they_went_in_with_their_ids_sent_once_per_slot() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let mut b = ProgressEvent::new("wo", "run-b", EventKind::RunFailed { error: "e".into() });
        b.metadata = Some(Arc::new(Metadata::new()));
        let a2 = phase_completed(&a, 2, 5);
        let mut a3 = a.clone();
        a3.kind = EventKind::IterationStarted {
            iteration: 3,
            max_iterations: 7,
            feedback: None,
        };
        let mut a4 = a.clone();
        a4.kind = EventKind::PhaseStarted {
            iteration: 3,
            phase: Phase::Feedback,
        };
        let input = [
            (1, &a),
            (2, &b),
            (3, &a2),
            (4, &a2),
            (5, &b),
            (6, &a2),
            (7, &a3),
            (8, &a4),
        ];
        let (out, fast) = cross(&input);
        // New ids, a side-listed event and a switch of runs take the slow
        // path; an event of the previous event's run that fits, one word.
        assert_eq!(fast, [false, false, false, true, false, false, true, true]);
        assert_eq!(out, owned(&input));

        let mut encoder = Encoder::new();
        for (seq, event) in input {
            if !encoder.push_fast(seq, event) {
                assert!(encoder.push(seq, event));
            }
        }
        let batch = encoder.take(Batch::new());
        let count = |tag| batch.items.iter().filter(|i| i.tag() == tag).count();
        assert_eq!(
            (count(SIDE_IDS), count(SLOT)),
            (2, 3),
            "ids once per run, then slot messages"
        );
    }

    #[test]
    fn numbers_too_large_for_a_word_cross_whole_in_the_side_list() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let long = phase_completed(&a, 1, 1 << 22);
        let late_iteration = phase_completed(&a, 1 << 20, 5);
        let mut many = a.clone();
        many.kind = EventKind::IterationStarted {
            iteration: 1,
            max_iterations: u32::MAX,
            feedback: None,
        };
        let mut earlier = phase_completed(&a, (1 << 20) - 1, (1 << 22) - 1);
        earlier.timestamp = Timestamp::from_millis(a.timestamp.as_millis() - (1 << 15));
        let mut much_earlier = phase_completed(&a, 1, 5);
        much_earlier.timestamp = Timestamp::from_millis(a.timestamp.as_millis() - (1 << 15) - 1);
        let mut much_later = phase_completed(&a, 1, 5);
        much_later.timestamp = Timestamp::from_millis(a.timestamp.as_millis() + (1 << 15));
        let mut at_zero = phase_completed(&a, 1, 5);
        at_zero.timestamp = Timestamp::from_millis(0);
        let input = [
            (1, &a),
            (2, &long),
            (3, &late_iteration),
            (4, &many),
            (5, &earlier),
            (6, &much_earlier),
            (7, &much_later),
            (8, &at_zero),
        ];
        let (out, fast) = cross(&input);
        assert_eq!(
            fast,
            [false, false, false, false, true, false, false, false]
        );
        assert_eq!(out, owned(&input));
    }

    #[test]
    fn a_full_batch_and_a_gap_in_seq_start_a_new_batch() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let p = phase_completed(&a, 1, 5);
        let mut input = vec![(1, &a)];
        input.extend((2..=CAPACITY as u64 + 3).map(|seq| (seq, &p)));
        input.push((1_000, &p));
        input.push((1_001, &p));
        let (out, fast) = cross(&input);
        assert_eq!(out, owned(&input));
        // Slow: the first event (with its ids), the first past the room,
        // and the first past the gap.
        let slow: Vec<_> = (0..input.len()).filter(|&i| !fast[i]).collect();
        assert_eq!(slow, [0, CAPACITY - 1, input.len() - 2]);
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
        let batch = encoder.take(Batch::new());
        let ids = batch.items.iter().filter(|i| i.tag() == SIDE_IDS).count();
        assert_eq!((ids, batch.items.len(), batch.side.len()), (2, 6, 2));
    }

    #[test]
    fn skips_keep_the_seq_of_the_events_after_them() {
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        let p = phase_completed(&a, 1, 5);
        let mut encoder = Encoder::new();
        for (seq, event) in [(10, &a), (11, &p), (12, &p), (13, &p), (14, &a)] {
            if !encoder.push_fast(seq, event) {
                assert!(encoder.push(seq, event));
            }
        }
        let mut batch = encoder.take(Batch::new());
        // [ids, 10, 11, 12, 13, 14]: drop 11 and 12 as one skip.
        batch.items.splice(2..4, [Item::skip(2)]);
        let out: Vec<u64> = decode_all(vec![batch])
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(out, [10, 13, 14]);
    }

    #[test]
    fn an_event_whose_ids_never_arrived_is_reported_by_type() {
        let mut encoder = Encoder::new();
        let a = ProgressEvent::new("wo", "run-a", EventKind::DeliveryStarted);
        assert!(encoder.push(1, &a));
        let mut batch = encoder.take(Batch::new());
        batch.items.remove(0);
        let mut seen = Vec::new();
        Decoder::new().decode(&mut batch, |e| seen.push(e.map(|(seq, _)| seq)));
        assert_eq!(seen, [Err(EventType::DeliveryStarted)]);
    }
}
