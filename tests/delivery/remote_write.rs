//! Prometheus remote write: a short-lived engine's runs reach a real
//! Prometheus exactly; a receiver that is down, failing, throttling,
//! refusing or hanging never holds the engine or its shutdown, and each
//! case is counted on `/metrics`; re-sending the same figures at the same
//! timestamp counts nothing twice.

use std::time::{Duration, Instant};

use agentgate_obs::metrics::RemoteWriteConfig;
use agentgate_obs::{Error, ExecutionMetrics, Observability, Strategy, TaskSpec};

use crate::common;
use common::prometheus::Prometheus;
use common::receiver::{FakeReceiver, Script, closed_port_url};
use common::{external_tool, parse_exposition, sample_value};

/// The value of one series of `/metrics` (labels as `name="value"`, in
/// the order rendered), 0 when absent.
fn metric(obs: &Observability, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = parse_exposition(&obs.metrics().render()).expect("our exposition parses");
    sample_value(&samples, name, labels).unwrap_or(0.0)
}

fn sent(obs: &Observability) -> f64 {
    metric(obs, "agentgate_remote_write_samples_sent_total", &[])
}

fn failed(obs: &Observability, reason: &str) -> f64 {
    metric(
        obs,
        "agentgate_remote_write_samples_failed_total",
        &[("reason", reason)],
    )
}

fn dropped(obs: &Observability, reason: &str) -> f64 {
    metric(
        obs,
        "agentgate_remote_write_samples_dropped_total",
        &[("reason", reason)],
    )
}

fn retries(obs: &Observability) -> f64 {
    metric(obs, "agentgate_remote_write_retries_total", &[])
}

/// Samples in one request: every sample line of the exposition.
fn samples_per_request(obs: &Observability) -> f64 {
    parse_exposition(&obs.metrics().render())
        .expect("our exposition parses")
        .len() as f64
}

/// Runs `succeeded` runs that succeed and `failed` that fail.
fn run_some(obs: &Observability, succeeded: usize, failed: usize) {
    let emitter = obs.emitter();
    let spec = TaskSpec::new("deliver", Strategy::Ralph, 1);
    for i in 0..succeeded + failed {
        let run = emitter.start_run(&format!("wo-{i}"), &format!("run-{i}"), &spec);
        if i < succeeded {
            run.succeed(&ExecutionMetrics::default());
        } else {
            run.fail("the gate said no");
        }
    }
}

/// A config for the fake receivers: no periodic send within a test,
/// short backoffs, three retries, a final wait of one second.
fn fast(url: String) -> RemoteWriteConfig {
    RemoteWriteConfig::new(url)
        .interval(Duration::from_secs(3600))
        .final_wait(Duration::from_secs(1))
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .max_retries(3)
        .instance("fake-test")
}

/// Shuts `obs` down and checks that it returned within `limit`, the
/// final wait plus a margin for a loaded machine.
fn shutdown_within(obs: &Observability, limit: Duration) {
    let started = Instant::now();
    obs.shutdown();
    let took = started.elapsed();
    assert!(took < limit, "shutdown took {took:?}, more than {limit:?}");
}

#[cfg(feature = "cli")]
#[test]
fn a_200_ms_engine_delivers_its_run_counts_to_a_real_prometheus_exactly() {
    use agentgate_obs::demo::{DemoConfig, run_engine};
    let Some(binary) = external_tool("prometheus", "remote write to a real Prometheus") else {
        return;
    };
    let prom = Prometheus::receiving_remote_write(&binary);
    let born = Instant::now();
    let obs = common::quiet()
        .remote_write_config(
            RemoteWriteConfig::new(prom.remote_write_url()).instance("short-lived"),
        )
        .start()
        .expect("start");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let config = DemoConfig {
        work_orders: 30,
        concurrency: 2,
        seed: 24,
        time_scale: 0.0,
    };
    let tally = run_engine(&obs.emitter(), &config, &stop);
    std::thread::sleep(Duration::from_millis(200).saturating_sub(born.elapsed()));
    // Its only delivery: the default interval (15 s) never came.
    shutdown_within(&obs, Duration::from_secs(5));
    assert!(
        tally.succeeded > 0 && tally.failed + tally.canceled > 0,
        "{tally:?}"
    );

    let series = |name: &str| format!("{name}{{job=\"agentgate\",instance=\"short-lived\"}}");
    prom.wait_for(
        &series("agentgate_runs_started_total"),
        tally.total() as f64,
        Duration::from_secs(30),
    );
    for (result, n) in [
        ("succeeded", tally.succeeded),
        ("failed", tally.failed),
        ("canceled", tally.canceled),
    ] {
        let promql = format!(
            "agentgate_runs_completed_total{{job=\"agentgate\",instance=\"short-lived\",result=\"{result}\"}}"
        );
        prom.wait_for(&promql, n as f64, Duration::from_secs(10));
    }
    // Every sample the engine counted as sent is a series in Prometheus.
    let sent = sent(&obs);
    assert!(sent > 0.0);
    prom.wait_for(
        "count({instance=\"short-lived\"})",
        sent,
        Duration::from_secs(10),
    );
    for reason in [
        "connect",
        "io",
        "malformed",
        "server_error",
        "throttled",
        "timeout",
    ] {
        assert_eq!(failed(&obs, reason), 0.0, "{reason}");
    }
    assert_eq!(dropped(&obs, "rejected") + dropped(&obs, "queue_full"), 0.0);
}

#[test]
fn sending_the_same_cumulative_counters_twice_at_one_timestamp_counts_once_in_prometheus() {
    let Some(binary) = external_tool("prometheus", "remote write idempotence") else {
        return;
    };
    let prom = Prometheus::receiving_remote_write(&binary);
    let obs = common::quiet().start().expect("start");
    run_some(&obs, 5, 2);
    // The time of a journal's last event, say: a minute ago.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
        - 60_000;
    let config = RemoteWriteConfig::new(prom.remote_write_url()).instance("replayed");
    let first = obs
        .remote_write_once(&config, Some(at))
        .expect("first delivery");
    let second = obs
        .remote_write_once(&config, Some(at))
        .expect("the same samples again are accepted");
    assert_eq!(first, second);
    assert_eq!(sent(&obs), (first + second) as f64);
    // The figures of the events, not those of the process that sends.
    assert!(first < samples_per_request(&obs) as u64);

    let selector = "{job=\"agentgate\",instance=\"replayed\"}";
    prom.wait_for(
        "agentgate_runs_completed_total{job=\"agentgate\",instance=\"replayed\",result=\"succeeded\"}",
        5.0,
        Duration::from_secs(10),
    );
    prom.wait_for(
        &format!("sum(agentgate_runs_completed_total{selector})"),
        7.0,
        Duration::from_secs(10),
    );
    // One point per series, not two: the second delivery added nothing.
    for family in [
        "agentgate_runs_started_total",
        "agentgate_runs_completed_total",
        "agentgate_events_total",
        "agentgate_run_duration_seconds_bucket",
    ] {
        prom.wait_for(
            &format!("max(count_over_time({family}{selector}[1h]))"),
            1.0,
            Duration::from_secs(10),
        );
    }

    // Other figures at a timestamp already written are refused (400) and
    // counted as dropped: a journal pushed again must carry its own time.
    run_some(&obs, 1, 0);
    let before = dropped(&obs, "rejected");
    match obs.remote_write_once(&config, Some(at)) {
        Err(Error::Delivery {
            reason, refused, ..
        }) => assert!(refused && reason.contains("400"), "{reason}"),
        other => panic!("new values at an old timestamp: {other:?}"),
    }
    assert!(dropped(&obs, "rejected") > before);
    assert_eq!(retries(&obs), 0.0, "a 400 is not retried");
    prom.wait_for(
        &format!("sum(agentgate_runs_completed_total{selector})"),
        7.0,
        Duration::from_secs(10),
    );
}

#[test]
fn every_request_carries_the_remote_write_headers_a_bearer_token_and_a_snappy_protobuf_body() {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![204],
        retry_after: None,
    });
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()).bearer_token("rw-t0ken"))
        .start()
        .expect("start");
    run_some(&obs, 1, 0);
    shutdown_within(&obs, Duration::from_secs(4));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one delivery, at shutdown");
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/api/v1/write")
    );
    assert_eq!(request.header("Content-Encoding"), Some("snappy"));
    assert_eq!(
        request.header("Content-Type"),
        Some("application/x-protobuf")
    );
    assert_eq!(
        request.header("X-Prometheus-Remote-Write-Version"),
        Some("0.1.0")
    );
    assert_eq!(request.header("Authorization"), Some("Bearer rw-t0ken"));
    let body = snap::raw::Decoder::new()
        .decompress_vec(&request.body)
        .expect("a snappy block");
    // The runs counter's name and the target labels are in the protobuf.
    for text in [
        "agentgate_runs_started_total",
        "fake-test",
        "instance",
        "job",
        "agentgate",
    ] {
        assert!(
            body.windows(text.len()).any(|w| w == text.as_bytes()),
            "{text} not in the body"
        );
    }
    assert_eq!(sent(&obs), samples_per_request(&obs));
}

#[test]
fn a_receiver_that_is_down_never_blocks_the_engine_and_its_samples_are_counted_failed() {
    let obs = common::quiet()
        .remote_write_config(fast(closed_port_url()).interval(Duration::from_millis(20)))
        .start()
        .expect("start");
    // Periodic sends fail meanwhile; the engine's emits do not wait on them.
    let emitted = Instant::now();
    run_some(&obs, 200, 50);
    obs.flush();
    assert!(emitted.elapsed() < Duration::from_secs(5));
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(sent(&obs), 0.0);
    assert!(failed(&obs, "connect") > 0.0);
    assert!(retries(&obs) >= 3.0);
    assert_eq!(obs.stats().processed.total(), obs.stats().emitted.total());
}

#[test]
fn a_receiver_answering_500_is_retried_then_counted_failed_and_shutdown_returns_within_its_wait() {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![500],
        retry_after: None,
    });
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()))
        .start()
        .expect("start");
    run_some(&obs, 3, 1);
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(receiver.received().len(), 4, "one try and three retries");
    assert_eq!(retries(&obs), 3.0);
    assert_eq!(failed(&obs, "server_error"), samples_per_request(&obs));
    assert_eq!(sent(&obs), 0.0);
}

#[test]
fn a_receiver_answering_429_is_retried_after_its_retry_after_and_then_takes_the_samples() {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![429, 429, 204],
        retry_after: Some(0),
    });
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()))
        .start()
        .expect("start");
    run_some(&obs, 3, 1);
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(retries(&obs), 2.0);
    assert_eq!(sent(&obs), samples_per_request(&obs));
    assert_eq!(failed(&obs, "throttled"), 0.0);
}

#[test]
fn a_receiver_throttling_past_the_final_wait_costs_shutdown_only_that_wait() {
    // Retry-After: 30 s, far past the one-second final wait.
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![429],
        retry_after: Some(30),
    });
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()))
        .start()
        .expect("start");
    run_some(&obs, 1, 0);
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(
        receiver.received().len(),
        1,
        "no retry before its Retry-After"
    );
    assert_eq!(failed(&obs, "throttled"), samples_per_request(&obs));
}

#[test]
fn a_receiver_answering_400_gets_no_retry_and_the_samples_are_counted_dropped() {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![400],
        retry_after: None,
    });
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()))
        .start()
        .expect("start");
    run_some(&obs, 3, 1);
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(retries(&obs), 0.0);
    assert_eq!(dropped(&obs, "rejected"), samples_per_request(&obs));
    assert_eq!(sent(&obs), 0.0);
}

#[test]
fn a_receiver_that_never_answers_holds_neither_the_engine_nor_shutdown_past_the_final_wait() {
    let receiver = FakeReceiver::start(Script::Hang);
    let obs = common::quiet()
        .remote_write_config(
            fast(receiver.write_url())
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_millis(300))
                .max_pending(2),
        )
        .start()
        .expect("start");
    // Periodic sends hang until their timeout meanwhile.
    let emitted = Instant::now();
    for _ in 0..4 {
        run_some(&obs, 50, 10);
        std::thread::sleep(Duration::from_millis(100));
    }
    obs.flush();
    assert!(emitted.elapsed() < Duration::from_secs(5));
    shutdown_within(&obs, Duration::from_secs(4));
    assert!(failed(&obs, "timeout") > 0.0);
    assert_eq!(sent(&obs), 0.0);
    assert!(
        receiver.received().len() >= 2,
        "the periodic sends were tried"
    );
    assert_eq!(obs.stats().processed.total(), obs.stats().emitted.total());
}

#[test]
fn a_periodic_send_hanging_when_shutdown_begins_does_not_keep_the_final_send_from_going() {
    // The periodic send's timeout (20 s) is longer than the final wait:
    // shutdown gave up while it waited, and its samples were never sent
    // nor counted.
    let receiver = FakeReceiver::start(Script::HangFirst(204));
    let obs = common::quiet()
        .remote_write_config(
            fast(receiver.write_url())
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_secs(20)),
        )
        .start()
        .expect("start");
    run_some(&obs, 2, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    shutdown_within(&obs, Duration::from_secs(3));
    assert!(receiver.received().len() >= 2, "the final send went");
    assert!(sent(&obs) > 0.0);
    let given_up: f64 = ["connect", "timeout", "io", "server_error", "throttled"]
        .iter()
        .map(|r| failed(&obs, r))
        .sum();
    assert_eq!(given_up, 0.0, "nothing was given up on");
}

#[test]
fn a_full_queue_drops_the_oldest_request_and_counts_its_samples() {
    let obs = common::quiet()
        .remote_write_config(
            fast(closed_port_url())
                .interval(Duration::from_millis(20))
                .max_pending(1)
                .max_retries(1_000)
                // One try, then a backoff longer than the test.
                .backoff(Duration::from_secs(60), Duration::from_secs(60)),
        )
        .start()
        .expect("start");
    run_some(&obs, 1, 0);
    std::thread::sleep(Duration::from_millis(300));
    shutdown_within(&obs, Duration::from_secs(4));
    let per_request = samples_per_request(&obs);
    assert!(dropped(&obs, "queue_full") >= per_request);
    // The one request still queued at shutdown failed.
    assert_eq!(failed(&obs, "connect"), per_request);
}

#[test]
fn a_url_remote_write_cannot_send_to_is_refused_at_start_with_a_typed_error() {
    for (url, quoted) in [
        (
            "https://prometheus.example/api/v1/write",
            "https://prometheus.example/api/v1/write",
        ),
        (
            "prometheus:9090/api/v1/write",
            "prometheus:9090/api/v1/write",
        ),
        // The error quotes the URL without its password.
        (
            "http://user:pw@127.0.0.1:9090/api/v1/write",
            "http://[REDACTED]@127.0.0.1:9090/api/v1/write",
        ),
    ] {
        match common::quiet().remote_write(url).start() {
            Err(Error::InvalidUrl {
                url: got, reason, ..
            }) => {
                assert_eq!(got, quoted);
                assert!(!reason.is_empty());
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    match common::quiet()
        .remote_write_config(RemoteWriteConfig::new("http://127.0.0.1:9/").label("__x", "y"))
        .start()
    {
        Err(Error::Config(message)) => assert!(message.contains("__x"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "cli")]
fn demo(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .arg("demo")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--exit-when-done",
        ])
        .args(args)
        .env_remove("AGENTGATE_TOKEN")
        .env_remove("AGENTGATE_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("agentgate-obs runs")
}

#[cfg(feature = "cli")]
#[test]
fn demo_remote_write_sends_the_final_figures_once_at_exit() {
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![204],
        retry_after: None,
    });
    let out = demo(&[
        "--work-orders",
        "6",
        "--remote-write",
        &receiver.write_url(),
    ]);
    // Exit 0 or 1 (the seed's runs may fail): the demo ran to its end.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = receiver.received();
    assert_eq!(
        received.len(),
        1,
        "one send, at exit (the interval is 15 s)"
    );
    assert_eq!(received[0].header("Content-Encoding"), Some("snappy"));
    let body = snap::raw::Decoder::new()
        .decompress_vec(&received[0].body)
        .expect("a snappy block");
    let name = b"agentgate_runs_completed_total";
    assert!(body.windows(name.len()).any(|w| w == name));
}

#[cfg(feature = "cli")]
#[test]
fn demo_remote_write_with_a_url_it_cannot_send_to_exits_2_naming_it() {
    let out = demo(&["--remote-write", "https://prometheus.example/api/v1/write"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("https://prometheus.example/api/v1/write") && stderr.contains("proxy"),
        "{stderr}"
    );
}

#[test]
fn a_retry_after_too_large_for_the_clock_neither_panics_the_sender_nor_outlasts_the_final_wait() {
    // 2^64 - 1 seconds: added to the clock as asked, it overflows.
    let receiver = FakeReceiver::start(Script::Statuses {
        statuses: vec![429],
        retry_after: Some(u64::MAX),
    });
    let obs = common::quiet().start().expect("start");
    run_some(&obs, 2, 1);
    let started = Instant::now();
    let outcome = obs.remote_write_once(&fast(receiver.write_url()), None);
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(Error::Delivery { refused: false, .. })),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(4), "it took {took:?}");
    assert_eq!(receiver.received().len(), 1, "no retry within the wait");
    assert_eq!(failed(&obs, "throttled"), samples_per_request(&obs));
}

#[test]
fn a_retry_that_the_final_wait_ends_before_it_is_sent_is_not_counted_as_a_retry() {
    // One 503, then a backoff (5 s) longer than the final wait (1 s).
    let receiver = FakeReceiver::start(Script::always(503));
    let obs = common::quiet()
        .remote_write_config(
            fast(receiver.write_url()).backoff(Duration::from_secs(5), Duration::from_secs(5)),
        )
        .start()
        .expect("start");
    run_some(&obs, 1, 1);
    shutdown_within(&obs, Duration::from_secs(4));
    assert_eq!(receiver.received().len(), 1, "sent once, never again");
    assert_eq!(
        retries(&obs),
        0.0,
        "retries_total counts requests sent again"
    );
    assert_eq!(failed(&obs, "server_error"), samples_per_request(&obs));
}

#[test]
fn remote_write_label_values_are_redacted_like_every_other_label_value() {
    let token = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
    let receiver = FakeReceiver::start(Script::always(204));
    let obs = common::quiet()
        .remote_write_config(
            fast(receiver.write_url())
                .instance(format!("box-{token}"))
                .label("api_key", "plain-value"),
        )
        .start()
        .expect("start");
    shutdown_within(&obs, Duration::from_secs(4));
    let request = &receiver.received()[0];
    let body = snap::raw::Decoder::new()
        .decompress_vec(&request.body)
        .expect("snappy");
    let contains = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(token));
    assert!(!contains("plain-value"));
    assert!(contains("box-[REDACTED]"));
    assert!(contains("[REDACTED]"));
}

#[test]
fn a_204_from_a_receiver_that_keeps_the_connection_open_costs_shutdown_no_wait() {
    let receiver = FakeReceiver::start(Script::AnswerAndHold(204));
    let obs = common::quiet()
        .remote_write_config(fast(receiver.write_url()).final_wait(Duration::from_secs(3)))
        .start()
        .expect("start");
    run_some(&obs, 2, 1);
    // The 204 is the whole answer: nothing to read after it.
    shutdown_within(&obs, Duration::from_millis(1500));
    assert_eq!(sent(&obs), samples_per_request(&obs));
}

#[test]
fn a_shutdown_during_a_periodic_sends_backoff_still_makes_the_final_send_and_counts_its_samples() {
    let obs = common::quiet()
        .remote_write_config(
            fast(closed_port_url())
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_secs(20))
                .max_retries(100)
                // The first periodic send fails, then waits 3 s for its
                // retry: shutdown comes in that wait.
                .backoff(Duration::from_secs(3), Duration::from_secs(3)),
        )
        .start()
        .expect("start");
    run_some(&obs, 2, 1);
    std::thread::sleep(Duration::from_millis(300));
    shutdown_within(&obs, Duration::from_secs(3));
    // The periodic send's request and the final one's, both given up on
    // when the final wait (1 s) ended before the retry was due.
    assert_eq!(failed(&obs, "connect"), 2.0 * samples_per_request(&obs));
    assert_eq!(sent(&obs), 0.0);
}

#[test]
fn a_refusal_that_quotes_the_token_back_does_not_carry_it_into_the_error() {
    // A proxy's error page echoing the request's headers.
    let receiver = FakeReceiver::start(Script::Answer {
        status: 400,
        body: "bad request; you sent Authorization: Bearer s3cret-t0ken-9876".to_owned(),
    });
    let obs = common::quiet().start().expect("start");
    run_some(&obs, 1, 0);
    let config = fast(receiver.write_url()).bearer_token("s3cret-t0ken-9876");
    match obs.remote_write_once(&config, None) {
        Err(error @ Error::Delivery { refused: true, .. }) => {
            let message = error.to_string();
            assert!(message.contains("bad request"), "{message}");
            assert!(!message.contains("s3cret-t0ken-9876"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_series_with_both_job_and_exported_job_labels_reaches_prometheus_instead_of_failing_every_send()
{
    let Some(binary) = external_tool("prometheus", "remote write: exported_ clashes") else {
        return;
    };
    let prom = Prometheus::receiving_remote_write(&binary);
    let obs = common::quiet()
        .remote_write_config(RemoteWriteConfig::new(prom.remote_write_url()).instance("clash"))
        .start()
        .expect("start");
    obs.metrics()
        .counter(
            "builds_total",
            "Builds.",
            &[("job", "nightly"), ("exported_job", "old")],
        )
        .expect("a counter")
        .increment(4);
    shutdown_within(&obs, Duration::from_secs(5));
    // As a scrape renames it: `job` taken, `exported_job` taken too.
    assert_eq!(dropped(&obs, "rejected"), 0.0, "the request was refused");
    prom.wait_for(
        "agentgate_builds_total{job=\"agentgate\",instance=\"clash\",\
         exported_job=\"old\",exported_exported_job=\"nightly\"}",
        4.0,
        Duration::from_secs(30),
    );
}
