//! The exit statuses of `agentgate-obs`, one test per row of the table in
//! docs/OPERATIONS.md ("Exit codes"), each run against the binary as a
//! script would.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::TempDir;

fn agentgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .args(args)
        .env_remove("AGENTGATE_TOKEN")
        .env_remove("AGENTGATE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("agentgate-obs runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `demo --exit-when-done` of `work_orders` with seed 42, its journal
/// written to `journal`.
fn demo_to_journal(work_orders: &str, journal: &Path) -> Output {
    let journal = journal.to_str().expect("a UTF-8 path");
    agentgate(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--work-orders",
        work_orders,
        "--seed",
        "42",
        "--time-scale",
        "0",
        "--exit-when-done",
        "--json",
        "--events-out",
        journal,
    ])
}

/// The runs of a `--json` summary printed on the last line of stdout.
fn runs(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(last).unwrap_or_default()["runs"].clone()
}

#[test]
fn status_0_when_every_run_succeeded_for_the_demo_and_summary_and_for_help() {
    let dir = TempDir::new("exit-0");
    let journal = dir.join("events.ndjson");
    // Seed 42's first three runs all succeed.
    let demo = demo_to_journal("3", &journal);
    assert_eq!(runs(&demo)["succeeded"], 3, "{}", stderr(&demo));
    assert_eq!(demo.status.code(), Some(0), "{}", stderr(&demo));
    let summary = agentgate(&["summary", journal.to_str().expect("UTF-8")]);
    assert_eq!(summary.status.code(), Some(0), "{}", stderr(&summary));
    for args in [&["--help"][..], &["--version"], &["demo", "--help"]] {
        assert_eq!(agentgate(args).status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn status_1_when_a_run_failed_and_demo_exit_when_done_agrees_with_summary() {
    // Regression: `demo --exit-when-done` exited 0 with failed runs, while
    // `summary` of its own journal exited 1.
    let dir = TempDir::new("exit-1");
    let journal = dir.join("events.ndjson");
    let demo = demo_to_journal("12", &journal);
    let runs = runs(&demo);
    assert!(
        runs["failed"].as_u64() > Some(0),
        "seed 42 has a failure: {runs}"
    );
    assert_eq!(demo.status.code(), Some(1), "{runs}: {}", stderr(&demo));
    let summary = agentgate(&["summary", journal.to_str().expect("UTF-8")]);
    assert_eq!(summary.status.code(), Some(1), "{}", stderr(&summary));

    // A journal with no run at all is no proof that the runs succeeded.
    let empty = dir.join("empty.ndjson");
    std::fs::write(&empty, "").expect("an empty journal");
    let summary = agentgate(&["summary", empty.to_str().expect("UTF-8")]);
    assert_eq!(summary.status.code(), Some(1), "{}", stderr(&summary));
}

#[test]
fn status_2_for_a_usage_or_input_error_in_every_subcommand() {
    let missing = std::env::temp_dir().join("agentgate-exit-codes-no-such-journal.ndjson");
    let missing = missing.to_str().expect("UTF-8");
    let cases: [(&[&str], &str); 10] = [
        // Regression: a missing journal was 1 for `replay`, 2 for `summary`.
        (
            &["replay", "--listen", "127.0.0.1:0", missing],
            "could not read the journal",
        ),
        (&["summary", missing], "could not read the journal"),
        // Regression: `--listen nonsense` was 1, other usage errors 2.
        (&["demo", "--listen", "nonsense"], "--listen nonsense"),
        (
            &["replay", "--listen", "nonsense", missing],
            "--listen nonsense",
        ),
        (&["demo", "--listen", "0.0.0.0:0"], "refusing to serve"),
        (&["demo", "--no-such-flag"], "--no-such-flag"),
        (&["demo", "--time-scale=-1"], "--time-scale"),
        (
            &["demo", "--log", "--log-file", "x.log"],
            "cannot be used with",
        ),
        (&["summary"], "FILE"),
        (&["watch", "ftp://127.0.0.1:9/ws"], "unsupported scheme"),
    ];
    for (args, says) in cases {
        let out = agentgate(args);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?} should say {says:?}: {text}");
    }
}

#[test]
fn status_3_when_the_address_to_serve_on_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let dir = TempDir::new("exit-3");
    let journal = dir.join("events.ndjson");
    std::fs::write(&journal, "").expect("a journal");
    for args in [
        &["demo", "--listen", &addr][..],
        &[
            "replay",
            "--listen",
            &addr,
            journal.to_str().expect("UTF-8"),
        ],
    ] {
        let out = agentgate(args);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {text}");
        assert!(text.contains("could not serve on"), "{args:?}: {text}");
    }
    // `watch` giving up on a server that is not there is the same row
    // (watch_client.rs: watch_gives_up_with_status_3_when_nothing_listens).
}
