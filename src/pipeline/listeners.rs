//! The listener set: read lock-free by the drain thread on every event,
//! changed rarely under a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::event::ProgressEvent;

/// A listener function.
pub(crate) type ListenerFn = dyn Fn(&ProgressEvent) + Send + Sync;

pub(crate) struct Listener {
    id: u64,
    active: AtomicBool,
    pub(crate) f: Box<ListenerFn>,
}

impl Listener {
    /// False once unsubscribed, so a removal is honoured even by a drain
    /// thread still holding the previous set.
    pub(crate) fn is_active(&self) -> bool {
        // Acquire: pairs with the Release in `remove`.
        self.active.load(Ordering::Acquire)
    }
}

#[derive(Default)]
pub(crate) struct Listeners {
    set: ArcSwap<Vec<Arc<Listener>>>,
    /// Serializes writers; readers never take it.
    write: Mutex<()>,
    next_id: AtomicU64,
    /// Bumped after every change, so the drain thread can keep a copy.
    version: AtomicU64,
}

impl Listeners {
    pub(crate) fn add(&self, f: Box<ListenerFn>) -> u64 {
        // A panic in `f` is caught, counted and logged by the drain thread;
        // the hook keeps Rust's default message for it off stderr.
        crate::panic_hook::install();
        let f: Box<ListenerFn> = Box::new(move |event| crate::panic_hook::silenced(|| f(event)));
        // Relaxed: only uniqueness matters.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let listener = Arc::new(Listener {
            id,
            active: AtomicBool::new(true),
            f,
        });
        let _write = self.write.lock();
        let mut next = Vec::clone(&self.set.load());
        next.push(listener);
        self.set.store(Arc::new(next));
        // Release: publishes the store above to a drain thread that sees the new version.
        self.version.fetch_add(1, Ordering::Release);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        let _write = self.write.lock();
        let current = self.set.load();
        if let Some(listener) = current.iter().find(|l| l.id == id) {
            // Release: see `Listener::is_active`.
            listener.active.store(false, Ordering::Release);
        }
        let next: Vec<_> = current.iter().filter(|l| l.id != id).cloned().collect();
        self.set.store(Arc::new(next));
        // Release: see `add`.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The current set.
    pub(crate) fn load_full(&self) -> Arc<Vec<Arc<Listener>>> {
        self.set.load_full()
    }

    /// Changes so far; a new value means `load_full` has something new.
    pub(crate) fn version(&self) -> u64 {
        // Acquire: pairs with the Release bumps, so the set loaded next is at least this new.
        self.version.load(Ordering::Acquire)
    }
}
