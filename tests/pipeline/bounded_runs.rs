//! Run state is bounded (`Builder::max_runs`, `runs_evicted_total`),
//! `/api/runs` is limited and paginated, and the snapshots behind it and
//! behind `hello` are built off the drain thread.

use crate::common;

use std::time::{Duration, Instant};

use agentgate_obs::{
    ExecutionMetrics, Observability, Phase, ProgressEmitter, RunResult, Strategy, TaskSpec,
};
use common::{http_get, parse_exposition, quiet, sample_value};
use serde_json::Value;

fn spec() -> TaskSpec {
    TaskSpec::new("bounded", Strategy::Fixed, 3)
}

fn metric(obs: &Observability, name: &str) -> f64 {
    let samples = parse_exposition(&obs.metrics().render()).expect("exposition parses");
    sample_value(&samples, &format!("agentgate_{name}"), &[]).unwrap_or(f64::NAN)
}

fn completed_total(obs: &Observability) -> f64 {
    let samples = parse_exposition(&obs.metrics().render()).expect("exposition parses");
    ["canceled", "failed", "succeeded"]
        .iter()
        .map(|r| {
            sample_value(&samples, "agentgate_runs_completed_total", &[("result", r)])
                .unwrap_or(0.0)
        })
        .sum()
}

fn run_ids(obs: &Observability) -> Vec<String> {
    let mut ids: Vec<String> = obs.runs().iter().map(|r| r.run_id.to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn at_the_bound_the_idlest_active_runs_are_evicted_counted_and_no_longer_active() {
    let obs = quiet().max_runs(100).finished_runs(10).start().unwrap();
    let e = obs.emitter();
    for i in 0..150 {
        e.emit_run_started("wo", &format!("run-{i:03}"), &spec());
        if i == 90 {
            // run-000 is touched again: the idlest active run is now run-001.
            e.emit_phase_started("wo", "run-000", 1, Phase::Build);
        }
    }
    obs.flush();

    assert_eq!(obs.active_runs(), 100);
    assert_eq!(metric(&obs, "active_runs"), 100.0);
    assert_eq!(metric(&obs, "runs_evicted_total"), 50.0);
    assert_eq!(metric(&obs, "runs_started_total"), 150.0);
    let ids = run_ids(&obs);
    assert_eq!(ids.len(), 100);
    assert!(ids.contains(&"run-000".to_owned()), "touched late: kept");
    assert!(!ids.contains(&"run-001".to_owned()), "the idlest: evicted");
    assert!(ids.contains(&"run-149".to_owned()));
    // The identity the HELP text states.
    assert_eq!(
        metric(&obs, "runs_started_total")
            - completed_total(&obs)
            - metric(&obs, "runs_evicted_total"),
        metric(&obs, "active_runs")
    );
    let text = obs.metrics().render();
    assert!(
        text.contains("# HELP agentgate_runs_evicted_total "),
        "{text}"
    );
    assert!(text.contains("# TYPE agentgate_runs_evicted_total counter"));
    obs.shutdown();
}

#[test]
fn a_late_run_completed_for_an_evicted_run_neither_decrements_twice_nor_resurrects_it() {
    let obs = quiet().max_runs(3).finished_runs(1).start().unwrap();
    let e = obs.emitter();
    for run in ["a", "b", "c", "d"] {
        e.emit_run_started("wo", run, &spec());
    }
    obs.flush();
    assert_eq!(
        (obs.active_runs(), metric(&obs, "runs_evicted_total")),
        (3, 1.0)
    );
    assert_eq!(run_ids(&obs), ["b", "c", "d"]);

    // The engine had not lost `a` after all: it finishes late, twice.
    e.emit_run_completed("wo", "a", RunResult::Passed, &ExecutionMetrics::default());
    e.emit_run_failed("wo", "a", "late again");
    e.emit_phase_started("wo", "a", 2, Phase::Verify);
    obs.flush();
    assert_eq!(obs.active_runs(), 3, "no second decrement");
    assert_eq!(completed_total(&obs), 0.0);
    assert_eq!(run_ids(&obs), ["b", "c", "d"], "not resurrected");

    // The others still finish normally and active_runs returns to zero.
    for run in ["b", "c", "d"] {
        e.emit_run_completed("wo", run, RunResult::Passed, &ExecutionMetrics::default());
    }
    obs.flush();
    assert_eq!(obs.active_runs(), 0);
    assert_eq!(metric(&obs, "active_runs"), 0.0);
    assert_eq!(completed_total(&obs), 3.0);
    assert_eq!(metric(&obs, "runs_evicted_total"), 1.0);
    obs.shutdown();
}

#[test]
fn max_runs_zero_is_a_configuration_error() {
    let err = quiet().max_runs(0).start().unwrap_err();
    assert!(err.to_string().contains("max_runs"), "{err}");
}

fn served_with_runs(max_runs: usize, runs: usize) -> (Observability, std::net::SocketAddr) {
    let obs = quiet()
        .serve("127.0.0.1:0")
        .max_runs(max_runs)
        .finished_runs(max_runs)
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    let e = obs.emitter();
    for i in 0..runs {
        let run = format!("run-{i:05}");
        e.emit_run_started("wo", &run, &spec());
        e.emit_iteration_started("wo", &run, 1, 3, None);
        e.emit_phase_completed("wo", &run, 1, Phase::Build, true, Duration::from_millis(5));
        e.emit_gate_checked("wo", &run, 1, "lint", true);
        if i % 2 == 0 {
            e.emit_run_completed("wo", &run, RunResult::Passed, &ExecutionMetrics::default());
        }
    }
    obs.flush();
    (obs, addr)
}

fn runs_of(body: &str) -> Vec<String> {
    let runs: Vec<Value> = serde_json::from_str(body).expect("a JSON array");
    runs.iter()
        .map(|r| r["runId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn api_runs_answers_500_runs_by_default_with_the_total_in_a_header_and_pages_with_limit_and_offset()
{
    let (obs, addr) = served_with_runs(1000, 600);

    let reply = http_get(addr, "/api/runs", &[]);
    assert_eq!(reply.status, 200);
    let page = runs_of(&reply.body);
    assert_eq!(page.len(), 500, "the default limit");
    assert_eq!(page[0], "run-00000", "oldest first");
    assert_eq!(reply.header("x-total-count"), Some("600"));
    assert_eq!(
        reply.header("link"),
        Some("</api/runs?limit=500&offset=500&status=all>; rel=\"next\"")
    );

    let reply = http_get(addr, "/api/runs?limit=500&offset=500&status=all", &[]);
    let rest = runs_of(&reply.body);
    assert_eq!(rest.len(), 100);
    assert_eq!(rest[0], "run-00500");
    assert_eq!(reply.header("link"), None, "the last page");

    let reply = http_get(addr, "/api/runs?limit=7&status=active", &[]);
    assert_eq!(
        runs_of(&reply.body),
        [
            "run-00001",
            "run-00003",
            "run-00005",
            "run-00007",
            "run-00009",
            "run-00011",
            "run-00013"
        ]
    );
    assert_eq!(reply.header("x-total-count"), Some("300"));
    let reply = http_get(addr, "/api/runs?status=finished&limit=1000", &[]);
    assert_eq!(runs_of(&reply.body).len(), 300);
    let reply = http_get(addr, "/api/runs?offset=9999", &[]);
    assert_eq!(runs_of(&reply.body), Vec::<String>::new());

    for (query, says) in [
        ("limit=abc", "limit must be a whole number"),
        ("limit=0", "limit must be at least 1"),
        ("limit=-3", "limit must be a whole number"),
        ("limit=1001", "limit must be at most 1000"),
        ("offset=x", "offset must be a whole number"),
        ("status=running", "status must be active, finished or all"),
        ("limit=", "limit must be a whole number"),
    ] {
        let reply = http_get(addr, &format!("/api/runs?{query}"), &[]);
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.body.contains(says), "{query}: {}", reply.body);
    }
    obs.shutdown();
}

#[test]
fn limit_and_offset_with_a_sign_spaces_or_other_digits_are_refused_as_not_whole_numbers() {
    let (obs, addr) = served_with_runs(20, 20);
    // `+` in a query decodes to a space; `%2B` to a plus sign.
    for query in [
        "limit=%2B5",
        "limit=+5",
        "limit=%205",
        "limit=5%20",
        "limit=5.0",
        "limit=%EF%BC%95",
        "offset=%2B1",
        "offset=-0",
        "offset=%201",
        "offset=1e1",
    ] {
        let reply = http_get(addr, &format!("/api/runs?{query}"), &[]);
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(
            reply.body.contains("must be a whole number"),
            "{query}: {}",
            reply.body
        );
    }
    // Leading zeros are still digits.
    let reply = http_get(addr, "/api/runs?limit=05&offset=007", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(runs_of(&reply.body).len(), 5);
    obs.shutdown();
}

/// How long the drain thread takes to answer a `flush`, at most, while
/// `work` runs: what a snapshot costs the pipeline.
fn drain_stall_during<R>(obs: &Observability, work: impl FnOnce() -> R) -> (R, Duration) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                obs.flush();
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            worst
        });
        let result = work();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (result, prober.join().expect("prober"))
    })
}

#[test]
fn at_the_default_bound_hello_and_api_runs_hold_the_drain_thread_only_briefly() {
    const CAP: usize = 10_000;
    // Past the default bound: it holds.
    let obs = quiet().serve("127.0.0.1:0").start().unwrap();
    let addr = obs.local_addr().unwrap();
    let e = obs.emitter();
    for i in 0..CAP + 500 {
        let run = format!("run-{i:05}");
        e.emit_run_started("wo", &run, &spec());
        e.emit_phase_completed("wo", &run, 1, Phase::Build, true, Duration::from_millis(5));
        e.emit_gate_checked("wo", &run, 1, "lint", true);
    }
    obs.flush();
    assert_eq!(obs.active_runs(), CAP as u64);

    let timed = |f: &dyn Fn() -> common::HttpReply| {
        let t = Instant::now();
        let reply = f();
        (reply, t.elapsed())
    };
    let ((all, all_time), all_stall) = drain_stall_during(&obs, || {
        timed(&|| http_get(addr, &format!("/api/runs?limit={CAP}"), &[]))
    });
    assert_eq!(all.status, 200);
    assert_eq!(runs_of(&all.body).len(), CAP);
    assert_eq!(all.header("x-total-count"), Some("10000"));
    let ((default, default_time), default_stall) =
        drain_stall_during(&obs, || timed(&|| http_get(addr, "/api/runs", &[])));
    assert_eq!(runs_of(&default.body).len(), 500);

    let ((hello, hello_time), hello_stall) = drain_stall_during(&obs, || {
        let t = Instant::now();
        let mut client = common::ws::Client::connect(addr, "/ws");
        let hello = client.next_raw().expect("hello");
        // Timed to its arrival, not to this test's parsing of it.
        (hello, t.elapsed())
    });
    let hello: Value = serde_json::from_str(hello.to_text().expect("text")).expect("JSON");
    assert_eq!(hello["type"], "hello");
    let runs = hello["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), CAP);
    assert_eq!(runs[0]["runId"], "run-00500", "oldest kept first");

    // The same probe with nothing asked of the pipeline: the noise floor.
    let ((), idle_stall) =
        drain_stall_during(&obs, || std::thread::sleep(Duration::from_millis(200)));
    println!(
        "probe alone: flush answered within {idle_stall:?}; at {CAP} runs: /api/runs?limit={CAP} {} bytes in {:?} (drain thread stalled at most {:?}); \
         /api/runs (default) {} bytes in {:?} (stall {:?}); hello {} bytes in {:?} (stall {:?})",
        all.body.len(),
        all_time,
        all_stall,
        default.body.len(),
        default_time,
        default_stall,
        serde_json::to_string(&hello).unwrap_or_default().len(),
        hello_time,
        hello_stall,
    );
    obs.shutdown();
}
