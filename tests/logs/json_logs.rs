//! The JSON log lines: fields, order, escaping, context, redaction and the
//! pipeline's own lines.

use crate::common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use agentgate_obs::event::EventKind;
use agentgate_obs::logging::{Level, LogContext, LogFilter, spawn_with_context, with_context};
use agentgate_obs::redact::REDACTED;
use agentgate_obs::{Observability, Phase, ProgressEmitter};
use common::{LogBuffer, lines_with_message};
use serde_json::json;

fn start(buffer: &LogBuffer) -> Observability {
    Observability::builder()
        .log_to(buffer.clone())
        .log_level(Level::Debug)
        .start()
        .expect("pipeline starts")
}

#[test]
fn a_record_has_the_core_fields_then_the_context_then_the_extra_fields_in_order() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let log = obs.logger("executor");
    let ctx = LogContext::new()
        .work_order_id("wo-1")
        .run_id("run-1")
        .iteration(2)
        .phase(Phase::Build)
        .correlation_id("req-9");
    with_context(ctx, || {
        log.info("Build finished", [("durationMs", 1234u64.into())])
    });
    obs.shutdown();
    let text = buffer.text();
    let line = text.lines().next().expect("one line");
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
            .map(|m| m.keys().cloned().collect())
            .expect("a JSON object");
    let order: Vec<usize> = [
        "\"level\"",
        "\"module\"",
        "\"message\"",
        "\"timestamp\"",
        "\"workOrderId\"",
        "\"runId\"",
        "\"iteration\"",
        "\"phase\"",
        "\"correlationId\"",
        "\"durationMs\"",
    ]
    .iter()
    .map(|k| {
        line.find(k)
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "order: {line}");
    assert_eq!(keys.len(), 10);
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "info");
    assert_eq!(v["module"], "executor");
    assert_eq!(v["iteration"], 2);
    assert_eq!(v["phase"], "build");
    let ts = v["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-01-01T00:00:00.000Z".len(), "{ts}");
    assert!(ts.parse::<agentgate_obs::event::Timestamp>().is_ok());
}

#[test]
fn hostile_strings_in_messages_keys_and_values_still_make_one_valid_line_each() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let log = obs.logger("odd\"module\n");
    let nasty = "quote\" backslash\\ nl\n cr\r tab\t nul\0 esc\x1b bell\x07 \u{2028} 🦀 \u{feff}";
    log.warn(
        nasty.to_owned(),
        [
            ("k\"ey\n", nasty.to_owned().into()),
            ("n", json!({"a\nb": [nasty]}).into()),
        ],
    );
    obs.shutdown();
    let lines = buffer.log_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], nasty);
    assert_eq!(lines[0]["module"], "odd\"module\n");
    assert_eq!(lines[0]["k\"ey\n"], nasty);
    assert_eq!(lines[0]["n"]["a\nb"][0], nasty);
}

#[test]
fn extra_fields_never_overwrite_the_core_or_context_fields() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    with_context(LogContext::new().run_id("run-real"), || {
        obs.logger("m").info(
            "real message",
            [
                ("message", "fake".into()),
                ("runId", "run-fake".into()),
                ("level", "error".into()),
            ],
        );
    });
    obs.shutdown();
    let line = &buffer.log_lines()[0];
    assert_eq!(line["message"], "real message");
    assert_eq!(line["runId"], "run-real");
    assert_eq!(line["level"], "info");
    assert_eq!(line["extra.runId"], "run-fake");
}

#[test]
fn nested_contexts_override_inner_fields_and_restore_the_outer_ones() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let log = obs.logger("executor");
    with_context(
        LogContext::new()
            .run_id("run-1")
            .correlation_id("req-outer"),
        || {
            log.info("outer", []);
            with_context(
                LogContext::new().iteration(3).correlation_id("req-inner"),
                || {
                    log.info("inner", []);
                },
            );
            let _guard = LogContext::new().phase(Phase::Verify).enter();
            log.info("guarded", []);
        },
    );
    log.info("outside", []);
    obs.shutdown();
    let lines = buffer.log_lines();
    let get = |m: &str| lines_with_message(&lines, m)[0].clone();
    assert_eq!(get("outer")["correlationId"], "req-outer");
    assert!(get("outer").get("iteration").is_none());
    assert_eq!(get("inner")["runId"], "run-1");
    assert_eq!(get("inner")["iteration"], 3);
    assert_eq!(get("inner")["correlationId"], "req-inner");
    assert_eq!(get("guarded")["phase"], "verify");
    assert_eq!(get("guarded")["correlationId"], "req-outer");
    assert!(get("outside").get("runId").is_none());
    assert!(get("outside").get("correlationId").is_none());
}

#[test]
fn without_a_correlation_id_the_run_id_stands_in_as_for_progress_events() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    with_context(LogContext::new().run_id("run-5"), || {
        obs.logger("m").info("x", [])
    });
    obs.shutdown();
    assert_eq!(buffer.log_lines()[0]["correlationId"], "run-5");
}

#[test]
fn a_panic_inside_with_context_restores_the_outer_context() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let log = obs.logger("m");
    with_context(LogContext::new().correlation_id("req-outer"), || {
        let result = catch_unwind(AssertUnwindSafe(|| {
            with_context(LogContext::new().correlation_id("req-doomed"), || {
                log.info("before panic", []);
                panic!("engine bug");
            })
        }));
        assert!(result.is_err());
        log.info("after panic", []);
    });
    obs.shutdown();
    let lines = buffer.log_lines();
    assert_eq!(
        lines_with_message(&lines, "before panic")[0]["correlationId"],
        "req-doomed"
    );
    assert_eq!(
        lines_with_message(&lines, "after panic")[0]["correlationId"],
        "req-outer"
    );
}

#[test]
fn context_carried_into_spawned_threads_appears_on_their_lines() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let log = obs.logger("worker");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let log = log.clone();
            with_context(
                LogContext::new()
                    .run_id(format!("run-{i}"))
                    .correlation_id(format!("req-{i}")),
                || {
                    spawn_with_context(move || {
                        with_context(LogContext::new().iteration(i), || {
                            log.info("in thread", [("i", i.into())])
                        })
                    })
                },
            )
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A plain spawn does not inherit anything.
    let plain = log.clone();
    with_context(LogContext::new().run_id("run-x"), || {
        std::thread::spawn(move || plain.info("plain thread", []))
            .join()
            .unwrap();
    });
    obs.shutdown();
    let lines = buffer.log_lines();
    let threaded = lines_with_message(&lines, "in thread");
    assert_eq!(threaded.len(), 4);
    for line in threaded {
        let i = line["i"].as_u64().unwrap();
        assert_eq!(line["runId"], format!("run-{i}"));
        assert_eq!(line["correlationId"], format!("req-{i}"));
        assert_eq!(line["iteration"], i);
    }
    assert!(
        lines_with_message(&lines, "plain thread")[0]
            .get("runId")
            .is_none()
    );
}

#[test]
fn secrets_are_redacted_at_any_depth_and_git_shas_stay_readable() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let github = format!("ghp_{}", "A1b2C3d4E5".repeat(4));
    let sha = "3f786850e387550fdab836ed7e6dc881de23001b";
    obs.logger("m").info(
        format!("calling the API with {jwt} for commit {sha}"),
        [
            ("apiKey", "sk-live-123".into()),
            ("Authorization", "Bearer abc.def".into()),
            ("request", json!({"headers": {"COOKIE": "s=1"}, "auth": {"token": "tok-1"}, "list": [{"password": "p"}]}).into()),
            ("note", format!("pushed with {github}").into()),
            ("commit", sha.into()),
            ("inputTokens", 1200u64.into()),
        ],
    );
    obs.shutdown();
    let text = buffer.text();
    for secret in [
        jwt,
        github.as_str(),
        "sk-live-123",
        "abc.def",
        "s=1",
        "tok-1",
        "\"p\"",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let line = &buffer.log_lines()[0];
    assert_eq!(
        line["message"],
        format!("calling the API with {REDACTED} for commit {sha}")
    );
    assert_eq!(line["apiKey"], REDACTED);
    assert_eq!(line["Authorization"], REDACTED);
    assert_eq!(line["request"]["auth"]["token"], REDACTED);
    assert_eq!(line["request"]["headers"]["COOKIE"], REDACTED);
    assert_eq!(line["request"]["list"][0]["password"], REDACTED);
    assert_eq!(line["note"], format!("pushed with {REDACTED}"));
    assert_eq!(line["commit"], sha);
    assert_eq!(line["inputTokens"], 1200);
}

#[test]
fn records_below_the_level_are_not_written_and_module_directives_apply() {
    let buffer = LogBuffer::new();
    let filter: LogFilter = "warn,executor=debug".parse().unwrap();
    let obs = Observability::builder()
        .log_to(buffer.clone())
        .log_level(filter)
        .start()
        .unwrap();
    obs.logger("executor::build").debug("kept debug", []);
    obs.logger("executor::build").trace("dropped trace", []);
    obs.logger("server").info("dropped info", []);
    obs.logger("server").warn("kept warn", []);
    assert!(!obs.logger("server").enabled(Level::Info));
    obs.shutdown();
    let messages: Vec<_> = buffer
        .log_lines()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["kept debug", "kept warn"]);
    assert_eq!(obs.log_stats().dropped, 0);
}

#[test]
fn the_drain_thread_logs_each_progress_event_with_its_fields_and_correlation_id() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let emitter = obs.emitter();
    with_context(LogContext::new().correlation_id("req-42"), || {
        let run = emitter.run("wo-1", "run-1");
        run.phase_completed(2, Phase::Verify, false, Duration::from_millis(1500));
        run.gate_checked(2, "lint", true);
    });
    emitter.emit_run_failed("wo-1", "run-1", "out of memory");
    obs.flush_logs();
    let lines = buffer.log_lines();
    let phase = lines_with_message(&lines, "Progress: phase_completed")[0];
    assert_eq!(phase["module"], "agentgate_obs::progress");
    assert_eq!(phase["eventType"], "phase_completed");
    assert_eq!(phase["workOrderId"], "wo-1");
    assert_eq!(phase["runId"], "run-1");
    assert_eq!(phase["iteration"], 2);
    assert_eq!(phase["phase"], "verify");
    assert_eq!(phase["correlationId"], "req-42");
    assert_eq!(phase["success"], false);
    assert_eq!(phase["durationMs"], 1500);
    let gate = lines_with_message(&lines, "Progress: gate_checked")[0];
    assert_eq!(gate["gate"], "lint");
    let failed = lines_with_message(&lines, "Progress: run_failed")[0];
    assert_eq!(failed["correlationId"], "run-1");
    assert_eq!(failed["error"], "out of memory");
}

#[test]
fn progress_metadata_stays_nested_and_redacted() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let mut event = agentgate_obs::ProgressEvent::new("wo-1", "run-1", EventKind::DeliveryStarted);
    let mut metadata = agentgate_obs::Metadata::new();
    metadata.insert("runId".into(), json!("run-fake"));
    metadata.insert("githubToken".into(), json!("hunter2"));
    event.metadata = Some(std::sync::Arc::new(metadata));
    obs.emitter().emit(event);
    obs.flush_logs();
    let lines = buffer.log_lines();
    let line = lines_with_message(&lines, "Progress: delivery_started")[0];
    assert_eq!(line["runId"], "run-1");
    assert_eq!(line["metadata"]["runId"], "run-fake");
    assert_eq!(line["metadata"]["githubToken"], REDACTED);
}

#[test]
fn a_panicking_listener_is_reported_as_an_error_record() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let emitter = obs.emitter();
    let _sub = emitter.subscribe(|_| panic!("listener bug"));
    emitter.emit_phase_started("wo-1", "run-1", 1, Phase::Build);
    obs.flush_logs();
    let lines = buffer.log_lines();
    let report = lines_with_message(&lines, "Progress listener panicked");
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["level"], "error");
    assert_eq!(report[0]["module"], "agentgate_obs::pipeline");
    assert_eq!(report[0]["runId"], "run-1");
    assert_eq!(report[0]["eventType"], "phase_started");
    assert_eq!(report[0]["panic"], "listener bug");
    assert_eq!(obs.stats().listener_panics, 1);
}

#[test]
fn a_log_file_is_appended_to_not_truncated() {
    let path = std::env::temp_dir().join(format!("agentgate-obs-log-{}.jsonl", std::process::id()));
    std::fs::write(&path, "{\"level\":\"info\",\"module\":\"old\",\"message\":\"kept\",\"timestamp\":\"2020-01-01T00:00:00.000Z\"}\n").unwrap();
    let obs = Observability::builder().log_file(&path).start().unwrap();
    obs.logger("new").info("appended", []);
    obs.shutdown();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let lines = common::parse_log_lines(&text);
    assert_eq!(lines[0]["message"], "kept");
    assert_eq!(lines[1]["message"], "appended");
}

#[test]
fn a_log_file_that_cannot_be_opened_is_a_typed_error() {
    let error = Observability::builder()
        .log_file("/nonexistent-dir/for/sure/log.jsonl")
        .start()
        .unwrap_err();
    assert!(
        matches!(error, agentgate_obs::Error::LogFile { .. }),
        "{error}"
    );
}

#[test]
fn with_no_log_nothing_is_counted_and_loggers_are_silent() {
    let obs = Observability::builder().no_log().start().unwrap();
    let log = obs.logger("m");
    log.error("nowhere", []);
    assert!(!log.enabled(Level::Error));
    obs.shutdown();
    assert_eq!(obs.log_stats(), agentgate_obs::logging::LogStats::default());
}

#[test]
fn a_hostile_number_of_repeated_fields_and_deep_nesting_still_make_one_valid_line() {
    let buffer = LogBuffer::new();
    let obs = start(&buffer);
    let keys = ["a", "b", "c"];
    let fields: Vec<_> = (0..30_000u64)
        .map(|i| {
            (
                keys[(i % 3) as usize],
                agentgate_obs::logging::FieldValue::from(i),
            )
        })
        .collect();
    let mut deep = json!({"password": "deep secret"});
    for _ in 0..200 {
        deep = json!([deep]);
    }
    obs.logger("m").info("many", fields);
    obs.logger("m").info("deep", [("nested", deep.into())]);
    obs.shutdown();
    let lines = buffer.log_lines();
    assert_eq!(
        (
            lines[0]["a"].clone(),
            lines[0]["b"].clone(),
            lines[0]["c"].clone()
        ),
        (json!(0), json!(1), json!(2))
    );
    assert_eq!(lines[0].as_object().unwrap().len(), 4 + 3);
    assert!(!buffer.text().contains("deep secret"));
    assert!(buffer.text().contains("[TOO DEEP]"));
}
