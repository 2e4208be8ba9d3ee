//! Pushing to a Prometheus Pushgateway: a short-lived engine's final
//! figures arrive exactly; a receiver that is down, failing, throttling,
//! refusing or silent never blocks the engine, and each case is counted.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::event::RunOutcome;
use agentgate_obs::logging::Level;
use agentgate_obs::metrics::{PushFailure, PushGatewayConfig};
use agentgate_obs::{Observability, Phase};

use crate::common::pushgateway::Pushgateway;
use crate::common::receiver::{FakeReceiver, Script};
use crate::common::{self, LogBuffer};

pub(crate) const RESULTS: [(&str, RunOutcome); 3] = [
    ("succeeded", RunOutcome::Succeeded),
    ("failed", RunOutcome::Failed),
    ("canceled", RunOutcome::Canceled),
];

/// The Pushgateway's figures of `metric{result}` for each result, and of
/// `runs_started_total`, in the group `key`.
pub(crate) fn gateway_runs(
    gateway: &Pushgateway,
    key: &[(&str, &str)],
) -> (Option<f64>, Vec<Option<f64>>) {
    let started = gateway.value(key, "agentgate_runs_started_total", &[]);
    let completed = RESULTS
        .iter()
        .map(|(result, _)| {
            gateway.value(key, "agentgate_runs_completed_total", &[("result", result)])
        })
        .collect();
    (started, completed)
}

#[test]
fn an_engine_that_lives_200_ms_delivers_its_final_run_counts_to_the_pushgateway_exactly() {
    let Some(binary) = Pushgateway::binary("pushgateway: a 200 ms engine's final figures") else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let began = Instant::now();
    // The default interval (15 s) is far longer than the process lives:
    // only the push at shutdown can deliver anything.
    let obs = common::quiet()
        .push_gateway_config(PushGatewayConfig::new(gateway.url()).instance("short-lived"))
        .start()
        .expect("the pipeline starts");
    let config = DemoConfig {
        work_orders: 60,
        concurrency: 2,
        seed: 7,
        time_scale: 0.0,
    };
    let tally = run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
    std::thread::sleep(Duration::from_millis(200).saturating_sub(began.elapsed()));
    obs.shutdown();

    assert!(
        tally.failed > 0 && tally.succeeded > 0,
        "the seed gives both results: {tally:?}"
    );
    let key = [("job", "agentgate"), ("instance", "short-lived")];
    let (started, completed) = gateway_runs(&gateway, &key);
    assert_eq!(started, Some(60.0));
    let tally_by_result = [tally.succeeded, tally.failed, tally.canceled];
    for (((result, outcome), pushed), counted) in
        RESULTS.iter().zip(&completed).zip(tally_by_result)
    {
        assert_eq!(*pushed, Some(counted as f64), "runs {result}");
        assert_eq!(
            obs.metrics().runs_completed(*outcome),
            counted,
            "runs {result}"
        );
    }
    let stats = obs.metrics().push_gateway_stats();
    assert_eq!(
        (stats.pushes, stats.failed, stats.last),
        (1, 0, Some(Ok(())))
    );
}

/// What an engine against a receiver that misbehaves went through.
struct Ordeal {
    /// The longest a batch of 1,000 emits took.
    slowest_emits: Duration,
    /// The longest a `flush()` took while pushes were failing.
    slowest_flush: Duration,
    /// How long `shutdown()` took.
    shutdown: Duration,
    obs: Observability,
    log: LogBuffer,
}

/// The final wait every misbehaving receiver is given.
const WAIT: Duration = Duration::from_millis(600);
/// What shutdown may take beyond the final wait on a loaded machine: the
/// exporter's grace (0.2 s), the log writer, the scheduler.
const MARGIN: Duration = Duration::from_secs(2);

/// An engine emitting for 400 ms against `url`, pushing every 50 ms,
/// then shut down.
fn engine_against(url: &str) -> Ordeal {
    let log = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(log.clone())
        // Not a progress line per event: the exporter's lines are warnings.
        .log_level(Level::Warn)
        .push_gateway_config(
            PushGatewayConfig::new(url)
                .instance("ordeal")
                .interval(Duration::from_millis(50))
                .final_wait(WAIT),
        )
        .start()
        .expect("the pipeline starts");
    let run = obs.emitter().run("wo-1", "run-1");
    let began = Instant::now();
    let mut slowest_emits = Duration::ZERO;
    let mut slowest_flush = Duration::ZERO;
    let mut iteration = 0;
    while began.elapsed() < Duration::from_millis(400) {
        let batch = Instant::now();
        for _ in 0..1_000 {
            iteration += 1;
            run.phase_completed(iteration, Phase::Build, true, Duration::from_millis(3));
        }
        slowest_emits = slowest_emits.max(batch.elapsed());
        let flush = Instant::now();
        obs.flush();
        slowest_flush = slowest_flush.max(flush.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    obs.shutdown();
    Ordeal {
        slowest_emits,
        slowest_flush,
        shutdown: stopping.elapsed(),
        obs,
        log,
    }
}

impl Ordeal {
    /// Asserts that nothing waited on the receiver, that every request
    /// failed for `reason` and was counted, on `/metrics` too, and that
    /// the failures were logged once for the run of them plus once for
    /// the final push.
    fn assert_never_blocked_and_counted(&self, reason: PushFailure) {
        assert!(
            self.slowest_emits < Duration::from_secs(1),
            "1,000 emits took {:?}",
            self.slowest_emits
        );
        assert!(
            self.slowest_flush < Duration::from_secs(1),
            "a flush took {:?}",
            self.slowest_flush
        );
        assert!(
            self.shutdown < WAIT + MARGIN,
            "shutdown took {:?} with a final wait of {WAIT:?}",
            self.shutdown
        );
        let stats = self.obs.metrics().push_gateway_stats();
        assert!(
            stats.pushes >= 3,
            "periodic pushes and the final one: {stats:?}"
        );
        assert_eq!(stats.failed, stats.pushes, "{stats:?}");
        assert_eq!(stats.last, Some(Err(reason)));
        let samples = common::parse_exposition(&self.obs.metrics().render()).expect("parses");
        let value = |name: &str, labels: &[(&str, &str)]| {
            common::sample_value(&samples, name, labels).unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(
            value("agentgate_pushgateway_pushes_total", &[]),
            stats.pushes as f64
        );
        for other in [
            "connect",
            "io",
            "malformed",
            "rejected",
            "server_error",
            "throttled",
            "timeout",
            "unauthorized",
            "unexpected_status",
        ] {
            let expected = if other == reason.as_str() {
                stats.failed
            } else {
                0
            };
            assert_eq!(
                value(
                    "agentgate_pushgateway_push_failures_total",
                    &[("reason", other)]
                ),
                expected as f64,
                "reason {other}"
            );
        }
        let lines = self.log.log_lines();
        let periodic = lines
            .iter()
            .filter(|l| {
                l["module"] == "agentgate_obs::pushgateway"
                    && l["level"] == "warn"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("push to the Pushgateway failed"))
            })
            .count();
        assert_eq!(
            periodic, 1,
            "one line for the run of failures, not one per push"
        );
        let last = lines
            .iter()
            .filter(|l| l["module"] == "agentgate_obs::pushgateway" && l["level"] == "error")
            .collect::<Vec<_>>();
        assert_eq!(last.len(), 1, "the final push's failure is logged");
        assert_eq!(last[0]["reason"], reason.as_str());
    }
}

#[test]
fn a_pushgateway_that_is_down_never_blocks_the_engine_and_each_refused_connection_is_counted() {
    let port = common::prometheus::free_port();
    let ordeal = engine_against(&format!("http://127.0.0.1:{port}"));
    ordeal.assert_never_blocked_and_counted(PushFailure::Connect);
}

#[test]
fn a_pushgateway_answering_500_never_blocks_the_engine_and_is_retried_within_the_final_wait() {
    let receiver = FakeReceiver::start(Script::always(500));
    let ordeal = engine_against(&receiver.url());
    ordeal.assert_never_blocked_and_counted(PushFailure::ServerError);
    let stats = ordeal.obs.metrics().push_gateway_stats();
    assert_eq!(receiver.received().len() as u64, stats.pushes);
    let finals = final_attempts(&receiver, &ordeal);
    assert!(finals >= 2, "the final push is tried again: {finals} tries");
}

#[test]
fn a_pushgateway_answering_429_never_blocks_the_engine_and_its_retry_after_is_honoured() {
    // Retry-After: 1 s does not fit in the 0.6 s final wait: no retry.
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![429],
        retry_after: Some(1),
    });
    let ordeal = engine_against(&receiver.url());
    ordeal.assert_never_blocked_and_counted(PushFailure::Throttled);
    assert_eq!(final_attempts(&receiver, &ordeal), 1);
    assert!(
        ordeal.shutdown < Duration::from_millis(600),
        "{:?}",
        ordeal.shutdown
    );
}

#[test]
fn a_pushgateway_answering_400_never_blocks_the_engine_and_is_not_retried() {
    let receiver = FakeReceiver::start(Script::always(400));
    let ordeal = engine_against(&receiver.url());
    ordeal.assert_never_blocked_and_counted(PushFailure::Rejected);
    assert_eq!(final_attempts(&receiver, &ordeal), 1);
    let error = ordeal
        .log
        .log_lines()
        .into_iter()
        .find(|l| l["level"] == "error")
        .expect("the final failure is logged");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 400: scripted 400")),
        "the answer is quoted: {error}"
    );
}

#[test]
fn a_pushgateway_that_never_answers_holds_shutdown_only_for_the_final_wait() {
    let receiver = FakeReceiver::start(Script::Hang);
    let ordeal = engine_against(&receiver.url());
    ordeal.assert_never_blocked_and_counted(PushFailure::Timeout);
    assert!(
        ordeal.shutdown >= WAIT - Duration::from_millis(50),
        "{:?}",
        ordeal.shutdown
    );
}

#[test]
fn a_periodic_push_hanging_when_shutdown_begins_does_not_keep_the_final_push_from_going() {
    // The periodic push may wait its interval (up to 10 s), longer than
    // the final wait: shutdown gave up while it waited, and the final
    // push, with the run's last figures, was never made.
    let receiver = FakeReceiver::start(Script::HangFirst(200));
    let obs = Observability::builder()
        .no_log()
        .push_gateway_config(
            PushGatewayConfig::new(receiver.url())
                .instance("hung")
                // A periodic push waits up to its interval: long enough
                // that it still waits when shutdown begins, on a loaded
                // machine too.
                .interval(Duration::from_secs(3))
                .final_wait(Duration::from_millis(500)),
        )
        .start()
        .expect("the pipeline starts");
    let run = obs.emitter().run("wo-1", "run-1");
    run.phase_completed(1, Phase::Build, true, Duration::from_millis(3));
    // The first periodic push goes at 3 s and hangs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(receiver.received().len(), 1, "the periodic push went");
    run.phase_completed(2, Phase::Build, true, Duration::from_millis(3));
    let stopping = Instant::now();
    obs.shutdown();
    let shutdown = stopping.elapsed();
    assert!(
        shutdown < Duration::from_millis(500) + MARGIN,
        "{shutdown:?}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 2, "the final push went too");
    let last = String::from_utf8_lossy(&received[1].body).into_owned();
    let count = last.lines().find(|l| {
        l.starts_with("agentgate_phase_duration_seconds_count{") && l.contains("phase=\"build\"")
    });
    assert!(
        count.is_some_and(|l| l.ends_with(" 2")),
        "the final push carries both phases: {count:?}"
    );
    assert_eq!(obs.metrics().push_gateway_stats().pushes, 2);
}

/// How many requests the final push made: those after the last event was
/// emitted (the periodic pushes stop at shutdown).
fn final_attempts(receiver: &FakeReceiver, ordeal: &Ordeal) -> usize {
    let stats = ordeal.obs.metrics().push_gateway_stats();
    let received = receiver.received();
    assert_eq!(received.len() as u64, stats.pushes);
    // The final push carries every event; the periodic ones fewer or as
    // many, and only a final push is retried with the same body.
    let last_body = &received.last().expect("requests").body;
    received
        .iter()
        .rev()
        .take_while(|r| &r.body == last_body)
        .count()
}

#[test]
fn a_pushgateway_that_comes_back_is_logged_once_as_failing_and_once_as_back() {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], common::prometheus::free_port()));
    let log = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(log.clone())
        .push_gateway_config(
            PushGatewayConfig::new(format!("http://{addr}"))
                .instance("flaky")
                .interval(Duration::from_millis(50)),
        )
        .start()
        .expect("the pipeline starts");
    std::thread::sleep(Duration::from_millis(300));
    let receiver = FakeReceiver::start_on(addr, Script::always(200));
    let deadline = Instant::now() + Duration::from_secs(10);
    while obs.metrics().push_gateway_stats().last != Some(Ok(())) {
        assert!(
            Instant::now() < deadline,
            "no push succeeded once the receiver was up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    obs.shutdown();
    let stats = obs.metrics().push_gateway_stats();
    assert!(stats.failed >= 2, "{stats:?}");
    assert_eq!(
        stats.pushes - stats.failed,
        receiver.received().len() as u64
    );
    let lines = log.log_lines();
    let ours = |level: &str| {
        lines
            .iter()
            .filter(|l| l["module"] == "agentgate_obs::pushgateway" && l["level"] == level)
            .collect::<Vec<_>>()
    };
    assert_eq!(ours("warn").len(), 1, "one line for the run of failures");
    let info = ours("info");
    let back: Vec<_> = info
        .iter()
        .filter(|l| l["message"] == "pushes to the Pushgateway succeed again")
        .collect();
    assert_eq!(back.len(), 1, "{info:?}");
    assert_eq!(back[0]["failedPushes"], stats.failed);
    assert!(ours("error").is_empty());
}

#[test]
fn the_bearer_token_and_the_grouping_key_go_with_every_push() {
    let receiver = FakeReceiver::start(Script::always(200));
    let obs = common::quiet()
        .push_gateway_config(
            PushGatewayConfig::new(format!("{}/gateway/", receiver.url()))
                .job("nightly")
                .instance("runner 7")
                .label("work_order", "wo/42")
                .bearer_token("s3cret-token")
                .interval(Duration::from_millis(50)),
        )
        .start()
        .expect("the pipeline starts");
    std::thread::sleep(Duration::from_millis(200));
    obs.shutdown();
    let received = receiver.received();
    assert!(received.len() >= 2, "{} requests", received.len());
    for request in &received {
        assert_eq!(request.method, "PUT");
        assert_eq!(
            request.path,
            "/gateway/metrics/job/nightly/instance/runner%207/work_order@base64/d28vNDI"
        );
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(
            request.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let body = String::from_utf8(request.body.clone()).expect("text");
        common::parse_exposition(&body).expect("the body is a valid exposition");
    }
    let stats = obs.metrics().push_gateway_stats();
    assert_eq!((stats.pushes, stats.failed), (received.len() as u64, 0));
}

#[test]
fn delete_on_shutdown_removes_the_group_that_the_periodic_pushes_filled() {
    let Some(binary) = Pushgateway::binary("pushgateway: delete on shutdown") else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let key = [("job", "agentgate"), ("instance", "long-lived")];
    let obs = common::quiet()
        .push_gateway_config(
            PushGatewayConfig::new(gateway.url())
                .instance("long-lived")
                .interval(Duration::from_millis(50))
                .delete_on_shutdown(true),
        )
        .start()
        .expect("the pipeline starts");
    gateway.wait_for_group(&key, Duration::from_secs(10));
    obs.shutdown();
    // The Pushgateway answers a DELETE with 202 and applies it a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.group(&key).is_some() {
        assert!(Instant::now() < deadline, "the group is deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(obs.metrics().push_gateway_stats().last, Some(Ok(())));
}

#[test]
fn an_engine_label_named_like_the_grouping_key_is_kept_as_exported_instead_of_the_push_being_refused()
 {
    let Some(binary) = Pushgateway::binary("pushgateway: labels named like the grouping key")
    else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let obs = common::quiet()
        .push_gateway_config(
            PushGatewayConfig::new(gateway.url())
                .instance("box-1")
                .label("work_order", "wo-7"),
        )
        .start()
        .expect("the pipeline starts");
    // Two series that differ only in labels the grouping key overrides:
    // as pushed, the Pushgateway sees them twice and refuses the group.
    for (job, count) in [("nightly", 2), ("hourly", 3)] {
        obs.metrics()
            .counter(
                "builds_total",
                "Builds.",
                &[("job", job), ("work_order", "wo-1")],
            )
            .expect("a counter")
            .increment(count);
    }
    obs.shutdown();
    let stats = obs.metrics().push_gateway_stats();
    assert_eq!(stats.last, Some(Ok(())), "{stats:?}");
    let key = [
        ("job", "agentgate"),
        ("instance", "box-1"),
        ("work_order", "wo-7"),
    ];
    for (job, count) in [("nightly", 2.0), ("hourly", 3.0)] {
        assert_eq!(
            gateway.value(
                &key,
                "agentgate_builds_total",
                &[("exported_job", job), ("exported_work_order", "wo-1")]
            ),
            Some(count),
            "{job}"
        );
    }
}

/// A GitHub token's shape, which the redaction rules know.
const TOKEN: &str = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";

#[test]
fn grouping_key_values_are_redacted_like_every_other_label_value() {
    let receiver = FakeReceiver::start(Script::always(200));
    let obs = common::quiet()
        .push_gateway_config(
            PushGatewayConfig::new(receiver.url())
                .instance(format!("box-{TOKEN}"))
                .label("api_key", "plain-value"),
        )
        .start()
        .expect("the pipeline starts");
    obs.shutdown();
    let path = &receiver.received()[0].path;
    assert!(!path.contains(TOKEN), "{path}");
    assert!(!path.contains("plain-value"), "{path}");
    assert_eq!(
        path,
        "/metrics/job/agentgate/instance/box-%5BREDACTED%5D/api_key/%5BREDACTED%5D"
    );
}

#[test]
fn a_series_with_both_job_and_exported_job_labels_is_pushed_instead_of_refused() {
    let Some(binary) = Pushgateway::binary("pushgateway: exported_ clashes") else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let obs = common::quiet()
        .push_gateway_config(PushGatewayConfig::new(gateway.url()).instance("clash"))
        .start()
        .expect("the pipeline starts");
    obs.metrics()
        .counter(
            "builds_total",
            "Builds.",
            &[("job", "nightly"), ("exported_job", "old")],
        )
        .expect("a counter")
        .increment(4);
    obs.shutdown();
    let stats = obs.metrics().push_gateway_stats();
    assert_eq!(stats.last, Some(Ok(())), "{stats:?}");
    let key = [("job", "agentgate"), ("instance", "clash")];
    assert_eq!(
        gateway.value(
            &key,
            "agentgate_builds_total",
            &[
                ("exported_job", "old"),
                ("exported_exported_job", "nightly")
            ]
        ),
        Some(4.0)
    );
}

#[test]
fn a_protobuf_push_keeps_its_native_buckets_in_a_real_pushgateway_and_renames_labels_named_like_the_key()
 {
    let test = "pushgateway: a protobuf push";
    let Some(binary) = Pushgateway::binary(test) else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let obs = common::quiet()
        .push_gateway_config(
            PushGatewayConfig::new(gateway.url())
                .instance("pb")
                .label("work_order", "wo-7")
                .protobuf(true),
        )
        .start()
        .expect("the pipeline starts");
    for (job, count) in [("nightly", 2), ("hourly", 3)] {
        obs.metrics()
            .counter("builds_total", "Builds.", &[("job", job)])
            .expect("a counter")
            .increment(count);
    }
    let config = DemoConfig {
        work_orders: 5,
        concurrency: 1,
        seed: 3,
        time_scale: 0.0,
    };
    run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
    obs.shutdown();
    let stats = obs.metrics().push_gateway_stats();
    assert_eq!(stats.last, Some(Ok(())), "{stats:?}");

    let key = [
        ("job", "agentgate"),
        ("instance", "pb"),
        ("work_order", "wo-7"),
    ];
    for (job, count) in [("nightly", 2.0), ("hourly", 3.0)] {
        assert_eq!(
            gateway.value(&key, "agentgate_builds_total", &[("exported_job", job)]),
            Some(count),
            "{job}"
        );
    }
    // What the Pushgateway serves in protobuf holds the build phase's
    // native buckets exactly as the engine rendered them.
    let Some(served) = common::metrics_proto::decode(&gateway.protobuf_exposition(), test) else {
        return;
    };
    let Some(ours) = common::metrics_proto::decode(&obs.metrics().render_protobuf(), test) else {
        return;
    };
    let build = |families: &[serde_json::Value]| {
        families
            .iter()
            .find(|f| f["name"] == "agentgate_phase_duration_seconds")
            .and_then(|f| {
                f["metrics"]
                    .as_array()?
                    .iter()
                    .find(|m| m["labels"]["phase"] == "build")
                    .cloned()
            })
            .expect("the build phase's histogram")
    };
    let (served, ours) = (build(&served), build(&ours));
    assert_eq!(served["schema"], 3, "{served}");
    for field in [
        "count",
        "sum",
        "zero_threshold",
        "zero_count",
        "spans",
        "deltas",
    ] {
        assert_eq!(served[field], ours[field], "{field}");
    }
    assert!(served["count"].as_u64() > Some(0), "{served}");
}
