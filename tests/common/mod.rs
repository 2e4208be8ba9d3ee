//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use agentgate_obs::{Builder, Emitter, Observability, ProgressEvent, Subscription};
use parking_lot::Mutex;

/// A builder for a pipeline that writes nothing to the terminal.
pub fn quiet() -> Builder {
    Observability::builder()
}

/// Every event a listener saw, in order.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<ProgressEvent>>>,
}

impl Recorder {
    /// Subscribes a new recorder to `emitter`.
    pub fn attach(emitter: &Emitter) -> (Recorder, Subscription) {
        let recorder = Recorder::default();
        let sink = recorder.clone();
        let sub = emitter.subscribe(move |e| sink.events.lock().push(e.clone()));
        (recorder, sub)
    }

    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().len()
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than
/// `limit`: a guard against deadlocks, not a performance assertion.
pub fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("{what} did not finish within {limit:?} (deadlock?)"),
    }
}
