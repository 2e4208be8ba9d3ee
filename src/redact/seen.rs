//! Ids already found clean, so that the events of one run, which share
//! their id `Arc`s, have them scanned once rather than each time.

use std::sync::Arc;

use super::Redactor;

/// The last ids that came out of redaction unchanged, held by pointer.
///
/// Holding a clone keeps each allocation alive, so an equal pointer is the
/// same immutable text, already scanned by the same redactor.
#[derive(Debug, Default)]
pub(crate) struct CleanIds {
    /// The ids' addresses, compared first: a plain array of words (0 for
    /// an empty place, never an allocation's address).
    addresses: [usize; RECENT],
    /// The ids themselves, holding the allocations.
    held: [Option<Arc<str>>; RECENT],
    next: usize,
}

/// Enough for the runs interleaved in a replay or a busy engine's
/// `emit` calls: a work order id, a run id and a correlation id each.
const RECENT: usize = 8;

impl CleanIds {
    /// Redacts `id` unless it is one of the recent clean ids.
    pub(crate) fn redact(&mut self, redactor: &Redactor, id: &mut Arc<str>) {
        let address = address_of(id);
        if self.addresses.contains(&address) {
            return;
        }
        redactor.redact_arc(id);
        // Only an unchanged id is worth remembering: a redacted one is a new
        // allocation the next event does not share.
        if address_of(id) == address {
            self.addresses[self.next] = address;
            self.held[self.next] = Some(id.clone());
            self.next = (self.next + 1) % RECENT;
        }
    }
}

fn address_of(id: &Arc<str>) -> usize {
    Arc::as_ptr(id).cast::<u8>() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_clean_id_is_kept_and_a_secret_one_is_redacted_every_time() {
        let redactor = Redactor::default();
        let mut seen = CleanIds::default();
        let clean: Arc<str> = Arc::from("run-0001");
        let mut id = clean.clone();
        seen.redact(&redactor, &mut id);
        seen.redact(&redactor, &mut id);
        assert!(Arc::ptr_eq(&id, &clean));
        let secret: Arc<str> = Arc::from("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB");
        for _ in 0..2 {
            let mut id = secret.clone();
            seen.redact(&redactor, &mut id);
            assert!(!id.contains("ghp_0123"), "{id}");
        }
    }

    #[test]
    fn equal_text_in_another_allocation_is_scanned_again() {
        let redactor = Redactor::default();
        let mut seen = CleanIds::default();
        for i in 0..RECENT * 3 {
            let mut id: Arc<str> = Arc::from(format!("run-{i}").as_str());
            seen.redact(&redactor, &mut id);
        }
        let mut id: Arc<str> = Arc::from("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB");
        seen.redact(&redactor, &mut id);
        assert!(!id.contains("ghp_0123"));
    }
}
