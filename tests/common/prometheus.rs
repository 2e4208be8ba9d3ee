//! A real Prometheus server for the tests that scrape us with one: started
//! on a free port with a config of the test's own, queried through its HTTP
//! API, killed and its data removed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus; killed and its directory removed on drop.
pub struct Prometheus {
    child: Child,
    /// Its working directory: `prometheus.yml` and whatever files the test added.
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    /// Starts `binary` with `config` as its `prometheus.yml`, after writing
    /// `files` (name, content) beside it: rule files, file-SD target lists.
    pub fn start(binary: &Path, config: &str, files: &[(&str, &str)]) -> Prometheus {
        Prometheus::start_with_flags(binary, config, files, &[])
    }

    /// [`Prometheus::start`] with extra command-line `flags`.
    pub fn start_with_flags(
        binary: &Path,
        config: &str,
        files: &[(&str, &str)],
        flags: &[&str],
    ) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "agentgate-obs-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("a file beside the config");
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .current_dir(&dir)
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, dir, addr }
    }

    /// Starts `binary` scraping `target` every second as job `agentgate`.
    pub fn scraping(binary: &Path, target: SocketAddr) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: agentgate\n    static_configs:\n      - targets: ['{target}']\n"
        );
        Prometheus::start(binary, &config, &[])
    }

    /// Starts `binary` scraping nothing and taking remote write at
    /// [`remote_write_url`](Self::remote_write_url); returns once it is ready.
    pub fn receiving_remote_write(binary: &Path) -> Prometheus {
        let prom = Prometheus::start_with_flags(
            binary,
            "global:\n  scrape_interval: 1m\n",
            &[],
            &["--web.enable-remote-write-receiver"],
        );
        prom.wait_ready(Duration::from_secs(60));
        prom
    }

    /// Where remote write goes.
    pub fn remote_write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Waits until `/-/ready` answers 200.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let request = format!(
                "GET /-/ready HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            );
            if super::http_raw(self.addr, request.as_bytes()).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus on {} not ready within {limit:?}", self.addr);
    }

    /// The samples of an instant query: each series' labels and value.
    pub fn query_vector(&self, promql: &str) -> Option<Vec<(serde_json::Value, f64)>> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let reply = super::http_raw(
            self.addr,
            format!(
                "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            )
            .as_bytes(),
        )
        .ok()?;
        let body: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
        body["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str()?.parse().ok()?;
                Some((s["metric"].clone(), value))
            })
            .collect()
    }

    /// The single value of an instant query, if it has exactly one.
    pub fn query(&self, promql: &str) -> Option<f64> {
        match self.query_vector(promql)?.as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }

    /// Waits until `promql` has the single value `expected`.
    pub fn wait_for(&self, promql: &str, expected: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(promql);
            if last == Some(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{promql}: expected {expected}, last saw {last:?}");
    }
}
