//! A small blocking HTTP/1.1 client for what the pipeline sends out
//! (pushes to a Pushgateway, Prometheus remote write, OTLP traces): one request per
//! connection, a deadline on everything, bounded answers.
//!
//! It is ours for the same reasons the server is: no async runtime, no
//! TLS stack or connection pool in an engine that sends a few requests a
//! minute, and every byte it may hold bounded. It speaks `http://` only;
//! a receiver behind TLS is reached through a local proxy (see
//! docs/OPERATIONS.md).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};
use std::time::{Duration, Instant};

mod resolve;
mod retry_after;

/// The most of an answer's head (status line and headers) read.
const MAX_HEAD: usize = 16 * 1024;
/// The most of an answer's body kept: receivers' bodies are short error
/// messages, which the logs quote.
const MAX_BODY: usize = 4 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;
/// The longest `Retry-After` taken from a receiver. A larger value (a
/// buggy or hostile receiver's `18446744073709551615`) would stall a
/// sender for good, and overflows the clock when added to `now`.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Where requests go: an `http://host[:port][/path]` URL, checked once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host:port`, to connect to.
    authority: String,
    /// The `Host` header: the URL's host and port as written.
    host_header: String,
    /// The path and query, `/` when the URL has none.
    path: String,
}

/// Why a URL is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not an http:// URL this client can send to: {reason}")]
pub(crate) struct InvalidEndpoint {
    /// The URL as given, but for its user info (see [`without_user_info`]).
    pub(crate) url: String,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

/// `url` with its user info, if any, replaced by `[REDACTED]`: for an
/// error that quotes a URL. User info is refused (a password or a token
/// in it), and the error saying so must not carry the secret along.
pub(crate) fn without_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        // The literal rather than `redact::REDACTED`: this layer is below it.
        Some(at) => format!("{}[REDACTED]{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

impl Endpoint {
    /// Parses `http://host[:port][/path][?query]`. No user info, no
    /// fragment, no `https` (the error says to use a local proxy).
    pub(crate) fn parse(url: &str) -> Result<Endpoint, InvalidEndpoint> {
        let invalid = |reason| InvalidEndpoint {
            url: without_user_info(url),
            reason,
        };
        let rest = if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
            rest
        } else if strip_prefix_ignore_case(url, "https://").is_some() {
            return Err(invalid(
                "https is not supported: send to a local TLS proxy over http",
            ));
        } else {
            return Err(invalid("it must start with http://"));
        };
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid("it contains spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains('#') {
            return Err(invalid("it has a fragment (#)"));
        }
        if authority.contains('@') {
            return Err(invalid(
                "user info in the URL is not supported: give a bearer token",
            ));
        }
        if authority.is_empty() {
            return Err(invalid("it has no host"));
        }
        let has_port = match authority.rsplit_once(':') {
            // An IPv6 literal's colons are inside its brackets.
            Some((host, port)) if !port.contains(']') => {
                if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("its port is not a number"));
                }
                if port.parse::<u16>().is_err() {
                    return Err(invalid("its port is out of range"));
                }
                true
            }
            _ => false,
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Endpoint {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            host_header: authority.to_owned(),
            path,
        })
    }

    /// The path and query of the URL.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The URL again, for messages.
    pub(crate) fn url(&self) -> String {
        format!("http://{}{}", self.host_header, self.path)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// One request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// Path and query; the endpoint's when `None`.
    pub(crate) path: Option<&'a str>,
    /// Extra headers (`Host`, `Content-Length` and `Connection` are set).
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// A receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// `Retry-After`, given in seconds or as a date; at most
    /// [`MAX_RETRY_AFTER`].
    pub(crate) retry_after: Option<Duration>,
    /// The start of an error answer's body (at most 4 KiB, a chunked one
    /// decoded), for messages; empty for a success, whose body is not read.
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The start of the body as text, cut short for a log line.
    pub(crate) fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The host name resolved to no address, or did not resolve.
    #[error("cannot resolve {authority}: {reason}")]
    Resolve { authority: String, reason: String },
    /// Every address refused or timed out.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    /// The deadline passed.
    #[error("no answer from {authority} within the deadline")]
    Timeout { authority: String },
    /// The sender stopped waiting (shutdown began) before an answer came.
    #[error("stopped waiting for {authority}: shutdown began")]
    Stopped { authority: String },
    /// The connection failed while sending or reading.
    #[error("connection to {authority} failed: {source}")]
    Io {
        authority: String,
        source: std::io::Error,
    },
    /// What came back is not an HTTP/1.x answer.
    #[error("{authority} answered something that is not HTTP: {reason}")]
    Malformed {
        authority: String,
        reason: &'static str,
    },
}

impl SendError {
    /// A short reason for a metric label: `connect`, `timeout`, `io`,
    /// `malformed`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SendError::Resolve { .. } | SendError::Connect { .. } => "connect",
            SendError::Timeout { .. } | SendError::Stopped { .. } => "timeout",
            SendError::Io { .. } => "io",
            SendError::Malformed { .. } => "malformed",
        }
    }
}

/// How often a sender that may be stopped looks whether it is, while it
/// waits to connect or for the answer.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Sends `request` to `endpoint` and reads the answer, all before
/// `deadline`. One connection per request (`Connection: close`): senders
/// send a few requests a minute, and no pool means nothing to go stale.
pub(crate) fn send(
    endpoint: &Endpoint,
    request: &Request<'_>,
    deadline: Instant,
) -> Result<Response, SendError> {
    send_inner(endpoint, request, deadline, None)
}

/// [`send`], which also gives up ([`SendError::Stopped`]) within
/// [`STOP_POLL`] of `stop` turning true while it looks up the name,
/// connects, writes or reads the answer: a periodic delivery under a long
/// timeout must not outlast the shorter wait shutdown gives the final one.
///
/// A stop counts only once the send has gone on for [`STOP_POLL`]: one
/// that a healthy receiver answers at once is not cut short, and counted
/// failed, because shutdown began while it was under way.
pub(crate) fn send_unless(
    endpoint: &Endpoint,
    request: &Request<'_>,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Response, SendError> {
    let heeded_from = Instant::now() + STOP_POLL;
    let stop = || Instant::now() >= heeded_from && stop();
    send_inner(endpoint, request, deadline, Some(&stop))
}

/// Whether `stop` says to stop; never without one.
fn stopped(stop: Option<&dyn Fn() -> bool>) -> bool {
    stop.is_some_and(|stop| stop())
}

/// How long one wait may last before `stop` is looked at: all that is
/// `left` without one.
fn slice(left: Duration, stop: Option<&dyn Fn() -> bool>) -> Duration {
    if stop.is_some() {
        left.min(STOP_POLL)
    } else {
        left
    }
}

fn send_inner(
    endpoint: &Endpoint,
    request: &Request<'_>,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<Response, SendError> {
    let authority = || endpoint.authority.clone();
    let io = |source: std::io::Error| {
        if timed_out(&source) {
            SendError::Timeout {
                authority: authority(),
            }
        } else {
            SendError::Io {
                authority: authority(),
                source,
            }
        }
    };
    let mut stream = connect(endpoint, deadline, stop)?;
    let mut head = String::with_capacity(256);
    head.push_str(request.method);
    head.push(' ');
    head.push_str(request.path.unwrap_or(&endpoint.path));
    head.push_str(" HTTP/1.1\r\nHost: ");
    head.push_str(&endpoint.host_header);
    head.push_str("\r\nConnection: close\r\nContent-Length: ");
    head.push_str(itoa::Buffer::new().format(request.body.len()));
    head.push_str("\r\nUser-Agent: agentgate-obs/");
    head.push_str(env!("CARGO_PKG_VERSION"));
    for (name, value) in request.headers {
        head.push_str("\r\n");
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
    }
    head.push_str("\r\n\r\n");
    let exchanged = write_until(&mut stream, head.as_bytes(), deadline, stop)
        .and_then(|()| write_until(&mut stream, request.body, deadline, stop))
        .and_then(|()| read_response(&mut stream, deadline, stop));
    exchanged.map_err(|error| match error {
        Exchange::Stopped => SendError::Stopped {
            authority: authority(),
        },
        Exchange::Io(source) => io(source),
        Exchange::Malformed(reason) => SendError::Malformed {
            authority: authority(),
            reason,
        },
    })
}

fn connect(
    endpoint: &Endpoint,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<TcpStream, SendError> {
    let addrs = resolve::resolve(&endpoint.authority, deadline, stop)?;
    let mut last = None;
    for addr in &addrs {
        match connect_to(*addr, deadline, stop) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(Attempt::Stopped) => {
                return Err(SendError::Stopped {
                    authority: endpoint.authority.clone(),
                });
            }
            Err(Attempt::Failed(e)) => last = Some(e),
        }
    }
    Err(match last {
        Some(source) if source.kind() == std::io::ErrorKind::TimedOut => SendError::Timeout {
            authority: endpoint.authority.clone(),
        },
        Some(source) => SendError::Connect {
            authority: endpoint.authority.clone(),
            source,
        },
        None => SendError::Resolve {
            authority: endpoint.authority.clone(),
            reason: "no address".to_owned(),
        },
    })
}

/// How a connection attempt to one address ended without a connection.
enum Attempt {
    Failed(std::io::Error),
    Stopped,
}

/// Connects to `addr` before `deadline`: a non-blocking connect, looked
/// at in naps of at most 10 ms. One socket throughout, so that a receiver
/// slower to answer than a nap still connects, and `stop` is looked at
/// between naps.
fn connect_to(
    addr: SocketAddr,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<TcpStream, Attempt> {
    let failed = Attempt::Failed;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if under_way(&e) => {
            let mut nap = Duration::from_micros(50);
            loop {
                if let Some(error) = socket.take_error().map_err(failed)? {
                    return Err(failed(error));
                }
                if socket.peer_addr().is_ok() {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(failed(std::io::ErrorKind::TimedOut.into()));
                }
                if stopped(stop) {
                    return Err(Attempt::Stopped);
                }
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(10));
            }
        }
        Err(e) => return Err(failed(e)),
    }
    socket.set_nonblocking(false).map_err(failed)?;
    Ok(socket.into())
}

/// Whether a non-blocking connect's error says it is under way. On Unix
/// that is `EINPROGRESS` alone: Linux's `EAGAIN` from a TCP connect means
/// no local port or route was free, and nothing is under way.
fn under_way(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(libc::EINPROGRESS);
    #[cfg(not(unix))]
    return error.kind() == std::io::ErrorKind::WouldBlock;
}

/// Socket timeouts set to what is left before `deadline` (at least 1 ms:
/// zero means "none" to the socket).
fn set_timeouts(stream: &TcpStream, deadline: Instant) -> std::io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    let left = left.max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

/// How writing a request or reading its answer failed.
enum Exchange {
    /// `stop` turned true before the answer's head came.
    Stopped,
    Io(std::io::Error),
    Malformed(&'static str),
}

impl From<std::io::Error> for Exchange {
    fn from(error: std::io::Error) -> Self {
        Exchange::Io(error)
    }
}

/// Whether an I/O error is a socket timeout running out.
fn timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Writes `bytes` before `deadline`, in waits of at most [`STOP_POLL`]
/// when there is a `stop` to look at between them: a receiver that stops
/// reading holds a large body no longer than the deadline, or the stop.
fn write_until(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<(), Exchange> {
    while !bytes.is_empty() {
        // Looked at before every write, not only after one that timed out:
        // a receiver reading a little every slice never lets one time out.
        if stopped(stop) {
            return Err(Exchange::Stopped);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Exchange::Io(std::io::ErrorKind::TimedOut.into()));
        }
        // Zero means "no timeout" to the socket.
        stream.set_write_timeout(Some(slice(left, stop).max(Duration::from_millis(1))))?;
        match stream.write(bytes) {
            Ok(0) => return Err(Exchange::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if timed_out(&e) => {
                if stopped(stop) {
                    return Err(Exchange::Stopped);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Exchange::Io(e)),
        }
    }
    Ok(())
}

/// Reads the head, then an error's body up to [`MAX_BODY`] (by
/// `Content-Length`, to its last chunk, or to the end of the connection);
/// the rest is not read.
fn read_response(
    stream: &mut impl ReadTimeouts,
    deadline: Instant,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<Response, Exchange> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (status, retry_after, length, chunked, head_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = parsed.code.ok_or(Exchange::Malformed("no status"))?;
                if status < 200 {
                    // 100 Continue and friends: we never ask for them.
                    buf.drain(..head_len);
                    continue;
                }
                let header = |name: &str| {
                    parsed
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let retry_after = header("retry-after")
                    .and_then(|v| retry_after::parse(v, std::time::SystemTime::now()));
                let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
                let chunked = header("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
                break (status, retry_after, length, chunked, head_len);
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(Exchange::Malformed("an invalid status line or header")),
        }
        if buf.len() >= MAX_HEAD {
            return Err(Exchange::Malformed("a head longer than 16 KiB"));
        }
        let n = loop {
            // Before every read, as in `write_until`: a head trickled in a
            // byte a slice never times out.
            if stopped(stop) {
                return Err(Exchange::Stopped);
            }
            let now = Instant::now();
            stream.left(now + slice(deadline.saturating_duration_since(now), stop))?;
            match stream.read(&mut chunk) {
                Err(e) if timed_out(&e) && Instant::now() < deadline => {}
                // A signal handler ends a read with a timeout set even
                // under SA_RESTART (signal(7)).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        if n == 0 {
            return Err(Exchange::Malformed(
                "the connection closed before a whole head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    // Only an error's body is read, for the message quoting it: a success's
    // is of no use (and a `204` has none). Waiting for a body that is not
    // coming from a receiver that keeps the connection open would cost
    // the whole deadline after the answer arrived.
    let want = if (200..300).contains(&status) {
        0
    } else {
        length.unwrap_or(usize::MAX).min(MAX_BODY)
    };
    let mut body = buf.split_off(head_len);
    // The status is in: a stop ends the body where it is.
    while body.len() < want && !(chunked && ends_chunked(&body)) && !stopped(stop) {
        let now = Instant::now();
        if stream
            .left(now + slice(deadline.saturating_duration_since(now), stop))
            .is_err()
        {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => body.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) && Instant::now() < deadline => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(_) | Err(_) => break,
        }
    }
    body.truncate(want);
    if chunked && let Some(decoded) = dechunk(&body) {
        body = decoded;
    }
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// Whether a chunked body has come to its last chunk (`0`, no trailers).
fn ends_chunked(body: &[u8]) -> bool {
    body == b"0\r\n\r\n" || body.ends_with(b"\r\n0\r\n\r\n")
}

/// The content of a chunked body, as far as it is whole; `None` when it is
/// not chunked as it says (the raw bytes are quoted then).
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    while !raw.is_empty() {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..line_end]).ok()?;
        // A chunk extension (`;name=value`) follows the size.
        let size = size.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            break;
        }
        // A body cut at the cap: keep what arrived.
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        raw = raw.get(take + 2..).unwrap_or_default();
    }
    Some(out)
}

/// A stream whose read timeout follows a deadline: a socket, or a
/// scripted answer in the tests.
trait ReadTimeouts: Read {
    fn left(&mut self, deadline: Instant) -> std::io::Result<()>;
}

impl ReadTimeouts for TcpStream {
    fn left(&mut self, deadline: Instant) -> std::io::Result<()> {
        set_timeouts(self, deadline)
    }
}

#[cfg(test)]
mod tests;
