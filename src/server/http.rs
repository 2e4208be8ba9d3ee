//! HTTP/1.1 on a blocking socket: reading one request head within size and
//! time limits, writing one response, closing.
//!
//! Every connection carries one request (`Connection: close`), so an idle
//! client never holds a worker; Prometheus and browsers reconnect cheaply
//! on loopback.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Limits on what a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Request line plus headers, in bytes.
    pub(crate) max_head: usize,
    /// Headers per request.
    pub(crate) max_headers: usize,
    /// Body bytes read and discarded (no route takes a body).
    pub(crate) max_body: usize,
    /// Time to receive the whole request.
    pub(crate) request_timeout: Duration,
    /// Time to send the whole response.
    pub(crate) write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            // A slow client holds a worker at most this long.
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path without the query string, as sent (not decoded).
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// Header names lowercased; values as text (invalid UTF-8 replaced).
    pub(crate) headers: Vec<(String, String)>,
    #[allow(dead_code)] // For upgrade handlers (origin checks, logs).
    pub(crate) peer: SocketAddr,
}

impl Request {
    /// The first value of a header (name in lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, percent-decoded.
    pub(crate) fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response, written with `Content-Length` and `Connection: close`.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body.
    pub(crate) fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status, "application/json", body),
            Err(e) => Response::error(500, &format!("could not serialize the response: {e}")),
        }
    }

    /// A JSON error body: `{"error": reason, "message": …}`.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({"error": reason(status), "message": message});
        Response::new(status, "application/json", body.to_string())
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response; `head_only` for `HEAD` requests.
    pub(crate) fn write_to(&self, stream: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            // Values are ours, but a newline would split the response.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            head.push_str(name);
            head.push_str(": ");
            head.push_str(&value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if !head_only {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Answer with this status and message, then close.
    Reject(u16, &'static str),
    /// The client went away or sent nothing: close without answering.
    Gone,
}

/// Reads one request head within `limits`; returns it with any bytes read
/// past the head (the start of a body, or of an upgraded protocol).
pub(crate) fn read_request(
    stream: &mut TcpStream,
    peer: SocketAddr,
    limits: &Limits,
) -> Result<(Request, Vec<u8>), ReadError> {
    let deadline = Instant::now() + limits.request_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ReadError::Reject(
                408,
                "the request took too long to arrive",
            ));
        }
        // A zero timeout would mean "block forever"; `remaining` is non-zero here.
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|_| ReadError::Gone)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Gone),
            Ok(0) => return Err(ReadError::Reject(400, "the request ended early")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Reject(
                    408,
                    "the request took too long to arrive",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Gone),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let request = Request {
                    method: parsed.method.unwrap_or("").to_owned(),
                    path: String::new(),
                    query: None,
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    peer,
                };
                let target = parsed.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.to_owned(), None),
                };
                let leftover = buf.split_off(len);
                return Ok((
                    Request {
                        path,
                        query,
                        ..request
                    },
                    leftover,
                ));
            }
            Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
                return Err(ReadError::Reject(431, "the request head is too large"));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Reject(431, "too many request headers"));
            }
            Err(_) => return Err(ReadError::Reject(400, "malformed request")),
        }
    }
}

/// Checks the request's body against the limits and reads it away, so the
/// client can read our answer (closing with unread input resets the
/// connection and may destroy the response in flight).
pub(crate) fn discard_body(
    stream: &mut TcpStream,
    request: &Request,
    already: usize,
    limits: &Limits,
) -> Result<(), ReadError> {
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Reject(
            411,
            "chunked request bodies are not accepted",
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Reject(400, "invalid Content-Length"))?,
    };
    if length > limits.max_body {
        return Err(ReadError::Reject(413, "the request body is too large"));
    }
    let mut left = length.saturating_sub(already);
    let mut sink = [0u8; 4096];
    while left > 0 {
        let want = left.min(sink.len());
        match stream.read(&mut sink[..want]) {
            Ok(0) => return Err(ReadError::Gone),
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Reject(408, "the request body took too long")),
        }
    }
    Ok(())
}

/// Most bytes read away after an early answer before closing anyway.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Longest time spent reading them.
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Ends the connection after a response: no more writes, then read away
/// what the client is still sending (bounded), then close.
pub(crate) fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; 8192];
    let mut total = 0;
    while total < LINGER_BYTES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let request = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            query: Some("a=1&token=s%3Dcr%2Bt&x".into()),
            headers: Vec::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        assert_eq!(request.query_param("token").as_deref(), Some("s=cr+t"));
        assert_eq!(request.query_param("x").as_deref(), Some(""));
        assert_eq!(request.query_param("b"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
