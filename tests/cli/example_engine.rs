//! `examples/engine.rs` end to end: built by cargo (examples get no
//! `CARGO_BIN_EXE_*`), run against real shell commands, read back through
//! its own server and its JSON log lines, stopped with Ctrl-C.
#![cfg(feature = "cli")]

use crate::common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{http_get, parse_log_lines};
use serde_json::Value;

/// The example's executable, built once per test binary with this
/// build's features so cargo reuses the library it already compiled.
fn engine_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--offline", "--example", "engine"])
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::inherit());
        let features: Vec<&str> = [
            ("tracing", cfg!(feature = "tracing")),
            ("metrics", cfg!(feature = "metrics")),
            ("fuzzing", cfg!(feature = "fuzzing")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if !features.is_empty() {
            build.args(["--features", &features.join(",")]);
        }
        let out = build.output().expect("cargo runs");
        assert!(out.status.success(), "cargo build --example engine failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "engine")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the example's executable")
    })
}

/// A running engine: its server's address, its stdout lines, its log.
struct Engine {
    child: Child,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Engine {
    fn start(args: &[&str]) -> Engine {
        let mut child = Command::new(engine_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the engine starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = common::stdout_lines(stdout);
        // Read as it comes, so a chatty log never fills the pipe.
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut engine = Engine {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout: lines,
            stderr,
        };
        let first = engine.next_line();
        let url = first.strip_prefix("dashboard: http://").expect(&first);
        engine.addr = url.trim_end_matches('/').parse().expect(url);
        engine
    }

    fn next_line(&self) -> String {
        // Generous: cargo check-sized commands on a loaded machine.
        self.stdout
            .recv_timeout(Duration::from_secs(60))
            .expect("the engine printed a line in time")
    }

    /// `/api/runs`, by run id.
    fn runs(&self) -> Vec<Value> {
        let reply = http_get(self.addr, "/api/runs", &[]);
        let runs: Value = serde_json::from_str(&reply.body).expect("/api/runs is JSON");
        runs.as_array().cloned().expect("an array")
    }

    /// Sends Ctrl-C, then [`finish`](Self::finish)es.
    fn interrupt(self) -> (ExitStatus, Vec<Value>) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -INT {pid}");
        self.finish()
    }

    /// Waits for the engine to exit; its exit status and JSON log lines.
    fn finish(mut self) -> (ExitStatus, Vec<Value>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                break status;
            }
            assert!(Instant::now() < deadline, "the engine did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.stderr.join().unwrap_or_default();
        (status, parse_log_lines(&log))
    }
}

fn run<'a>(runs: &'a [Value], id: &str) -> &'a Value {
    runs.iter()
        .find(|r| r["runId"] == id)
        .unwrap_or_else(|| panic!("{id} in /api/runs: {runs:?}"))
}

#[test]
fn passing_commands_make_succeeded_runs_with_their_output_sizes_as_metadata() {
    let engine = Engine::start(&[
        "--work-orders",
        "2",
        "--phase",
        "build=printf 12345",
        "--phase",
        "test=sh -c 'exit 0'",
    ]);
    assert_eq!(engine.next_line(), "done: 2 runs, 2 passed");
    let runs = engine.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for id in ["run-1", "run-2"] {
        let r = run(&runs, id);
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["engineResult"], "passed", "{r}");
        assert_eq!(r["gates"][0]["name"], "test", "{r}");
        assert_eq!(r["gates"][0]["passed"], true, "{r}");
        assert!(r["gates"][0]["durationMs"].is_u64(), "a timed gate: {r}");
    }
    // The engine's own histogram, beside the built-in families: per run, one
    // build command and one gate command (run in verify).
    let metrics = http_get(engine.addr, "/metrics", &[]).body;
    for (phase, count) in [("build", 2), ("verify", 2)] {
        let line = format!(
            "agentgate_engine_command_duration_seconds_count{{phase=\"{phase}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    let (status, log) = engine.interrupt();
    assert!(status.success(), "{status}");
    let build = log
        .iter()
        .find(|l| l["eventType"] == "phase_completed" && l["phase"] == "build")
        .expect("a build phase_completed log line");
    assert_eq!(build["metadata"]["build"]["stdoutBytes"], 5, "{build}");
    assert_eq!(build["metadata"]["build"]["exitCode"], 0, "{build}");
}

#[test]
fn a_failing_command_fails_its_phase_and_its_run_and_the_exit_status() {
    let engine = Engine::start(&[
        "--phase",
        "build=true",
        "--phase",
        "lint=exit 3",
        "--phase",
        "feedback=echo retry with lint fixed",
    ]);
    assert_eq!(engine.next_line(), "done: 1 runs, 0 passed");
    let runs = engine.runs();
    let r = run(&runs, "run-1");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["engineResult"], "failed_verification", "{r}");
    assert_eq!(r["gates"][0]["name"], "lint", "{r}");
    assert_eq!(r["gates"][0]["passed"], false, "{r}");
    // Feedback ran after the failed verify, and the build did not rerun.
    assert_eq!(r["phase"], "feedback", "{r}");
    let (status, log) = engine.interrupt();
    assert_eq!(status.code(), Some(1), "{status}");
    let phases: Vec<(String, bool)> = log
        .iter()
        .filter(|l| l["eventType"] == "phase_completed")
        .map(|l| {
            (
                l["phase"].as_str().unwrap_or("").to_owned(),
                l["success"] == true,
            )
        })
        .collect();
    let expected = [("build", true), ("verify", false), ("feedback", true)];
    let expected: Vec<(String, bool)> = expected.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    assert_eq!(phases, expected);
    let verify = log
        .iter()
        .find(|l| l["eventType"] == "phase_completed" && l["phase"] == "verify")
        .expect("a verify line");
    assert_eq!(verify["metadata"]["lint"]["exitCode"], 3, "{verify}");
}

#[test]
fn a_failing_build_is_a_failed_build_and_stops_the_run_there() {
    let engine = Engine::start(&[
        "--phase",
        "build=exit 1",
        "--phase",
        "test=true",
        "--exit-when-done",
    ]);
    assert_eq!(engine.next_line(), "done: 1 runs, 0 passed");
    let (status, log) = engine.finish();
    assert_eq!(status.code(), Some(1), "{status}");
    let run_completed = log
        .iter()
        .find(|l| l["eventType"] == "run_completed")
        .expect("a run_completed line");
    assert_eq!(run_completed["engineResult"], "failed_build");
    assert!(
        !log.iter().any(|l| l["eventType"] == "gate_checked"),
        "no gate after a failed build"
    );
}
