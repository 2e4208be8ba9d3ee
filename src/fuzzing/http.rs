//! The HTTP fuzz harness: arbitrary request bytes through the server's own
//! parser and the router with the real routes, behind a token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Metrics, MetricsConfig};
use crate::pipeline::drain::Drain;
use crate::pipeline::{Overflow, Shared};
use crate::routes::{self, AppState};
use crate::server::http::{self, Limits, Parsed, Request};
use crate::server::router::{Dispatch, Handler, QUERY_TOKEN_PATHS, Router};

/// The token the harness's router requires.
pub const TOKEN: &str = "fuzz-token";

/// The address the harness's router takes itself to be bound to: `Host`
/// values naming it (or `localhost`) pass the allow-list.
const BOUND: ([u8; 4], u16) = ([127, 0, 0, 1], 3000);
/// A host name added with `allowed_hosts`.
const ALLOWED_NAME: &str = "dash.example";

/// Paths the router knows, and whether they are public.
const ROUTES: [(&str, bool); 5] = [
    ("/metrics", false),
    ("/health", true),
    ("/api/runs", false),
    ("/api/summary", false),
    ("/ws", false),
];

/// A router with the real routes (the dashboard's too) over a running
/// drain thread (for `/api/runs`). Build it once per fuzzing process: the
/// drain thread lives as long as the process.
pub struct HttpHarness {
    router: Router,
    limits: Limits,
}

impl std::fmt::Debug for HttpHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHarness").finish_non_exhaustive()
    }
}

impl Default for HttpHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpHarness {
    /// Starts a small pipeline and builds the router. The `/ws` route is
    /// the real one's checks without a socket to take over.
    pub fn new() -> Self {
        let (shared, rx) = Shared::new(64, Overflow::DropNewest);
        let metrics = Metrics::for_pipeline(
            "agentgate",
            &MetricsConfig::default(),
            shared.clone(),
            None,
            Arc::new(crate::redact::Redactor::builtin().clone()),
        );
        let drain = Drain::new(shared.clone(), rx, 16, 64, Default::default());
        // Detached on purpose: it serves `/api/runs` for the process's lifetime.
        let spawned = std::thread::Builder::new()
            .name("fuzz-drain".into())
            .spawn(move || drain.run());
        assert!(spawned.is_ok(), "could not start the drain thread");
        let state = AppState {
            shared: Arc::clone(&shared),
            metrics,
            started: Instant::now(),
        };
        let mut router = crate::dashboard::mount(routes::router(&state, Some(TOKEN.to_owned())))
            .route("/ws", false, Handler::Upgrade(Box::new(|_, _, _| Ok(()))))
            .allowed_hosts(&[ALLOWED_NAME.to_owned()]);
        router.bound_to(SocketAddr::from(BOUND).ip());
        HttpHarness {
            router,
            limits: Limits::default(),
        }
    }

    /// Parses `bytes` as the start of a connection and routes the request
    /// if it is complete. Panics when an answer breaks the rules of
    /// docs/PROTOCOL.md and docs/SECURITY.md.
    pub fn request(&self, bytes: &[u8]) {
        let (request, head_len, body_len) = match http::parse_request(bytes, &self.limits) {
            Ok(Parsed::Partial) => return,
            Ok(Parsed::Complete {
                request,
                head_len,
                body_len,
            }) => (request, head_len, body_len),
            Err((status, _)) => {
                assert!(
                    [400, 408, 411, 413, 431].contains(&status),
                    "parse refusal {status}"
                );
                return;
            }
        };
        assert!(head_len <= bytes.len() && head_len <= self.limits.max_head);
        assert!(body_len <= self.limits.max_body);
        let route = ROUTES
            .into_iter()
            .chain(crate::dashboard::paths())
            .find(|(path, _)| *path == request.path);
        let plainly_allowed = plainly_allowed_host(&request);
        match self.router.dispatch(&request) {
            Dispatch::Upgrade(_) => {
                assert_eq!(request.path, "/ws", "only /ws upgrades");
                assert_eq!(request.method, "GET", "only GET upgrades");
                assert!(has_credentials(&request), "an upgrade without a token");
                assert!(
                    request.header("host").is_some(),
                    "an upgrade without a Host"
                );
                if let Err(refusal) = crate::ws::check_upgrade(&request) {
                    assert!(
                        [400, 403, 426].contains(&refusal.status),
                        "upgrade refusal {}",
                        refusal.status
                    );
                    check_response(&refusal, false);
                }
            }
            Dispatch::Respond(response) => {
                let status = response.status;
                // `/api/runs` refuses a bad `limit`, `offset` or `status`
                // with 400 once Host and token have passed.
                let query_refusal =
                    status == 400 && request.path == "/api/runs" && request.query.is_some();
                // The Host/Origin check comes first, on every path.
                let host_refusal = [400, 403, 421].contains(&status) && !query_refusal;
                if plainly_allowed {
                    assert!(
                        !host_refusal,
                        "{status} for an allowed Host without Origin: {request:?}"
                    );
                }
                if request.header("host").is_none() {
                    assert_eq!(status, 400, "no Host");
                }
                match route {
                    _ if host_refusal || query_refusal => {}
                    None => assert_eq!(status, 404, "unknown path {:?}", request.path),
                    Some((_, false)) if !has_credentials(&request) => {
                        assert_eq!(status, 401, "{:?} without a token", request.path)
                    }
                    Some(_) => assert!(
                        [200, 401, 405, 503].contains(&status),
                        "status {status} for {:?}",
                        request.path
                    ),
                }
                if status == 200 {
                    assert!(
                        request.method == "GET" || request.method == "HEAD",
                        "200 for {}",
                        request.method
                    );
                }
                check_response(&response, request.method == "HEAD");
            }
        }
    }
}

/// Whether the request names a token at all (right or wrong) where the
/// route takes one; without one, every route but the public ones must be refused.
fn has_credentials(request: &Request) -> bool {
    request.header("authorization").is_some()
        || (QUERY_TOKEN_PATHS.contains(&request.path.as_str())
            && request.query_param("token").is_some())
}

/// Whether the request has exactly one `Host`, one the router must accept
/// (the bound address, `localhost` or the allowed name, any port), and no
/// `Origin`.
fn plainly_allowed_host(request: &Request) -> bool {
    let hosts: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "host")
        .map(|(_, v)| v.trim())
        .collect();
    let [host] = hosts[..] else {
        return false;
    };
    let (name, port) = host.split_once(':').unwrap_or((host, "1"));
    ["127.0.0.1", "localhost", ALLOWED_NAME].contains(&name)
        && !port.is_empty()
        && port.len() <= 4
        && port.bytes().all(|b| b.is_ascii_digit())
        && request.header("origin").is_none()
}

/// A response as written parses back as exactly one well-formed response:
/// no header injected, the body as long as `Content-Length` says.
fn check_response(response: &http::Response, head_only: bool) {
    let mut written = Vec::new();
    if let Err(e) = response.write_to(&mut written, head_only) {
        panic!("writing to a Vec failed: {e}");
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(&written) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("our response does not parse: {other:?}"),
    };
    assert_eq!(parsed.code, Some(response.status));
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
    assert_eq!(length, Some(response.body.len()));
    let body = if head_only { 0 } else { response.body.len() };
    assert_eq!(written.len(), head_len + body, "bytes after the body");
    let expected = 5 + response.headers.len();
    assert_eq!(parsed.headers.len(), expected, "a header was injected");
}
