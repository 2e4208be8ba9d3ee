//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use agentgate_obs::{Builder, Emitter, Observability, ProgressEvent, Subscription};
use parking_lot::{Condvar, Mutex};

/// A builder for a pipeline that writes nothing to the terminal.
pub fn quiet() -> Builder {
    Observability::builder().no_log()
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

// ---- JSON log helpers (issue 5) ----

/// A `Write` that keeps everything in memory, shared between clones: hand
/// one to `Builder::log_to`, read the lines through another.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn new() -> Self {
        LogBuffer::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).expect("log output is UTF-8")
    }

    /// Every line parsed as JSON; fails the test on the first line that
    /// does not parse.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        parse_log_lines(&self.text())
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses JSON lines; every line must be one JSON object with the core
/// log fields.
pub fn parse_log_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for key in ["level", "module", "message", "timestamp"] {
                assert!(v[key].is_string(), "no {key} in {line}");
            }
            v
        })
        .collect()
}

/// The log lines whose `message` is `message`.
pub fn lines_with_message<'a>(
    lines: &'a [serde_json::Value],
    message: &str,
) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// A log sink that blocks every write until the gate opens, then writes
/// into a [`LogBuffer`] (optionally sleeping per write, to stay slow).
#[derive(Clone)]
pub struct GatedLogSink {
    gate: Arc<(Mutex<bool>, Condvar)>,
    pub buffer: LogBuffer,
    delay: Duration,
}

impl GatedLogSink {
    /// Closed: writes wait for `open`.
    pub fn closed() -> Self {
        GatedLogSink {
            gate: Arc::new((Mutex::new(false), Condvar::new())),
            buffer: LogBuffer::new(),
            delay: Duration::ZERO,
        }
    }

    /// Open, but every write takes `delay`.
    pub fn slow(delay: Duration) -> Self {
        let sink = GatedLogSink::closed();
        sink.open();
        GatedLogSink { delay, ..sink }
    }

    pub fn open(&self) {
        let (open, cv) = &*self.gate;
        *open.lock() = true;
        cv.notify_all();
    }
}

impl Write for GatedLogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (open, cv) = &*self.gate;
        let mut open = open.lock();
        while !*open {
            cv.wait(&mut open);
        }
        drop(open);
        std::thread::sleep(self.delay);
        self.buffer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A log sink that always fails, or panics when `panics` is set.
pub struct FailingLogSink {
    pub panics: bool,
}

impl Write for FailingLogSink {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        if self.panics {
            panic!("log sink exploded");
        }
        Err(io::Error::other("disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
