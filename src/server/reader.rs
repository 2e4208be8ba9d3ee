//! The request reader: one thread that owns every connection until its
//! whole request (head and body) has arrived, and every answered connection
//! while it lingers before closing, reading them all without blocking.
//!
//! Why: a worker reading a request with blocking reads is held for the whole
//! request timeout by a client that sends one byte at a time (slowloris);
//! as many such clients as there are workers would stop the server. Here a
//! slow client costs a slot in a list and one failed non-blocking read per
//! pass; the workers only ever see complete requests. No async runtime:
//! the thread sleeps on its intake channel, and while slow connections are
//! pending it looks at them again every few milliseconds.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::http::{self, Limits, Parsed, Request, Response};

/// What reaches the reader.
pub(crate) enum Intake {
    /// A freshly accepted connection.
    New(TcpStream, SocketAddr),
    /// An answered connection, its write side shut: read away what the
    /// client still sends (so our answer is not destroyed by a reset), then close.
    Linger(TcpStream),
    /// The server is stopping.
    Stop,
}

/// A complete request for a worker.
pub(crate) struct Job {
    pub(crate) stream: TcpStream,
    pub(crate) request: Request,
    /// Bytes received after the request (the start of an upgraded protocol).
    pub(crate) leftover: Vec<u8>,
}

/// Connections whose request is still arriving, at most; the next gets 503.
const MAX_PENDING: usize = 512;
/// Answered connections lingering, at most; the next is closed at once.
const MAX_LINGERING: usize = 1024;
/// Shortest and longest pause between passes over slow connections: short
/// after progress, doubling while nothing moves, so idle slow clients cost
/// little and a new request waits at most the longest pause.
const PAUSE_MIN: Duration = Duration::from_millis(1);
const PAUSE_MAX: Duration = Duration::from_millis(8);

struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    deadline: Instant,
    /// Set once the head is complete: the request and where its body ends.
    head: Option<(Request, usize)>,
}

struct Lingering {
    stream: TcpStream,
    deadline: Instant,
    read: usize,
}

/// What one look at a pending connection decided.
enum Verdict {
    /// Keep waiting for more bytes.
    Wait,
    /// The client went away: close without answering.
    Gone,
    /// The whole request is in: hand it to a worker.
    Ready,
    /// Answer with this status and message, then close.
    Refuse(u16, &'static str),
}

/// The thread's body: runs until [`Intake::Stop`] or until every sender is gone.
pub(crate) fn run(intake: &Receiver<Intake>, jobs: &Sender<Job>, limits: &Limits) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut lingering: Vec<Lingering> = Vec::new();
    let mut pause = PAUSE_MIN;
    loop {
        let first = if pending.is_empty() && lingering.is_empty() {
            match intake.recv() {
                Ok(message) => Some(message),
                Err(_) => return,
            }
        } else {
            match intake.recv_timeout(pause) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut news = false;
        for message in first
            .into_iter()
            .chain(std::iter::from_fn(|| intake.try_recv().ok()))
        {
            news = true;
            match message {
                Intake::New(stream, peer) => admit(&mut pending, stream, peer, limits),
                Intake::Linger(stream) => linger(&mut lingering, stream),
                // Dropping what is left closes it.
                Intake::Stop => return,
            }
        }
        let mut progressed = false;
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            match look_at(&mut pending[i], now, limits, &mut progressed) {
                Verdict::Wait => i += 1,
                verdict => {
                    let p = pending.swap_remove(i);
                    finish(p, verdict, jobs, &mut lingering);
                }
            }
        }
        lingering.retain_mut(|l| keep_lingering(l, now, &mut progressed));
        pause = if news || progressed {
            PAUSE_MIN
        } else {
            (pause * 2).min(PAUSE_MAX)
        };
    }
}

fn admit(pending: &mut Vec<Pending>, stream: TcpStream, peer: SocketAddr, limits: &Limits) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    if pending.len() >= MAX_PENDING {
        // The answer fits a fresh socket's buffer; if not, closing is the answer.
        let mut stream = stream;
        let _ = Response::error(503, "the server is busy; retry shortly")
            .with_header("Retry-After", "1")
            .write_to(&mut stream, false);
        return;
    }
    pending.push(Pending {
        stream,
        peer,
        buf: Vec::new(),
        deadline: Instant::now() + limits.request_timeout,
        head: None,
    });
}

fn linger(lingering: &mut Vec<Lingering>, stream: TcpStream) {
    if lingering.len() >= MAX_LINGERING || stream.set_nonblocking(true).is_err() {
        return;
    }
    lingering.push(Lingering {
        stream,
        deadline: Instant::now() + http::LINGER_TIME,
        read: 0,
    });
}

/// Acts on a verdict about a connection just taken off the pending list.
fn finish(p: Pending, verdict: Verdict, jobs: &Sender<Job>, lingering: &mut Vec<Lingering>) {
    let Pending {
        mut stream,
        mut buf,
        head,
        ..
    } = p;
    let (status, message) = match (verdict, head) {
        (Verdict::Ready, Some((request, end))) => {
            if stream.set_nonblocking(false).is_err() {
                return;
            }
            let job = Job {
                stream,
                request,
                leftover: buf.split_off(end),
            };
            match jobs.try_send(job) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(job)) => {
                    stream = job.stream;
                    if stream.set_nonblocking(true).is_err() {
                        return;
                    }
                    (503, "the server is busy; retry shortly")
                }
            }
        }
        (Verdict::Refuse(status, message), _) => (status, message),
        _ => return,
    };
    // Non-blocking: a short answer fits a socket buffer; a client that does
    // not even take that gets the close as its answer.
    let _ = Response::error(status, message).write_to(&mut stream, false);
    let _ = stream.shutdown(Shutdown::Write);
    linger(lingering, stream);
}

/// Reads what a pending connection has sent and judges it.
fn look_at(p: &mut Pending, now: Instant, limits: &Limits, progressed: &mut bool) -> Verdict {
    // Enough for the largest head and body allowed, plus one read of what
    // may follow (the first frames of an upgraded protocol).
    let cap = limits.max_head + limits.max_body + CHUNK;
    let Ok((got, ended)) = read_available(&mut p.stream, &mut p.buf, cap) else {
        return Verdict::Gone;
    };
    *progressed |= got > 0;
    if got > 0 && p.head.is_none() {
        match http::parse_request(&p.buf, p.peer, limits) {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Complete {
                request,
                head_len,
                body_len,
            }) => p.head = Some((request, head_len + body_len)),
            Err((status, message)) => return Verdict::Refuse(status, message),
        }
    }
    if p.head.as_ref().is_some_and(|(_, end)| p.buf.len() >= *end) {
        return Verdict::Ready;
    }
    if ended {
        return if p.buf.is_empty() {
            Verdict::Gone
        } else {
            Verdict::Refuse(400, "the request ended early")
        };
    }
    if now >= p.deadline {
        return Verdict::Refuse(408, "the request took too long to arrive");
    }
    Verdict::Wait
}

const CHUNK: usize = 4096;

/// Reads whatever has arrived, up to `cap` bytes in `buf`. Returns the
/// bytes read and whether the client closed its side.
fn read_available(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(usize, bool)> {
    let mut chunk = [0u8; CHUNK];
    let mut total = 0;
    while buf.len() < cap {
        let want = CHUNK.min(cap - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((total, false))
}

/// Reads away what a lingering client sends; false once it is done.
fn keep_lingering(l: &mut Lingering, now: Instant, progressed: &mut bool) -> bool {
    let mut sink = [0u8; 8192];
    loop {
        if now >= l.deadline || l.read >= http::LINGER_BYTES {
            return false;
        }
        match l.stream.read(&mut sink) {
            Ok(0) => return false,
            Ok(n) => {
                l.read += n;
                *progressed = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
