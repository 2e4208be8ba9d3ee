//! A fake receiver of pushed metrics, for the failures a real server will
//! not produce on demand: it answers every request with one fixed status,
//! or accepts connections and never answers, and records what it got.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// How the fake answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// This status, with `Retry-After: SECONDS` when given.
    Status(u16, Option<u64>),
    /// Reads the request and never answers (the connection stays open
    /// until the receiver is dropped).
    Hang,
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
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fake receiver on a free loopback port; stops on drop.
pub struct FakeReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl FakeReceiver {
    pub fn start(answer: Answer) -> FakeReceiver {
        FakeReceiver::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), answer)
    }

    /// [`start`](Self::start) on `addr`: a receiver that comes up where a
    /// sender has been failing to connect.
    pub fn start_on(addr: SocketAddr, answer: Answer) -> FakeReceiver {
        let listener = TcpListener::bind(addr).expect("the address is free");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("its address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (log, stopping, holding) = (received.clone(), stop.clone(), held.clone());
        std::thread::spawn(move || {
            // Relaxed: a request to stop soon.
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        if let Some((request, mut stream)) = read_request(stream) {
                            log.lock().push(request);
                            match answer {
                                Answer::Status(status, retry_after) => {
                                    let mut head = format!(
                                        "HTTP/1.1 {status} Fake\r\nContent-Length: 12\r\nConnection: close\r\n"
                                    );
                                    if let Some(seconds) = retry_after {
                                        head.push_str(&format!("Retry-After: {seconds}\r\n"));
                                    }
                                    head.push_str("\r\nfake answer\n");
                                    let _ = stream.write_all(head.as_bytes());
                                }
                                Answer::Hang => holding.lock().push(stream),
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

/// Reads one request: the head, then `Content-Length` bytes of body.
fn read_request(mut stream: TcpStream) -> Option<(Received, TcpStream)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
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
