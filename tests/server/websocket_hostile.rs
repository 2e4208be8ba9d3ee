//! Hostile and broken WebSocket clients: each is refused or closed as
//! docs/PROTOCOL.md ("Limits and close codes") says, and the server keeps
//! serving everyone else.

use crate::common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use agentgate_obs::{Observability, Phase, ProgressEmitter};
use common::ws::{Client, client_frame, raw_upgrade, wait_until};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

fn server() -> Observability {
    common::quiet().serve("127.0.0.1:0").start().unwrap()
}

/// The server still streams to a well-behaved client.
fn still_serving(obs: &Observability) {
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    assert_eq!(client.next_json()["type"], "hello");
    obs.emitter()
        .emit_phase_started("wo", "still", 1, Phase::Build);
    assert_eq!(client.next_json()["runId"], "still");
}

/// The close code the server sends after `bytes`.
fn close_code_after(addr: SocketAddr, bytes: &[u8]) -> Option<CloseCode> {
    let mut stream = raw_upgrade(addr, "/ws");
    stream.write_all(bytes).unwrap();
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None);
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| f.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn a_frame_over_the_size_limit_is_closed_with_1009() {
    let obs = server();
    let frame = client_frame(0x1, &vec![b'a'; 100 * 1024], true);
    assert_eq!(
        close_code_after(obs.local_addr().unwrap(), &frame),
        Some(CloseCode::Size)
    );
    still_serving(&obs);
}

#[test]
fn invalid_utf8_in_a_text_frame_is_closed_with_1007() {
    let obs = server();
    let frame = client_frame(0x1, &[0xff, 0xfe, 0x80], true);
    assert_eq!(
        close_code_after(obs.local_addr().unwrap(), &frame),
        Some(CloseCode::Invalid)
    );
    still_serving(&obs);
}

#[test]
fn a_tcp_reset_in_the_middle_of_a_frame_costs_only_that_connection() {
    let obs = server();
    let addr = obs.local_addr().unwrap();
    for _ in 0..20 {
        let mut stream = raw_upgrade(addr, "/ws");
        let frame = client_frame(0x1, br#"{"type":"ping"}"#, true);
        stream.write_all(&frame[..5]).unwrap();
        // Linger 0 would send RST; shutting down both ways mid-frame is the portable cousin.
        let _ = stream.shutdown(Shutdown::Both);
    }
    wait_until(Duration::from_secs(10), "broken clients gone", || {
        obs.metrics().ws_clients() == 0
    });
    still_serving(&obs);
}

#[test]
fn an_upgrade_without_a_key_gets_400_and_a_wrong_version_426() {
    let obs = server();
    let addr = obs.local_addr().unwrap();
    let reply = common::http_raw(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    assert_eq!(reply.status, 400);
    let reply = common::http_raw(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    assert_eq!(reply.status, 426);
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));
    still_serving(&obs);
}

#[test]
fn a_cross_origin_upgrade_is_refused_with_403() {
    let obs = server();
    let addr = obs.local_addr().unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    assert_eq!(
        common::http_raw(addr, request.as_bytes()).unwrap().status,
        403
    );
    let same = request.replace("http://evil.example", &format!("http://{addr}"));
    assert!(
        common::ws::http_raw_head(addr, same.as_bytes())
            .unwrap()
            .starts_with("HTTP/1.1 101")
    );
}

#[test]
fn a_token_is_required_by_header_or_query_and_a_wrong_one_gets_401() {
    let obs = common::quiet()
        .token("s3cret")
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    assert!(tungstenite::connect(format!("ws://{addr}/ws")).is_err());
    assert!(tungstenite::connect(format!("ws://{addr}/ws?token=wrong")).is_err());
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/ws?token=s3cret")).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Text(t) if t.as_str().contains("hello")));
}

#[test]
fn one_client_past_the_cap_gets_503_and_the_others_keep_streaming() {
    let obs = common::quiet()
        .websocket_max_clients(3)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr, "/ws")).collect();
    for c in &mut clients {
        c.next_json();
    }
    match tungstenite::connect(format!("ws://{addr}/ws")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    obs.emitter().emit_phase_started("wo", "r", 1, Phase::Build);
    for c in &mut clients {
        assert_eq!(c.next_json()["runId"], "r");
    }
}

#[test]
fn shutdown_closes_clients_with_1001() {
    let obs = server();
    let mut client = Client::connect(obs.local_addr().unwrap(), "/ws");
    client.next_json();
    obs.shutdown();
    loop {
        match client.next_raw() {
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

#[test]
fn with_a_token_set_upgrades_without_it_take_no_slot_so_300_idle_ones_cannot_lock_a_dashboard_out()
{
    let obs = common::quiet()
        .token("s3cret")
        .websocket_max_clients(4)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = obs.local_addr().unwrap();
    // Each sends an upgrade without the token and then holds its socket
    // open, reading nothing: what locked a dashboard out without a token.
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/ws?token=s3cret")).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Text(t) if t.as_str().contains("hello")));
    assert_eq!(
        obs.metrics().ws_clients(),
        1,
        "only the dashboard holds a slot"
    );
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        let _ = std::io::Read::read_to_string(s, &mut reply);
        assert!(reply.starts_with("HTTP/1.1 401 "), "{reply:?}");
    }
}
