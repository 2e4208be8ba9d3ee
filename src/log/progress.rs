//! The drain thread's log of every processed progress event as a
//! `Progress: <type>` record (a pipeline sink), and the pipeline's own
//! error reports.

use std::borrow::Cow;
use std::sync::Arc;

use super::Level;
use super::record::{Body, Record};
use super::writer::Dispatch;
use crate::context::LogContext;
use crate::event::{ProgressEvent, Timestamp};

/// The `module` of progress lines.
pub(crate) const PROGRESS_MODULE: &str = "agentgate_obs::progress";

/// The `module` of the pipeline's own reports.
pub(crate) const PIPELINE_MODULE: &str = "agentgate_obs::pipeline";

/// Logs each event at info level. Never waits: when the writer is behind,
/// the line is dropped and counted, and the pipeline goes on.
pub(crate) struct ProgressLog {
    dispatch: Arc<Dispatch>,
    enabled: bool,
}

impl ProgressLog {
    pub(crate) fn new(dispatch: Arc<Dispatch>) -> Self {
        // The filter is fixed for the writer's life: decide once.
        let enabled = dispatch.enabled(Level::Info, PROGRESS_MODULE);
        ProgressLog { dispatch, enabled }
    }
}

impl ProgressLog {
    /// Logs one processed event.
    pub(crate) fn log(&self, event: &ProgressEvent) {
        if !self.enabled {
            return;
        }
        self.dispatch.send_nowait_with(|| Record {
            level: Level::Info,
            module: Cow::Borrowed(PROGRESS_MODULE),
            timestamp: event.timestamp,
            body: Body::Progress(Box::new(event.clone())),
        });
    }
}

/// Logs a listener panic as an error record with the event's ids.
///
/// Runs on the drain thread, which never waits on the log: if the writer is
/// behind, this record is dropped and counted like an info line (the panic
/// itself is always counted in `listener_panics`).
pub(crate) fn listener_panicked(dispatch: &Dispatch, event: &ProgressEvent, panic: &str) {
    if !dispatch.enabled(Level::Error, PIPELINE_MODULE) {
        return;
    }
    let context = LogContext {
        work_order_id: Some(event.work_order_id.clone()),
        run_id: Some(event.run_id.clone()),
        correlation_id: Some(event.correlation_id.clone()),
        ..LogContext::default()
    };
    dispatch.send_nowait(Record {
        level: Level::Error,
        module: Cow::Borrowed(PIPELINE_MODULE),
        timestamp: Timestamp::now(),
        body: Body::Message {
            message: Cow::Borrowed("Progress listener panicked"),
            context: Some(Arc::new(context)),
            fields: vec![
                ("eventType", event.event_type().as_str().into()),
                ("panic", panic.to_owned().into()),
            ],
        },
    });
}

/// A warning from the pipeline about itself, sent without waiting (the
/// drain thread calls it): dropped and counted if the writer is behind.
pub(crate) fn pipeline_warning(
    dispatch: &Dispatch,
    module: &'static str,
    message: &'static str,
    fields: Vec<super::Field>,
) {
    if !dispatch.enabled(Level::Warn, module) {
        return;
    }
    dispatch.send_nowait(Record {
        level: Level::Warn,
        module: Cow::Borrowed(module),
        timestamp: Timestamp::now(),
        body: Body::Message {
            message: Cow::Borrowed(message),
            context: None,
            fields,
        },
    });
}
