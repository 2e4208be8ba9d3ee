//! The `tracing` layer (cargo feature `tracing`): `tracing` events as the
//! same JSON lines, with the current context at top level.
#![cfg(feature = "tracing")]

use crate::common;

use agentgate_obs::Observability;
use agentgate_obs::logging::{LogContext, TracingLayer, with_context};
use common::LogBuffer;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn tracing_events_come_out_as_json_lines_with_the_current_context_and_their_fields() {
    let _turn = crate::TURN.lock();
    let buffer = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(buffer.clone())
        .start()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(TracingLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        with_context(
            LogContext::new().run_id("run-3").correlation_id("req-3"),
            || {
                tracing::info!(target: "executor", attempt = 2, cached = true, ratio = 0.5, path = "src/lib.rs", "built {} crates", 7);
                tracing::warn!(apiKey = "sk-123", "with a secret");
                tracing::debug!("below the level");
            },
        );
    });
    obs.shutdown();
    let lines = buffer.log_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let built = &lines[0];
    assert_eq!(built["module"], "executor");
    assert_eq!(built["level"], "info");
    assert_eq!(built["message"], "built 7 crates");
    assert_eq!(built["runId"], "run-3");
    assert_eq!(built["correlationId"], "req-3");
    assert_eq!(built["attempt"], 2);
    assert_eq!(built["cached"], true);
    assert_eq!(built["ratio"], 0.5);
    assert_eq!(built["path"], "src/lib.rs");
    assert_eq!(lines[1]["level"], "warn");
    assert_eq!(lines[1]["apiKey"], "[REDACTED]");
}
