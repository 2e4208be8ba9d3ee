//! A real Prometheus Pushgateway for the tests that push to one: started on
//! a free loopback port, its metrics kept in memory only (no persistence
//! file), read back through its JSON API, killed on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::prometheus::free_port;

/// A running Pushgateway; killed on drop.
pub struct Pushgateway {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The series of one metric in one group: each one's labels (the group's
/// `job` and `instance` among them) and value.
pub type Series = Vec<(serde_json::Map<String, serde_json::Value>, f64)>;

impl Pushgateway {
    /// The `prometheus-pushgateway` binary, or `None` (after printing
    /// `SKIPPED:`, or failing under `CI=true`) when it is not installed.
    pub fn binary(test: &str) -> Option<std::path::PathBuf> {
        super::external_tool("prometheus-pushgateway", test)
    }

    /// Starts `binary` on a free loopback port, keeping pushed metrics in
    /// memory only, and waits until it is ready.
    pub fn start(binary: &Path) -> Pushgateway {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--persistence.file=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-pushgateway");
        let gateway = Pushgateway { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = super::http_raw(
                addr,
                format!("GET /-/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if ready.is_ok_and(|reply| reply.status == 200) {
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "the Pushgateway on {addr} was not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its base URL, as `Builder::push_gateway` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its own `/metrics` in the protobuf exposition: every pushed
    /// family, native buckets included (HTTP/1.0, so the body is the raw
    /// bytes, not chunks).
    pub fn protobuf_exposition(&self) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
            .write_all(
                format!(
                    "GET /metrics HTTP/1.0\r\nAccept: {}\r\n\r\n",
                    agentgate_obs::metrics::PROTOBUF_CONTENT_TYPE
                )
                .as_bytes(),
            )
            .expect("request");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("reply");
        let head = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let status = String::from_utf8_lossy(&reply[..head]).to_string();
        assert!(status.starts_with("HTTP/1.0 200"), "{status}");
        assert!(status.contains("encoding=delimited"), "{status}");
        reply.split_off(head + 4)
    }

    /// Every group it holds (`/api/v1/metrics`).
    pub fn groups(&self) -> Vec<serde_json::Value> {
        let reply = super::http_raw(
            self.addr,
            format!(
                // HTTP/1.0: the answer comes whole, not chunked.
                "GET /api/v1/metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
                self.addr
            )
            .as_bytes(),
        )
        .expect("the Pushgateway answers /api/v1/metrics");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body: serde_json::Value =
            serde_json::from_str(&reply.body).expect("/api/v1/metrics is JSON");
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// The group whose grouping key is exactly `key`, if it holds one.
    pub fn group(&self, key: &[(&str, &str)]) -> Option<serde_json::Value> {
        self.groups().into_iter().find(|group| {
            let labels = group["labels"].as_object();
            labels.is_some_and(|labels| {
                labels.len() == key.len()
                    && key.iter().all(|(name, value)| {
                        labels.get(*name).and_then(|v| v.as_str()) == Some(value)
                    })
            })
        })
    }

    /// The series of the counter or gauge `metric` in the group `key`
    /// (empty when the group or the metric is not there).
    pub fn series(&self, key: &[(&str, &str)], metric: &str) -> Series {
        let Some(group) = self.group(key) else {
            return Vec::new();
        };
        group[metric]["metrics"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let labels = s["labels"].as_object().cloned().unwrap_or_default();
                        let value = s["value"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .expect("a counter or gauge value");
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the series of `metric` in group `key` whose labels,
    /// besides the group's, are exactly `labels`.
    pub fn value(
        &self,
        key: &[(&str, &str)],
        metric: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        self.series(key, metric)
            .into_iter()
            .find(|(series, _)| {
                series.len() == key.len() + labels.len()
                    && key.iter().chain(labels).all(|(name, value)| {
                        series.get(*name).and_then(|v| v.as_str()) == Some(value)
                    })
            })
            .map(|(_, value)| value)
    }

    /// Waits until the group `key` is there.
    pub fn wait_for_group(&self, key: &[(&str, &str)], limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.group(key).is_none() {
            assert!(
                Instant::now() < deadline,
                "no group {key:?} in the Pushgateway within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
