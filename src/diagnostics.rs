//! The pipeline's own reports about itself (a listener panicked, a sink
//! failed), written as JSON lines in the same shape as the log records.

use serde_json::json;

use crate::event::{ProgressEvent, Timestamp};

/// Reports a listener panic. Runs on the drain thread, rarely.
pub(crate) fn listener_panicked(event: &ProgressEvent, panic: &str) {
    let line = json!({
        "level": "error",
        "module": "agentgate_obs::pipeline",
        "message": "Progress listener panicked",
        "timestamp": Timestamp::now(),
        "workOrderId": &*event.work_order_id,
        "runId": &*event.run_id,
        "correlationId": &*event.correlation_id,
        "eventType": event.event_type().as_str(),
        "panic": panic,
    });
    eprintln!("{line}");
}
