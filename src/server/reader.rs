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
//!
//! Under a flood the pending list is bounded and a full list evicts its
//! oldest connection that has not sent a whole request (so idle
//! connections cannot lock newcomers out); a complete request that finds
//! the workers' queue full stays here until its deadline rather than being
//! refused; `GET`/`HEAD` of `/health` and `/metrics` go to their own queue.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::fds::Capacity;
use super::http::{self, Limits, Parsed, Request, Response};
use super::router::Router;
use super::shed::{ShedCounts, ShedReason};

/// What reaches the reader.
pub(crate) enum Intake {
    /// A freshly accepted connection.
    New(TcpStream),
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

/// The workers' queues: `/health` and `/metrics` (served first, and by a
/// reserved worker), and everything else.
pub(crate) struct Queues {
    pub(crate) priority: Sender<Job>,
    pub(crate) general: Sender<Job>,
}

/// Paths whose complete `GET`/`HEAD` requests take the priority queue:
/// liveness probes and scrapes must answer during floods.
const PRIORITY_PATHS: [&str; 2] = ["/health", "/metrics"];

/// New connections taken from the intake per pass, at most, so that a
/// steady stream of them cannot keep the reader from its pending list.
const INTAKE_PER_PASS: usize = 256;
/// Shortest and longest pause between passes over slow connections: short
/// after progress, doubling while nothing moves, so idle slow clients cost
/// little and a new request waits at most the longest pause.
const PAUSE_MIN: Duration = Duration::from_millis(1);
const PAUSE_MAX: Duration = Duration::from_millis(8);

struct Pending {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    /// Set once the head is complete: the request and where its body ends.
    head: Option<(Request, usize)>,
}

impl Pending {
    /// Whether the whole request (head and body) is in.
    fn complete(&self) -> bool {
        self.head
            .as_ref()
            .is_some_and(|(_, end)| self.buf.len() >= *end)
    }
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
///
/// `capacity.pending` bounds the connections whose request is still
/// arriving (or waiting for a worker): a new connection past it evicts the
/// oldest that has not sent a whole request; only when every one has does
/// the newcomer get 503. Each costs a descriptor and one failed
/// non-blocking read per pass (1,024 reads take about a millisecond here).
/// `capacity.lingering` bounds the answered connections lingering: past
/// it, the next is closed at once.
pub(crate) fn run(
    intake: &Receiver<Intake>,
    jobs: &Queues,
    router: &Router,
    limits: &Limits,
    capacity: Capacity,
    shed: &ShedCounts,
) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut lingering = LingerList {
        items: Vec::new(),
        max: capacity.lingering,
    };
    let mut pause = PAUSE_MIN;
    loop {
        let first = if pending.is_empty() && lingering.items.is_empty() {
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
        let more = std::iter::from_fn(|| intake.try_recv().ok()).take(INTAKE_PER_PASS);
        for message in first.into_iter().chain(more) {
            news = true;
            match message {
                Intake::New(stream) => {
                    let max_pending = capacity.pending;
                    admit(
                        &mut pending,
                        max_pending,
                        &mut lingering,
                        stream,
                        limits,
                        shed,
                    );
                }
                Intake::Linger(stream) => lingering.push(stream),
                // Dropping what is left closes it.
                Intake::Stop => return,
            }
        }
        let mut progressed = false;
        let mut waiting = false;
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            let mut verdict = look_at(&mut pending[i], now, limits, &mut progressed);
            if matches!(verdict, Verdict::Ready)
                && let Some((reason, message)) = pending[i]
                    .head
                    .as_ref()
                    .and_then(|(request, _)| router.refused_early(request))
            {
                shed.count(reason);
                verdict = Verdict::Refuse(503, message);
            }
            let verdict = match verdict {
                Verdict::Ready if queue_for(&pending[i], jobs).is_full() => {
                    if now < pending[i].deadline {
                        // Stay until a worker frees up; look again soon.
                        waiting = true;
                        i += 1;
                        continue;
                    }
                    shed.count(ShedReason::WorkersBusy);
                    Verdict::Refuse(503, "the server is busy; retry shortly")
                }
                Verdict::Refuse(408, message) => {
                    shed.count(ShedReason::RequestTimeout);
                    Verdict::Refuse(408, message)
                }
                Verdict::Wait => {
                    i += 1;
                    continue;
                }
                verdict => verdict,
            };
            let p = pending.swap_remove(i);
            finish(p, verdict, jobs, &mut lingering);
        }
        lingering
            .items
            .retain_mut(|l| keep_lingering(l, now, &mut progressed));
        pause = if news || progressed || waiting {
            PAUSE_MIN
        } else {
            (pause * 2).min(PAUSE_MAX)
        };
    }
}

/// The queue a complete request goes to.
fn queue_for<'q>(p: &Pending, queues: &'q Queues) -> &'q Sender<Job> {
    let priority = p.head.as_ref().is_some_and(|(request, _)| {
        matches!(request.method.as_str(), "GET" | "HEAD")
            && PRIORITY_PATHS.contains(&request.path.as_str())
    });
    // A full priority queue overflows into the general one.
    if priority && !queues.priority.is_full() {
        &queues.priority
    } else {
        &queues.general
    }
}

fn admit(
    pending: &mut Vec<Pending>,
    max_pending: usize,
    lingering: &mut LingerList,
    stream: TcpStream,
    limits: &Limits,
    shed: &ShedCounts,
) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    if pending.len() >= max_pending {
        // The oldest connection without a whole request (head and body)
        // makes room: idle and trickling connections cannot lock newcomers
        // (a health probe) out, they can only push each other out.
        let oldest = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.complete())
            .min_by_key(|(_, p)| p.deadline)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                shed.count(ShedReason::IdleEvicted);
                // What it sent was read on the last pass: close at once rather
                // than linger, so evictions do not fill the lingering list.
                let mut evicted = pending.swap_remove(i).stream;
                let _ = Response::error(503, "evicted to make room for newer connections")
                    .with_header("Retry-After", "1")
                    .write_to(&mut evicted, false);
            }
            None => {
                // Every pending connection has a whole request waiting for a worker.
                shed.count(ShedReason::PendingFull);
                refuse(stream, 503, "the server is busy; retry shortly", lingering);
                return;
            }
        }
    }
    pending.push(Pending {
        stream,
        buf: Vec::new(),
        deadline: Instant::now() + limits.request_timeout,
        head: None,
    });
}

/// Answered connections reading away what their client still sends, at
/// most `max`.
struct LingerList {
    items: Vec<Lingering>,
    max: usize,
}

impl LingerList {
    /// Lingers `stream`, or closes it at once when the list is full.
    fn push(&mut self, stream: TcpStream) {
        if self.items.len() >= self.max || stream.set_nonblocking(true).is_err() {
            return;
        }
        self.items.push(Lingering {
            stream,
            deadline: Instant::now() + http::LINGER_TIME,
            read: 0,
        });
    }
}

/// Acts on a verdict about a connection just taken off the pending list.
fn finish(p: Pending, verdict: Verdict, jobs: &Queues, lingering: &mut LingerList) {
    let queue = queue_for(&p, jobs);
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
            // Only this thread sends, and the caller saw room in the queue.
            match queue.try_send(job) {
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
    refuse(stream, status, message, lingering);
}

/// Answers a non-blocking connection with an error and lingers before
/// closing. A short answer fits a socket buffer; a client that does not
/// even take that gets the close as its answer.
fn refuse(mut stream: TcpStream, status: u16, message: &str, lingering: &mut LingerList) {
    let mut response = Response::error(status, message);
    if status == 503 {
        response = response.with_header("Retry-After", "1");
    }
    let _ = response.write_to(&mut stream, false);
    let _ = stream.shutdown(Shutdown::Write);
    // As a worker does: nothing unread, so closing sends FIN and the answer
    // arrives whole. Lingering only when needed keeps a flood of refusals
    // from filling the list that every pass reads.
    if more_is_buffered(&stream) {
        lingering.push(stream);
    }
}

/// Whether the client has sent bytes we have not read (like nginx, we only
/// linger on close when more input is there).
pub(super) fn more_is_buffered(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    // Ok(0) is the client's FIN: nothing more is coming.
    matches!(stream.peek(&mut byte), Ok(n) if n > 0)
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
        match http::parse_request(&p.buf, limits) {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Complete {
                request,
                head_len,
                body_len,
            }) => p.head = Some((request, head_len + body_len)),
            Err((status, message)) => return Verdict::Refuse(status, message),
        }
    }
    if p.complete() {
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
