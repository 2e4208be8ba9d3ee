use super::*;
use std::io::BufRead;
use std::net::TcpListener;

impl ReadTimeouts for &[u8] {
    fn left(&mut self, _: Instant) -> std::io::Result<()> {
        Ok(())
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn an_http_url_gives_its_authority_host_header_and_path() {
    let e = Endpoint::parse("http://localhost:9091/metrics/job/x?a=1").unwrap();
    assert_eq!(e.authority, "localhost:9091");
    assert_eq!(e.host_header, "localhost:9091");
    assert_eq!(e.path(), "/metrics/job/x?a=1");
    let e = Endpoint::parse("HTTP://example").unwrap();
    assert_eq!(e.authority, "example:80");
    assert_eq!(e.path(), "/");
    let e = Endpoint::parse("http://[::1]:9090/api/v1/write").unwrap();
    assert_eq!(e.authority, "[::1]:9090");
    let e = Endpoint::parse("http://[::1]").unwrap();
    assert_eq!(e.authority, "[::1]:80");
    assert_eq!(e.url(), "http://[::1]/");
}

#[test]
fn urls_this_client_cannot_send_to_are_refused_with_the_reason() {
    for (url, why) in [
        ("https://x", "https is not supported"),
        ("ftp://x", "must start with http://"),
        ("x:80", "must start with http://"),
        ("http://", "no host"),
        ("http://u:p@x/", "user info"),
        ("http://x:port/", "not a number"),
        ("http://x:99999/", "out of range"),
        ("http://x:/", "not a number"),
        ("http://x/a b", "spaces"),
        ("http://x/a\r\nInjected: 1", "control"),
        ("http://x/#frag", "fragment"),
    ] {
        let error = Endpoint::parse(url).expect_err(url);
        assert!(error.to_string().contains(why), "{url}: {error}");
    }
}

#[test]
fn a_url_refused_for_its_user_info_does_not_carry_the_password_into_the_error() {
    let error = Endpoint::parse("http://ci:s3cret-pw@gw:9091/x@y").expect_err("user info");
    assert_eq!(error.url, "http://[REDACTED]@gw:9091/x@y");
    assert!(!error.to_string().contains("s3cret"), "{error}");
    let error = Endpoint::parse("http://tok3n@gw").expect_err("user info");
    assert!(!error.to_string().contains("tok3n"), "{error}");
    assert_eq!(without_user_info("http://gw/a@b"), "http://gw/a@b");
    assert_eq!(without_user_info("no scheme@x"), "no scheme@x");
}

#[test]
fn an_answer_gives_its_status_retry_after_and_the_start_of_its_body() {
    let answer =
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 5\r\n\r\nslow!extra";
    let response = read_response(&mut &answer[..], soon(), None).ok().unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(response.body, b"slow!");
}

#[test]
fn an_interim_100_is_skipped_and_a_body_without_length_is_read_to_the_end() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\n\r\nall of it";
    let response = read_response(&mut &answer[..], soon(), None).ok().unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.body, b"all of it");
}

#[test]
fn a_success_is_not_read_past_its_head_and_a_chunked_error_body_is_decoded() {
    // Nothing after the head: reading on would wait for the deadline.
    let answer = b"HTTP/1.1 200 OK\r\n\r\n";
    let response = read_response(&mut &answer[..], soon(), None).ok().unwrap();
    assert_eq!((response.status, response.body.len()), (200, 0));
    let answer = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
                   6\r\nout of\r\n7;x=y\r\n order\n\r\n0\r\n\r\n";
    let response = read_response(&mut &answer[..], soon(), None).ok().unwrap();
    assert_eq!(response.body_text(), "out of order");
    assert_eq!(dechunk(b"zz\r\nab"), None);
    assert!(ends_chunked(b"3\r\nabc\r\n0\r\n\r\n"));
}

#[test]
fn a_huge_body_is_kept_only_up_to_its_cap_and_a_huge_head_is_refused() {
    let mut answer = b"HTTP/1.1 500 Oops\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 1 << 20));
    let response = read_response(&mut &answer[..], soon(), None).ok().unwrap();
    assert_eq!(response.body.len(), MAX_BODY);
    let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 64 * 1024));
    assert!(matches!(
        read_response(&mut &answer[..], soon(), None),
        Err(Exchange::Malformed(_))
    ));
    assert!(matches!(
        read_response(&mut &b"garbage\r\n\r\n"[..], soon(), None),
        Err(Exchange::Malformed(_))
    ));
    assert!(matches!(
        read_response(&mut &b"HTTP/1.1 200"[..], soon(), None),
        Err(Exchange::Malformed(_))
    ));
}

#[test]
fn a_request_reaches_a_server_with_its_headers_and_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let mut body = vec![0; 4];
        reader.read_exact(&mut body).unwrap();
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\nno")
            .unwrap();
        (head, body)
    });
    let endpoint = Endpoint::parse(&format!("http://{addr}/metrics/job/j")).unwrap();
    let request = Request {
        method: "PUT",
        path: None,
        headers: &[("Content-Type", "text/plain")],
        body: b"a 1\n",
    };
    let response = send(&endpoint, &request, soon()).unwrap();
    assert_eq!(response.status, 409);
    assert_eq!(response.body_text(), "no");
    let (head, body) = server.join().unwrap();
    assert_eq!(head[0], "PUT /metrics/job/j HTTP/1.1");
    assert!(head.contains(&format!("Host: {addr}")));
    assert!(head.contains(&"Content-Length: 4".to_owned()));
    assert!(head.contains(&"Content-Type: text/plain".to_owned()));
    assert_eq!(body, b"a 1\n");
}

/// A POST of `body` to the endpoint's own path.
fn post(body: &[u8]) -> Request<'_> {
    Request {
        method: "POST",
        path: None,
        headers: &[],
        body,
    }
}

/// A listener that accepts (in its backlog) and never answers, and its
/// endpoint; a request to post to it.
fn silent_receiver() -> (TcpListener, Endpoint, Request<'static>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    (listener, endpoint, post(b"{}"))
}

/// A receiver that takes one connection and does `serve` with it on a
/// thread of its own; its endpoint.
fn receiver(serve: impl FnOnce(TcpStream) + Send + 'static) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || serve(listener.accept().unwrap().0));
    endpoint
}

/// Sends `request` with a 30 s deadline and a stop that comes after
/// 300 ms; gives the error and how long the send took.
fn send_stopped_after_300_ms(endpoint: &Endpoint, request: &Request) -> (SendError, Duration) {
    let start = Instant::now();
    let stop_at = start + Duration::from_millis(300);
    let error = send_unless(endpoint, request, start + Duration::from_secs(30), &|| {
        Instant::now() >= stop_at
    })
    .expect_err("stopped");
    assert!(matches!(error, SendError::Stopped { .. }), "{error}");
    (error, start.elapsed())
}

/// Sends `request` with a deadline `within` from now, which it cannot
/// keep: gives how long the send took to time out.
fn send_timing_out(endpoint: &Endpoint, request: &Request, within: Duration) -> Duration {
    let start = Instant::now();
    let error = send(endpoint, request, start + within).expect_err("out of time");
    assert_eq!(error.kind(), "timeout", "{error}");
    start.elapsed()
}

#[test]
fn a_server_that_never_answers_costs_the_deadline_and_no_more() {
    let (listener, endpoint, request) = silent_receiver();
    let took = send_timing_out(&endpoint, &request, Duration::from_millis(300));
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(listener);
}

#[test]
fn a_send_told_to_stop_gives_up_waiting_for_the_answer_long_before_its_deadline() {
    let (listener, endpoint, request) = silent_receiver();
    let (error, took) = send_stopped_after_300_ms(&endpoint, &request);
    assert_eq!(error.kind(), "timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn a_send_a_receiver_answers_at_once_is_not_cut_short_by_a_stop() {
    // A periodic push under way as shutdown began was given up before its
    // first write, and counted failed, though the receiver was healthy.
    let endpoint = receiver(|stream| {
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    let response = send_unless(&endpoint, &post(b""), soon(), &|| true).expect("answered");
    assert_eq!(response.status, 200);
}

#[test]
fn a_send_told_to_stop_gives_up_on_an_answer_trickled_a_byte_at_a_time() {
    // Every read gets a byte before its slice ends: none times out, so a
    // stop looked at only after a timeout was never seen (the send lasted
    // its whole deadline).
    let endpoint = receiver(|mut stream| {
        let head = b"HTTP/1.1 200 OK\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let request = post(b"{}");
    let (_, took) = send_stopped_after_300_ms(&endpoint, &request);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_send_told_to_stop_gives_up_writing_to_a_receiver_that_stopped_reading() {
    let (listener, endpoint, _) = silent_receiver();
    // More than the two sockets' buffers hold: the write blocks.
    let body = vec![b'x'; 64 << 20];
    let request = post(&body);
    let (_, took) = send_stopped_after_300_ms(&endpoint, &request);
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(listener);
}

#[test]
fn a_send_told_to_stop_gives_up_waiting_to_connect_and_one_not_told_connects_late() {
    // A listener whose accept queue is full drops the SYNs that come:
    // a connect waits as it would for a host that does not answer.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let endpoint = Endpoint::parse(&format!("http://{addr}/")).unwrap();
    let request = post(b"{}");
    let (_, took) = send_stopped_after_300_ms(&endpoint, &request);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Room in the queue a little later: the SYN sent again gets in
    // (after a second, its first retransmission), on the same socket.
    let accepting = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut accepted = Vec::new();
        while accepted.len() < queued.len() + 1 {
            accepted.push(listener.accept().unwrap());
        }
        accepted
    });
    let stream = connect(&endpoint, Instant::now() + Duration::from_secs(10), None);
    assert!(stream.is_ok(), "{:?}", stream.err());
    drop(accepting.join().unwrap());
}

#[test]
fn a_receiver_that_reads_slowly_holds_a_send_no_longer_than_its_deadline() {
    let endpoint = receiver(|mut stream| {
        // 64 KiB every 300 ms: each write makes some progress, and the
        // 16 MiB body would take more than a minute.
        let mut buf = vec![0u8; 64 * 1024];
        while stream.read_exact(&mut buf).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let body = vec![b'x'; 16 << 20];
    let request = post(&body);
    let took = send_timing_out(&endpoint, &request, Duration::from_millis(500));
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let request = post(b"");
    let error = send(&endpoint, &request, soon()).expect_err("refused");
    assert_eq!(error.kind(), "connect", "{error}");
}
