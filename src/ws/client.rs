//! One WebSocket client: a thread that owns the socket, in non-blocking
//! mode, and alternates between sending what the hub has published,
//! reading the client's messages and keeping the connection alive.
//!
//! An idle thread sleeps on its doorbell (rung by every publish) or for at
//! most [`POLL`], so the first event after a quiet spell goes out as soon
//! as it is published; while events flow it makes one pass every
//! [`COALESCE`], each pass carrying everything published since the last.
//! Client messages are answered within a poll interval. A client whose socket
//! stops taking data is not read from the hub any further (it will be told
//! `lagged` if it recovers) and is closed once it has been stuck for
//! [`ClientLimits::stall`].

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message, WebSocket};

use super::frame;
use super::hub::{Batch, Membership};
use super::protocol::{self, Filter, Reply};

/// How long the thread sleeps when nothing happens.
const POLL: Duration = Duration::from_millis(20);
/// How often a client's messages are read while events flow (when idle,
/// every wake-up reads them).
const READ_EVERY: Duration = Duration::from_millis(5);
/// Messages sent per pass before looking at the socket again.
const PASS: usize = 2048;
/// The time between two delivery passes while events flow. Publishes come
/// in batches as small as one event; waking every client for each would
/// cost more CPU than the drain thread itself. Waiting this long lets a pass
/// carry everything published meanwhile, at the price of that much latency
/// (an event after a quiet spell goes out at once).
const COALESCE: Duration = Duration::from_millis(2);
/// How long a closing connection spends sending what is left; shorter than
/// the time shutdown waits for clients to leave.
const GOODBYE: Duration = Duration::from_millis(1_500);

/// Time limits of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    /// How often the server pings.
    pub(crate) ping_every: Duration,
    /// Silence after which the peer is taken for dead.
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
    pub(crate) hello: String,
    /// The first seq it wants.
    pub(crate) cursor: u64,
}

/// Why the loop ended.
enum End {
    /// The peer closed, reset or went silent.
    Gone,
    /// We close with this code.
    Close(CloseCode, &'static str),
}

struct Client {
    ws: WebSocket<TcpStream>,
    membership: Membership,
    filter: Filter,
    cursor: u64,
    /// The batches of the current pass (kept to reuse the allocation).
    batches: Vec<Batch>,
    /// Frames for the socket, written from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    last_read: Instant,
    /// Whether the last pass sent events (passes then come every COALESCE).
    flowing: bool,
    /// Events skipped (ring overrun) not yet reported to the client.
    missed: u64,
    /// Since when the socket refused to take more data.
    stuck_since: Option<Instant>,
    last_heard: Instant,
    last_ping: Instant,
    limits: ClientLimits,
}

/// Serves one upgraded connection until it ends. Runs on its own thread.
pub(crate) fn serve(
    ws: WebSocket<TcpStream>,
    membership: Membership,
    start: Start,
    limits: ClientLimits,
) {
    if ws.get_ref().set_nonblocking(true).is_err() {
        return;
    }
    let now = Instant::now();
    let mut client = Client {
        ws,
        membership,
        filter: Filter::default(),
        cursor: start.cursor,
        batches: Vec::new(),
        out: Vec::new(),
        out_sent: 0,
        last_read: now,
        flowing: false,
        missed: 0,
        stuck_since: None,
        last_heard: now,
        last_ping: now,
        limits,
    };
    client.queue(&start.hello);
    let end = client.run();
    if let End::Close(code, reason) = end {
        client.say_goodbye(code, reason);
    }
}

impl Client {
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
            // Read right after the flush, while `out` is (normally) empty:
            // a client that is always a little behind must still be heard,
            // or it would be taken for dead. While events flow, passes come
            // every COALESCE, and reading on each would cost a system call
            // per pass for messages that come seldom.
            if (!self.flowing || self.last_read.elapsed() >= READ_EVERY)
                && let Err(end) = self.read_client()
            {
                return end;
            }
            let mut behind = false;
            let cursor = self.cursor;
            if self.stuck_since.is_none() {
                match self.deliver_published() {
                    Ok(more) => behind = more,
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
                // Events are flowing: the next pass, one COALESCE from now,
                // carries everything published meanwhile. One timer wake-up
                // per pass; the doorbell rung meanwhile is answered by it.
                // A stuck socket is retried at the same pace, not at every
                // publish.
                std::thread::sleep(COALESCE);
                let _ = self.membership.doorbell.try_recv();
            } else {
                // Idle: the first event after a quiet spell goes out at once.
                let _ = self.membership.doorbell.recv_timeout(POLL);
            }
        }
    }

    /// Sends what the hub has published after our cursor, at most
    /// [`PASS`] messages; returns whether more is waiting.
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
                    // Look at the socket (and the client) before more.
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

    /// Queues a text message of our own (hello, lagged, replies).
    fn queue(&mut self, text: &str) {
        frame::push_text(&mut self.out, text);
    }

    /// Pushes queued frames to the socket; notes when it refuses.
    ///
    /// Two writers share the socket: tungstenite, for the pongs and close
    /// frames it sends on its own, and `out`, our frames. Neither may start
    /// while the other has a frame half written, so tungstenite's buffer
    /// goes first (it only ever fills while `out` is empty: see
    /// `read_client`) and `out` only when that is empty.
    fn flush(&mut self) -> Result<(), End> {
        let written = match self.ws.flush() {
            Ok(()) => self.write_out(),
            Err(Error::Io(e)) => Err(e),
            Err(_) => return Err(End::Gone),
        };
        match written {
            Ok(()) => {
                self.stuck_since = None;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *self.stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.limits.stall {
                    Err(self.stalled_out())
                } else {
                    Ok(())
                }
            }
            Err(_) => Err(End::Gone),
        }
    }

    /// Writes `out` until it is empty or the socket refuses more.
    fn write_out(&mut self) -> std::io::Result<()> {
        while self.out_sent < self.out.len() {
            match self.ws.get_mut().write(&self.out[self.out_sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_sent += n;
                    // A peer that takes data is alive, even while our
                    // backlog keeps us from reading its pongs.
                    self.last_heard = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_sent = 0;
        Ok(())
    }

    fn stalled_out(&self) -> End {
        // Relaxed: a count for reporting.
        self.membership
            .hub()
            .slow_clients_closed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        End::Gone
    }

    /// Answers every message the client has sent so far. Skipped while
    /// our frames wait for the socket: reading may make tungstenite send a
    /// pong, which must not land inside one of them.
    fn read_client(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            return Ok(());
        }
        self.last_read = Instant::now();
        loop {
            match self.ws.read() {
                Ok(message) => {
                    self.last_heard = Instant::now();
                    self.answer(message)?;
                }
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    return Err(match protocol::close_for(&e) {
                        Some((code, reason)) => End::Close(code, reason),
                        None => End::Gone,
                    });
                }
            }
        }
    }

    fn answer(&mut self, message: Message) -> Result<(), End> {
        let seq = self.cursor.saturating_sub(1);
        match protocol::reply(&mut self.filter, seq, &message) {
            Reply::Send(text) => {
                self.queue(&text);
                Ok(())
            }
            Reply::Ignore => Ok(()),
            Reply::Close => Err(End::Gone),
        }
    }

    fn keep_alive(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() > self.limits.dead_after {
            return Err(End::Gone);
        }
        if self.last_ping.elapsed() >= self.limits.ping_every {
            self.last_ping = Instant::now();
            frame::push_ping(&mut self.out);
        }
        Ok(())
    }

    /// Sends a close frame and gives the peer a moment to acknowledge.
    fn say_goodbye(&mut self, code: CloseCode, reason: &'static str) {
        // A close frame cannot go out after half a frame of ours: if the
        // client would not take the rest, dropping the connection is the end.
        if self.flush().is_err() || !self.out.is_empty() {
            return;
        }
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
