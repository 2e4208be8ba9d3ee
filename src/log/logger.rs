//! [`Logger`]: a named source of records.

use std::borrow::Cow;
use std::sync::Arc;

use super::Level;
use super::global;
use super::record::{Body, Field, Record};
use super::writer::Dispatch;
use crate::context::current_shared;
use crate::event::Timestamp;

/// Writes records for one module: `level`, `module`, `message`,
/// `timestamp`, the calling thread's [`LogContext`](crate::logging::LogContext), and
/// extra fields.
///
/// The caller's cost is a level check, a clock read and one channel send:
/// formatting, redaction and I/O happen on the writer thread.
///
/// ```
/// use agentgate_obs::Observability;
/// use agentgate_obs::logging::{LogContext, Logger, with_context};
///
/// let lines = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u8>::new()));
/// # struct W(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);
/// # impl std::io::Write for W {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// let obs = Observability::builder().log_to(W(lines.clone())).start()?;
/// let log = Logger::new("executor");
/// with_context(LogContext::new().run_id("run-1").correlation_id("req-9"), || {
///     log.info("Build finished", [("durationMs", 1234u64.into()), ("cache", "hit".into())]);
/// });
/// obs.shutdown();
/// let line: serde_json::Value = serde_json::from_slice(&lines.lock()).unwrap();
/// assert_eq!(line["module"], "executor");
/// assert_eq!(line["correlationId"], "req-9");
/// assert_eq!(line["durationMs"], 1234);
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Logger {
    module: Cow<'static, str>,
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    /// The global writer, looked up on every record.
    Global,
    Bound(Arc<Dispatch>),
    /// The pipeline it came from logs nothing.
    Off,
}

impl Logger {
    /// A logger for `module` that writes to the global writer: the most
    /// recently started [`Observability`](crate::Observability) with
    /// logging on. Records logged while there is none are counted
    /// ([`unrouted_records`](super::unrouted_records)) and go nowhere.
    pub fn new(module: impl Into<Cow<'static, str>>) -> Logger {
        Logger {
            module: module.into(),
            target: Target::Global,
        }
    }

    pub(crate) fn bound(module: impl Into<Cow<'static, str>>, dispatch: Arc<Dispatch>) -> Logger {
        Logger {
            module: module.into(),
            target: Target::Bound(dispatch),
        }
    }

    pub(crate) fn disabled(module: impl Into<Cow<'static, str>>) -> Logger {
        Logger {
            module: module.into(),
            target: Target::Off,
        }
    }

    /// The module name written in the `module` field.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// Whether a record of `level` would be written; use it to skip
    /// expensive field computations.
    pub fn enabled(&self, level: Level) -> bool {
        match &self.target {
            Target::Bound(d) => d.enabled(level, &self.module),
            Target::Global => global::with(|d| d.enabled(level, &self.module)).unwrap_or(false),
            Target::Off => false,
        }
    }

    /// Writes a record of `level` with `message` and extra `fields` (`[]`
    /// for none).
    #[inline]
    pub fn log<I>(&self, level: Level, message: impl Into<Cow<'static, str>>, fields: I)
    where
        I: IntoIterator<Item = Field>,
    {
        match &self.target {
            Target::Bound(d) => self.send(d, level, message.into(), fields),
            Target::Off => {}
            Target::Global => {
                let routed = global::with(|d| self.send(d, level, message.into(), fields));
                if routed.is_none() && level >= Level::Info {
                    global::count_unrouted();
                }
            }
        }
    }

    #[inline]
    fn send<I>(&self, dispatch: &Dispatch, level: Level, message: Cow<'static, str>, fields: I)
    where
        I: IntoIterator<Item = Field>,
    {
        if !dispatch.enabled(level, &self.module) {
            return;
        }
        dispatch.send(Record {
            level,
            module: self.module.clone(),
            timestamp: Timestamp::now(),
            body: Body::Message {
                message,
                context: current_shared(),
                fields: fields.into_iter().collect(),
            },
        });
    }

    /// [`log`](Self::log) at trace level.
    #[inline]
    pub fn trace<I: IntoIterator<Item = Field>>(
        &self,
        message: impl Into<Cow<'static, str>>,
        fields: I,
    ) {
        self.log(Level::Trace, message, fields);
    }

    /// [`log`](Self::log) at debug level.
    #[inline]
    pub fn debug<I: IntoIterator<Item = Field>>(
        &self,
        message: impl Into<Cow<'static, str>>,
        fields: I,
    ) {
        self.log(Level::Debug, message, fields);
    }

    /// [`log`](Self::log) at info level.
    #[inline]
    pub fn info<I: IntoIterator<Item = Field>>(
        &self,
        message: impl Into<Cow<'static, str>>,
        fields: I,
    ) {
        self.log(Level::Info, message, fields);
    }

    /// [`log`](Self::log) at warn level: waits for space rather than being
    /// dropped when the writer is behind.
    #[inline]
    pub fn warn<I: IntoIterator<Item = Field>>(
        &self,
        message: impl Into<Cow<'static, str>>,
        fields: I,
    ) {
        self.log(Level::Warn, message, fields);
    }

    /// [`log`](Self::log) at error level: waits for space rather than being
    /// dropped when the writer is behind.
    #[inline]
    pub fn error<I: IntoIterator<Item = Field>>(
        &self,
        message: impl Into<Cow<'static, str>>,
        fields: I,
    ) {
        self.log(Level::Error, message, fields);
    }
}
