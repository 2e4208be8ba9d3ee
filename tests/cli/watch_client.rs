//! `agentgate-obs watch`: the terminal client, run as a process with its
//! output piped (plain lines, no bars), against the demo and against
//! pipelines the tests drive.
#![cfg(feature = "cli")]

use crate::common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentgate_obs::{
    ExecutionMetrics, Observability, ProgressEmitter, RunResult, Strategy, TaskSpec,
};
use common::demo::Demo;
use common::http_get;
use serde_json::Value;

/// What a finished `watch` left behind.
struct Watched {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Watched {
    /// `(status, work order, run)` of every result line.
    fn results(&self) -> BTreeSet<(String, String, String)> {
        self.stdout
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let status = words.next()?;
                ["succeeded", "failed", "canceled"]
                    .contains(&status)
                    .then(|| {
                        let wo = words.next()?.to_owned();
                        let run = words.next()?.to_owned();
                        Some((status.to_owned(), wo, run))
                    })
                    .flatten()
            })
            .collect()
    }
}

/// Starts `watch` with `args` (and no `AGENTGATE_TOKEN` from the caller's
/// environment); `finish` kills it if it outlives its limit.
fn spawn_watch(args: &[&str]) -> Child {
    spawn_watch_with_env(args, &[])
}

/// [`spawn_watch`] with extra environment variables.
fn spawn_watch_with_env(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .arg("watch")
        .args(args)
        .env_remove("AGENTGATE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts")
}

fn finish(mut child: Child, limit: Duration) -> Watched {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "watch did not exit within {limit:?}; stderr: {}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Watched {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn watch(args: &[&str], limit: Duration) -> Watched {
    finish(spawn_watch(args), limit)
}

#[test]
fn watch_until_idle_against_the_demo_names_every_run_with_its_result_and_exits_by_the_outcome() {
    let demo = Demo::start(&[
        "--work-orders",
        "30",
        "--concurrency",
        "6",
        "--time-scale",
        "0.01",
        "--seed",
        "11",
    ]);
    let watched = watch(&[&demo.dashboard, "--until-idle"], Duration::from_secs(90));

    let runs: Vec<Value> =
        serde_json::from_str(&http_get(demo.addr, "/api/runs", &[]).body).expect("runs JSON");
    let expected: BTreeSet<(String, String, String)> = runs
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("workOrderId"), s("runId"))
        })
        .collect();
    assert_eq!(expected.len(), 30);
    assert!(
        expected.iter().all(|r| r.0 != "running"),
        "watch went idle only once every run was done"
    );
    assert_eq!(watched.results(), expected, "stdout:\n{}", watched.stdout);
    // One line per run: none reported twice.
    let result_lines = watched
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("succeeded") || l.starts_with("failed") || l.starts_with("canceled")
        })
        .count();
    assert_eq!(result_lines, 30);

    let count = |s: &str| expected.iter().filter(|r| r.0 == s).count();
    let summary = watched.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "30 runs: {} succeeded, {} failed, {} canceled, 0 still running",
            count("succeeded"),
            count("failed"),
            count("canceled")
        )),
        "{summary}"
    );
    let all_succeeded = count("failed") + count("canceled") == 0;
    assert!(
        !all_succeeded,
        "seed 11 has failures, so the status is tested"
    );
    assert_eq!(watched.code, Some(1), "stderr: {}", watched.stderr);
    assert!(
        !watched.stdout.contains('\x1b'),
        "no terminal codes in a pipe"
    );
}

#[test]
fn watch_until_idle_exits_zero_when_every_run_succeeded() {
    let obs = Observability::builder()
        .serve("127.0.0.1:0")
        .start()
        .expect("pipeline starts");
    let addr = obs.local_addr().expect("serving");
    let e = obs.emitter();
    for run in ["run-a", "run-b"] {
        e.emit_run_started("wo-1", run, &TaskSpec::new("g", Strategy::Fixed, 2));
        e.emit_run_completed("wo-1", run, RunResult::Passed, &ExecutionMetrics::default());
    }
    obs.flush();
    let watched = watch(
        &[
            &format!("ws://{addr}/ws"),
            "--until-idle",
            "--idle",
            "300ms",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(watched.code, Some(0), "stderr: {}", watched.stderr);
    assert_eq!(
        watched.results(),
        BTreeSet::from([
            ("succeeded".into(), "wo-1".into(), "run-a".into()),
            ("succeeded".into(), "wo-1".into(), "run-b".into()),
        ])
    );
    obs.shutdown();
}

#[test]
fn watch_reconnects_after_the_server_restarts_and_reports_the_new_servers_runs() {
    let first = Observability::builder()
        .serve("127.0.0.1:0")
        .start()
        .expect("pipeline starts");
    let addr = first.local_addr().expect("serving");
    let e = first.emitter();
    e.emit_run_started("wo-1", "run-done", &TaskSpec::new("g", Strategy::Fixed, 1));
    e.emit_run_canceled("wo-1", "run-done", "stop");
    e.emit_run_started(
        "wo-1",
        "run-orphan",
        &TaskSpec::new("g", Strategy::Fixed, 1),
    );
    first.flush();
    let child = spawn_watch(&[
        &format!("ws://{addr}/ws"),
        "--until-idle",
        "--idle",
        "500ms",
    ]);
    // Let watch see the first server (an active run keeps it from idling).
    common::ws::wait_until(Duration::from_secs(10), "watch connected", || {
        first.metrics().ws_clients() == 1
    });
    first.shutdown();
    drop(first);

    // The same address, a new server whose seq space starts over.
    let second = common::server_with_one_finished_run(addr, "wo-2", "run-new");

    let watched = finish(child, Duration::from_secs(30));
    assert!(
        watched.stderr.contains("disconnected"),
        "stderr: {}",
        watched.stderr
    );
    assert_eq!(
        watched.results(),
        BTreeSet::from([
            ("canceled".into(), "wo-1".into(), "run-done".into()),
            ("succeeded".into(), "wo-2".into(), "run-new".into()),
        ]),
        "the new server's snapshot replaced the old one: the orphan is gone\n{}",
        watched.stdout
    );
    assert_eq!(watched.code, Some(1), "a canceled run makes the status 1");
    second.shutdown();
}

#[test]
fn watch_with_a_wrong_token_fails_at_once_with_status_2() {
    let obs = Observability::builder()
        .serve("127.0.0.1:0")
        .token("right")
        .start()
        .expect("pipeline starts");
    let addr = obs.local_addr().expect("serving");
    let url = format!("ws://{addr}/ws");
    let watched = watch(
        &[&url, "--token", "wrong", "--until-idle"],
        Duration::from_secs(10),
    );
    assert_eq!(watched.code, Some(2));
    assert!(watched.stderr.contains("401"), "stderr: {}", watched.stderr);

    let watched = watch(
        &[&url, "--token", "right", "--until-idle", "--idle", "200ms"],
        Duration::from_secs(10),
    );
    assert_eq!(watched.code, Some(0), "stderr: {}", watched.stderr);
    obs.shutdown();
}

#[test]
fn watch_gives_up_with_status_3_when_nothing_listens() {
    // Bind and drop: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let watched = watch(
        &[
            &format!("127.0.0.1:{port}"),
            "--until-idle",
            "--retry-for",
            "1s",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(watched.code, Some(3));
    assert!(
        watched.stderr.contains("gave up"),
        "stderr: {}",
        watched.stderr
    );
}

/// Every character a terminal would act on rather than show, but the
/// line feeds that end lines.
fn terminal_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[test]
fn watch_shows_hostile_ids_and_texts_from_the_stream_without_a_single_control_character() {
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let forged = "run-1\x1b]0;pwned\x07\x1b[2J\r\nsucceeded  wo-1  forged";
    let hello = serde_json::json!({
        "type": "hello", "protocol": 1, "instance": "fake", "seq": 0,
        "runs": [
            {"workOrderId": "wo-1\x1b[2J", "runId": forged, "status": "failed",
             "engineResult": "failed_build\x1b[31m\u{9b}1m",
             "delivery": {"status": "failed", "prUrl": "https://x/\u{202E}exe.txt",
                          "ciStatus": "ok\x07\x7f"}},
            {"workOrderId": "wo-2", "runId": "run-2\u{2066}", "status": "canceled",
             "reason": "stop\x1b[1A\x1b[2Kgone"},
        ]
    });
    let event = serde_json::json!({
        "type": "run:failed", "seq": 1, "workOrderId": "wo-3", "runId": "run-3\x1bc",
        "timestamp": "2026-01-01T00:00:00.000Z", "error": "boom\r\x1b[Kfine",
    });
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("watch connects");
        let mut ws = tungstenite::accept(stream).expect("handshake");
        ws.send(tungstenite::Message::Text(hello.to_string().into()))
            .expect("hello sent");
        ws.send(tungstenite::Message::Text(event.to_string().into()))
            .expect("event sent");
        let _ = ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye\x1b]0;title\x07".into(),
        }));
        while ws.read().is_ok() {}
        // The listener goes with this thread: reconnecting is refused.
    });

    let watched = watch(
        &[
            &format!("ws://{addr}/ws"),
            "--until-idle",
            "--retry-for",
            "1s",
        ],
        Duration::from_secs(30),
    );
    let _ = server.join();
    assert_eq!(
        watched.code,
        Some(3),
        "gave up reconnecting: {}",
        watched.stderr
    );
    for (name, text) in [("stdout", &watched.stdout), ("stderr", &watched.stderr)] {
        assert_eq!(
            terminal_controls(text),
            Vec::<char>::new(),
            "{name}: {text:?}"
        );
    }
    // Shown, readable, and on the lines they belong to.
    assert!(watched.stdout.contains("pwned"), "{}", watched.stdout);
    assert!(watched.stdout.contains("gone") && watched.stdout.contains("fine"));
    assert!(watched.stderr.contains("bye"), "{}", watched.stderr);
    assert!(
        !watched.stdout.lines().any(|l| l.starts_with("succeeded")),
        "no forged result line: {}",
        watched.stdout
    );
    assert_eq!(watched.results().len(), 3, "{}", watched.stdout);
}

#[test]
fn watch_takes_the_token_from_agentgate_token_or_a_token_file_and_never_prints_it() {
    let (obs, addr) = common::served(Some("s3cret-tok"));
    let url = format!("ws://{addr}/ws");
    let quick = ["--until-idle", "--idle", "200ms"];

    let from_env = finish(
        spawn_watch_with_env(
            &[&url, quick[0], quick[1], quick[2]],
            &[("AGENTGATE_TOKEN", "s3cret-tok")],
        ),
        Duration::from_secs(20),
    );
    assert_eq!(from_env.code, Some(0), "stderr: {}", from_env.stderr);

    let dir = std::env::temp_dir();
    let file = dir.join(format!("agentgate-watch-token-{}", std::process::id()));
    std::fs::write(&file, "s3cret-tok\n").expect("token file");
    let path = file.to_str().expect("UTF-8 path");
    // The file wins over the environment, and says so without the values.
    let from_file = finish(
        spawn_watch_with_env(
            &[&url, "--token-file", path, quick[0], quick[1], quick[2]],
            &[("AGENTGATE_TOKEN", "s3cret-other")],
        ),
        Duration::from_secs(20),
    );
    assert_eq!(from_file.code, Some(0), "stderr: {}", from_file.stderr);
    assert!(
        from_file.stderr.contains("AGENTGATE_TOKEN is ignored"),
        "{}",
        from_file.stderr
    );

    // The dashboard's link works as the address too (the token moves to a header).
    let from_url = watch(
        &[
            &format!("http://{addr}/?token=s3cret-tok"),
            quick[0],
            quick[1],
            quick[2],
        ],
        Duration::from_secs(20),
    );
    assert_eq!(from_url.code, Some(0), "stderr: {}", from_url.stderr);

    // A wrong token, in the URL and in a file: refused, and neither printed.
    std::fs::write(&file, "s3cret-wrong\n").expect("token file");
    let in_url = watch(
        &[&format!("{url}?token=s3cret-wrong"), "--until-idle"],
        Duration::from_secs(20),
    );
    let in_file = watch(
        &[&url, "--token-file", path, "--until-idle"],
        Duration::from_secs(20),
    );
    for refused in [&in_url, &in_file] {
        assert_eq!(refused.code, Some(2), "stderr: {}", refused.stderr);
        assert!(refused.stderr.contains("401"), "stderr: {}", refused.stderr);
    }
    for run in [&from_env, &from_file, &from_url, &in_url, &in_file] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("s3cret"), "a token was printed: {all}");
    }
    let _ = std::fs::remove_file(&file);
    obs.shutdown();
}

#[test]
fn watch_explains_a_token_file_it_cannot_use_and_exits_2() {
    let missing = std::env::temp_dir().join("agentgate-watch-no-such-token-file");
    let empty = std::env::temp_dir().join(format!("agentgate-watch-empty-{}", std::process::id()));
    std::fs::write(&empty, "\n").expect("empty file");
    for (file, says) in [
        (&missing, "cannot read the token file"),
        (&empty, "is empty"),
    ] {
        let watched = watch(
            &[
                "127.0.0.1:9",
                "--token-file",
                file.to_str().expect("UTF-8"),
                "--until-idle",
            ],
            Duration::from_secs(10),
        );
        assert_eq!(watched.code, Some(2), "{}", watched.stderr);
        assert!(watched.stderr.contains(says), "{}", watched.stderr);
    }
    let _ = std::fs::remove_file(&empty);

    let both = watch(
        &["127.0.0.1:9", "--token", "a", "--token-file", "b"],
        Duration::from_secs(10),
    );
    assert_eq!(both.code, Some(2));
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
}
