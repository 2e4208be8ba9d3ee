//! A fake HTTP receiver for the delivery tests: it answers each request
//! with the next status of a script (the last one again once the script
//! runs out), or never answers at all, and keeps what it was sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// How the fake answers.
#[derive(Clone, Debug)]
pub enum Script {
    /// Each request gets the next status (with `Retry-After: 0` on 429s
    /// when `retry_after` is set), the last one over and over.
    Statuses {
        statuses: Vec<u16>,
        retry_after: Option<u64>,
    },
    /// Reads the request and never answers (the connection stays open
    /// until the client gives up).
    Hang,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value (name matched ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A running fake receiver on a free loopback port; its thread ends with
/// the test process.
pub struct FakeReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeReceiver {
    pub fn start(script: Script) -> FakeReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                seen.lock().push(request);
                match &script {
                    Script::Statuses {
                        statuses,
                        retry_after,
                    } => {
                        let status = statuses[i.min(statuses.len() - 1)];
                        let retry = match retry_after {
                            Some(s) if status == 429 || status >= 500 => {
                                format!("Retry-After: {s}\r\n")
                            }
                            _ => String::new(),
                        };
                        let body = format!("scripted {status}");
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} Scripted\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    // Kept open, never answered.
                    Script::Hang => held.push(stream),
                }
            }
        });
        FakeReceiver { addr, received }
    }

    /// `http://ADDR/api/v1/write`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

/// A port on which nothing listens (bound, then closed).
pub fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/api/v1/write")
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length").then(|| v.trim())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            let body = data[end + 4..end + 4 + length].to_vec();
            return Some(Received { head, body });
        }
    }
}
