//! A real Alertmanager for the tests that deliver alerts through one,
//! started on a free loopback port with a config of the test's own and no
//! cluster, and a webhook receiver that records what it sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::prometheus::free_port;

/// A running Alertmanager; killed and its directory removed on drop.
pub struct Alertmanager {
    child: Child,
    /// Its working directory: `alertmanager.yml`, `data/` and its log.
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Alertmanager {
    /// Starts `binary` with `config` as its `alertmanager.yml` and waits
    /// until it answers `/-/ready`: a Prometheus started afterwards reaches
    /// it with its first alerts (alerts sent before are only resent a
    /// minute later).
    pub fn start(binary: &Path, config: &str) -> Alertmanager {
        let dir = std::env::temp_dir().join(format!(
            "agentgate-obs-alertmanager-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("alertmanager.yml"), config).expect("config");
        let log = std::fs::File::create(dir.join("alertmanager.log")).expect("log file");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .current_dir(&dir)
            .arg("--config.file=alertmanager.yml")
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: one instance, and no port outside the test's own.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = super::http_raw(am.addr, &am.request("GET", "/-/ready", ""))
                .is_ok_and(|r| r.status == 200);
            if ready {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready within 30 s; its log:\n{}",
                am.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What it logged so far: for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    /// An HTTP/1.0 request: Alertmanager answers it without chunked
    /// encoding, which `http_raw` does not decode.
    fn request(&self, method: &str, path: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .into_bytes()
    }

    /// Posts `alerts` (the JSON array of the v2 API: `labels`,
    /// `annotations`, ...) as Prometheus would.
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let reply = super::http_raw(
            self.addr,
            &self.request("POST", "/api/v2/alerts", &alerts.to_string()),
        )
        .expect("POST /api/v2/alerts");
        assert_eq!(reply.status, 200, "POST /api/v2/alerts: {}", reply.body);
    }

    /// Every alert it holds, with its `status` (`state`, `inhibitedBy`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let reply = super::http_raw(self.addr, &self.request("GET", "/api/v2/alerts", ""))
            .expect("GET /api/v2/alerts");
        assert_eq!(reply.status, 200, "GET /api/v2/alerts: {}", reply.body);
        match serde_json::from_str(&reply.body) {
            Ok(serde_json::Value::Array(alerts)) => alerts,
            _ => panic!("GET /api/v2/alerts: not a JSON array: {}", reply.body),
        }
    }
}

/// One notification Alertmanager's webhook sent: the path it posted to,
/// when it arrived, and the payload (`receiver`, `status`, `alerts`, ...).
#[derive(Clone, Debug)]
pub struct Notification {
    pub path: String,
    pub at: Instant,
    pub body: serde_json::Value,
}

impl Notification {
    /// The alerts it carries.
    pub fn alerts(&self) -> &[serde_json::Value] {
        self.body["alerts"].as_array().map_or(&[], Vec::as_slice)
    }
}

/// An HTTP receiver for Alertmanager's webhooks on a free loopback port:
/// answers every POST with 200 and hands its JSON body to the test.
pub struct Webhook {
    pub addr: SocketAddr,
    received: mpsc::Receiver<Notification>,
    /// Everything taken from `received` so far.
    seen: Vec<Notification>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("its address");
        let (tx, received) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                // Relaxed: a request to stop, read after the wake-up connect.
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, &tx));
            }
        });
        Webhook {
            addr,
            received,
            seen: Vec::new(),
            stop,
        }
    }

    /// `http://ADDR` + `path`: the URL to put in a webhook_configs entry.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits up to `limit` for a notification of which `pick` returns
    /// something, and returns it with the notification; every one received
    /// stays in [`Webhook::seen`].
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut pick: impl FnMut(&Notification) -> Option<T>,
    ) -> (Notification, T) {
        let deadline = Instant::now() + limit;
        if let Some(found) = self
            .seen
            .iter()
            .find_map(|n| pick(n).map(|t| (n.clone(), t)))
        {
            return found;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.received.recv_timeout(left) {
                Ok(n) => {
                    self.seen.push(n.clone());
                    if let Some(t) = pick(&n) {
                        return (n, t);
                    }
                }
                Err(_) => panic!(
                    "no notification {what} within {limit:?}; received: {:#?}",
                    self.seen.iter().map(|n| &n.body).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Every notification received so far (after draining what arrived).
    pub fn seen(&mut self) -> &[Notification] {
        while let Ok(n) = self.received.try_recv() {
            self.seen.push(n);
        }
        &self.seen
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // Relaxed: the connect below wakes the accept loop, which reads it.
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads the requests of one connection (Alertmanager keeps it alive),
/// answering each with 200.
fn serve(stream: TcpStream, tx: &mpsc::Sender<Notification>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // A body that is not JSON reaches the test as a string, where its
        // checks fail with it in the message.
        let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        let at = Instant::now();
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        let _ = tx.send(Notification { path, at, body });
    }
}
