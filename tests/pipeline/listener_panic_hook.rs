//! A panicking listener is caught, counted and logged once per panic, and
//! Rust's panic hook does not print it; the embedder's own panics still
//! reach the hook. Checked on the stderr of a child process (this test
//! binary run again with `AGENTGATE_LISTENER_PANIC_CHILD` set).

use crate::common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use agentgate_obs::{Observability, Phase};
use common::{parse_exposition, sample_value};

const CHILD: &str = "AGENTGATE_LISTENER_PANIC_CHILD";

/// The child: a listener that panics on every event, three events, then a
/// panic of the engine's own.
#[test]
fn child_process_with_a_panicking_listener() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let obs = Observability::builder()
        .log_to(std::io::stderr())
        .start()
        .expect("pipeline starts");
    let _sub = obs
        .emitter()
        .subscribe(|_| panic!("listener bug: index out of range"));
    let run = obs.emitter().run("wo-1", "run-1");
    for i in 1..=3 {
        run.phase_started(i, Phase::Build);
    }
    obs.flush();
    obs.flush_logs();
    let samples = parse_exposition(&obs.metrics().render_as(Default::default())).expect("parse");
    let panics = sample_value(&samples, "agentgate_listener_panics_total", &[]);
    println!("listener_panics_total={panics:?}");
    assert_eq!(panics, Some(3.0));
    // The engine's own panic: the hook in place before ours still prints it.
    let own = catch_unwind(AssertUnwindSafe(|| panic!("the engine's own bug")));
    assert!(own.is_err());
}

#[test]
fn listener_panics_are_logged_and_counted_once_each_and_not_printed_by_the_panic_hook() {
    let exe = std::env::current_exe().expect("the test binary");
    // The child's name as the test harness knows it: its module path
    // without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let child = format!("{module}::child_process_with_a_panicking_listener");
    let out = Command::new(exe)
        .args(["--exact", &child, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("listener_panics_total=Some(3.0)"),
        "{stdout}"
    );

    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Progress listener panicked"))
        .collect();
    assert_eq!(logged.len(), 3, "{stderr}");
    assert!(
        logged
            .iter()
            .all(|l| l.contains("listener bug: index out of range")),
        "{logged:?}"
    );

    let hook_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("panicked at"))
        .collect();
    assert_eq!(hook_lines.len(), 1, "only the engine's own panic: {stderr}");
    assert!(
        stderr.contains("the engine's own bug"),
        "the engine's panic still reaches the hook: {stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("listener bug") && !l.contains("Progress listener panicked")),
        "the listener's panic is not printed outside the log line: {stderr}"
    );
    assert_eq!(
        stderr.matches("stack backtrace").count(),
        1,
        "one backtrace, the engine's: {stderr}"
    );
}
