//! One WebSocket client: a thread that owns the socket, in non-blocking
//! mode, and alternates between sending what the hub has published,
//! reading the client's messages and keeping the connection alive.
//!
//! An idle thread sleeps on its doorbell (rung by a publish) or for at
//! most [`POLL`], so the first event after a quiet spell goes out as soon
//! as it is published; while events flow it makes one pass every
//! [`coalesce`] interval, each pass carrying everything published since the last.
//! Client messages are answered within a poll interval.
//!
//! The server lives in the engine's process, so what one client can make
//! it hold is bounded (docs/SECURITY.md, "Bounds"):
//!
//! - A client's queued bytes are what is left of its `hello` plus its
//!   output buffer. Events go into the output buffer only while the
//!   queued bytes are fewer than [`EVENT_ROOM`], so none wait behind a
//!   `hello` not yet written, and not at all while the socket refuses
//!   data. A client whose socket stops taking data is not read from the
//!   hub any further (it will be told `lagged` if it recovers) and is
//!   closed once it has been stuck for [`ClientLimits::stall`] (reason
//!   `stalled`).
//! - The `hello` is never copied into the output buffer: the client
//!   writes its own header and then the shared snapshot straight to the
//!   socket, and lets go of the snapshot once it is written (see
//!   [`super::hello`], which bounds the snapshots alive).
//! - Our own messages (replies, pings) count against a budget of
//!   [`REPLY_BUDGET`] bytes until the buffer has gone out in full; a client
//!   that makes us queue more is closed with 1008 (reason `budget`).
//!   `lagged` is not counted (the events bound it). So a client's output
//!   buffer holds at most [`EVENT_ROOM`] plus one event, plus
//!   [`REPLY_BUDGET`], beside some 100 bytes of `hello` header and its
//!   share of a snapshot.
//!   tungstenite holds at most [`super::TUNGSTENITE_WRITE_BUFFER`] bytes of
//!   its own (pongs, the close frame).
//! - Reading yields after [`READ_BATCH`] messages or [`READ_BYTES`] bytes
//!   to writing and to the checks. Every message (pings and pongs too)
//!   takes a token from a bucket of [`RATE_BURST`] refilled at
//!   [`RATE_PER_SECOND`]; a message's token covers
//!   [`RATE_BYTES_PER_TOKEN`] bytes, and every such share read beyond that
//!   takes one more. A client that finds the bucket empty is answered once
//!   with `RATE_LIMITED` and closed with 1008 (reason `rate`).
//! - The server pings every [`ClientLimits::ping_every`]. Only a frame from
//!   the client (a pong, or any message) answers; writing to its socket
//!   does not. A client that has not answered the oldest outstanding ping
//!   within [`ClientLimits::dead_after`] is closed with 1008 (reason
//!   `pong_timeout`). The clock stops while the socket refuses data and
//!   runs from the last refusal: our ping may still be waiting behind the
//!   events the client has not read, and a client that is behind is the
//!   stall timeout's to judge. So a silent socket is closed
//!   `ping_every + dead_after` after it was last heard from (60 s with the
//!   defaults), or after the stall timeout if events fill its socket first.
//!   Until the socket refuses data the kernel takes what we write (on
//!   loopback, tens of megabytes): a live client must read what is ahead
//!   of a ping within `dead_after` of the ping, or of the last refusal.
//!
//! The socket is read even while our frames wait for it: tungstenite's
//! pongs then wait in its own buffer behind a closed [`Gate`], since they
//! must not land inside one of our frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message, WebSocket};

use super::frame;
use super::hello::Hello;
use super::hub::{Batch, Membership};
use super::protocol::{self, Filter, Reply};
use crate::metrics::WsCloseReason;

/// How long the thread sleeps when nothing happens.
const POLL: Duration = Duration::from_millis(20);
/// How often a client's messages are read while events flow or its socket
/// is stuck (when idle, every wake-up reads them).
const READ_EVERY: Duration = Duration::from_millis(5);
/// Messages sent per pass before looking at the socket again.
const PASS: usize = 2048;
/// Bytes in the output buffer past which a pass puts no more events in
/// it: bounds what a client's buffer holds beside its replies (one event
/// may overshoot it).
pub(crate) const EVENT_ROOM: usize = 256 * 1024;
/// Bytes of our own messages (replies, pings) a client may have waiting
/// in its output buffer. A reply is at most about 1.1 KiB (an `error`, or
/// a `subscribed` naming a 1 KiB id), so this is some 60 replies the
/// client has not taken: far more than a client that reads ever has.
pub(crate) const REPLY_BUDGET: usize = 64 * 1024;
/// Messages read per pass before writing and checking the budget again.
pub(crate) const READ_BATCH: usize = 32;
/// Bytes read per pass at most (two messages of the largest size allowed
/// by default, or thousands of small ones).
pub(crate) const READ_BYTES: usize = 128 * 1024;
/// Messages a client may send at once. The dashboard and `watch` send
/// none but pongs; a script subscribing to a page of runs fits.
pub(crate) const RATE_BURST: f64 = 64.0;
/// Messages a client may send per second, sustained: far above any use of
/// the protocol, far below what a flood sends.
pub(crate) const RATE_PER_SECOND: f64 = 32.0;
/// Bytes read that cost one token. A message's token covers this much of
/// it; bytes past that (or in frames that complete no message) cost more:
/// at most 512 KiB a second sustained, whatever the frames.
pub(crate) const RATE_BYTES_PER_TOKEN: f64 = 16.0 * 1024.0;
/// The output buffer's allocation is given back past this size (after a
/// burst of large events, say) once it has gone out.
const OUT_KEEP: usize = 2 * EVENT_ROOM;
/// The time between two delivery passes while events flow. Publishes come
/// in batches as small as one event; waking every client for each would
/// cost more CPU than the drain thread itself. Waiting lets a pass carry
/// everything published meanwhile, at the price of that much latency (an
/// event after a quiet spell goes out at once). The wait grows with the
/// number of clients, so that all of them together wake at most about
/// 1 / [`PASS_SPACING`] times a second: one dashboard gets its events within
/// [`COALESCE_MIN`], and a hundred do not saturate the engine's cores with
/// wake-ups (measured at 100 clients and 10,000 events/s on this 2-core
/// machine: p99 emit → receipt had a median of 11.5 ms over 11 runs with a
/// fixed 2 ms, 6.2 ms over 13 runs with the 3 ms this gives).
fn coalesce(clients: usize) -> Duration {
    (PASS_SPACING * clients.min(1_000) as u32).clamp(COALESCE_MIN, COALESCE_MAX)
}
/// The pass interval of a lone client.
const COALESCE_MIN: Duration = Duration::from_millis(1);
/// The pass interval however many clients there are.
const COALESCE_MAX: Duration = Duration::from_millis(4);
/// The time between two passes of any client, on average, while all flow.
const PASS_SPACING: Duration = Duration::from_micros(30);
/// How long a closing connection spends sending what is left; shorter than
/// the time shutdown waits for clients to leave.
const GOODBYE: Duration = Duration::from_millis(1_500);

/// Time limits of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    /// How often the server pings.
    pub(crate) ping_every: Duration,
    /// How long the client has to answer a ping (with a pong or any other
    /// frame), not counting time its socket refused data.
    pub(crate) dead_after: Duration,
    /// How long a client may refuse data before it is closed.
    pub(crate) stall: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            ping_every: Duration::from_secs(15),
            dead_after: Duration::from_secs(45),
            stall: Duration::from_secs(10),
        }
    }
}

/// Where a client starts reading.
pub(crate) struct Start {
    /// The `hello` to send first.
    pub(crate) hello: Hello,
    /// The first seq it wants.
    pub(crate) cursor: u64,
}

/// The socket as tungstenite sees it: reads pass through; writes only
/// while the client thread opens the gate, which it does only when none of
/// our frames is half sent. Two writers share the socket: tungstenite, for
/// the pongs and close frames it sends on its own (also from inside
/// `read`), and our output buffer.
///
/// It also bounds what one pass reads: tungstenite reads on, inside one
/// `read`, through frames that complete no message (fragments, control
/// frames), so a message count alone would not make reading yield.
pub(crate) struct Gate {
    stream: TcpStream,
    open: bool,
    /// Bytes that may still be read before reads report `WouldBlock`.
    allowance: usize,
}

impl Gate {
    pub(crate) fn new(stream: TcpStream) -> Gate {
        Gate {
            stream,
            open: false,
            allowance: usize::MAX,
        }
    }
}

impl Read for Gate {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.allowance == 0 {
            // tungstenite keeps a partial frame and goes on at the next read.
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let len = buf.len().min(self.allowance);
        let read = self.stream.read(&mut buf[..len])?;
        self.allowance -= read;
        Ok(read)
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.open {
            self.stream.write(buf)
        } else {
            // tungstenite keeps the frame and tries again at its next flush.
            Err(std::io::ErrorKind::WouldBlock.into())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// The message rate limit: a token bucket.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: RATE_BURST,
            last: now,
        }
    }

    /// Takes `cost` tokens; `false` when there are not that many.
    fn spend(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Why the loop ended.
enum End {
    /// The peer reset or went away.
    Gone,
    /// The peer sent a close frame (tungstenite answers it).
    PeerClosed,
    /// We close with this code.
    Close(CloseCode, &'static str),
}

struct Client {
    ws: WebSocket<Gate>,
    membership: Membership,
    filter: Filter,
    cursor: u64,
    /// The batches of the current pass (kept to reuse the allocation).
    batches: Vec<Batch>,
    /// The `hello`, until it is all written: before `out`.
    hello: Option<Hello>,
    /// Frames for the socket, written from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// Bytes of our own messages put in `out` since it was last empty.
    own_queued: usize,
    rate: TokenBucket,
    last_read: Instant,
    /// Whether the last pass sent events (passes then come every [`coalesce`] interval).
    flowing: bool,
    /// Events skipped (ring overrun) not yet reported to the client.
    missed: u64,
    /// Since when the socket refused to take more data.
    stuck_since: Option<Instant>,
    /// When the socket last refused data.
    last_refused: Option<Instant>,
    /// When the oldest ping not answered yet was queued.
    unanswered_since: Option<Instant>,
    last_ping: Instant,
    limits: ClientLimits,
}

/// Serves one upgraded connection until it ends. Runs on its own thread.
pub(crate) fn serve(
    ws: WebSocket<Gate>,
    membership: Membership,
    start: Start,
    limits: ClientLimits,
) {
    if ws.get_ref().stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut client = Client::new(ws, membership, start, limits);
    match client.run() {
        End::Close(code, reason) => client.say_goodbye(code, reason),
        End::PeerClosed => {
            // tungstenite's answer to the close frame, if it can go out
            // whole; never after half a frame of ours.
            if !client.inside_frame() {
                let _ = client.flush_tungstenite();
            }
        }
        End::Gone => {}
    }
}

impl Client {
    fn new(
        ws: WebSocket<Gate>,
        membership: Membership,
        start: Start,
        limits: ClientLimits,
    ) -> Client {
        let now = Instant::now();
        Client {
            ws,
            membership,
            filter: Filter::default(),
            cursor: start.cursor,
            batches: Vec::new(),
            hello: Some(start.hello),
            out: Vec::new(),
            out_sent: 0,
            own_queued: 0,
            rate: TokenBucket::full(now),
            last_read: now,
            flowing: false,
            missed: 0,
            stuck_since: None,
            last_refused: None,
            unanswered_since: None,
            last_ping: now,
            limits,
        }
    }

    fn run(&mut self) -> End {
        loop {
            if self.membership.hub().is_closing() {
                // What was published before shutdown goes out first, as far
                // as the client takes it within the goodbye time.
                return match self.deliver_remaining() {
                    Ok(()) => End::Close(CloseCode::Away, "server shutting down"),
                    Err(end) => end,
                };
            }
            if let Err(end) = self.flush() {
                return end;
            }
            // While events flow or the socket is stuck, passes come every
            // coalesce interval, and reading on each would cost a system call per
            // pass for messages that come seldom. Reading does not wait for
            // our frames to go out: a client that is always a little behind
            // must still be heard.
            let mut behind = false;
            let busy = self.flowing || self.stuck_since.is_some();
            if !busy || self.last_read.elapsed() >= READ_EVERY {
                match self.read_client() {
                    Ok(more) => behind = more,
                    Err(end) => return end,
                }
            }
            let cursor = self.cursor;
            if self.stuck_since.is_none() {
                match self.deliver_published() {
                    Ok(more) => behind |= more,
                    Err(end) => return end,
                }
            }
            self.flowing = self.cursor > cursor;
            if let Err(end) = self.keep_alive() {
                return end;
            }
            if behind {
                continue;
            }
            if self.flowing || self.stuck_since.is_some() {
                // Events are flowing: the next pass, one coalesce interval from now,
                // carries everything published meanwhile. One timer wake-up
                // per pass; publishes do not ring a client not asleep on its
                // doorbell, but `close` does, and its token is taken here.
                // A stuck socket is retried at the same pace, not at every
                // publish.
                std::thread::sleep(coalesce(self.membership.hub().client_count()));
                self.membership.clear_doorbell();
            } else {
                // Idle: the first event after a quiet spell goes out at once.
                self.membership.wait(self.cursor, POLL);
            }
        }
    }

    /// Sends what the hub has published after our cursor, at most
    /// [`PASS`] messages and until the output buffer holds [`EVENT_ROOM`]
    /// bytes; returns whether more is waiting.
    fn deliver_published(&mut self) -> Result<bool, End> {
        let mut batches = std::mem::take(&mut self.batches);
        let result = self.send_batches(&mut batches);
        // Released now, not at the next pass: the ring may have dropped them.
        batches.clear();
        self.batches = batches;
        result
    }

    fn send_batches(&mut self, batches: &mut Vec<Batch>) -> Result<bool, End> {
        let hub = self.membership.hub();
        let missed = hub.read_from(self.cursor, batches);
        if missed > 0 {
            self.missed += missed;
            self.cursor += missed;
            // Relaxed: a count for reporting.
            hub.lagged_messages
                .fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
        }
        let mut sent = 0;
        for batch in batches.iter() {
            for entry in batch.iter() {
                if entry.seq < self.cursor {
                    continue;
                }
                if self.pending() >= EVENT_ROOM {
                    // Look at the socket (and the client) before more.
                    return self.flush().map(|()| true);
                }
                self.cursor = entry.seq + 1;
                if !self.filter.matches(&entry.event) {
                    continue;
                }
                if self.missed > 0 {
                    let notice = protocol::lagged(entry.seq.saturating_sub(1), self.missed);
                    self.missed = 0;
                    self.queue(&notice);
                }
                self.out.extend_from_slice(entry.frame());
                sent += 1;
                if sent >= PASS {
                    return self.flush().map(|()| true);
                }
            }
        }
        self.flush().map(|()| false)
    }

    /// Sends everything published so far, pass after pass (one pass sends
    /// at most [`PASS`] messages), until the client has it all, stops
    /// taking data, or [`GOODBYE`] runs out.
    fn deliver_remaining(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + GOODBYE;
        loop {
            // While stuck, `out` is not refilled: it would grow to the ring.
            if self.stuck_since.is_none() {
                self.deliver_published()?;
            } else {
                self.flush()?;
            }
            let caught_up = self.cursor > self.membership.hub().published();
            if caught_up && self.stuck_since.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            if self.stuck_since.is_some() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The client's queued bytes: what is left of `hello`, and of `out`.
    fn pending(&self) -> usize {
        self.hello.as_ref().map_or(0, Hello::remaining) + self.out.len() - self.out_sent
    }

    /// Whether the socket is inside one of our frames (half written).
    fn inside_frame(&self) -> bool {
        self.hello.as_ref().is_some_and(Hello::started) || self.out_sent > 0
    }

    /// Queues a text message that the budget does not count: `lagged`
    /// (bounded by the events), the one `RATE_LIMITED`.
    fn queue(&mut self, text: &str) {
        frame::push_text(&mut self.out, text);
    }

    /// Queues a message of our own that the client made us send (a reply,
    /// a ping), within [`REPLY_BUDGET`].
    fn queue_own(&mut self, text: Option<&str>) -> Result<(), End> {
        let before = self.out.len();
        match text {
            Some(text) => frame::push_text(&mut self.out, text),
            None => frame::push_ping(&mut self.out),
        }
        self.own_queued += self.out.len() - before;
        if self.own_queued > REPLY_BUDGET {
            self.out.truncate(before);
            self.membership.hub().client_closed(WsCloseReason::Budget);
            return Err(End::Close(
                CloseCode::Policy,
                "replies not read: over the budget",
            ));
        }
        Ok(())
    }

    /// Pushes queued frames to the socket; notes when it refuses.
    fn flush(&mut self) -> Result<(), End> {
        match self.write_pending() {
            Ok(()) => {
                self.stuck_since = None;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                self.last_refused = Some(now);
                let since = *self.stuck_since.get_or_insert(now);
                if now.duration_since(since) > self.limits.stall {
                    Err(self.stalled_out())
                } else {
                    Ok(())
                }
            }
            Err(_) => Err(End::Gone),
        }
    }

    /// Writes tungstenite's frames and ours, never one inside the other:
    /// tungstenite's only go out at a boundary of ours (before `out` is
    /// started, or once it is all written), and `out` only starts when
    /// tungstenite's buffer is empty. Between two calls tungstenite writes
    /// nothing (its gate is closed), so a frame of ours left half sent is
    /// continued first.
    fn write_pending(&mut self) -> std::io::Result<()> {
        if !self.inside_frame() {
            self.flush_tungstenite()?;
        }
        self.write_hello()?;
        self.write_out()?;
        self.flush_tungstenite()
    }

    /// Lets tungstenite write what it holds (pongs, a close frame).
    fn flush_tungstenite(&mut self) -> std::io::Result<()> {
        self.ws.get_mut().open = true;
        let result = self.ws.flush();
        self.ws.get_mut().open = false;
        match result {
            Ok(()) => Ok(()),
            Err(Error::Io(e)) => Err(e),
            Err(_) => Err(std::io::ErrorKind::ConnectionAborted.into()),
        }
    }

    /// Writes the `hello` until it is all written, then drops it, and with
    /// it this client's hold on the shared snapshot.
    fn write_hello(&mut self) -> std::io::Result<()> {
        let Some(hello) = &mut self.hello else {
            return Ok(());
        };
        loop {
            let unsent = hello.unsent();
            if unsent.is_empty() {
                break;
            }
            match self.ws.get_mut().stream.write(unsent) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => hello.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.hello = None;
        Ok(())
    }

    /// Writes `out` until it is empty or the socket refuses more. Taking
    /// data says nothing about the client being alive: only its frames do.
    fn write_out(&mut self) -> std::io::Result<()> {
        while self.out_sent < self.out.len() {
            match self.ws.get_mut().stream.write(&self.out[self.out_sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_sent = 0;
        self.own_queued = 0;
        if self.out.capacity() > OUT_KEEP {
            self.out.shrink_to(EVENT_ROOM);
        }
        Ok(())
    }

    fn stalled_out(&self) -> End {
        self.membership.hub().client_closed(WsCloseReason::Stalled);
        End::Gone
    }

    /// Answers the messages the client has sent, at most [`READ_BATCH`];
    /// returns whether more may be waiting. Any frame from the client
    /// answers our pings.
    fn read_client(&mut self) -> Result<bool, End> {
        self.last_read = Instant::now();
        self.ws.get_mut().allowance = READ_BYTES;
        let mut messages = 0;
        let more = self.read_messages(&mut messages)?;
        // Bytes cost tokens too, past what a message's token covers: frames
        // that complete no message (empty fragments, say) would cost
        // nothing otherwise.
        let read = (READ_BYTES - self.ws.get_ref().allowance) as f64;
        let extra = (read - messages as f64 * RATE_BYTES_PER_TOKEN).max(0.0);
        if !self
            .rate
            .spend(Instant::now(), extra / RATE_BYTES_PER_TOKEN)
        {
            return Err(self.rate_limited());
        }
        Ok(more)
    }

    /// Reads and answers messages, counting them in `messages`.
    fn read_messages(&mut self, messages: &mut usize) -> Result<bool, End> {
        for _ in 0..READ_BATCH {
            match self.ws.read() {
                Ok(Message::Close(_)) => return Err(End::PeerClosed),
                Ok(message) => {
                    *messages += 1;
                    self.unanswered_since = None;
                    if !self.rate.spend(Instant::now(), 1.0) {
                        return Err(self.rate_limited());
                    }
                    self.answer(message)?;
                }
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(self.ws.get_ref().allowance == 0);
                }
                Err(e) => {
                    return Err(match protocol::close_for(&e) {
                        Some((code, reason)) => End::Close(code, reason),
                        None => End::Gone,
                    });
                }
            }
        }
        Ok(true)
    }

    fn rate_limited(&mut self) -> End {
        let seq = self.cursor.saturating_sub(1);
        let message = format!(
            "more than {RATE_BURST} messages at once or {RATE_PER_SECOND} a second \
             (a message's share is {RATE_BYTES_PER_TOKEN} bytes); closing"
        );
        self.queue(&protocol::error(seq, "RATE_LIMITED", &message));
        self.membership.hub().client_closed(WsCloseReason::Rate);
        End::Close(CloseCode::Policy, "message rate limit exceeded")
    }

    fn answer(&mut self, message: Message) -> Result<(), End> {
        let seq = self.cursor.saturating_sub(1);
        match protocol::reply(&mut self.filter, seq, &message) {
            Reply::Send(text) => self.queue_own(Some(&text)),
            Reply::Ignore => Ok(()),
            Reply::Close => Err(End::PeerClosed),
        }
    }

    /// Pings on schedule; closes a client that has not answered in time.
    fn keep_alive(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if let Some(since) = self.unanswered_since
            && self.stuck_since.is_none()
        {
            // Not counting the time the socket refused data: the ping may
            // still be behind what the client has not read.
            let from = self.last_refused.map_or(since, |r| r.max(since));
            if now.duration_since(from) > self.limits.dead_after {
                self.membership
                    .hub()
                    .client_closed(WsCloseReason::PongTimeout);
                return Err(End::Close(CloseCode::Policy, "no answer to ping"));
            }
        }
        if now.duration_since(self.last_ping) >= self.limits.ping_every {
            self.last_ping = now;
            self.unanswered_since.get_or_insert(now);
            self.queue_own(None)?;
        }
        Ok(())
    }

    /// Sends a close frame and gives the peer a moment to acknowledge.
    fn say_goodbye(&mut self, code: CloseCode, reason: &'static str) {
        // A close frame cannot go out after half a frame of ours: if the
        // client would not take the rest, dropping the connection is the end.
        if self.write_pending().is_err() || !self.out.is_empty() || self.hello.is_some() {
            return;
        }
        // Nothing of ours will be written any more: tungstenite may write.
        // What the client sends meanwhile is read up to one pass's worth.
        let gate = self.ws.get_mut();
        gate.open = true;
        gate.allowance = READ_BYTES;
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if self.ws.close(Some(frame)).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            match self.ws.read() {
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = self.ws.flush();
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{Metrics, MetricsConfig};
    use crate::tracker::RunTracker;
    use crate::ws::hello::Snapshot;
    use crate::ws::hub::Hub;

    /// A connected pair: the server's side, upgraded, and the peer's.
    fn connection() -> (WebSocket<Gate>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let config = super::super::socket_config(&super::super::WsConfig::default());
        let ws = WebSocket::from_raw_socket(
            Gate::new(server),
            tungstenite::protocol::Role::Server,
            Some(config),
        );
        (ws, peer)
    }

    fn hub() -> Arc<Hub> {
        Hub::new(
            1_000,
            Metrics::new("t", MetricsConfig::default()).expect("metrics"),
        )
    }

    /// A snapshot of `runs` runs with long errors: some `runs` KiB.
    fn snapshot(runs: usize) -> Arc<Snapshot> {
        let mut tracker = RunTracker::new(runs, runs);
        for i in 0..runs {
            let mut event = crate::event::ProgressEvent::new(
                "wo",
                &format!("run-{i}"),
                crate::event::EventKind::RunFailed {
                    error: "x".repeat(900),
                },
            );
            tracker.apply(&mut event, &mut Default::default());
        }
        Arc::new(Snapshot::build(0, tracker.shared_snapshot()))
    }

    #[test]
    fn a_client_lets_go_of_the_shared_snapshot_once_its_hello_is_written() {
        // Regression: the serialized `hello` stayed alive (twice: the start
        // and the output buffer) until the connection ended.
        let hub = hub();
        let snapshot = snapshot(1_000);
        let (ws, mut peer) = connection();
        let start = Start {
            hello: Hello::full(&hub.instance, false, false, snapshot.clone()),
            cursor: 1,
        };
        let membership = hub.join(10).expect("room");
        let server =
            std::thread::spawn(move || serve(ws, membership, start, ClientLimits::default()));
        // The whole frame: header, then the payload.
        let mut header = [0u8; 10];
        peer.read_exact(&mut header).expect("hello header");
        assert_eq!((header[0], header[1]), (0x81, 127));
        let len = u64::from_be_bytes(header[2..].try_into().expect("8 bytes"));
        let mut payload = vec![0u8; usize::try_from(len).expect("length")];
        peer.read_exact(&mut payload).expect("hello payload");
        let hello: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(hello["runs"].as_array().map(Vec::len), Some(1_000));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&snapshot) > 1 {
            assert!(
                Instant::now() < deadline,
                "the client still holds the snapshot"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        hub.close();
        server.join().expect("the client thread");
    }

    #[test]
    fn events_wait_behind_an_unsent_hello_since_its_bytes_count_as_queued() {
        // Regression: `hello` did not count as queued, so a client that
        // does not read would hold events behind it on top of it.
        let hub = hub();
        let snapshot = snapshot(1_000);
        assert!(snapshot.len() > EVENT_ROOM);
        let (ws, _peer) = connection();
        // Fill the socket until it refuses data: the peer never reads.
        let stream = &ws.get_ref().stream;
        stream.set_nonblocking(true).expect("nonblocking");
        let junk = vec![0u8; 64 * 1024];
        while (&*stream).write(&junk).is_ok() {}
        let start = Start {
            hello: Hello::full(&hub.instance, false, false, snapshot.clone()),
            cursor: 1,
        };
        let membership = hub.join(10).expect("room");
        let mut client = Client::new(ws, membership, start, ClientLimits::default());
        hub.publish_for_test(1..=100);
        assert!(client.deliver_published().is_ok());
        assert_eq!(
            client.pending(),
            client.hello.as_ref().map_or(0, Hello::remaining)
        );
        assert!(client.pending() >= snapshot.len(), "the hello is queued");
        assert!(client.out.is_empty(), "events were queued behind the hello");
        assert_eq!(client.cursor, 1, "no event was taken from the hub");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start);
        let burst = (0..1_000).take_while(|_| bucket.spend(start, 1.0)).count();
        assert_eq!(burst, RATE_BURST as usize);
        // One second later: one second's worth, not a new burst.
        let later = start + Duration::from_secs(1);
        let refilled = (0..1_000).take_while(|_| bucket.spend(later, 1.0)).count();
        assert_eq!(refilled, RATE_PER_SECOND as usize);
        // A long pause refills the bucket to the burst, no more.
        let much_later = later + Duration::from_secs(3_600);
        let capped = (0..1_000)
            .take_while(|_| bucket.spend(much_later, 1.0))
            .count();
        assert_eq!(capped, RATE_BURST as usize);
    }

    #[test]
    fn the_pass_interval_grows_with_the_clients_between_its_bounds() {
        assert_eq!(coalesce(0), COALESCE_MIN);
        assert_eq!(coalesce(1), COALESCE_MIN);
        assert_eq!(coalesce(100), Duration::from_millis(3));
        assert_eq!(coalesce(500), COALESCE_MAX);
        assert_eq!(coalesce(usize::MAX), COALESCE_MAX);
    }
}
