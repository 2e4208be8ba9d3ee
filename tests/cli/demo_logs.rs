//! `agentgate-obs demo` as an on-call engineer sees its logs.
#![cfg(feature = "cli")]

use crate::common;

use std::process::{Command, Output};

use common::parse_log_lines;

fn demo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"));
    cmd.args([
        "demo",
        "--work-orders",
        "12",
        "--concurrency",
        "3",
        "--time-scale",
        "0",
        "--exit-when-done",
        "--listen",
        "127.0.0.1:0",
        "--json",
    ])
    .args(args)
    .env_remove("AGENTGATE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the demo runs");
    // Status 0 when every run succeeded, 1 when one did not (seed 42 has a
    // failure in its first dozen).
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_default();
    let all_succeeded = summary["runs"]["succeeded"] == summary["runs"]["total"];
    assert_eq!(
        out.status.code(),
        Some(if all_succeeded { 0 } else { 1 }),
        "{summary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn every_line_the_demo_writes_parses_as_json_and_one_run_can_be_followed_by_correlation_id() {
    let out = demo(&[], &[]);
    let lines = parse_log_lines(&String::from_utf8(out.stderr).unwrap());
    assert!(lines.len() > 100, "{} lines", lines.len());
    // Stdout is left for the summary.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let started = lines
        .iter()
        .filter(|l| l["message"] == "Progress: run_started")
        .count();
    assert_eq!(started as u64, summary["runs"]["total"].as_u64().unwrap());
    // Every engine and progress line of a run carries the run's correlation id.
    let first = lines
        .iter()
        .find(|l| l["message"] == "Run picked up")
        .unwrap();
    let (run_id, correlation) = (&first["runId"], &first["correlationId"]);
    assert!(correlation.as_str().unwrap().starts_with("req-"));
    let of_run: Vec<_> = lines.iter().filter(|l| &l["runId"] == run_id).collect();
    assert!(of_run.iter().all(|l| &l["correlationId"] == correlation));
    let followed: Vec<_> = lines
        .iter()
        .filter(|l| &l["correlationId"] == correlation)
        .collect();
    assert_eq!(followed.len(), of_run.len());
    assert!(
        followed
            .iter()
            .any(|l| l["message"] == "Progress: run_completed")
    );
    // The demo's fake credentials never reach the log.
    assert!(
        lines
            .iter()
            .all(|l| l["authorization"].is_null() || l["authorization"] == "[REDACTED]")
    );
    assert!(lines.iter().all(|l| !l.to_string().contains("ghp_")));
}

#[test]
fn the_demo_appends_its_logs_to_a_file_when_asked() {
    let path = std::env::temp_dir().join(format!("agentgate-demo-{}.jsonl", std::process::id()));
    let out = demo(&["--log-file", path.to_str().unwrap()], &[]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(parse_log_lines(&text).len() > 100);
}

#[test]
fn agentgate_log_sets_the_level_per_module() {
    let out = demo(&[], &[("AGENTGATE_LOG", "warn,agentgate_obs::demo=debug")]);
    let lines = parse_log_lines(&String::from_utf8(out.stderr).unwrap());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "Gate checked" && l["level"] == "debug")
    );
    assert!(
        lines
            .iter()
            .all(|l| l["module"] != "agentgate_obs::progress")
    );
}

#[test]
fn an_invalid_agentgate_log_is_reported_and_the_default_level_kept() {
    let out = demo(&[], &[("AGENTGATE_LOG", "loud")]);
    let lines = parse_log_lines(&String::from_utf8(out.stderr).unwrap());
    let warning = lines
        .iter()
        .find(|l| l["message"] == "ignoring AGENTGATE_LOG")
        .unwrap();
    assert_eq!(warning["level"], "warn");
    assert!(warning["error"].as_str().unwrap().contains("loud"));
    assert!(
        lines
            .iter()
            .any(|l| l["module"] == "agentgate_obs::progress")
    );
    assert!(lines.iter().all(|l| l["level"] != "debug"));
}

#[test]
fn a_demo_whose_stdout_is_closed_early_finishes_without_a_panic() {
    // Regression: `agentgate-obs demo | head` panicked in `println!` once
    // `head` had exited ("failed printing to stdout: Broken pipe").
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .args([
            "demo",
            "--work-orders",
            "12",
            "--time-scale",
            "0",
            "--exit-when-done",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("AGENTGATE_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the demo starts");
    // The reading end closes before the demo prints anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("the demo ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // 1: seed 42 has a failed run in its first dozen.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{:?}: {stderr}",
        out.status
    );
}

/// The demo with its stderr on a pseudo-terminal (as when run by hand) and
/// its stdout piped: what it wrote to each.
fn demo_on_a_terminal(args: &[&str]) -> (String, String) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    // SAFETY: plain libc calls on a descriptor this function owns; the
    // name buffer is large enough and NUL-terminated by ptsname_r.
    let (master, slave_path) = unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(master), path)
    };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(slave_path)
        .expect("the terminal's other side opens");
    let child = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"));
        cmd.args([
            "demo",
            "--work-orders",
            "12",
            "--time-scale",
            "0.002",
            "--exit-when-done",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("AGENTGATE_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(slave);
        // The command (and with it this process's copy of the terminal's
        // other side) is dropped here: reading the master ends when the
        // child exits.
        cmd.spawn().expect("the demo starts")
    };
    let reader = std::thread::spawn(move || {
        let mut master = master;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux answers EIO once no process holds the other side.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let out = child.wait_with_output().expect("the demo ends");
    let stderr = reader.join().expect("the terminal reader");
    assert!(out.status.code().is_some(), "{:?}: {stderr}", out.status);
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn on_a_terminal_the_demo_shows_its_urls_and_a_status_line_instead_of_json_logs() {
    let (stdout, terminal) = demo_on_a_terminal(&[]);
    assert!(
        stdout.starts_with("dashboard: http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(terminal.contains("--log shows the JSON logs"), "{terminal}");
    assert!(
        !terminal.contains("\"level\""),
        "a JSON log line: {terminal}"
    );
    // Redrawn in place; its last state is the final count, on its own line.
    let last = terminal
        .rsplit('\r')
        .find(|s| !s.trim().is_empty())
        .expect("a status line")
        .trim_end();
    let last = last.trim_start_matches("\x1b[2K");
    assert!(terminal.ends_with('\n'), "{terminal:?}");
    assert!(last.starts_with("runs: 0 active, "), "{last:?}");
    assert!(last.ends_with("canceled (of 12)"), "{last:?}");
    let counts: u64 = ["succeeded", "failed", "canceled"]
        .iter()
        .map(|word| {
            let before = last.split(&format!(" {word}")).next().unwrap_or_default();
            let n = before.rsplit(' ').next().unwrap_or_default();
            n.parse::<u64>()
                .unwrap_or_else(|_| panic!("{word} in {last:?}"))
        })
        .sum();
    assert_eq!(counts, 12, "{last:?}");
}

#[test]
fn on_a_terminal_the_log_flag_brings_the_json_logs_back() {
    let (_, terminal) = demo_on_a_terminal(&["--log"]);
    let lines = parse_log_lines(&terminal.replace("\r\n", "\n"));
    assert!(lines.len() > 100, "{} lines", lines.len());
    assert!(!terminal.contains("runs: "), "{terminal}");
}
