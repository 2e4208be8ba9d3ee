//! A real Prometheus server scrapes the demo and agrees with it.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use agentgate_obs::demo::{DemoConfig, run_engine};
use common::{external_tool, http_get, parse_exposition};

/// Kills the Prometheus process and removes its data directory.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_prometheus(binary: PathBuf, target: SocketAddr) -> Prometheus {
    let dir = std::env::temp_dir().join(format!(
        "agentgate-obs-prometheus-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: agentgate\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Prometheus { child, dir, addr }
}

/// The single value of an instant query, if it has one.
fn query(prom: &Prometheus, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let reply = common::http_raw(
        prom.addr,
        format!(
            "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            prom.addr
        )
        .as_bytes(),
    )
    .ok()?;
    let body: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
    let result = body["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

fn wait_for(prom: &Prometheus, promql: &str, expected: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        last = query(prom, promql);
        if last == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{promql}: expected {expected}, last saw {last:?}");
}

/// Bucket bounds and counts of the build phase, from our own exposition.
fn build_buckets(addr: SocketAddr) -> Vec<(f64, f64)> {
    let samples = parse_exposition(&http_get(addr, "/metrics", &[]).body).expect("parse");
    samples
        .iter()
        .filter(|s| s.name == "agentgate_phase_duration_seconds_bucket" && s.labels[0].1 == "build")
        .map(|s| {
            let le = match s.labels[1].1.as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("le"),
            };
            (le, s.value)
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_demo_and_agrees_with_it() {
    let Some(binary) = external_tool("prometheus", "real Prometheus scrape") else {
        return;
    };
    let obs = common::quiet().serve("127.0.0.1:0").start().expect("start");
    let addr = obs.local_addr().expect("serving");
    let stop = AtomicBool::new(false);
    let config = |seed, work_orders| DemoConfig {
        work_orders,
        concurrency: 2,
        seed,
        time_scale: 0.0,
    };
    let first = run_engine(&obs.emitter(), &config(1, 5), &stop);
    obs.flush();
    let before = build_buckets(addr);

    let prom = start_prometheus(binary, addr);
    // A scrape that saw only the first batch, so rate() has a starting point.
    wait_for(
        &prom,
        "agentgate_runs_started_total",
        first.total() as f64,
        Duration::from_secs(60),
    );

    let second = run_engine(&obs.emitter(), &config(2, 30), &stop);
    obs.flush();
    let after = build_buckets(addr);
    let total = (first.total() + second.total()) as f64;
    wait_for(
        &prom,
        "agentgate_runs_started_total",
        total,
        Duration::from_secs(30),
    );
    for (result, n) in [
        ("succeeded", first.succeeded + second.succeeded),
        ("failed", first.failed + second.failed),
        ("canceled", first.canceled + second.canceled),
    ] {
        let promql = format!("agentgate_runs_completed_total{{result=\"{result}\"}}");
        wait_for(&prom, &promql, n as f64, Duration::from_secs(10));
    }
    wait_for(
        &prom,
        "sum(agentgate_runs_completed_total)",
        total,
        Duration::from_secs(10),
    );
    wait_for(&prom, "agentgate_active_runs", 0.0, Duration::from_secs(10));

    let median = query(
        &prom,
        "histogram_quantile(0.5, sum by (le) (rate(agentgate_phase_duration_seconds_bucket{phase=\"build\"}[5m])))",
    )
    .expect("a median from Prometheus");
    // The second batch's build phases, bucket by bucket: the median must
    // fall into the bucket where their cumulative count crosses half.
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|((le, a), (_, b))| (*le, a - b))
        .collect();
    let half = delta.last().expect("+Inf").1 / 2.0;
    let index = delta
        .iter()
        .position(|(_, c)| *c >= half)
        .expect("median bucket");
    let upper = delta[index].0;
    let lower = if index == 0 { 0.0 } else { delta[index - 1].0 };
    assert!(
        lower <= median && median <= upper,
        "Prometheus' median {median} outside [{lower}, {upper}] ({delta:?})"
    );
}
