//! The process-wide writer that [`Logger::new`](super::Logger::new), the
//! `log` bridge and the `tracing` layer write to: the most recently started
//! [`Observability`](crate::Observability) with logging on, until it shuts
//! down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use super::writer::Dispatch;

static GLOBAL: ArcSwapOption<Dispatch> = ArcSwapOption::const_empty();

/// Records of level info and above logged while no writer was installed.
static UNROUTED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn install(dispatch: &Arc<Dispatch>) {
    GLOBAL.store(Some(dispatch.clone()));
    super::bridge::refresh_max_level(Some(&dispatch.filter));
}

/// Uninstalls `dispatch` if it is still the global one.
pub(crate) fn uninstall(dispatch: &Arc<Dispatch>) {
    let current = GLOBAL.load();
    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, dispatch)) {
        // Only ours is replaced: a newer install in between is left alone.
        let _ = GLOBAL.compare_and_swap(&*current, None);
        super::bridge::refresh_max_level(None);
    }
}

/// Calls `f` with the global writer, or counts an unrouted record.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Dispatch) -> R) -> Option<R> {
    let guard = GLOBAL.load();
    guard.as_deref().map(f)
}

pub(crate) fn count_unrouted() {
    // Relaxed: a count for reporting.
    UNROUTED.fetch_add(1, Ordering::Relaxed);
}

/// How many records of level info or above were logged through the global
/// facade ([`Logger::new`](super::Logger::new), `log`, `tracing`) while no
/// [`Observability`](crate::Observability) with logging was running, and so
/// went nowhere.
pub fn unrouted_records() -> u64 {
    // Relaxed: a count for reporting.
    UNROUTED.load(Ordering::Relaxed)
}
