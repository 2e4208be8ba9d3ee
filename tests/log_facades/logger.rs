//! The global facades: `Logger::new`, the `log` crate bridge. They share
//! process-wide state, so these tests take turns.

use crate::TURN;
use crate::common;

use agentgate_obs::Observability;
use agentgate_obs::logging::{Level, LogContext, Logger, unrouted_records, with_context};
use common::{LogBuffer, lines_with_message};

#[test]
fn a_logger_made_with_new_writes_to_the_most_recently_started_pipeline() {
    let _turn = TURN.lock();
    let log = Logger::new("executor");
    let first = LogBuffer::new();
    let obs1 = Observability::builder()
        .log_to(first.clone())
        .start()
        .unwrap();
    log.info("to the first", []);
    let second = LogBuffer::new();
    let obs2 = Observability::builder()
        .log_to(second.clone())
        .start()
        .unwrap();
    log.info("to the second", []);
    // Shutting down an older pipeline leaves the newer one in place.
    obs1.shutdown();
    log.info("still the second", []);
    obs2.shutdown();
    let first = first.log_lines();
    let second = second.log_lines();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["message"], "to the first");
    assert_eq!(lines_with_message(&second, "to the second").len(), 1);
    assert_eq!(lines_with_message(&second, "still the second").len(), 1);
}

#[test]
fn global_records_with_no_pipeline_running_are_counted_as_unrouted() {
    let _turn = TURN.lock();
    let obs = Observability::builder()
        .log_to(LogBuffer::new())
        .start()
        .unwrap();
    obs.shutdown();
    let before = unrouted_records();
    let log = Logger::new("orphan");
    log.info("nowhere to go", []);
    log.error("nowhere to go", []);
    log.debug("below info: not counted", []);
    assert!(!log.enabled(Level::Error));
    assert_eq!(unrouted_records() - before, 2);
}

#[test]
fn log_crate_records_come_out_as_the_same_json_with_the_current_context() {
    let _turn = TURN.lock();
    let buffer = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(buffer.clone())
        .log_level(
            "info,noisy_dependency=error"
                .parse::<agentgate_obs::logging::LogFilter>()
                .unwrap(),
        )
        .start()
        .unwrap();
    agentgate_obs::logging::install_log_bridge().unwrap();
    // A second call is harmless.
    agentgate_obs::logging::install_log_bridge().unwrap();
    with_context(
        LogContext::new().run_id("run-7").correlation_id("req-7"),
        || {
            log::info!("cloned {} files", 42);
            log::info!(target: "noisy_dependency::pool", "filtered out");
            log::warn!(target: "noisy_dependency::pool", "also filtered");
            log::error!(target: "noisy_dependency", "kept: {}", "pool exhausted");
            log::debug!("filtered by level");
            log::info!("static message");
        },
    );
    obs.shutdown();
    let lines = buffer.log_lines();
    let messages: Vec<_> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["cloned 42 files", "kept: pool exhausted", "static message"]
    );
    assert_eq!(lines[0]["module"], module_path!());
    assert_eq!(lines[0]["level"], "info");
    assert_eq!(lines[0]["correlationId"], "req-7");
    assert_eq!(lines[0]["runId"], "run-7");
    assert_eq!(lines[1]["module"], "noisy_dependency");
    assert_eq!(lines[1]["level"], "error");
}
