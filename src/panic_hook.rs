//! One process-wide panic hook, installed once and chained to the one
//! before it, for two things the default hook cannot do:
//!
//! - A panic inside a listener call is caught, counted and logged by the
//!   drain thread; the hook stays silent for it, so Rust's "thread panicked
//!   at" message (and, under `RUST_BACKTRACE`, a whole backtrace) is not
//!   printed once per event. Every other panic goes to the previous hook,
//!   so the embedder's own hook still runs for the embedder's panics.
//! - A thread with a live [`RunGuard`](crate::RunGuard) keeps the message
//!   of its latest panic, so the guard's `run_failed` can say what the
//!   panic was: the payload itself is only reachable from a hook while
//!   unwinding.
//!
//! A hook set later by the embedder without chaining to ours replaces it:
//! listener panics are then printed again (still caught, counted and
//! logged) and a panicking run's `run_failed` says only that it panicked
//! (or, if the same thread had a panic caught before the hook was
//! replaced, gives that older panic's message).

use std::cell::{Cell, RefCell};
use std::panic::PanicHookInfo;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static INSTALL: Once = Once::new();

/// Set once a run guard has existed: from then on every panic's message is
/// kept on its thread (a guard is `Send`, so which thread it ends on is not
/// known in advance). Costs one `String` per panic, nothing otherwise.
static KEEP_MESSAGES: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// True while this thread is inside a listener call.
    static IN_LISTENER: Cell<bool> = const { Cell::new(false) };
    /// The message of this thread's latest panic, once messages are kept.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook, once per process. Does nothing on a panicking
/// thread (`set_hook` must not be called there); a later call installs it.
pub(crate) fn install() {
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Relaxed: a flag set once; missing it for a panic racing the
            // first guard's creation only loses that panic's message.
            if KEEP_MESSAGES.load(Ordering::Relaxed) {
                let message = describe(info);
                let _ = LAST_PANIC.try_with(|last| *last.borrow_mut() = Some(message));
            }
            if IN_LISTENER.try_with(Cell::get).unwrap_or(false) {
                return;
            }
            previous(info);
        }));
    });
}

/// `message at file:line:column`.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string panic payload"
    };
    match info.location() {
        Some(at) => format!("{message} at {}:{}:{}", at.file(), at.line(), at.column()),
        None => message.to_owned(),
    }
}

/// Runs a listener call: a panic inside it is not printed by the hook
/// (the caller catches, counts and logs it).
#[inline]
pub(crate) fn silenced<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let outer = self.0;
            let _ = IN_LISTENER.try_with(|flag| flag.set(outer));
        }
    }
    let outer = IN_LISTENER
        .try_with(|flag| flag.replace(true))
        .unwrap_or(false);
    let _reset = Reset(outer);
    f()
}

/// Keep panic messages from now on (a run guard exists).
pub(crate) fn keep_messages() {
    // Relaxed: see the load in the hook.
    KEEP_MESSAGES.store(true, Ordering::Relaxed);
}

/// The message of this thread's current panic, if the hook kept one.
pub(crate) fn current_panic_message() -> Option<String> {
    LAST_PANIC
        .try_with(|last| last.borrow().clone())
        .ok()
        .flatten()
}
