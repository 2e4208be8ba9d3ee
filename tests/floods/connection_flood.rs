//! Connection floods (docs/SECURITY.md, "Bounds": `/health` and `/metrics`
//! keep answering under connection floods). Every attacker on loopback is
//! 127.0.0.1, so nothing here relies on per-address limits.
//!
//! Latencies are printed, not asserted (a loaded machine must not fail
//! these tests): each probe must be answered 200 within a generous
//! timeout.

use crate::ONE_AT_A_TIME;
use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http_get;

/// How long one probe may take before it counts as failed: far above any
/// latency seen, far below the request timeout the flood would otherwise cause.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Threads opening the burst's connections together.
const BURST_THREADS: usize = 10;

/// One `GET path`: the status (0 when there was no answer in time) and how
/// long the whole answer took.
fn probe(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let attempt = || -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let status = reply
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
        Ok(status.unwrap_or(0))
    };
    (attempt().unwrap_or(0), start.elapsed())
}

/// `count` probes, alternating `/health` and `/metrics`, `gap` apart.
fn probes(addr: SocketAddr, count: usize, gap: Duration) -> Vec<(&'static str, u16, Duration)> {
    (0..count)
        .map(|i| {
            let path = if i % 2 == 0 { "/health" } else { "/metrics" };
            let (status, took) = probe(addr, path);
            std::thread::sleep(gap);
            (path, status, took)
        })
        .collect()
}

/// Prints the median and p99 and fails on any probe not answered 200.
fn report(what: &str, results: &[(&'static str, u16, Duration)]) {
    let mut times: Vec<Duration> = results.iter().map(|r| r.2).collect();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "{what}: {} probes of /health and /metrics, p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    );
    let failed: Vec<_> = results.iter().filter(|r| r.1 != 200).collect();
    assert!(
        failed.is_empty(),
        "{what}: probes not answered 200: {failed:?}"
    );
}

/// Opens `count` connections that send nothing.
fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("idle connection {i}: {e}")))
        .collect()
}

/// The value of `agentgate_http_connections_shed_total{reason}`.
fn shed(addr: SocketAddr, reason: &str) -> f64 {
    let text = http_get(addr, "/metrics", &[]).body;
    let samples = common::parse_exposition(&text).expect("a valid exposition");
    common::sample_value(
        &samples,
        "agentgate_http_connections_shed_total",
        &[("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no shed counter for {reason}"))
}

#[test]
fn health_and_metrics_answer_200_while_a_thousand_idle_connections_are_held_open() {
    let _alone = ONE_AT_A_TIME.lock();
    common::raise_fd_limit(8192);
    let (_obs, addr) = common::served(None);
    let idle = idle_connections(addr, 1_000);
    // Let the server take them all in.
    std::thread::sleep(Duration::from_millis(300));
    let results = probes(addr, 100, Duration::from_millis(10));
    report("1,000 idle connections held open", &results);
    drop(idle);
}

/// Opens 1,000 connections from [`BURST_THREADS`] threads released
/// together, as fast as they can; each sends `request` (if any) at once.
/// Returns the threads, each yielding its connections.
fn burst(addr: SocketAddr, request: Option<&'static str>) -> Vec<JoinHandle<Vec<TcpStream>>> {
    let start = Arc::new(Barrier::new(BURST_THREADS + 1));
    let threads = (0..BURST_THREADS)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                (0..1_000 / BURST_THREADS)
                    .map(|i| {
                        let mut s = TcpStream::connect(addr)
                            .unwrap_or_else(|e| panic!("burst connection {t}/{i}: {e}"));
                        if let Some(path) = request {
                            let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                        }
                        s
                    })
                    .collect()
            })
        })
        .collect();
    start.wait();
    threads
}

#[test]
fn health_and_metrics_answer_200_during_a_burst_of_a_thousand_idle_connections_and_none_is_shed() {
    let _alone = ONE_AT_A_TIME.lock();
    common::raise_fd_limit(8192);
    let (_obs, addr) = common::served(None);
    let threads = burst(addr, None);
    // Probes start with the burst and go on through it.
    let results = probes(addr, 60, Duration::from_millis(5));
    let connections: Vec<TcpStream> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a burst thread"))
        .collect();
    report("a burst of 1,000 idle connections", &results);
    // None was answered (they have sent nothing, and the request timeout
    // is 5 s away): none was refused or evicted.
    let answered = connections
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut byte = [0u8; 1];
            !matches!((&mut &**s).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(answered, 0, "idle connections of the burst were shed");
}

#[test]
fn health_and_metrics_answer_200_during_a_burst_of_a_thousand_requests_and_the_burst_is_served() {
    let _alone = ONE_AT_A_TIME.lock();
    common::raise_fd_limit(8192);
    let (_obs, addr) = common::served(None);
    let threads = burst(addr, Some("/health"));
    let results = probes(addr, 60, Duration::from_millis(5));
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for thread in threads {
        for mut s in thread.join().expect("a burst thread") {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            let status = String::from_utf8_lossy(reply.get(9..12).unwrap_or(b"none")).into_owned();
            *statuses.entry(status).or_default() += 1;
        }
    }
    // The probes queue behind the burst's own `/health` requests (they are
    // the same request): this measures how fast the burst is served.
    report("a burst of 1,000 /health requests", &results);
    println!("the burst's own requests were answered: {statuses:?}");
    assert_eq!(
        statuses.get("200"),
        Some(&1_000),
        "every request of the burst is served, none shed: {statuses:?}"
    );
}

#[test]
fn past_the_pending_limit_the_oldest_idle_connections_are_evicted_and_counted() {
    let _alone = ONE_AT_A_TIME.lock();
    common::raise_fd_limit(8192);
    let (_obs, addr) = common::served(None);
    let mut idle = idle_connections(addr, 1_500);
    std::thread::sleep(Duration::from_millis(300));
    let results = probes(addr, 40, Duration::from_millis(10));
    report(
        "1,500 idle connections, more than the pending limit",
        &results,
    );
    let evicted = shed(addr, "idle_evicted");
    println!("idle connections evicted: {evicted}");
    assert!(evicted >= 400.0, "evicted {evicted}");
    // Oldest first: the first connection was answered 503 and closed; the
    // last one is still waiting for its request.
    let mut reply = String::new();
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = first.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply:?}");
    let last = idle.last_mut().expect("connections");
    last.set_nonblocking(true).expect("non-blocking");
    let mut byte = [0u8; 1];
    let still_open =
        matches!(last.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(still_open, "the newest idle connection was not evicted");
}

#[test]
fn health_and_metrics_answer_at_once_while_every_other_worker_waits_on_a_stalled_pipeline() {
    use agentgate_obs::{Phase, ProgressEmitter};
    let _alone = ONE_AT_A_TIME.lock();
    let (obs, addr) = common::served(None);
    // A listener that holds the drain thread until released: `/api/runs`
    // then waits for it (up to its 2 s timeout) on a worker.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = parking_lot::Mutex::new(held);
    let _sub = obs.emitter().subscribe(move |_| {
        let _ = held.lock().recv_timeout(Duration::from_secs(30));
    });
    obs.emitter()
        .emit_phase_started("wo", "run", 1, Phase::Build);
    // Three times as many as there are general workers.
    let stalled: Vec<_> = (0..12)
        .map(|_| std::thread::spawn(move || http_get(addr, "/api/runs", &[]).status))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let results = probes(addr, 10, Duration::from_millis(10));
    report(
        "every general worker waiting on a stalled pipeline",
        &results,
    );
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    // The stalled requests hold their workers for 2 s each: behind them a
    // probe would wait at least that long.
    assert!(
        slowest < Duration::from_millis(1_500),
        "a probe waited {slowest:?} behind the stalled requests"
    );
    let _ = release.send(());
    for thread in stalled {
        let status = thread.join().expect("a stalled request");
        assert!(status == 200 || status == 503, "{status}");
    }
}

/// The first line of what the server answered on `stream` (empty when
/// nothing came before the connection ended or `limit` passed).
fn status_line(stream: &mut TcpStream, limit: Duration) -> String {
    let _ = stream.set_read_timeout(Some(limit));
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn api_runs_answers_nine_probes_in_ten_within_100_ms_and_every_one_within_a_second_while_two_thousand_websocket_upgrades_past_the_cap_are_refused_and_counted()
 {
    let _alone = ONE_AT_A_TIME.lock();
    common::raise_fd_limit(8192);
    let obs = common::quiet()
        .serve("127.0.0.1:0")
        .websocket_max_clients(1)
        .start()
        .expect("start");
    let addr = obs.local_addr().expect("serving");
    // The one slot is taken: every upgrade below is past the cap.
    let mut dashboard = common::ws::Client::connect(addr, "/ws");
    dashboard.next_json();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    // Hostile: each attacker sends its upgrade and keeps the socket open,
    // reading nothing until the flood is over.
    let start = Arc::new(Barrier::new(BURST_THREADS + 1));
    let attackers: Vec<JoinHandle<Vec<TcpStream>>> = (0..BURST_THREADS)
        .map(|t| {
            let (start, upgrade) = (start.clone(), upgrade.clone());
            std::thread::spawn(move || {
                start.wait();
                (0..2_000 / BURST_THREADS)
                    .map(|i| {
                        let mut s = TcpStream::connect(addr)
                            .unwrap_or_else(|e| panic!("upgrade {t}/{i}: {e}"));
                        s.write_all(upgrade.as_bytes())
                            .unwrap_or_else(|e| panic!("upgrade {t}/{i}: {e}"));
                        s
                    })
                    .collect()
            })
        })
        .collect();
    start.wait();
    let mut took = Vec::new();
    while !attackers.iter().all(JoinHandle::is_finished) || took.len() < 20 {
        let t = Instant::now();
        let status = http_get(addr, "/api/runs", &[]).status;
        took.push((status, t.elapsed()));
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut held: Vec<TcpStream> = attackers
        .into_iter()
        .flat_map(|t| t.join().expect("an attacker"))
        .collect();
    let mut times: Vec<Duration> = took.iter().map(|t| t.1).collect();
    times.sort();
    println!(
        "/api/runs during 2,000 refused upgrades: {} requests, p50 {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for s in &mut held {
        *statuses
            .entry(status_line(s, Duration::from_secs(20)))
            .or_default() += 1;
    }
    println!("the refused upgrades were answered: {statuses:?}");
    // The probe shares two cores with ten attacking threads and the server:
    // one scheduled late says nothing about the server. A refusal that
    // held a worker stalled /api/runs for seconds, which the second bound
    // catches; the first is the promise.
    assert!(
        took.iter().all(|&(status, _)| status == 200),
        "/api/runs was not answered 200 during the flood: {took:?}"
    );
    let within_100_ms = times
        .iter()
        .filter(|t| **t < Duration::from_millis(100))
        .count();
    assert!(
        within_100_ms * 10 >= times.len() * 9,
        "fewer than 9 in 10 /api/runs answered within 100 ms during the flood: {took:?}"
    );
    assert!(
        times[times.len() - 1] < Duration::from_secs(1),
        "an /api/runs answer took a second or more during the flood: {took:?}"
    );
    assert_eq!(
        statuses.get("HTTP/1.1 503 Service Unavailable"),
        Some(&2_000),
        "every refused upgrade reads its 503: {statuses:?}"
    );
    assert_eq!(shed(addr, "ws_clients_full"), 2_000.0);
    dashboard.close();
}

/// A demo server started with the open-file `limits` given to `ulimit`,
/// 1,500 idle connections held open against it by this process, then 20
/// `/health` probes: each must be answered 200. Returns the demo's log.
#[cfg(feature = "cli")] // runs the binary
fn health_under_idle_connections_with_file_limit(limits: &str) -> Vec<serde_json::Value> {
    let _alone = ONE_AT_A_TIME.lock();
    // This process holds its own 1,500 ends, beyond the common 1,024.
    common::raise_fd_limit(8192);
    let dir = std::env::temp_dir().join(format!(
        "agentgate-fd-limit-{}-{}",
        std::process::id(),
        limits.replace(' ', "")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let log = dir.join("demo.log");
    let log_arg = log.to_string_lossy().into_owned();
    let demo = common::demo::Demo::start_with_file_limit(
        limits,
        &["--work-orders", "4", "--log-file", &log_arg],
    );
    let idle = idle_connections(demo.addr, 1_500);
    std::thread::sleep(Duration::from_millis(300));
    // Within the request timeout (5 s) of the idle connections, which
    // would free their descriptors by timing them out.
    let results: Vec<_> = (0..20)
        .map(|_| {
            let (status, took) = probe(demo.addr, "/health");
            std::thread::sleep(Duration::from_millis(20));
            ("/health", status, took)
        })
        .collect();
    report(
        &format!("1,500 idle connections, server started under ulimit {limits}"),
        &results,
    );
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "a /health probe took {slowest:?}: longer than a liveness probe waits"
    );
    drop(idle);
    drop(demo);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    common::parse_log_lines(&text)
}

/// The server's log line about its limit on open files.
#[cfg(feature = "cli")] // runs the binary
fn file_limit_line(log: &[serde_json::Value]) -> serde_json::Value {
    log.iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("open files"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no log line about the limit on open files: {log:?}"))
}

#[cfg(feature = "cli")] // runs the binary
#[test]
fn health_answers_20_of_20_under_1500_idle_connections_when_the_engine_starts_with_a_soft_limit_of_1024_files()
 {
    let log = health_under_idle_connections_with_file_limit("-Sn 1024");
    let line = file_limit_line(&log);
    println!("{line}");
    assert_eq!(line["level"], "info", "{line}");
    assert_eq!(line["softBefore"], 1024, "{line}");
    let after = line["softAfter"].as_u64().expect("softAfter");
    assert!(after > 1024, "the soft limit was raised: {line}");
    assert!(line["maxConnections"].as_u64().is_some(), "{line}");
}

#[cfg(feature = "cli")] // runs the binary
#[test]
fn health_answers_20_of_20_under_1500_idle_connections_when_even_the_hard_limit_is_1024_files() {
    let log = health_under_idle_connections_with_file_limit("-n 1024");
    let line = file_limit_line(&log);
    println!("{line}");
    assert_eq!(line["softBefore"], 1024, "{line}");
    assert_eq!(line["softAfter"], 1024, "nothing to raise it to: {line}");
    let cap = line["maxConnections"].as_u64().expect("maxConnections");
    assert!(cap < 1024, "connections sized below the limit: {line}");
}
