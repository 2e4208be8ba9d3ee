//! `ws://HOST:PORT/ws`: the live event stream (protocol in DESIGN.md).
//!
//! The HTTP server hands an upgrade request and its socket to
//! [`upgrade_handler`], which checks the handshake, joins the client to the
//! [`hub`], registers it with the drain thread in queue order (so its
//! `hello` snapshot and the events after it have no gap and no duplicate),
//! answers `101` and gives the socket to a thread of its own ([`client`]).

pub(crate) mod client;
mod frame;
pub(crate) mod hub;
pub(crate) mod protocol;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tungstenite::WebSocket;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::pipeline::Shared;
use crate::server::http::{Request, Response};
use crate::server::router::UpgradeFn;
use crate::tracker::{SharedRuns, sort_runs};
use client::{ClientLimits, Start};
use hub::Hub;
use protocol::{Hello, PROTOCOL_VERSION};

/// How long an upgrade waits for the drain thread's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// WebSocket settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WsConfig {
    /// Connected clients at most; the next upgrade gets 503.
    pub(crate) max_clients: usize,
    /// Largest message or frame a client may send, in bytes.
    pub(crate) max_message: usize,
    /// Events kept in the replay ring.
    pub(crate) replay: usize,
    pub(crate) limits: ClientLimits,
    /// The events come from a journal being replayed, not from a live
    /// engine: `hello` says so.
    pub(crate) from_journal: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_clients: 256,
            max_message: 64 * 1024,
            replay: 10_000,
            limits: ClientLimits::default(),
            from_journal: false,
        }
    }
}

/// The `/ws` route's handler.
pub(crate) fn upgrade_handler(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    config: WsConfig,
) -> Box<UpgradeFn> {
    Box::new(move |request, stream, leftover| {
        if let Err(refusal) = accept(&shared, &hub, &config, &request, stream, leftover) {
            refusal.send();
        }
    })
}

/// An upgrade refused with an HTTP response.
struct Refusal {
    stream: TcpStream,
    response: Response,
}

impl Refusal {
    fn send(mut self) {
        let _ = self.response.write_to(&mut self.stream, false);
        crate::server::http::close_gracefully(self.stream);
    }
}

fn refuse(stream: TcpStream, status: u16, message: &str) -> Result<(), Refusal> {
    Err(Refusal {
        stream,
        response: Response::error(status, message),
    })
}

fn accept(
    shared: &Arc<Shared>,
    hub: &Arc<Hub>,
    config: &WsConfig,
    request: &Request,
    mut stream: TcpStream,
    leftover: Vec<u8>,
) -> Result<(), Refusal> {
    let (key, since) = match check_upgrade(request) {
        Ok(checked) => checked,
        Err(response) => return Err(Refusal { stream, response }),
    };
    // A `since` from another instance counts nothing here: reset.
    let other_instance = request
        .query_param("instance")
        .is_some_and(|i| i != hub.instance);
    let Some(membership) = hub.join(config.max_clients) else {
        return refuse(stream, 503, "too many WebSocket clients");
    };
    let start_hub = hub.clone();
    let Some(begin) = shared.on_drain(Some(SNAPSHOT_TIMEOUT), move |drain| {
        drain.flush_sinks();
        starting_point(&start_hub, drain, since, other_instance)
    }) else {
        return refuse(stream, 503, "the pipeline did not answer in time");
    };
    // Sorted and serialized here, not on the drain thread.
    let start = begin.into_start(hub, config.from_journal);

    let accept_key = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return Ok(());
    }
    let ws = WebSocket::from_partially_read(
        client::Gate::new(stream),
        leftover,
        Role::Server,
        Some(socket_config(config)),
    );
    let limits = config.limits;
    // A failed spawn drops the socket and the membership: the client sees
    // the connection close and may retry.
    let _ = std::thread::Builder::new()
        .name("agentgate-obs-ws".into())
        .stack_size(256 * 1024)
        .spawn(move || client::serve(ws, membership, start, limits));
    Ok(())
}

/// How many bytes tungstenite may hold for a client: it only ever writes
/// its own pongs (125 bytes of payload at most, and a newer one replaces
/// one not yet queued) and the close frame; past this, it keeps the pong
/// it owes and queues nothing more.
pub(crate) const TUNGSTENITE_WRITE_BUFFER: usize = 4 * 1024;

/// The chunk tungstenite reads a client's frames in (its default is
/// 128 KiB per connection; clients send small messages).
const READ_BUFFER: usize = 16 * 1024;

/// The socket settings of every client connection.
pub(crate) fn socket_config(config: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(config.max_message))
        .max_frame_size(Some(config.max_message))
        .read_buffer_size(READ_BUFFER)
        // Writes go straight to the socket (through the client's gate);
        // what the socket refuses waits in a buffer of bounded size.
        .write_buffer_size(0)
        .max_write_buffer_size(TUNGSTENITE_WRITE_BUFFER)
}

/// Checks an upgrade request: the handshake, the origin and `since`.
/// Returns the client's key and `since`, or the response refusing it.
pub(crate) fn check_upgrade(request: &Request) -> Result<(String, Option<u64>), Response> {
    let key = handshake_key(request)?;
    if !same_origin(request) {
        return Err(Response::error(
            403,
            "cross-origin WebSocket upgrades are refused",
        ));
    }
    let since = match request.query_param("since") {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(seq) => Some(seq),
            Err(_) => return Err(Response::error(400, "since must be a sequence number")),
        },
    };
    Ok((key, since))
}

/// Where a new client starts, decided on the drain thread; the `hello`
/// is written later, off it ([`Begin::into_start`]).
enum Begin {
    /// Resuming: every event after `since` is still in the ring.
    Resume { since: u64 },
    /// A fresh snapshot: the runs as of event `seq`.
    Snapshot {
        seq: u64,
        reset: bool,
        runs: SharedRuns,
    },
}

impl Begin {
    fn into_start(self, hub: &Hub, from_journal: bool) -> Start {
        let (seq, reset, resumed, mut runs) = match self {
            Begin::Resume { since } => (since, false, true, None),
            Begin::Snapshot { seq, reset, runs } => (seq, reset, false, Some(runs)),
        };
        if let Some(runs) = &mut runs {
            sort_runs(runs);
        }
        let hello = Hello {
            ty: "hello",
            protocol: PROTOCOL_VERSION,
            instance: &hub.instance,
            seq,
            reset,
            resumed,
            source: from_journal.then_some("replay"),
            runs: runs.as_deref(),
        };
        Start {
            hello: serde_json::to_string(&hello).unwrap_or_default(),
            cursor: seq + 1,
        }
    }
}

/// Where a new client starts, decided on the drain thread: it only clones
/// the runs' `Arc`s, so a `hello` at the tracker's bound holds the drain
/// thread for microseconds, not for the time it takes to serialize.
fn starting_point(
    hub: &Hub,
    drain: &crate::pipeline::drain::Drain,
    since: Option<u64>,
    other_instance: bool,
) -> Begin {
    let seq = drain.seq;
    if let Some(since) = since
        && !other_instance
        && since <= seq
        && hub.holds_after(since)
    {
        return Begin::Resume { since };
    }
    Begin::Snapshot {
        seq,
        reset: since.is_some(),
        runs: drain.tracker.shared_snapshot(),
    }
}

/// The client's `Sec-WebSocket-Key`, or the response refusing the upgrade.
fn handshake_key(request: &Request) -> Result<String, Response> {
    let has_token = |header: &str, token: &str| {
        request
            .header(header)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Response::error(
            400,
            "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)",
        ));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(
            Response::error(426, "only WebSocket version 13 is supported")
                .with_header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = request
        .header("sec-websocket-key")
        .map(str::trim)
        .unwrap_or("");
    // 16 random bytes in base64: 22 characters and "==".
    let valid = key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !valid {
        return Err(Response::error(
            400,
            "missing or malformed Sec-WebSocket-Key",
        ));
    }
    Ok(key.to_owned())
}

/// Browsers send `Origin`; it must name the host the page was served from.
/// Clients that send no `Origin` (not browsers) are not cross-origin.
fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("origin") else {
        return true;
    };
    let Some(host) = request.header("host") else {
        return false;
    };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host
        .trim_end_matches('/')
        .eq_ignore_ascii_case(host.trim())
}
