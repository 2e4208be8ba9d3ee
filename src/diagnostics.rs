//! The pipeline's own reports about itself (a listener panicked), written
//! as error records through the pipeline's log writer.

use crate::event::ProgressEvent;
use crate::log::Dispatch;

/// Reports a listener panic. Runs on the drain thread, rarely; nothing is
/// written when logging is off (the panic is still counted).
pub(crate) fn listener_panicked(log: Option<&Dispatch>, event: &ProgressEvent, panic: &str) {
    if let Some(log) = log {
        crate::log::listener_panicked(log, event, panic);
    }
}
