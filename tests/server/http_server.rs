//! The HTTP server under bad input: every bad request gets a 4xx and the
//! server keeps serving.

use crate::common;

use std::net::SocketAddr;

use common::{http_get, http_raw};

fn still_serving(addr: SocketAddr) {
    assert_eq!(http_get(addr, "/health", &[]).status, 200);
}

/// A 200 whose body is as long as its `Content-Length` says.
fn assert_whole_ok(reply: &common::HttpReply) {
    assert_eq!(reply.status, 200);
    let length: usize = reply
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("content-length");
    assert_eq!(reply.body.len(), length);
}

#[test]
fn the_server_binds_loopback_and_reports_the_real_port() {
    let (_obs, addr) = common::served(None);
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let health: serde_json::Value =
        serde_json::from_str(&http_get(addr, "/health", &[]).body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queueCapacity"], 65_536);
}

#[test]
fn garbage_bytes_get_a_400_and_the_server_keeps_serving() {
    let (_obs, addr) = common::served(None);
    let reply = http_raw(addr, b"\x00\xff\x13garbage\r\n\r\n").expect("reply");
    assert_eq!(reply.status, 400);
    still_serving(addr);
}

#[test]
fn a_request_with_ten_thousand_headers_gets_a_431() {
    let (_obs, addr) = common::served(None);
    let mut raw = String::from("GET /metrics HTTP/1.1\r\n");
    for i in 0..10_000 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let reply = http_raw(addr, raw.as_bytes()).expect("reply");
    assert_eq!(reply.status, 431);
    still_serving(addr);
}

#[test]
fn a_ten_megabyte_body_gets_a_413() {
    let (_obs, addr) = common::served(None);
    let body = vec![b'x'; 10 * 1024 * 1024];
    let mut raw = format!(
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let reply = http_raw(addr, &raw).expect("reply");
    assert_eq!(reply.status, 413);
    still_serving(addr);
}

#[test]
fn post_to_metrics_gets_a_405_with_allow() {
    let (_obs, addr) = common::served(None);
    let reply = http_raw(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("reply");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    still_serving(addr);
}

#[test]
fn unknown_and_traversal_paths_get_a_404() {
    let (_obs, addr) = common::served(None);
    for path in [
        "/metrics/../../etc/passwd",
        "/nope",
        "/metrics/",
        "/api",
        "/ws/x",
        "/index.html",
    ] {
        assert_eq!(http_get(addr, path, &[]).status, 404, "{path}");
    }
    still_serving(addr);
}

#[test]
fn a_wrong_or_missing_token_gets_a_401_and_health_stays_open() {
    let (_obs, addr) = common::served(Some("s3cret"));
    assert_eq!(http_get(addr, "/metrics", &[]).status, 401);
    assert_eq!(
        http_get(addr, "/metrics", &["Authorization: Bearer wrong"]).status,
        401
    );
    assert_eq!(http_get(addr, "/api/runs?token=wrong", &[]).status, 401);
    assert_eq!(
        http_get(addr, "/metrics", &["Authorization: Bearer s3cret"]).status,
        200
    );
    // `?token=` is only for `/` and `/ws` (tests/server/http_guard.rs).
    assert_eq!(
        http_get(addr, "/api/summary", &["Authorization: Bearer s3cret"]).status,
        200
    );
    assert_eq!(http_get(addr, "/health", &[]).status, 200);
}

#[test]
fn clients_that_never_finish_their_request_hold_a_worker_only_until_the_request_timeout() {
    let (_obs, addr) = common::served(None);
    // Twice as many half-sent requests as there are workers.
    let idle: Vec<_> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            use std::io::Write;
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n");
            s
        })
        .collect();
    let status = common::within(
        std::time::Duration::from_secs(40),
        "a request behind slow clients",
        move || http_get(addr, "/health", &[]).status,
    );
    assert_eq!(status, 200);
    for mut s in idle {
        use std::io::Read;
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    }
}

#[test]
fn head_gets_headers_without_a_body() {
    let (_obs, addr) = common::served(None);
    let reply =
        http_raw(addr, b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("reply");
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert!(reply.header("content-length").is_some_and(|l| l != "0"));
}

#[test]
fn runs_are_listed_as_json() {
    let (obs, addr) = common::served(None);
    use agentgate_obs::ProgressEmitter;
    obs.emitter()
        .emit_iteration_started("wo-1", "run-1", 1, 3, None);
    obs.flush();
    let runs: serde_json::Value =
        serde_json::from_str(&http_get(addr, "/api/runs", &[]).body).expect("json");
    assert_eq!(runs[0]["runId"], "run-1");
}

#[test]
fn after_shutdown_a_scrape_is_refused_not_hung() {
    let (obs, addr) = common::served(None);
    obs.shutdown();
    assert!(http_raw(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").is_err());
}

#[test]
fn a_client_that_pipelines_more_requests_still_gets_its_whole_first_answer() {
    // Answered connections close at once unless the client sent more than
    // its request; here it did, so the server reads the rest away
    // (lingers) before closing instead of resetting the connection.
    let (_obs, addr) = common::served(None);
    let mut raw = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    for _ in 0..2_000 {
        raw.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }
    assert_whole_ok(&http_raw(addr, &raw).expect("reply"));
    still_serving(addr);
}

#[test]
fn a_thousand_scrapes_in_a_row_are_all_answered_in_full() {
    let (_obs, addr) = common::served(None);
    for _ in 0..1_000 {
        let reply =
            http_raw(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("reply");
        assert_whole_ok(&reply);
        assert!(reply.body.ends_with("\n"), "{}", reply.body);
    }
}
