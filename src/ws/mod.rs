//! `ws://HOST:PORT/ws`: the live event stream (protocol in docs/PROTOCOL.md).
//!
//! The HTTP server hands an upgrade request and its socket to
//! [`upgrade_handler`], which checks the handshake, joins the client to the
//! [`hub`], registers it with the drain thread in queue order (so its
//! `hello` snapshot and the events after it have no gap and no duplicate),
//! answers `101` and gives the socket to a thread of its own ([`client`]).

pub(crate) mod client;
mod frame;
pub(crate) mod hello;
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
use crate::server::router::{FULL_MESSAGE, FullFn, Refused, UpgradeFn};
use crate::server::shed::ShedReason;
use crate::tracker::SharedRuns;
use client::{ClientLimits, Start};
use hello::{Hello, MAX_SNAPSHOTS, Snapshot};
use hub::Hub;

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
        accept(&shared, &hub, &config, &request, stream, leftover)
    })
}

/// The `/ws` route's slot check, for the reader thread: a valid upgrade
/// while every client slot is taken.
pub(crate) fn full_check(hub: Arc<Hub>, config: WsConfig) -> Box<FullFn> {
    Box::new(move |request| {
        !hub.is_closing()
            && hub.client_count() >= config.max_clients
            && check_upgrade(request).is_ok()
    })
}

/// A 503 for an upgrade that a limit refused.
fn busy(stream: TcpStream, leftover: Vec<u8>, message: &str, shed: Option<ShedReason>) -> Refused {
    Refused {
        stream,
        leftover,
        response: Response::error(503, message).with_header("Retry-After", "1"),
        shed,
    }
}

fn accept(
    shared: &Arc<Shared>,
    hub: &Arc<Hub>,
    config: &WsConfig,
    request: &Request,
    mut stream: TcpStream,
    leftover: Vec<u8>,
) -> Result<(), Refused> {
    let (key, since) = match check_upgrade(request) {
        Ok(checked) => checked,
        Err(response) => {
            return Err(Refused {
                stream,
                leftover,
                response,
                shed: None,
            });
        }
    };
    // A `since` from another instance counts nothing here: reset.
    let other_instance = request
        .query_param("instance")
        .is_some_and(|i| i != hub.instance);
    let Some(membership) = hub.join(config.max_clients) else {
        let shed = (!hub.is_closing()).then_some(ShedReason::WsClientsFull);
        return Err(busy(stream, leftover, FULL_MESSAGE, shed));
    };
    let start_hub = hub.clone();
    let Some(begin) = shared.on_drain(Some(SNAPSHOT_TIMEOUT), move |drain| {
        drain.flush_sinks();
        starting_point(&start_hub, drain, since, other_instance)
    }) else {
        let message = "the pipeline did not answer in time";
        return Err(busy(stream, leftover, message, None));
    };
    // Sorted and serialized here, not on the drain thread.
    let Some(start) = begin.into_start(hub, config.from_journal) else {
        let message = "too many WebSocket snapshots still being sent; retry shortly";
        return Err(busy(stream, leftover, message, None));
    };

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
    /// The client's `hello` and cursor. A snapshot is serialized at most
    /// once, here (one upgrade at a time; the others wait and reuse it),
    /// and only when no snapshot alive can serve: see [`hello`]. `None`
    /// when [`MAX_SNAPSHOTS`] are alive already.
    fn into_start(self, hub: &Hub, from_journal: bool) -> Option<Start> {
        let (seq, reset, runs) = match self {
            Begin::Resume { since } => {
                return Some(Start {
                    hello: Hello::resumed(&hub.instance, since, from_journal),
                    cursor: since + 1,
                });
            }
            Begin::Snapshot { seq, reset, runs } => (seq, reset, runs),
        };
        let mut snapshots = hub.snapshots.lock();
        // Newer than ours, or older with every event since still held:
        // either way the client goes on from it with no gap.
        let snapshot = match snapshots.newest(|newest| newest >= seq || hub.holds_after(newest)) {
            Some(snapshot) => snapshot,
            None if snapshots.alive() >= MAX_SNAPSHOTS => return None,
            None => {
                let snapshot = Arc::new(Snapshot::build(seq, runs));
                snapshots.issue(&snapshot);
                snapshot
            }
        };
        drop(snapshots);
        Some(Start {
            cursor: snapshot.seq() + 1,
            hello: Hello::full(&hub.instance, reset, from_journal, snapshot),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, ProgressEvent};
    use crate::metrics::{Metrics, MetricsConfig};
    use crate::tracker::RunTracker;

    fn hub(replay: usize) -> Arc<Hub> {
        Hub::new(
            replay,
            Metrics::new("t", MetricsConfig::default()).expect("metrics"),
        )
    }

    fn runs(count: usize) -> SharedRuns {
        let mut tracker = RunTracker::new(count, count);
        for i in 0..count {
            let failed = EventKind::RunFailed {
                error: "x".repeat(500),
            };
            let mut event = ProgressEvent::new("wo", &format!("run-{i}"), failed);
            tracker.apply(&mut event, &mut Default::default());
        }
        tracker.shared_snapshot()
    }

    fn start(hub: &Hub, seq: u64, reset: bool) -> Option<Start> {
        let runs = runs(100);
        Begin::Snapshot { seq, reset, runs }.into_start(hub, false)
    }

    fn payload(start: &Start) -> serde_json::Value {
        let frame = start.hello.to_vec();
        let mut cursor = std::io::Cursor::new(&frame[..]);
        let (_, len) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
            .expect("valid header")
            .expect("complete header");
        let body = &frame[cursor.position() as usize..];
        assert_eq!(body.len() as u64, len);
        serde_json::from_slice(body).expect("JSON")
    }

    #[test]
    fn clients_starting_from_the_same_snapshot_share_one_serialized_hello_not_a_copy_each() {
        // Regression: every client serialized the runs into a `hello` of its
        // own (3.6 MB each at 10,000 runs).
        let hub = hub(100);
        let first = start(&hub, 0, false).expect("a start");
        let second = start(&hub, 0, true).expect("a start");
        let (a, b) = (first.hello.snapshot(), second.hello.snapshot());
        assert!(
            a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(a, b)),
            "each client has its own copy"
        );
        let (a, b) = (payload(&first), payload(&second));
        assert_eq!(a["type"], "hello");
        assert_eq!(a["runs"].as_array().map(Vec::len), Some(100));
        assert_eq!(a["runs"], b["runs"]);
        assert_eq!(
            (a.get("reset"), &b["reset"]),
            (None, &serde_json::json!(true))
        );
        assert_eq!((first.cursor, second.cursor), (1, 1));
        // Nobody holds it any more: it is freed, not cached.
        drop((first, second));
        assert_eq!(hub.snapshots.lock().alive(), 0);
    }

    #[test]
    fn a_later_client_reuses_an_older_snapshot_while_the_ring_holds_every_event_after_it() {
        let hub = hub(100);
        let first = start(&hub, 0, false).expect("a start");
        hub.publish_for_test(1..=50);
        let later = start(&hub, 50, false).expect("a start");
        assert_eq!(later.cursor, 1, "it goes on from the snapshot's seq");
        assert_eq!(hub.snapshots.lock().alive(), 1);
        // Once the ring has dropped events after it, a new one is built.
        hub.publish_for_test(51..=200);
        let fresh = start(&hub, 200, false).expect("a start");
        assert_eq!(fresh.cursor, 201);
        assert_eq!(payload(&fresh)["seq"], 200);
        assert_eq!(hub.snapshots.lock().alive(), 2);
        drop((first, later));
    }

    #[test]
    fn past_the_snapshots_allowed_alive_an_upgrade_is_refused_rather_than_serializing_another() {
        let hub = hub(1);
        let mut held = Vec::new();
        for seq in 0..hello::MAX_SNAPSHOTS as u64 {
            hub.publish_for_test(seq * 10 + 1..=seq * 10 + 10);
            held.push(start(&hub, seq * 10 + 10, false).expect("room for a snapshot"));
        }
        hub.publish_for_test(1_000..=1_010);
        assert!(start(&hub, 1_010, false).is_none());
        // Once one is sent, there is room again.
        held.remove(0);
        assert!(start(&hub, 1_010, false).is_some());
    }
}
