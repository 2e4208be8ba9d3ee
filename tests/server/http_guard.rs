//! The server's guards at the HTTP level (docs/SECURITY.md, docs/PROTOCOL.md):
//! the `Host` allow-list and `Origin` check against DNS rebinding, where
//! the token may appear, and request framing (RFC 9112 §6.3).
//!
//! Flooding is in `tests/floods/connection_flood.rs`.

use crate::common;

use std::net::SocketAddr;

use agentgate_obs::Error;
use common::{http_get, http_get_with_host, http_raw};

const TOKEN: &str = "s3cret-token";

/// Every path, with the headers that make it a valid request when the
/// host is allowed (an upgrade for `/ws`).
const PATHS: [&str; 7] = [
    "/metrics",
    "/api/runs",
    "/api/summary",
    "/health",
    "/",
    "/ws",
    "/no-such-path",
];

const UPGRADE: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// A raw upgrade request for `/ws` with these `Host` and `Origin` values.
fn upgrade_request(path: &str, host: &str, origin: Option<&str>) -> Vec<u8> {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(origin) = origin {
        raw.push_str(&format!("Origin: {origin}\r\n"));
    }
    for h in UPGRADE {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

/// The status line of an upgrade attempt (a 101 keeps the socket open, so
/// only the head is read).
fn upgrade_status(addr: SocketAddr, raw: &[u8]) -> String {
    let head = common::ws::http_raw_head(addr, raw).expect("an answer");
    head.lines().next().unwrap_or("").to_owned()
}

// ---- DNS rebinding: the Host allow-list ----

#[test]
fn a_rebound_host_name_gets_421_on_every_route_even_with_the_right_token() {
    let (_obs, addr) = common::served(Some(TOKEN));
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for host in [
        format!("evil.example:{}", addr.port()),
        "evil.example".to_owned(),
        format!("127.0.0.1.nip.io:{}", addr.port()),
        format!("localhost.evil.example:{}", addr.port()),
    ] {
        for path in PATHS {
            let mut headers = vec![bearer.as_str()];
            if path == "/ws" {
                headers.extend(UPGRADE);
            }
            let reply = http_get_with_host(addr, Some(&host), path, &headers);
            assert_eq!(reply.status, 421, "{host} {path}: {}", reply.body);
            let name = host.split(':').next().unwrap_or_default();
            assert!(
                reply.body.contains(name) && reply.body.contains("allowed_hosts"),
                "the refusal names the host and the way to allow it: {}",
                reply.body
            );
            assert!(!reply.body.contains(TOKEN), "the token is never echoed");
        }
    }
}

#[test]
fn a_rebound_websocket_upgrade_whose_origin_matches_its_own_host_is_refused() {
    // After a rebind both headers come from the attacker's URL and agree
    // with each other: comparing them proves nothing.
    let (_obs, addr) = common::served(None);
    let host = format!("evil.example:{}", addr.port());
    let raw = upgrade_request("/ws", &host, Some(&format!("http://{host}")));
    assert_eq!(
        upgrade_status(addr, &raw),
        "HTTP/1.1 421 Misdirected Request"
    );
}

#[test]
fn a_request_without_a_host_header_or_with_two_gets_400() {
    let (_obs, addr) = common::served(None);
    for path in ["/health", "/metrics"] {
        let reply = http_get_with_host(addr, None, path, &[]);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(reply.body.contains("Host"), "{}", reply.body);
        let two = http_get(addr, path, &["Host: localhost"]);
        assert_eq!(two.status, 400, "{path}: {}", two.body);
    }
}

#[test]
fn loopback_names_and_the_bound_address_are_answered_on_a_loopback_bind() {
    let (_obs, addr) = common::served(None);
    let port = addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "LocalHost".to_owned(),
        format!("[::1]:{port}"),
        // Behind `ssh -L 8080:127.0.0.1:PORT` the browser sends the tunnel's port.
        "localhost:8080".to_owned(),
    ] {
        for path in ["/health", "/metrics", "/"] {
            let reply = http_get_with_host(addr, Some(&host), path, &[]);
            assert_eq!(reply.status, 200, "{host} {path}: {}", reply.body);
        }
    }
    let raw = upgrade_request("/ws", &format!("localhost:{port}"), None);
    assert_eq!(
        upgrade_status(addr, &raw),
        "HTTP/1.1 101 Switching Protocols"
    );
}

#[test]
fn a_name_added_with_allowed_hosts_is_answered_and_others_are_still_refused() {
    let obs = common::quiet()
        .serve("127.0.0.1:0")
        .allowed_hosts(["Agent-Box.lan"])
        .allowed_hosts(vec![String::from("dash.example.com")])
        .start()
        .expect("start");
    let addr = obs.local_addr().expect("serving");
    for host in ["agent-box.lan", "agent-box.lan:3000", "dash.example.com."] {
        for path in ["/health", "/metrics", "/api/runs"] {
            let reply = http_get_with_host(addr, Some(host), path, &[]);
            assert_eq!(reply.status, 200, "{host} {path}: {}", reply.body);
        }
    }
    let host = format!("dash.example.com:{}", addr.port());
    let same = upgrade_request("/ws", &host, Some(&format!("http://{host}")));
    assert_eq!(
        upgrade_status(addr, &same),
        "HTTP/1.1 101 Switching Protocols"
    );
    let other = http_get_with_host(addr, Some("evil.example"), "/health", &[]);
    assert_eq!(other.status, 421);
}

#[test]
fn an_allowed_host_with_a_scheme_port_or_path_is_a_configuration_error() {
    for bad in ["http://box", "box:3000", "box/dash", ""] {
        let started = common::quiet()
            .serve("127.0.0.1:0")
            .allowed_hosts([bad])
            .start();
        assert!(matches!(started, Err(Error::Config(_))), "{bad:?}");
    }
}

#[test]
fn an_unspecified_bind_answers_to_ip_literals_and_localhost_but_not_to_dns_names() {
    let obs = common::quiet().serve("0.0.0.0:0").start().expect("start");
    let port = obs.local_addr().expect("serving").port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for host in [
        "10.1.2.3",
        "192.168.0.7:3000",
        "127.0.0.1",
        "[fe80::1]",
        "localhost",
    ] {
        let reply = http_get_with_host(addr, Some(host), "/health", &[]);
        assert_eq!(reply.status, 200, "{host}: {}", reply.body);
    }
    let reply = http_get_with_host(addr, Some("evil.example"), "/health", &[]);
    assert_eq!(reply.status, 421);
}

#[test]
fn a_websocket_upgrade_from_another_origin_is_refused_even_under_an_allowed_host() {
    let (_obs, addr) = common::served(None);
    let host = addr.to_string();
    for origin in [
        "http://evil.example".to_owned(),
        format!("http://evil.example:{}", addr.port()),
        format!("http://localhost:{}", addr.port()),
        format!("http://127.0.0.1:{}", addr.port() ^ 1),
        "null".to_owned(),
        format!("file://{host}"),
    ] {
        let raw = upgrade_request("/ws", &host, Some(&origin));
        assert_eq!(
            upgrade_status(addr, &raw),
            "HTTP/1.1 403 Forbidden",
            "{origin}"
        );
    }
    // A cross-origin fetch of data is refused the same way.
    let reply = http_get(addr, "/api/runs", &["Origin: http://evil.example"]);
    assert_eq!(reply.status, 403);
    let own = upgrade_request("/ws", &host, Some(&format!("http://{host}")));
    assert_eq!(
        upgrade_status(addr, &own),
        "HTTP/1.1 101 Switching Protocols"
    );
}

// ---- The token ----

#[test]
fn a_wrong_token_of_another_length_or_of_the_same_length_gets_401() {
    let (_obs, addr) = common::served(Some(TOKEN));
    let same_length = "x".repeat(TOKEN.len());
    for wrong in [
        "x",
        "s3cret-token-and-more",
        same_length.as_str(),
        "s3cret-tokeN",
    ] {
        let reply = http_get(
            addr,
            "/metrics",
            &[&format!("Authorization: Bearer {wrong}")],
        );
        assert_eq!(reply.status, 401, "{wrong}");
        assert!(!reply.body.contains(wrong) && !reply.body.contains(TOKEN));
    }
    let right = http_get(
        addr,
        "/metrics",
        &[&format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(right.status, 200);
}

#[test]
fn a_token_in_the_query_is_refused_on_data_routes_but_accepted_on_the_dashboard_and_websocket() {
    let (_obs, addr) = common::served(Some(TOKEN));
    for path in ["/metrics", "/api/runs", "/api/summary"] {
        let reply = http_get(addr, &format!("{path}?token={TOKEN}"), &[]);
        assert_eq!(reply.status, 401, "{path}: {}", reply.body);
        assert!(
            reply.body.contains("Authorization: Bearer") && !reply.body.contains(TOKEN),
            "the refusal says where the token goes, and does not echo it: {}",
            reply.body
        );
        let bearer = http_get(addr, path, &[&format!("Authorization: Bearer {TOKEN}")]);
        assert_eq!(bearer.status, 200, "{path}");
    }
    let page = http_get(addr, &format!("/?token={TOKEN}"), &[]);
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(TOKEN),
        "the page does not echo the token"
    );
    let raw = upgrade_request(&format!("/ws?token={TOKEN}"), &addr.to_string(), None);
    assert_eq!(
        upgrade_status(addr, &raw),
        "HTTP/1.1 101 Switching Protocols"
    );
    // Public paths stay public.
    assert_eq!(http_get(addr, "/health", &[]).status, 200);
}

// ---- Framing ----

#[test]
fn each_malformed_or_ambiguous_content_length_gets_400() {
    let (_obs, addr) = common::served(None);
    let cases: [(&str, &[&str]); 10] = [
        (
            "conflicting duplicates",
            &["Content-Length: 5", "Content-Length: 6"],
        ),
        (
            "identical duplicates",
            &["Content-Length: 5", "Content-Length: 5"],
        ),
        ("a list", &["Content-Length: 5, 5"]),
        ("a plus sign", &["Content-Length: +5"]),
        ("a minus sign", &["Content-Length: -5"]),
        ("a non-digit", &["Content-Length: 5x"]),
        ("hexadecimal", &["Content-Length: 0x5"]),
        ("empty", &["Content-Length: "]),
        ("overflowing u64", &["Content-Length: 18446744073709551621"]),
        (
            "with Transfer-Encoding",
            &["Content-Length: 5", "Transfer-Encoding: chunked"],
        ),
    ];
    for (what, headers) in cases {
        for method in ["GET", "POST"] {
            let mut raw = format!("{method} /health HTTP/1.1\r\nHost: {addr}\r\n");
            for h in headers {
                raw.push_str(h);
                raw.push_str("\r\n");
            }
            raw.push_str("\r\nhello");
            let reply = http_raw(addr, raw.as_bytes()).expect("a reply");
            assert_eq!(reply.status, 400, "{what} ({method}): {}", reply.body);
        }
    }
    // A well-formed length is still fine, and a large one is 413.
    let ok = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(http_raw(addr, ok.as_bytes()).expect("reply").status, 200);
    let large =
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 99999999999\r\n\r\n");
    assert_eq!(http_raw(addr, large.as_bytes()).expect("reply").status, 413);
}
