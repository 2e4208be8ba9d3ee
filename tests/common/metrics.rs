//! Serving and scraping `/metrics`, and checking an exposition with promtool.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use agentgate_obs::Observability;
use agentgate_obs::metrics::MetricsConfig;

use super::http_get;

/// The `Accept` value that asks for OpenMetrics.
pub const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

/// A quiet pipeline with `config`, serving on a free loopback port.
pub fn served_with(config: MetricsConfig) -> Observability {
    super::quiet()
        .metrics(config)
        .serve("127.0.0.1:0")
        .start()
        .expect("start")
}

/// The body of `GET /metrics`, asking for `accept` if given; the answer
/// must be `200`.
pub fn scrape_text(obs: &Observability, accept: Option<&str>) -> String {
    let addr = obs.local_addr().expect("serving");
    let header = accept.map(|a| format!("Accept: {a}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let reply = http_get(addr, "/metrics", &headers);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// `promtool check metrics` accepts `text` without a single warning.
pub fn assert_promtool_accepts(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed: {report}\n{text}");
    assert!(report.trim().is_empty(), "promtool warned: {report}");
}
