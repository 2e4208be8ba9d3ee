//! WebSocket test clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A tungstenite client with a read deadline, so a missing message fails
/// the test instead of hanging it.
pub struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) =
            tungstenite::connect(format!("ws://{addr}{path}")).expect("WebSocket handshake");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        Client { ws }
    }

    /// The next text message, parsed.
    pub fn next_json(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a message within 10 s") {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("JSON text");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next message of any kind, or the error that ended the connection.
    pub fn next_raw(&mut self) -> Result<Message, tungstenite::Error> {
        self.ws.read()
    }

    pub fn send_json(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).unwrap();
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .unwrap();
    }

    /// Event messages up to and including the one with `seq == last`.
    pub fn events_through(&mut self, last: u64) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let message = self.next_json();
            let is_event = message["type"].as_str().is_some_and(|t| t.contains(':'));
            let seq = message["seq"].as_u64().unwrap_or(0);
            if is_event {
                events.push(message);
            }
            if seq >= last && is_event {
                return events;
            }
        }
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// A socket upgraded by hand, for clients that misbehave.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client frame with the given opcode and payload.
pub fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Polls `condition` until it holds; fails the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `raw` and returns the response head, without waiting for the
/// connection to close (for `101 Switching Protocols`).
pub fn http_raw_head(addr: SocketAddr, raw: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(raw)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The resident set of this process (the server runs in it), in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples [`rss_bytes`] every few milliseconds on its own thread and
/// keeps the largest value, until dropped or [`RssPeak::stop`]ped.
pub struct RssPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<u64>>,
}

impl RssPeak {
    pub fn start() -> RssPeak {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = rss_bytes();
            // Relaxed: a stop flag.
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(2));
            }
            peak.max(rss_bytes())
        });
        RssPeak {
            stop,
            sampler: Some(sampler),
        }
    }

    /// The largest resident set seen, in bytes.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.take().and_then(|s| s.join().ok()).unwrap_or(0)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One frame from the server, read off a raw socket.
#[derive(Debug)]
pub enum ServerFrame {
    Text(String),
    /// The close code, if the frame had one.
    Close(Option<u16>),
    /// Ping, pong, binary or continuation: opcode only.
    Other(u8),
}

/// Reads the next (unmasked) frame the server sent on a raw socket;
/// `Err` at the end of the connection (EOF, reset or read timeout).
pub fn read_server_frame(stream: &mut TcpStream) -> std::io::Result<ServerFrame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let opcode = head[0] & 0x0f;
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l)?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l)?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
    stream.read_exact(&mut payload)?;
    Ok(match opcode {
        0x1 => ServerFrame::Text(String::from_utf8_lossy(&payload).into_owned()),
        0x8 => ServerFrame::Close(
            (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
        ),
        other => ServerFrame::Other(other),
    })
}

/// `ws_clients_closed_total{reason}` as the server's metrics render it.
pub fn clients_closed(obs: &agentgate_obs::Observability, reason: &str) -> u64 {
    let text = obs.metrics().render_as(Default::default());
    let samples = super::parse_exposition(&text).expect("a valid exposition");
    super::sample_value(
        &samples,
        "agentgate_ws_clients_closed_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0) as u64
}
