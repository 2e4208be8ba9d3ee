//! A fake HTTP receiver for the delivery tests, for the failures a real
//! server will not produce on demand: it answers each request with the
//! next status of a script (the last one again once the script runs out),
//! or accepts connections and never answers, and keeps what it was sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// How the fake answers.
#[derive(Clone, Debug)]
pub enum Script {
    /// Each request gets the next status, the last one over and over; 429s
    /// and 5xx carry `Retry-After: SECONDS` when `retry_after` is set.
    Statuses {
        statuses: Vec<u16>,
        retry_after: Option<u64>,
    },
    /// Reads the request and never answers (the connection stays open
    /// until the receiver is dropped).
    Hang,
    /// Never answers the first request (as [`Script::Hang`]), and answers
    /// every later one with this status.
    HangFirst(u16),
    /// Answers every request with this status and no `Content-Length`,
    /// then keeps the connection open (until the receiver is dropped)
    /// though the sender asked to close it: a `204` has no body, so there
    /// is nothing to wait for.
    AnswerAndHold(u16),
    /// Answers every request with this status and body (an error page
    /// that quotes the request, say).
    Answer { status: u16, body: String },
}

impl Script {
    /// Every request answered with `status`.
    pub fn always(status: u16) -> Script {
        Script::Statuses {
            statuses: vec![status],
            retry_after: None,
        }
    }
}

/// One request the fake got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value (its name matched ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake receiver on a loopback port; stops on drop.
pub struct FakeReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl FakeReceiver {
    pub fn start(script: Script) -> FakeReceiver {
        FakeReceiver::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), script)
    }

    /// [`start`](Self::start) on `addr`: a receiver that comes up where a
    /// sender has been failing to connect.
    pub fn start_on(addr: SocketAddr, script: Script) -> FakeReceiver {
        let listener = TcpListener::bind(addr).expect("the address is free");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("its address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (log, stopping, holding) = (received.clone(), stop.clone(), held.clone());
        std::thread::spawn(move || {
            let mut answered = 0usize;
            // Relaxed: a request to stop soon.
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some((request, mut stream)) = read_request(stream) else {
                    continue;
                };
                log.lock().push(request);
                match &script {
                    Script::Statuses {
                        statuses,
                        retry_after,
                    } => {
                        let status = statuses[answered.min(statuses.len() - 1)];
                        answered += 1;
                        let retry = match retry_after {
                            Some(s) if status == 429 || status >= 500 => {
                                format!("Retry-After: {s}\r\n")
                            }
                            _ => String::new(),
                        };
                        let body = format!("scripted {status}\n");
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} Scripted\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Script::Hang => holding.lock().push(stream),
                    Script::HangFirst(_) if answered == 0 => {
                        answered += 1;
                        holding.lock().push(stream);
                    }
                    Script::HangFirst(status) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Script::Answer { status, body } => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Script::AnswerAndHold(status) => {
                        let _ = write!(stream, "HTTP/1.1 {status} Scripted\r\n\r\n");
                        holding.lock().push(stream);
                    }
                }
            }
        });
        FakeReceiver {
            addr,
            received,
            stop,
            held,
        }
    }

    /// `http://ADDR`, a Pushgateway's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/api/v1/write`, a remote write receiver's URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        // Relaxed: see the accept loop.
        self.stop.store(true, Ordering::Relaxed);
        self.held.lock().clear();
    }
}

/// A remote write URL on a port where nothing listens (bound, then closed).
pub fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/api/v1/write")
}

/// Reads one request: the head, then `Content-Length` bytes of body.
fn read_request(mut stream: TcpStream) -> Option<(Received, TcpStream)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = bytes[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some((
        Received {
            method,
            path,
            headers,
            body,
        },
        stream,
    ))
}
