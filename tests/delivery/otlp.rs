//! Runs as OTLP traces: every request a receiver gets decodes with the
//! official `opentelemetry-proto` definitions, in both OTLP/HTTP
//! encodings, into one trace per run whose spans all reach the run's root;
//! the trace id is the one on the run's events (on `/ws` too), journal lines, log lines
//! and exemplars; a caller's `traceparent` is honoured. A receiver that is
//! down, failing, throttling or refusing never holds the engine, and each
//! case is counted on `/metrics`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate_obs::metrics::{Format, OtlpConfig, OtlpProtocol};
use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Observability, Phase, ProgressEvent, RunResult, Strategy,
    TaskSpec, TraceParent,
};
use parking_lot::Mutex;
use serde_json::Value;

use crate::common;
use common::TempDir;
use common::otlp::decoder;
use common::parse_exposition;
use common::receiver::{FakeReceiver, Script, closed_port_url};

/// A credential in a run's metadata: never in a request.
const SECRET: &str = "sk-live-51Hq8gTx2vQ9wE7rY4uI0oP3aS6dF";

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn metric(obs: &Observability, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = parse_exposition(&obs.metrics().render()).expect("our exposition parses");
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((n, v), (en, ev))| n == en && v == ev)
        })
        .map_or(0.0, |s| s.value)
}

fn exported(obs: &Observability) -> f64 {
    metric(obs, "agentgate_otlp_spans_exported_total", &[])
}

/// The four runs every scenario runs: one succeeds (with a delivery), one
/// fails in its build phase, one is canceled, one joins the caller's
/// trace and ends with a failed verification. A log line is written in
/// every build phase's context.
fn run_engine(obs: &Observability) {
    let emitter = obs.emitter();
    let spec = TaskSpec::new("fix the flaky test", Strategy::Ralph, 3);
    let log = obs.logger("engine");

    // Metadata reaches the spans redacted, as every other output.
    let mut metadata = agentgate_obs::Metadata::new();
    metadata.insert("api_key".into(), SECRET.into());
    metadata.insert("branch".into(), "main".into());
    let mut run = emitter
        .start_run("wo-1", "run-ok", &spec)
        .with_metadata(metadata);
    let mut iteration = run.iteration(1, 3, None);
    let phase = iteration.phase(Phase::Build);
    phase.in_context(|| log.info("building", []));
    std::thread::sleep(Duration::from_millis(3));
    phase.succeed();
    let phase = iteration.phase(Phase::Verify);
    phase.gate("tests", true);
    phase.succeed();
    iteration.succeed();
    run.handle().delivery_started();
    run.handle().delivery_completed(&DeliveryResult {
        success: true,
        pr_url: Some("https://git.example/pr/7".into()),
        ci_status: None,
    });
    run.succeed(&ExecutionMetrics::default());

    let mut run = emitter.start_run("wo-1", "run-failed", &spec);
    let mut iteration = run.iteration(1, 3, None);
    let phase = iteration.phase(Phase::Build);
    phase.in_context(|| log.info("building", []));
    phase.fail();
    iteration.fail();
    run.fail("build broke");

    let mut run = emitter.start_run("wo-2", "run-canceled", &spec);
    let mut iteration = run.iteration(1, 3, None);
    let phase = iteration.phase(Phase::Build);
    phase.in_context(|| log.info("building", []));
    phase.succeed();
    drop(iteration);
    run.cancel("user asked");

    let caller = TraceParent::parse(CALLER).expect("a valid traceparent");
    let mut run = emitter.start_run_in_trace("wo-3", "run-joined", &spec, &caller);
    let mut iteration = run.iteration(1, 3, None);
    let phase = iteration.phase(Phase::Build);
    let tool = obs
        .metrics()
        .histogram("tool_seconds", "Tool calls.", &[])
        .expect("a custom histogram");
    phase.in_context(|| {
        log.info("building", []);
        tool.record(0.5);
    });
    phase.succeed();
    iteration.fail();
    run.finish(RunResult::FailedVerification, &ExecutionMetrics::default());
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].get(key)
}

fn run_id(span: &Value) -> Option<&str> {
    attr(span, "agentgate.run.id").and_then(Value::as_str)
}

/// Exports the four runs in `protocol` and checks the trace model.
fn runs_export_as_traces(protocol: OtlpProtocol, content_type: &str, test: &str) {
    let Some(decoder) = decoder(test) else { return };
    let receiver = FakeReceiver::start(Script::always(200));
    let dir = TempDir::new("otlp");
    let log_path = dir.join("log.jsonl");
    let journal_path = dir.join("events.jsonl");
    let obs = Observability::builder()
        .serve("127.0.0.1:0")
        .log_file(&log_path)
        .journal(&journal_path)
        .otlp_config(
            OtlpConfig::new(receiver.url())
                .protocol(protocol)
                .interval(Duration::from_millis(50)),
        )
        .start()
        .expect("starts");
    let events: Arc<Mutex<Vec<ProgressEvent>>> = Arc::default();
    let seen = events.clone();
    let _sub = obs
        .emitter()
        .subscribe(move |e| seen.lock().push(e.clone()));
    let mut dashboard = common::ws::Client::connect(obs.local_addr().expect("serving"), "/ws");
    assert_eq!(dashboard.next_json()["type"], "hello");
    run_engine(&obs);
    obs.flush();
    let emitted = events.lock().len();
    let mut streamed = Vec::new();
    while streamed.len() < emitted {
        let message = dashboard.next_json();
        if message["type"].as_str().is_some_and(|t| t.contains(':')) {
            streamed.push(message);
        }
    }
    let openmetrics = obs.metrics().render_as(Format::OpenMetrics);
    obs.shutdown();

    let requests = receiver.received();
    assert!(!requests.is_empty(), "no request reached the receiver");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), Some(content_type));
    }
    let bodies: Vec<Vec<u8>> = requests.iter().map(|r| r.body.clone()).collect();
    assert!(
        !bodies
            .iter()
            .any(|b| b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())),
        "a secret of the metadata was sent"
    );
    let spans = decoder.spans(content_type, &bodies);
    assert_eq!(
        exported(&obs),
        spans.len() as f64,
        "every span counted exported"
    );

    // The resource and the scope.
    for span in &spans {
        assert_eq!(span["resource"]["service.name"], "agentgate");
        assert_eq!(span["scope"]["name"], "agentgate-obs");
        assert_eq!(span["scope"]["version"], env!("CARGO_PKG_VERSION"));
    }

    // One root per run; every span reaches it through its parents.
    let roots: Vec<&Value> = spans.iter().filter(|s| s["name"] == "run").collect();
    let root_runs: BTreeSet<&str> = roots.iter().filter_map(|s| run_id(s)).collect();
    assert_eq!(roots.len(), 4, "{roots:?}");
    assert_eq!(
        root_runs,
        BTreeSet::from(["run-canceled", "run-failed", "run-joined", "run-ok"])
    );
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["spanId"].as_str().unwrap_or_default(), s))
        .collect();
    assert_eq!(by_id.len(), spans.len(), "span ids are unique");
    fn root_of<'a>(by_id: &HashMap<&str, &'a Value>, mut span: &'a Value) -> &'a Value {
        for _ in 0..8 {
            if span["name"] == "run" {
                return span;
            }
            let parent = span["parentSpanId"].as_str().unwrap_or_default();
            span = by_id
                .get(parent)
                .unwrap_or_else(|| panic!("span {span} has no parent among the spans"));
        }
        panic!("a loop of parents at {span}")
    }
    let mut trace_of: BTreeMap<String, String> = BTreeMap::new();
    for root in &roots {
        trace_of.insert(
            run_id(root).unwrap_or_default().to_owned(),
            root["traceId"].as_str().unwrap_or_default().to_owned(),
        );
    }
    for span in &spans {
        let root = root_of(&by_id, span);
        assert_eq!(span["traceId"], root["traceId"], "{span}");
    }
    let traces: BTreeSet<&String> = trace_of.values().collect();
    assert_eq!(traces.len(), 4, "one trace per run");

    // The joined run is in the caller's trace, under the caller's span.
    let caller = TraceParent::parse(CALLER).unwrap();
    let joined = roots
        .iter()
        .find(|r| run_id(r) == Some("run-joined"))
        .unwrap();
    assert_eq!(joined["traceId"], caller.trace_id.to_string());
    assert_eq!(joined["parentSpanId"], caller.parent_id.to_string());
    for root in roots.iter().filter(|r| run_id(r) != Some("run-joined")) {
        assert_eq!(
            root["parentSpanId"], "",
            "a run of its own trace has no parent"
        );
    }

    // Error status exactly on the runs that did not succeed and the
    // failed phase.
    let code = |s: &Value| s["status"]["code"].as_i64().unwrap_or(-1);
    for root in &roots {
        let expected = match run_id(root) {
            Some("run-ok") => (0, ""),
            Some("run-failed") => (2, "build broke"),
            Some("run-canceled") => (2, "user asked"),
            _ => (2, "run failed: failed_verification"),
        };
        assert_eq!(
            (code(root), root["status"]["message"].as_str().unwrap()),
            expected,
            "{root}"
        );
    }
    let errors: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] != "run" && code(s) == 2)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["name"], "phase build");
    assert_eq!(errors[0]["status"]["message"], "phase build failed");
    assert_eq!(
        trace_of["run-failed"].as_str(),
        errors[0]["traceId"].as_str().unwrap()
    );

    // Attributes: the run's, the phase's, the delivery's, a gate event.
    let ok_root = roots.iter().find(|r| run_id(r) == Some("run-ok")).unwrap();
    assert_eq!(attr(ok_root, "agentgate.work_order.id").unwrap(), "wo-1");
    assert_eq!(attr(ok_root, "agentgate.strategy").unwrap(), "ralph");
    assert_eq!(attr(ok_root, "agentgate.run.result").unwrap(), "succeeded");
    assert_eq!(
        attr(ok_root, "agentgate.delivery.pr_url").unwrap(),
        "https://git.example/pr/7"
    );
    assert_eq!(
        attr(ok_root, "agentgate.metadata.api_key").unwrap(),
        "[REDACTED]"
    );
    assert_eq!(attr(ok_root, "agentgate.metadata.branch").unwrap(), "main");
    let delivery = spans.iter().find(|s| s["name"] == "delivery").unwrap();
    assert_eq!(delivery["parentSpanId"], ok_root["spanId"]);
    let gate = spans
        .iter()
        .flat_map(|s| s["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == "gate tests")
        .expect("the gate check is a span event");
    assert_eq!(gate["attributes"]["agentgate.gate.passed"], true);

    // Phase spans last exactly their durationMs, from the events' times.
    let events = events.lock().clone();
    let mut phases_checked = 0;
    for event in &events {
        if let agentgate_obs::event::EventKind::PhaseCompleted {
            iteration,
            phase,
            duration_ms,
            ..
        } = &event.kind
        {
            let trace = &trace_of[event.run_id.as_ref()];
            let span = spans
                .iter()
                .find(|s| {
                    s["traceId"] == *trace
                        && s["name"] == format!("phase {phase}")
                        && attr(s, "agentgate.iteration") == Some(&Value::from(*iteration))
                })
                .unwrap_or_else(|| panic!("no span for {event:?}"));
            let (start, end) = (
                span["start"].as_u64().unwrap(),
                span["end"].as_u64().unwrap(),
            );
            assert_eq!((end - start) / 1_000_000, *duration_ms, "{span}");
            assert!(
                start / 1_000_000 >= event.timestamp.as_millis() - duration_ms - 1
                    && end / 1_000_000 <= event.timestamp.as_millis() + 1,
                "the span sits at the events' own times: {span} {event:?}"
            );
            phases_checked += 1;
        }
    }
    assert_eq!(phases_checked, 5);

    // The same trace id on the events, on /ws, in the journal and on the
    // log lines.
    for event in &events {
        assert_eq!(
            event.trace_id.map(|t| t.to_string()).as_ref(),
            Some(&trace_of[event.run_id.as_ref()]),
            "{event:?}"
        );
    }
    let journal: Vec<Value> = common::journal_lines(&journal_path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(journal.len(), events.len());
    for message in streamed.iter().chain(&journal) {
        let run = message["runId"].as_str().unwrap();
        assert_eq!(
            message["traceId"].as_str(),
            Some(trace_of[run].as_str()),
            "{message}"
        );
    }
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let building: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "building")
        .collect();
    assert_eq!(building.len(), 4);
    for line in &building {
        let run = line["runId"].as_str().unwrap();
        assert_eq!(
            line["trace_id"].as_str(),
            Some(trace_of[run].as_str()),
            "{line}"
        );
        let span = by_id
            .get(line["span_id"].as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("the log line's span was not exported: {line}"));
        assert_eq!(span["name"], "phase build", "{line}");
    }
    let progress_lines = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["eventType"].is_string())
        .collect::<Vec<_>>();
    assert!(!progress_lines.is_empty());
    for line in &progress_lines {
        let run = line["runId"].as_str().unwrap();
        assert_eq!(
            line["trace_id"].as_str(),
            Some(trace_of[run].as_str()),
            "{line}"
        );
    }

    // Exemplars carry exported trace ids.
    let exemplar_traces: Vec<&str> = openmetrics
        .split("trace_id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(!exemplar_traces.is_empty(), "no exemplar with a trace id");
    let tool_exemplar = openmetrics
        .lines()
        .find(|l| l.starts_with("agentgate_tool_seconds_bucket") && l.contains(" # {"))
        .expect("the engine's histogram has an exemplar");
    assert!(
        tool_exemplar.contains(&format!("trace_id=\"{}\"", trace_of["run-joined"])),
        "{tool_exemplar}"
    );
    for trace in exemplar_traces {
        assert!(
            traces.contains(&trace.to_owned()),
            "exemplar trace {trace} was not exported"
        );
    }
}

#[test]
fn runs_export_as_otlp_protobuf_traces_that_the_official_definitions_decode() {
    runs_export_as_traces(
        OtlpProtocol::HttpProtobuf,
        "application/x-protobuf",
        "runs_export_as_otlp_protobuf_traces_that_the_official_definitions_decode",
    );
}

#[test]
fn runs_export_as_otlp_json_traces_with_hex_ids_that_the_official_definitions_decode() {
    runs_export_as_traces(
        OtlpProtocol::HttpJson,
        "application/json",
        "runs_export_as_otlp_json_traces_with_hex_ids_that_the_official_definitions_decode",
    );
}

/// Starts a pipeline exporting to `url` with fast retries, runs 20 runs
/// and shuts down; returns it and how long the runs took and shutdown took.
fn engine_against(
    url: &str,
    config: impl FnOnce(OtlpConfig) -> OtlpConfig,
) -> (Observability, Duration, Duration) {
    let obs = common::quiet()
        .otlp_config(config(
            OtlpConfig::new(url)
                .interval(Duration::from_millis(20))
                .backoff(Duration::from_millis(10), Duration::from_millis(40))
                .max_retries(2)
                .final_wait(Duration::from_secs(2)),
        ))
        .start()
        .expect("starts");
    let spec = TaskSpec::new("g", Strategy::Fixed, 1);
    let started = Instant::now();
    for i in 0..20 {
        let mut run = obs.emitter().start_run("wo", &format!("run-{i}"), &spec);
        let mut iteration = run.iteration(1, 1, None);
        iteration.phase(Phase::Build).succeed();
        iteration.succeed();
        run.succeed(&ExecutionMetrics::default());
    }
    let ran = started.elapsed();
    // Let some deliveries happen before shutdown.
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    obs.shutdown();
    (obs, ran, stopping.elapsed())
}

/// Spans per run in [`engine_against`]: run, iteration, phase.
const SPANS: f64 = 60.0;

fn counted(obs: &Observability, family: &str, reason: &str) -> f64 {
    metric(
        obs,
        &format!("agentgate_otlp_spans_{family}_total"),
        &[("reason", reason)],
    )
}

#[test]
fn a_receiver_that_is_down_costs_the_engine_nothing_and_its_spans_are_counted_failed() {
    let (obs, ran, stopped) = engine_against(&closed_port_url(), |c| c);
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert!(
        stopped < Duration::from_secs(4),
        "shutdown took {stopped:?}"
    );
    assert_eq!(obs.active_runs(), 0);
    assert_eq!(exported(&obs), 0.0);
    assert_eq!(counted(&obs, "failed", "connect"), SPANS);
    assert!(metric(&obs, "agentgate_otlp_retries_total", &[]) > 0.0);
}

#[test]
fn a_receiver_answering_500_gets_no_retry_and_the_spans_are_counted_failed() {
    let receiver = FakeReceiver::start(Script::always(500));
    let (obs, ran, _) = engine_against(&receiver.url(), |c| c);
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert_eq!(counted(&obs, "failed", "server_error"), SPANS);
    assert_eq!(metric(&obs, "agentgate_otlp_retries_total", &[]), 0.0);
    assert_eq!(exported(&obs), 0.0);
}

#[test]
fn a_receiver_answering_400_drops_the_request_as_rejected() {
    let receiver = FakeReceiver::start(Script::always(400));
    let (obs, ran, _) = engine_against(&receiver.url(), |c| c);
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert_eq!(counted(&obs, "dropped", "rejected"), SPANS);
    assert_eq!(metric(&obs, "agentgate_otlp_retries_total", &[]), 0.0);
    assert!(!receiver.received().is_empty());
}

fn retried_after_its_retry_after_then_delivers(status: u16) {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![status, 200],
        retry_after: Some(1),
    });
    let started = Instant::now();
    let (obs, ran, _) = engine_against(&receiver.url(), |c| c.final_wait(Duration::from_secs(5)));
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert_eq!(exported(&obs), SPANS);
    assert_eq!(metric(&obs, "agentgate_otlp_retries_total", &[]), 1.0);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry came before the receiver's Retry-After"
    );
}

#[test]
fn a_receiver_answering_429_is_retried_after_its_retry_after_then_delivers() {
    retried_after_its_retry_after_then_delivers(429);
}

#[test]
fn a_receiver_answering_503_is_retried_after_its_retry_after_then_delivers() {
    retried_after_its_retry_after_then_delivers(503);
}

#[test]
fn a_receiver_that_always_throttles_is_given_up_on_and_counted_throttled() {
    let receiver = FakeReceiver::start(Script::always(429));
    let (obs, _, _) = engine_against(&receiver.url(), |c| c);
    assert_eq!(counted(&obs, "failed", "throttled"), SPANS);
    assert_eq!(exported(&obs), 0.0);
}

#[test]
fn a_hanging_receiver_fills_the_queue_and_the_spans_beyond_are_dropped_not_waited_for() {
    let receiver = FakeReceiver::start(Script::Hang);
    let (obs, ran, stopped) = engine_against(&receiver.url(), |c| {
        c.max_queue(4)
            .timeout(Duration::from_millis(200))
            .final_wait(Duration::from_millis(300))
    });
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert!(
        stopped < Duration::from_secs(3),
        "shutdown took {stopped:?}"
    );
    let dropped = counted(&obs, "dropped", "queue_full");
    let failed: f64 = [
        "connect",
        "io",
        "malformed",
        "server_error",
        "throttled",
        "timeout",
    ]
    .iter()
    .map(|r| counted(&obs, "failed", r))
    .sum();
    assert!(dropped > 0.0, "nothing counted dropped");
    assert_eq!(dropped + failed, SPANS, "every span is accounted for");
}

#[test]
fn a_send_hanging_when_shutdown_begins_is_cut_short_and_every_span_is_still_counted() {
    // The periodic send's timeout (10 s) is longer than the final wait:
    // shutdown gave up on the exporter thread while that send still
    // waited, and its spans were counted nowhere.
    let receiver = FakeReceiver::start(Script::Hang);
    let (obs, ran, stopped) = engine_against(&receiver.url(), |c| {
        c.timeout(Duration::from_secs(10))
            .final_wait(Duration::from_millis(500))
    });
    assert!(ran < Duration::from_secs(1), "the runs took {ran:?}");
    assert!(
        stopped < Duration::from_secs(3),
        "shutdown took {stopped:?}"
    );
    assert_eq!(
        counted(&obs, "failed", "timeout"),
        SPANS,
        "every span is counted"
    );
    assert_eq!(exported(&obs), 0.0);
}

#[cfg(feature = "cli")]
fn demo(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentgate-obs"));
    command
        .arg("demo")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--exit-when-done",
            "--work-orders",
            "3",
        ])
        .args(args)
        .env_remove("AGENTGATE_TOKEN")
        .env_remove("AGENTGATE_LOG")
        .stdin(std::process::Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("agentgate-obs runs")
}

/// Every span of the requests `receiver` got, decoded.
#[cfg(feature = "cli")]
fn received_spans(
    decoder: &common::otlp::Decoder,
    receiver: &FakeReceiver,
    content_type: &str,
) -> Vec<Value> {
    let requests = receiver.received();
    for request in &requests {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), Some(content_type));
    }
    let bodies: Vec<Vec<u8>> = requests.into_iter().map(|r| r.body).collect();
    decoder.spans(content_type, &bodies)
}

#[cfg(feature = "cli")]
#[test]
fn demo_otlp_exports_every_run_as_a_trace_by_exit() {
    let test = "demo_otlp_exports_every_run_as_a_trace_by_exit";
    let Some(decoder) = decoder(test) else { return };
    let receiver = FakeReceiver::start(Script::always(200));
    let out = demo(&["--otlp", &receiver.url()], &[]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = received_spans(&decoder, &receiver, "application/x-protobuf");
    let roots = spans.iter().filter(|s| s["name"] == "run").count();
    assert_eq!(roots, 3, "one root span per work order's run");
    assert!(spans.iter().any(|s| s["name"] == "phase build"));
}

#[cfg(feature = "cli")]
#[test]
fn demo_reads_the_standard_otel_variables() {
    let test = "demo_reads_the_standard_otel_variables";
    let Some(decoder) = decoder(test) else { return };
    let receiver = FakeReceiver::start(Script::always(200));
    let out = demo(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%20cret"),
            ("OTEL_SERVICE_NAME", "demo-engine"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ],
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = receiver.received();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some("s cret"))
    );
    let spans = received_spans(&decoder, &receiver, "application/json");
    assert!(!spans.is_empty());
    for span in &spans {
        assert_eq!(span["resource"]["service.name"], "demo-engine");
        assert_eq!(span["resource"]["deployment.environment"], "ci");
    }
}

#[cfg(feature = "cli")]
#[test]
fn demo_with_an_otlp_protocol_it_cannot_speak_exits_2_naming_it() {
    let out = demo(
        &["--otlp", "http://127.0.0.1:4317"],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("grpc"), "{stderr}");
}
