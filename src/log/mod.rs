//! Structured JSON logs: one object per line, stamped with the calling
//! thread's [`LogContext`](crate::logging::LogContext), redacted, and written by a
//! writer thread so that the engine never waits on a disk.
//!
//! ```text
//! {"level":"info","module":"executor","message":"Build finished","timestamp":"2026-01-05T10:00:00.123Z","workOrderId":"wo-1","runId":"run-1","iteration":2,"phase":"build","correlationId":"req-9","durationMs":1234}
//! ```
//!
//! Sources: [`Logger`] (one per module), the `log` crate through
//! [`install_log_bridge`], `tracing` through [`TracingLayer`] (cargo feature
//! `tracing`), and the pipeline itself (a `Progress: <type>` line per
//! processed event, from the drain thread). All of them end in the writer
//! of an [`Observability`](crate::Observability), configured on its
//! [`Builder`](crate::Builder): `log_to`, `log_file`, `no_log`,
//! `log_level`, `log_capacity`. The level filter comes from the builder,
//! overridden by the `AGENTGATE_LOG` environment variable when it is set
//! (`info`, `debug`, `agentgate_obs=debug,executor=warn`).
//!
//! Losses are never silent: [`LogStats`] counts records dropped because the
//! writer was behind (only trace/debug/info are ever dropped; warn and
//! error wait), records lost to a failing sink, and the sink's failures.

mod bridge;
mod format;
mod global;
mod level;
mod logger;
mod progress;
mod record;
#[cfg(feature = "tracing")]
mod tracing_layer;
mod writer;

use std::path::PathBuf;

pub use bridge::{LogBridgeError, install_log_bridge};
pub use global::unrouted_records;
pub use level::{InvalidLogFilter, Level, LogFilter};
pub use logger::Logger;
pub use record::{Field, FieldValue};
#[cfg(feature = "tracing")]
pub use tracing_layer::TracingLayer;

pub(crate) use progress::{ProgressLog, listener_panicked, pipeline_warning};
pub(crate) use writer::{Dispatch, LogWriter};

use writer::{Output, StartError};

/// The log writer's accounting.
///
/// After [`Observability::shutdown`](crate::Observability::shutdown), every
/// record that passed the level filter is in exactly one of `written`,
/// `dropped` and `lost`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records handed to the sink successfully.
    pub written: u64,
    /// Records refused because the writer's channel was full (trace, debug
    /// and info only) or the writer had shut down.
    pub dropped: u64,
    /// Records in batches the sink failed to write.
    pub lost: u64,
    /// Failed writes (errors or panics of the sink).
    pub sink_errors: u64,
}

/// The builder's log settings.
#[derive(Clone, Debug)]
pub(crate) struct LogConfig {
    /// `None`: logging off.
    output: Option<Output>,
    filter: Option<LogFilter>,
    capacity: usize,
    /// The mode a new log file is created with.
    mode: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            output: Some(Output::Stderr),
            filter: None,
            capacity: 16_384,
            mode: crate::files::DEFAULT_FILE_MODE,
        }
    }
}

impl LogConfig {
    pub(crate) fn set_writer(&mut self, w: impl std::io::Write + Send + 'static) {
        let boxed: Box<dyn std::io::Write + Send> = Box::new(w);
        self.output = Some(Output::Writer(std::sync::Arc::new(
            parking_lot::Mutex::new(boxed),
        )));
    }

    pub(crate) fn set_file(&mut self, path: PathBuf) {
        self.output = Some(Output::File(path));
    }

    pub(crate) fn file_mode(&mut self, mode: u32) {
        self.mode = mode;
    }

    pub(crate) fn off(&mut self) {
        self.output = None;
    }

    pub(crate) fn filter(&mut self, filter: LogFilter) {
        self.filter = Some(filter);
    }

    pub(crate) fn capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Opens the sink, starts the writer and makes it the global one.
    /// `Ok(None)` when logging is off.
    pub(crate) fn start(
        &self,
        redactor: std::sync::Arc<crate::redact::Redactor>,
    ) -> Result<Option<LogWriter>, crate::error::Error> {
        let Some(output) = &self.output else {
            return Ok(None);
        };
        if self.capacity == 0 {
            return Err(crate::error::Error::Config(
                "log_capacity must be at least 1".into(),
            ));
        }
        let configured = self.filter.clone().unwrap_or_default();
        let from_env = std::env::var(LogFilter::ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.parse::<LogFilter>());
        let (filter, env_error) = match from_env {
            Some(Ok(filter)) => (filter, None),
            Some(Err(e)) => (configured, Some(e)),
            None => (configured, None),
        };
        let writer =
            LogWriter::start(output, self.mode, filter, self.capacity, redactor).map_err(|e| {
                let path = match output {
                    Output::File(path) => path.clone(),
                    _ => PathBuf::new(),
                };
                match e {
                    StartError::Open(crate::files::OpenError::NotRegular(kind)) => {
                        crate::error::Error::NotARegularFile { path, kind }
                    }
                    StartError::Open(crate::files::OpenError::Io(source)) => {
                        crate::error::Error::LogFile { path, source }
                    }
                    StartError::Spawn(source) => crate::error::Error::Spawn {
                        name: "log writer",
                        source,
                    },
                }
            })?;
        global::install(writer.dispatch());
        if let Some(e) = env_error {
            Logger::bound("agentgate_obs::log", writer.dispatch().clone()).warn(
                "ignoring AGENTGATE_LOG",
                [("error", FieldValue::from(e.to_string()))],
            );
        }
        Ok(Some(writer))
    }
}
