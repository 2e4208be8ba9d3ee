//! Nothing lost on a crash: an engine SIGKILLed mid-way, after it had
//! delivered live figures, has its journal delivered afterwards by `push`,
//! to a Pushgateway and through remote write, with exact counts each time
//! it is pushed; `push` says in its exit code what became of a delivery.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::prometheus::{Prometheus, free_port};
use crate::common::pushgateway::Pushgateway;
use crate::common::receiver::{FakeReceiver, Script};
use crate::common::{TempDir, external_tool};
use crate::pushgateway::{RESULTS, gateway_runs};

const BIN: &str = env!("CARGO_BIN_EXE_agentgate-obs");

/// Runs started and finished by result in a journal, read from its lines
/// (not through the crate's reader): each run's first terminal event
/// counts, and a torn last line is no event.
fn journal_tally(path: &Path) -> (u64, [u64; 3]) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let mut started = HashSet::new();
    let mut finished: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let run = event["runId"].as_str().unwrap_or_default().to_owned();
        let outcome = match event["type"].as_str() {
            Some("run:started") => {
                started.insert(run);
                continue;
            }
            Some("run:completed") => match event["engineResult"].as_str() {
                Some("passed") => 0,
                Some("canceled") => 2,
                _ => 1,
            },
            Some("run:failed") => 1,
            Some("run:canceled") => 2,
            _ => continue,
        };
        if started.contains(&run) {
            finished.entry(run).or_insert(outcome);
        }
    }
    let mut by_outcome = [0; 3];
    for outcome in finished.values() {
        by_outcome[*outcome] += 1;
    }
    (started.len() as u64, by_outcome)
}

/// A demo engine journaling to `journal` and delivering with `delivery`
/// (job `crashed`, instance `ci-runner`, every 100 ms), SIGKILLed once
/// `delivered` holds and 20 runs are finished on disk, with runs in
/// flight. Returns the journal's tally.
fn sigkilled_engine(
    journal: &Path,
    delivery: &[&str],
    delivered: impl Fn() -> bool,
) -> (u64, [u64; 3]) {
    let mut engine = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--work-orders", "100000"])
        .args(["--time-scale", "0.02", "--events-out"])
        .arg(journal)
        .args(delivery)
        .args(["--push-interval", "100ms"])
        .args(["--push-job", "crashed", "--push-instance", "ci-runner"])
        .arg("--log-file")
        .arg(journal.with_extension("log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !delivered() || journal_tally(journal).1.iter().sum::<u64>() < 20 {
        assert!(
            Instant::now() < deadline,
            "the engine neither delivers nor finishes runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.kill().expect("SIGKILL");
    let status = engine.wait().expect("reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL, no shutdown ran"
    );
    let tally = journal_tally(journal);
    assert!(tally.0 > tally.1.iter().sum::<u64>(), "runs were in flight");
    tally
}

fn push(journal: &Path, delivery: &[&str]) -> Output {
    let output = Command::new(BIN)
        .arg("push")
        .arg(journal)
        .args(delivery)
        .output()
        .expect("push runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn a_sigkilled_engines_journal_pushed_afterwards_gives_exact_counts_twice() {
    let Some(binary) = Pushgateway::binary("pushgateway: a SIGKILLed engine's journal") else {
        return;
    };
    let gateway = Pushgateway::start(&binary);
    let dir = TempDir::new("push-after-kill");
    let journal = dir.join("events.ndjson");
    let key = [("job", "crashed"), ("instance", "ci-runner")];
    let url = gateway.url();
    let (started, finished) = sigkilled_engine(&journal, &["--push-gateway", &url], || {
        gateway.group(&key).is_some()
    });
    for attempt in ["first", "second"] {
        let output = push(
            &journal,
            &[
                "--push-gateway",
                &url,
                "--push-job",
                "crashed",
                "--push-instance",
                "ci-runner",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{attempt} push");
        let (pushed_started, pushed_completed) = gateway_runs(&gateway, &key);
        assert_eq!(pushed_started, Some(started as f64), "{attempt} push");
        for ((result, _), (pushed, expected)) in
            RESULTS.iter().zip(pushed_completed.iter().zip(finished))
        {
            assert_eq!(
                *pushed,
                Some(expected as f64),
                "runs {result} after the {attempt} push"
            );
        }
    }
}

#[test]
fn a_sigkilled_engines_journal_written_remotely_afterwards_gives_exact_counts_twice() {
    let Some(binary) = external_tool("prometheus", "remote write of a SIGKILLed engine's journal")
    else {
        return;
    };
    let prom = Prometheus::receiving_remote_write(&binary);
    let dir = TempDir::new("remote-write-after-kill");
    let journal = dir.join("events.ndjson");
    let url = prom.remote_write_url();
    let selector = "{job=\"crashed\",instance=\"ci-runner\"}";
    let started_series = format!("agentgate_runs_started_total{selector}");
    // The engine sends its own figures every 100 ms before it dies: the
    // journal's delivery lands after points it left.
    let (started, finished) = sigkilled_engine(&journal, &["--remote-write", &url], || {
        prom.query(&started_series).is_some_and(|n| n > 0.0)
    });
    for attempt in ["first", "second"] {
        let output = push(
            &journal,
            &[
                "--remote-write",
                &url,
                "--push-job",
                "crashed",
                "--push-instance",
                "ci-runner",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{attempt} push");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("to the remote write receiver"), "{stdout}");
        prom.wait_for(&started_series, started as f64, Duration::from_secs(10));
        for ((result, _), expected) in RESULTS.iter().zip(finished) {
            prom.wait_for(
                &format!(
                    "agentgate_runs_completed_total{{job=\"crashed\",instance=\"ci-runner\",result=\"{result}\"}}"
                ),
                expected as f64,
                Duration::from_secs(10),
            );
        }
    }
}

/// A journal of one event, and an empty one, in `dir`.
fn small_journals(dir: &TempDir) -> (PathBuf, PathBuf) {
    let journal = dir.join("events.ndjson");
    std::fs::write(
        &journal,
        concat!(
            r#"{"type":"run:started","seq":1,"timestamp":"2026-12-02T01:00:00.000Z","workOrderId":"wo","runId":"r","correlationId":"r","taskSpec":{"goal":"g","strategy":"ralph","maxIterations":3}}"#,
            "\n"
        ),
    )
    .expect("a journal");
    let empty = dir.join("empty.ndjson");
    std::fs::write(&empty, "").expect("an empty journal");
    (journal, empty)
}

#[test]
fn push_exits_3_when_the_pushgateway_cannot_be_reached_and_2_when_it_refuses_or_the_journal_is_empty()
 {
    let dir = TempDir::new("push-exit-codes");
    let (journal, empty) = small_journals(&dir);
    let push =
        |file: &Path, url: &str| push(file, &["--push-gateway", url, "--push-wait", "300ms"]);
    let down = push(&journal, &format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(down.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("could not push"), "{stderr}");

    let receiver = FakeReceiver::start(Script::always(200));
    let nothing = push(&empty, &receiver.url());
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        receiver.received().is_empty(),
        "no zeros pushed over a group"
    );

    let refused = FakeReceiver::start(Script::always(401));
    assert_eq!(push(&journal, &refused.url()).status.code(), Some(2));
    let https = push(&journal, "https://127.0.0.1:9091");
    assert_eq!(https.status.code(), Some(2));
}

#[test]
fn push_exits_3_when_the_remote_write_receiver_cannot_be_reached_and_2_when_it_refuses() {
    let dir = TempDir::new("push-remote-exit-codes");
    let (journal, _) = small_journals(&dir);
    let down = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let unreachable = push(&journal, &["--remote-write", &down, "--push-wait", "300ms"]);
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains(&down));

    let refusing = FakeReceiver::start(Script::always(400));
    let refused = push(
        &journal,
        &[
            "--remote-write",
            &refusing.write_url(),
            "--push-wait",
            "300ms",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(refusing.received().len(), 1, "a 400 is not retried");

    // Both receivers: each failure is told, the exit code is the refusal's.
    let both = push(
        &journal,
        &[
            "--remote-write",
            &refusing.write_url(),
            "--push-gateway",
            &down.replace("/api/v1/write", ""),
            "--push-wait",
            "300ms",
        ],
    );
    assert_eq!(both.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("could not push to the Pushgateway") && stderr.contains("400"),
        "{stderr}"
    );
}

#[test]
fn push_never_prints_the_password_or_api_key_of_a_receivers_url() {
    let dir = TempDir::new("push-url-secrets");
    let (journal, _) = small_journals(&dir);
    // User info is refused, and the refusal quoted the URL whole.
    let refused = push(
        &journal,
        &["--push-gateway", "http://ci:pw-s3cret-1234@127.0.0.1:9091"],
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("user info"), "{stderr}");
    assert!(!stderr.contains("pw-s3cret-1234"), "{stderr}");
    // An API key in the query: the failure quoted the URL whole.
    let down = format!(
        "http://127.0.0.1:{}/api/v1/write?api_key=k3y-s3cret-5678",
        free_port()
    );
    let unreachable = push(&journal, &["--remote-write", &down, "--push-wait", "300ms"]);
    assert_eq!(unreachable.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("api_key="),
        "the URL is still named: {stderr}"
    );
    assert!(!stderr.contains("k3y-s3cret-5678"), "{stderr}");
    // Taken: the success line names the receiver, not the key.
    let receiver = FakeReceiver::start(Script::always(204));
    let url = format!("{}?api_key=k3y-s3cret-5678", receiver.write_url());
    let sent = push(&journal, &["--remote-write", &url]);
    assert_eq!(sent.status.code(), Some(0));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(output.contains(&receiver.write_url()), "{output}");
    assert!(!output.contains("k3y-s3cret-5678"), "{output}");
}

#[test]
fn push_exits_2_when_the_pushgateway_redirects_as_when_remote_write_does() {
    let dir = TempDir::new("push-redirect");
    let (journal, _) = small_journals(&dir);
    // A redirect is a wrong URL (no trailing path, an http-to-https
    // proxy): trying again later gets the same answer.
    let redirecting = FakeReceiver::start(Script::always(301));
    let pushed = push(
        &journal,
        &["--push-gateway", &redirecting.url(), "--push-wait", "300ms"],
    );
    assert_eq!(pushed.status.code(), Some(2), "{pushed:?}");
    let written = push(
        &journal,
        &[
            "--remote-write",
            &redirecting.write_url(),
            "--push-wait",
            "300ms",
        ],
    );
    assert_eq!(written.status.code(), Some(2), "{written:?}");
}
