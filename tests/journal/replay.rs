//! Post-mortem: a journal read back through the live code paths looks
//! exactly like the live process did; bad lines are skipped and counted;
//! `summary` gates a CI job on it.
#![cfg(feature = "cli")]

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use agentgate_obs::Observability;
use agentgate_obs::demo::{DemoConfig, run_engine};
use agentgate_obs::journal::{JournalConfig, JournalReader, ReadLimits, SkipReason, Speed};
use common::browser::Browser;
use common::demo::Demo;
use common::{
    Measure, Measured, TempDir, http_get, journal_lines, mkfifo, parse_exposition, quiet,
    run_measured,
};
use serde_json::Value;

/// A served pipeline that ran the demo engine with a journal at `path`.
fn live_demo(path: &Path, work_orders: usize, seed: u64) -> Observability {
    let obs = quiet()
        .serve("127.0.0.1:0")
        .journal(path)
        .start()
        .expect("start");
    let config = DemoConfig {
        work_orders,
        concurrency: 4,
        seed,
        time_scale: 0.0,
    };
    run_engine(&obs.emitter(), &config, &AtomicBool::new(false));
    obs.flush();
    obs
}

/// The counters (and histogram counts) a replay must reproduce exactly;
/// queue latencies and render timings are the replaying process's own.
fn replayable_counters(addr: std::net::SocketAddr) -> BTreeSet<String> {
    const EXACT: &[&str] = &[
        "agentgate_active_runs",
        "agentgate_deliveries_total",
        "agentgate_events_total",
        "agentgate_gate_checks_total",
        "agentgate_iteration_duration_seconds_",
        "agentgate_iterations_total",
        "agentgate_phase_duration_seconds_count",
        "agentgate_phase_executions_total",
        "agentgate_run_duration_seconds_",
        "agentgate_runs_completed_total",
        "agentgate_runs_evicted_total",
        "agentgate_runs_started_total",
    ];
    let reply = http_get(addr, "/metrics", &[]);
    assert_eq!(reply.status, 200);
    parse_exposition(&reply.body)
        .expect("a valid exposition")
        .into_iter()
        .filter(|s| EXACT.iter().any(|p| s.name.starts_with(p)))
        .map(|s| format!("{}{:?} {}", s.name, s.labels, s.value))
        .collect()
}

fn api_runs(addr: std::net::SocketAddr) -> Value {
    let reply = http_get(addr, "/api/runs", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON")
}

#[test]
fn replaying_a_demos_journal_reproduces_its_final_api_runs_and_metrics_counters_exactly() {
    let dir = TempDir::new("replay-exact");
    let path = dir.join("events.ndjson");
    let live = live_demo(&path, 40, 3);
    let live_addr = live.local_addr().expect("serving");
    let live_runs = api_runs(live_addr);
    let live_counters = replayable_counters(live_addr);
    assert!(live_counters.len() > 40, "{live_counters:?}");
    assert_eq!(live_runs.as_array().map(Vec::len), Some(40));

    let replayed = quiet().serve("127.0.0.1:0").start().expect("start");
    let report = replayed
        .replay(&[&path], Speed::Max, &AtomicBool::new(false))
        .expect("a readable journal");
    assert_eq!(report.events, live.stats().processed.total());
    assert_eq!(
        (report.missing, report.restarts, report.read.skipped()),
        (0, 0, 0)
    );
    let addr = replayed.local_addr().expect("serving");
    assert_eq!(api_runs(addr), live_runs);
    let replayed_counters = replayable_counters(addr);
    let differ: Vec<_> = live_counters
        .symmetric_difference(&replayed_counters)
        .collect();
    assert!(differ.is_empty(), "samples that differ: {differ:?}");

    // /ws of the replay continues the journal's numbering.
    let mut client = common::ws::Client::connect(addr, "/ws");
    let hello = client.next_json();
    assert_eq!(hello["seq"].as_u64(), Some(report.events));
    assert_eq!(hello["runs"].as_array().map(Vec::len), Some(40));
}

#[test]
fn the_replay_command_serves_the_journals_runs_like_the_live_process() {
    let dir = TempDir::new("replay-cli");
    let path = dir.join("events.ndjson");
    let live = live_demo(&path, 15, 8);
    let live_runs = api_runs(live.local_addr().expect("serving"));
    let live_counters = replayable_counters(live.local_addr().expect("serving"));

    let mut replay = Demo::replay(&[path.to_str().expect("UTF-8 path")]);
    let loaded = replay.next_line(Duration::from_secs(20));
    assert!(loaded.starts_with("replayed "), "{loaded}");
    assert_eq!(api_runs(replay.addr), live_runs);
    assert_eq!(replayable_counters(replay.addr), live_counters);
    let health = http_get(replay.addr, "/health", &[]);
    assert_eq!(health.status, 200);
}

#[test]
fn a_rotated_journal_given_in_any_order_replays_to_the_live_processs_runs_and_counters() {
    let dir = TempDir::new("replay-rotated");
    let path = dir.join("events.ndjson");
    let live = quiet()
        .serve("127.0.0.1:0")
        .journal_config(JournalConfig::new(&path).max_bytes(16 * 1024).keep(1_000))
        .start()
        .expect("start");
    let config = DemoConfig {
        work_orders: 20,
        concurrency: 4,
        seed: 21,
        time_scale: 0.0,
    };
    run_engine(&live.emitter(), &config, &AtomicBool::new(false));
    live.flush();
    let rotations = live.journal_stats().expect("a journal").rotations;
    assert!(rotations >= 5, "{rotations}");
    let live_addr = live.local_addr().expect("serving");

    // A shell's `events.ndjson*`: lexical order, `.10` before `.2`.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("readable")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let replayed = quiet().serve("127.0.0.1:0").start().expect("start");
    let report = replayed
        .replay(&files, Speed::Max, &AtomicBool::new(false))
        .expect("ok");
    assert_eq!(report.read.files as u64, rotations + 1);
    assert_eq!((report.missing, report.restarts), (0, 0));
    assert_eq!(report.events, live.stats().processed.total());
    let addr = replayed.local_addr().expect("serving");
    assert_eq!(api_runs(addr), api_runs(live_addr));
    assert_eq!(replayable_counters(addr), replayable_counters(live_addr));
}

#[test]
fn a_journal_starting_after_seq_1_keeps_its_numbers_on_the_replays_websocket() {
    let dir = TempDir::new("replay-seq");
    let path = dir.join("events.ndjson");
    let _live = live_demo(&path, 6, 4);
    let lines = journal_lines(&path);
    // As if the oldest rotated file were gone: the journal starts at seq 51.
    let tail = dir.join("tail.ndjson");
    std::fs::write(&tail, lines[50..].join("\n") + "\n").expect("write");

    let replayed = quiet().serve("127.0.0.1:0").start().expect("start");
    let report = replayed
        .replay(&[tail], Speed::Max, &AtomicBool::new(false))
        .expect("readable");
    assert_eq!(report.missing, 50);
    assert_eq!(report.seqs, Some((51, lines.len() as u64)));
    let mut client = common::ws::Client::connect(
        replayed.local_addr().expect("serving"),
        &format!("/ws?since={}", lines.len() - 5),
    );
    // Resumed from the replay ring: the journal's last five lines, same numbers.
    let events = client.events_through(lines.len() as u64);
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        ((lines.len() as u64 - 4)..=lines.len() as u64).collect::<Vec<_>>()
    );
}

#[test]
fn truncated_garbage_blank_and_unknown_lines_are_skipped_counted_and_named_by_line_number() {
    let dir = TempDir::new("replay-bad");
    let path = dir.join("events.ndjson");
    let _live = live_demo(&path, 5, 6);
    let lines = journal_lines(&path);
    let n = lines.len();
    let last = &lines[n - 1];
    let mut bad = vec![
        lines[0].clone(),
        "this is not JSON".to_owned(),
        lines[1].clone(),
        String::new(),
        r#"{"type":"hello","protocol":1,"seq":0}"#.to_owned(),
        r#"{"type":"phase:completed","seq":3}"#.to_owned(),
        "\u{0}\u{1}binary\u{7f}".to_owned(),
    ];
    bad.extend(lines[2..n - 1].iter().cloned());
    // A crash mid-write: half of the last line, no newline.
    let text = bad.join("\n") + "\n" + &last[..last.len() / 2];
    let broken = dir.join("broken.ndjson");
    std::fs::write(&broken, text).expect("write");

    let obs = quiet().start().expect("start");
    let report = obs
        .replay(&[&broken], Speed::Max, &AtomicBool::new(false))
        .expect("readable");
    assert_eq!(report.events, n as u64 - 1);
    let read = &report.read;
    assert_eq!(
        (read.blank, read.garbage, read.unknown_type, read.truncated),
        (1, 3, 1, 1)
    );
    let named: Vec<(u64, SkipReason)> = read
        .first_skipped
        .iter()
        .map(|s| (s.line, s.reason.clone()))
        .collect();
    assert_eq!(
        named,
        [
            (2, SkipReason::Garbage),
            (4, SkipReason::Blank),
            (5, SkipReason::UnknownType("hello".into())),
            (6, SkipReason::Garbage),
            (7, SkipReason::Garbage),
        ]
    );

    // The CLI says so on stderr, with line numbers, and does not panic.
    let out = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .args(["summary", "--json"])
        .arg(&broken)
        .output()
        .expect("summary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped 6 line(s)"), "{stderr}");
    assert!(
        stderr.contains("broken.ndjson:2 (not an event)"),
        "{stderr}"
    );
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
}

#[test]
fn replay_at_a_speed_follows_the_original_timing_scaled() {
    let dir = TempDir::new("replay-speed");
    let path = dir.join("timed.ndjson");
    let line = |seq: u64, second: u32| {
        format!(
            r#"{{"type":"phase:started","seq":{seq},"timestamp":"2026-12-02T01:00:0{second}.000Z","workOrderId":"wo","runId":"r","correlationId":"r","iteration":1,"phase":"build"}}"#
        )
    };
    std::fs::write(
        &path,
        [line(1, 0), line(2, 1), line(3, 2)].join("\n") + "\n",
    )
    .expect("write");
    let obs = quiet().start().expect("start");
    let started = Instant::now();
    let report = obs
        .replay(&[&path], Speed::Scaled(10.0), &AtomicBool::new(false))
        .expect("ok");
    let took = started.elapsed();
    assert_eq!(report.events, 3);
    // Two seconds of journal at ten times the pace.
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

fn summary(files: &[&PathBuf]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .arg("summary")
        .args(files)
        .arg("--json")
        .output()
        .expect("summary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    (
        out.status.code(),
        serde_json::from_str(last).unwrap_or(Value::Null),
    )
}

#[test]
fn summary_gives_the_demos_own_figures_and_exits_0_only_when_every_run_succeeded() {
    let dir = TempDir::new("replay-summary");
    let path = dir.join("events.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
        .args(["demo", "--listen", "127.0.0.1:0", "--work-orders", "30"])
        .args([
            "--time-scale",
            "0",
            "--seed",
            "42",
            "--exit-when-done",
            "--json",
        ])
        .arg("--events-out")
        .arg(&path)
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let demo: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON summary");

    let (status, from_journal) = summary(&[&path]);
    let mut runs = from_journal["runs"].clone();
    assert_eq!(runs["unfinished"], 0);
    runs.as_object_mut().map(|o| o.remove("unfinished"));
    assert_eq!(runs, demo["runs"]);
    assert_eq!(from_journal["events"], demo["events"]);
    let failed = demo["runs"]["failed"].as_u64().unwrap_or(0)
        + demo["runs"]["canceled"].as_u64().unwrap_or(0);
    assert!(failed > 0, "the seed has failures: {demo}");
    assert_eq!(status, Some(1));
    assert_eq!(out.status.code(), status, "the demo and summary agree");
    // Phase quantiles agree to the millisecond the journal keeps.
    for phase in ["build", "snapshot", "verify", "feedback"] {
        for q in ["p50Ms", "p99Ms"] {
            let (a, b) = (
                demo["phases"][phase][q].as_f64().unwrap_or(f64::NAN),
                from_journal["phases"][phase][q]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
            assert!((a - b).abs() <= a * 0.01 + 1.0, "{phase} {q}: {a} vs {b}");
        }
    }

    // Only the succeeded runs: exit 0.
    let succeeded: BTreeSet<String> = journal_lines(&path)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "run:completed" && e["result"] == "succeeded")
        .filter_map(|e| e["runId"].as_str().map(str::to_owned))
        .collect();
    let good = dir.join("good.ndjson");
    let lines: Vec<String> = journal_lines(&path)
        .into_iter()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|e| e["runId"].as_str().map(|r| succeeded.contains(r)))
                .unwrap_or(false)
        })
        .collect();
    std::fs::write(&good, lines.join("\n") + "\n").expect("write");
    let (status, only_good) = summary(&[&good]);
    assert_eq!(status, Some(0), "{only_good}");
    assert_eq!(
        only_good["runs"]["succeeded"].as_u64(),
        Some(succeeded.len() as u64)
    );

    // A run cut short (no terminal event) is not a success.
    let cut = dir.join("cut.ndjson");
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n") + "\n").expect("write");
    assert_eq!(summary(&[&cut]).0, Some(1));
    // Nothing to read: exit 2, apart from "a run failed".
    assert_eq!(summary(&[&dir.join("missing.ndjson")]).0, Some(2));
}

#[test]
fn a_replays_hello_says_source_replay_and_a_live_servers_says_nothing() {
    let dir = TempDir::new("replay-hello");
    let path = dir.join("events.ndjson");
    let live = live_demo(&path, 3, 42);
    let hello = common::ws::Client::connect(live.local_addr().expect("serving"), "/ws").next_json();
    assert_eq!(hello["type"], "hello");
    assert!(hello.get("source").is_none(), "{hello}");
    drop(live);

    let mut replay = Demo::replay(&[path.to_str().expect("UTF-8 path")]);
    let loaded = replay.next_line(Duration::from_secs(20));
    assert!(loaded.starts_with("replayed "), "{loaded}");
    let hello = common::ws::Client::connect(replay.addr, "/ws").next_json();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["source"], "replay", "{hello}");
}

#[test]
fn the_dashboard_of_a_replay_renders_every_run_of_the_journal() {
    let Some(mut browser) = Browser::launch_or_skip("dashboard renders a replay's runs") else {
        return;
    };
    let dir = TempDir::new("replay-dashboard");
    let path = dir.join("events.ndjson");
    let live = live_demo(&path, 24, 11);
    let expected: BTreeSet<(String, String, String)> =
        api_runs(live.local_addr().expect("serving"))
            .as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (s("workOrderId"), s("runId"), s("status"))
            })
            .collect();
    drop(live);

    let mut replay = Demo::replay(&[path.to_str().expect("UTF-8 path")]);
    let loaded = replay.next_line(Duration::from_secs(20));
    assert!(loaded.starts_with("replayed "), "{loaded}");
    browser.navigate(&replay.dashboard);
    let shown = browser.wait_for(
        Duration::from_secs(15),
        "the page shows the journal's 24 runs",
        "(() => { const r = Array.from(document.querySelectorAll('#rows .row')).map(r => \
         [r.getAttribute('data-work-order-id'), r.getAttribute('data-run-id'), \
         r.querySelector('.badge').textContent]); return r.length === 24 ? r : null; })()",
    );
    let shown: BTreeSet<(String, String, String)> = shown
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or_default().to_owned();
            (s(0), s(1), s(2))
        })
        .collect();
    assert_eq!(shown, expected);
    // Regression: a replay showed the green "live" dot.
    let conn = browser.eval(
        "[document.getElementById('conn').dataset.state, document.getElementById('conn-text').textContent]",
    );
    assert_eq!(conn, serde_json::json!(["replay", "replay"]));
    // Regression: runs that finished before the page opened were missing
    // from the runs-per-minute plot ("peak 0/min" beside "24 succeeded").
    // The journal's runs are plotted on its own clock.
    browser.wait_for(
        Duration::from_secs(5),
        "the runs plot counts the journal's 24 finished runs",
        "document.getElementById('plot-runs').dataset.total === '24'",
    );
    browser.assert_no_page_errors();
}

// ---- Bounded input: line cap, byte-bounded chunks, endless input, stdin,
// FIFOs, the speed's range ----

fn agentgate_obs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentgate-obs"))
}

/// A `delivery:started` line with this `seq`, `second`s after 01:00:00.
fn delivery_line(seq: u64, second: u32) -> String {
    format!(
        r#"{{"type":"delivery:started","seq":{seq},"timestamp":"2026-12-02T01:00:{second:02}.000Z","workOrderId":"wo","runId":"r","correlationId":"r"}}"#
    )
}

/// Growth above the baseline a hostile file may cost `replay`/`summary`.
const BOUND_KIB: u64 = 64 << 10;

/// Stops a child long before a regression could take the machine's memory.
fn measure(interrupt_on: Option<&'static str>) -> Measure {
    Measure {
        timeout: Duration::from_secs(180),
        kill_above_kib: 768 << 10,
        interrupt_on,
    }
}

/// `replay FILE` run to the end of its replay, then interrupted.
fn measured_replay(file: &Path, extra: &[&str]) -> Measured {
    run_measured(
        agentgate_obs()
            .args(["replay", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg(file)
            .env_remove("AGENTGATE_TOKEN"),
        &measure(Some("replayed ")),
    )
}

/// The peak resident set of replaying a two-line journal.
fn baseline_kib(dir: &TempDir) -> u64 {
    let small = dir.join("small.ndjson");
    std::fs::write(
        &small,
        delivery_line(1, 0) + "\n" + &delivery_line(2, 1) + "\n",
    )
    .expect("write");
    let run = measured_replay(&small, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    run.peak_rss_kib
}

/// Writes `lines` lines of `bytes` each (newline excluded), built by
/// `line`, in pieces: the test holds none of them whole either.
fn write_long_lines(
    path: &Path,
    lines: usize,
    bytes: usize,
    mut line: impl FnMut(&mut dyn std::io::Write, usize),
) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for _ in 0..lines {
        line(&mut file, bytes);
        file.write_all(b"\n").expect("write");
    }
    file.flush().expect("flush");
}

#[test]
fn a_line_over_the_cap_is_skipped_counted_and_named_without_being_held_whole() {
    // Regression: a 64 MiB line was read whole (twice over), so a file of
    // long lines cost its size in memory.
    let dir = TempDir::new("replay-long-line");
    let baseline = baseline_kib(&dir);
    let big = dir.join("big.ndjson");
    let long = (64 << 20) + 1;
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).expect("create"));
        writeln!(file, "{}", delivery_line(1, 0)).expect("write");
        let piece = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            file.write_all(&piece).expect("write");
        }
        writeln!(file, "x\n{}", delivery_line(2, 1)).expect("write");
    }

    let run = measured_replay(&big, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("replayed 2 events"), "{}", run.stdout);
    assert!(run.stderr.contains("1 over the line cap"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("big.ndjson:2 ({long} bytes, over the line cap)")),
        "{}",
        run.stderr
    );
    let growth = run.peak_rss_kib.saturating_sub(baseline);
    eprintln!("peak RSS {} KiB, baseline {baseline} KiB", run.peak_rss_kib);
    assert!(
        growth < BOUND_KIB,
        "replaying a {long}-byte line grew the peak RSS by {growth} KiB (baseline {baseline} KiB)"
    );

    // The library reader, with its cap set lower (but not so low that the
    // line counts as endless): the same line, counted.
    let limits = ReadLimits::default().max_line_bytes(128 << 10);
    let mut reader = JournalReader::open_with(&[&big], limits).expect("opens");
    let seqs: Vec<Option<u64>> = reader.by_ref().map(|r| r.expect("readable").seq).collect();
    assert_eq!(seqs, [Some(1), Some(2)]);
    let report = reader.report();
    assert_eq!((report.too_long, report.skipped()), (1, 1));
    assert_eq!(report.first_skipped[0].line, 2);
    assert_eq!(
        report.first_skipped[0].reason,
        SkipReason::TooLong { bytes: long as u64 }
    );
}

#[test]
fn chunks_of_the_parallel_reader_are_bounded_in_bytes_not_only_in_lines() {
    // Regression: chunks were 1,024 lines whatever their length, so 1 GB
    // of 512 KiB lines took 1,011 MB.
    let dir = TempDir::new("replay-chunk-bytes");
    let baseline = baseline_kib(&dir);
    let path = dir.join("wide.ndjson");
    let width = 512 << 10;
    write_long_lines(&path, 256, width, |out, bytes| {
        let head = br#"{"type":"future:event","pad":""#;
        out.write_all(head).expect("write");
        out.write_all(&vec![b'a'; bytes - head.len() - 2])
            .expect("write");
        out.write_all(br#""}"#).expect("write");
    });

    let run = measured_replay(&path, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("256 of unknown type"), "{}", run.stderr);
    let growth = run.peak_rss_kib.saturating_sub(baseline);
    eprintln!("peak RSS {} KiB, baseline {baseline} KiB", run.peak_rss_kib);
    assert!(
        growth < BOUND_KIB,
        "replaying 128 MiB of 512 KiB lines grew the peak RSS by {growth} KiB (baseline {baseline} KiB)"
    );
}

#[test]
fn summary_and_replay_of_dev_zero_end_with_a_clear_error_in_bounded_memory() {
    // Regression: `summary /dev/zero` grew to 4.18 GB and aborted.
    let dir = TempDir::new("replay-dev-zero");
    let baseline = baseline_kib(&dir);
    let run = run_measured(
        agentgate_obs().args(["summary", "/dev/zero"]),
        &measure(None),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("/dev/zero:1: a line runs past")
            && run.stderr.contains("no end in sight: not a journal"),
        "{}",
        run.stderr
    );
    let growth = run.peak_rss_kib.saturating_sub(baseline);
    eprintln!("peak RSS {} KiB, baseline {baseline} KiB", run.peak_rss_kib);
    assert!(
        growth < BOUND_KIB,
        "summary /dev/zero grew the peak RSS by {growth} KiB"
    );

    // A lower cap gives up sooner; `replay` fails the same way.
    let run = run_measured(
        agentgate_obs()
            .args([
                "replay",
                "--listen",
                "127.0.0.1:0",
                "--max-line-bytes",
                "4096",
                "/dev/zero",
            ])
            .env_remove("AGENTGATE_TOKEN"),
        &measure(Some("replayed ")),
    );
    // Input that is not a journal: exit 2, as for `summary`.
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("no end in sight"), "{}", run.stderr);
    for bad in ["0", "-1", "1k", "+5", ""] {
        let out = agentgate_obs()
            .args(["summary", "--max-line-bytes", bad, "/dev/null"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "--max-line-bytes {bad:?}");
    }
}

#[test]
fn dash_reads_standard_input_and_a_fifo_is_read_until_its_writer_closes_it() {
    // Regression: a FIFO was opened three times (two checks, then the
    // reading), so `summary FIFO` hung with no output.
    let dir = TempDir::new("replay-stdin-fifo");
    let path = dir.join("events.ndjson");
    let _live = live_demo(&path, 5, 11);
    let (code, from_file) = summary(&[&path]);
    assert!(matches!(code, Some(0 | 1)));
    assert_ne!(from_file, Value::Null);
    let last_json = |run: &Measured| {
        serde_json::from_str::<Value>(run.stdout.lines().last().unwrap_or_default())
            .unwrap_or(Value::Null)
    };

    let from_stdin = run_measured(
        agentgate_obs()
            .args(["summary", "--json", "-"])
            .stdin(std::fs::File::open(&path).expect("open")),
        &measure(None),
    );
    assert_eq!(from_stdin.code, code, "{from_stdin:?}");
    assert_eq!(last_json(&from_stdin), from_file);

    let fifo = dir.join("events.fifo");
    mkfifo(&fifo);
    let writer = {
        let (fifo, journal) = (fifo.clone(), path.clone());
        std::thread::spawn(move || {
            // Opening for writing waits for the reader, as with `cat`.
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open");
            std::io::copy(&mut std::fs::File::open(&journal).expect("open"), &mut out)
                .expect("copy");
        })
    };
    let from_fifo = run_measured(
        agentgate_obs().args(["summary", "--json"]).arg(&fifo),
        &Measure {
            timeout: Duration::from_secs(30),
            ..measure(None)
        },
    );
    assert_eq!(from_fifo.killed, None, "{from_fifo:?}");
    writer.join().expect("the writer is done");
    assert_eq!(from_fifo.code, code, "{from_fifo:?}");
    assert_eq!(last_json(&from_fifo), from_file);
}

#[test]
fn a_speed_outside_its_documented_range_is_a_usage_error_not_a_panic() {
    // Regression: `replay --speed 1e-300` panicked (exit 101).
    let dir = TempDir::new("replay-speed-range");
    let path = dir.join("two.ndjson");
    std::fs::write(
        &path,
        delivery_line(1, 0) + "\n" + &delivery_line(2, 1) + "\n",
    )
    .expect("write");
    for speed in [
        "1e-300", "0", "-1", "NaN", "inf", "0.0009", "1000001", "fast",
    ] {
        let run = run_measured(
            agentgate_obs()
                .args(["replay", "--listen", "127.0.0.1:0"])
                .arg(format!("--speed={speed}"))
                .arg(&path)
                .env_remove("AGENTGATE_TOKEN"),
            &Measure {
                timeout: Duration::from_secs(30),
                ..measure(Some("replayed "))
            },
        );
        assert_eq!(run.code, Some(2), "--speed {speed}: {run:?}");
        assert!(
            run.stderr
                .contains("speed must be `max` or a number from 0.001 to 1000000"),
            "--speed {speed}: {}",
            run.stderr
        );
    }
    for speed in ["0.001", "1000000", "max", "1"] {
        assert!(speed.parse::<Speed>().is_ok(), "{speed}");
    }
}

#[test]
fn a_hand_built_speed_too_slow_to_represent_waits_until_stopped_instead_of_panicking() {
    let dir = TempDir::new("replay-speed-tiny");
    let path = dir.join("two.ndjson");
    std::fs::write(
        &path,
        delivery_line(1, 0) + "\n" + &delivery_line(2, 1) + "\n",
    )
    .expect("write");
    let obs = quiet().start().expect("start");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let report = obs
        .replay(&[&path], Speed::Scaled(1e-300), &stop)
        .expect("readable");
    stopper.join().expect("stopper");
    assert!(report.stopped, "{report:?}");
    assert_eq!(report.events, 1);
}
