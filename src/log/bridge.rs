//! The `log` crate bridge: `log::info!` from the engine or any dependency
//! comes out as the same JSON lines, with the calling thread's context.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use super::global;
use super::level::{Level, LogFilter};
use super::record::{Body, Record};
use crate::context::current_shared;
use crate::event::Timestamp;

/// The `log::Log` implementation; see [`install_log_bridge`].
#[derive(Debug)]
struct LogBridge;

static BRIDGE: LogBridge = LogBridge;

/// Set once our bridge is the `log` crate's logger.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Another `log` logger was installed first.
#[derive(Debug, thiserror::Error)]
#[error("a logger for the `log` crate is already installed")]
pub struct LogBridgeError(#[source] ::log::SetLoggerError);

/// Makes records of the `log` crate (`log::info!` …) go to the global
/// writer (see [`Logger::new`](super::Logger::new)) as JSON lines, with the
/// record's target as `module` and the current context. The filter of the
/// running [`Observability`](crate::Observability) applies to the target.
///
/// Like any `log` logger it can be installed once per process; it fails if
/// another one (env_logger…) was installed first. Calling it again after it
/// succeeded is a no-op.
///
/// ```
/// let _ = agentgate_obs::logging::install_log_bridge();
/// log::info!("goes to the running Observability's log, if any");
/// ```
pub fn install_log_bridge() -> Result<(), LogBridgeError> {
    // Acquire: pairs with the Release below, for a second caller.
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    ::log::set_logger(&BRIDGE).map_err(LogBridgeError)?;
    // Release: see above.
    INSTALLED.store(true, Ordering::Release);
    let max = global::with(|d| d.filter.max_level()).flatten();
    ::log::set_max_level(to_log_filter(max));
    Ok(())
}

/// Lets the `log` macros skip disabled levels before calling us.
pub(crate) fn refresh_max_level(filter: Option<&LogFilter>) {
    // Acquire: see `install_log_bridge`.
    if INSTALLED.load(Ordering::Acquire) {
        ::log::set_max_level(to_log_filter(filter.and_then(LogFilter::max_level)));
    }
}

fn to_log_filter(level: Option<Level>) -> ::log::LevelFilter {
    match level {
        None => ::log::LevelFilter::Off,
        Some(Level::Error) => ::log::LevelFilter::Error,
        Some(Level::Warn) => ::log::LevelFilter::Warn,
        Some(Level::Info) => ::log::LevelFilter::Info,
        Some(Level::Debug) => ::log::LevelFilter::Debug,
        Some(Level::Trace) => ::log::LevelFilter::Trace,
    }
}

fn from_log_level(level: ::log::Level) -> Level {
    match level {
        ::log::Level::Error => Level::Error,
        ::log::Level::Warn => Level::Warn,
        ::log::Level::Info => Level::Info,
        ::log::Level::Debug => Level::Debug,
        ::log::Level::Trace => Level::Trace,
    }
}

impl ::log::Log for LogBridge {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        let level = from_log_level(metadata.level());
        global::with(|d| d.enabled(level, metadata.target())).unwrap_or(false)
    }

    fn log(&self, record: &::log::Record<'_>) {
        let level = from_log_level(record.level());
        let target = record.target();
        let routed = global::with(|d| {
            if !d.enabled(level, target) {
                return;
            }
            // The target is usually the static module path: no copy then.
            let module = match record.module_path_static() {
                Some(path) if path == target => Cow::Borrowed(path),
                _ => Cow::Owned(target.to_owned()),
            };
            let args = record.args();
            let message = match args.as_str() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(args.to_string()),
            };
            d.send(Record {
                level,
                module,
                timestamp: Timestamp::now(),
                body: Body::Message {
                    message,
                    context: current_shared(),
                    fields: Vec::new(),
                },
            });
        });
        if routed.is_none() && level >= Level::Info {
            global::count_unrouted();
        }
    }

    fn flush(&self) {}
}
