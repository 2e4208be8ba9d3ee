//! The route table: exact paths to handlers, with the `Host`/`Origin`
//! check ([`super::host`]), authentication and method checks in one place,
//! in that order.
//!
//! A handler either answers ([`Handler::Respond`]) or takes the connection
//! over ([`Handler::Upgrade`], for the WebSocket endpoint): it receives the
//! parsed request, the socket (on which it may set its own timeouts) and
//! any bytes the client sent after the request head.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, TcpStream};

use super::host::HostPolicy;
use super::http::{Request, Response};
use super::shed::ShedReason;

/// The answer to an upgrade that finds every slot taken.
pub(crate) const FULL_MESSAGE: &str = "too many WebSocket clients";

/// The only paths that take the token as `?token=`: the dashboard page (a
/// browser opens it from a link) and the WebSocket (a browser's
/// `WebSocket` cannot set a header). Everywhere else a token in the URL
/// would end up in proxy logs, shell history and `Referer`s for nothing:
/// only `Authorization: Bearer` counts.
pub(crate) const QUERY_TOKEN_PATHS: [&str; 2] = ["/", "/ws"];

/// Answers a request.
pub(crate) type RespondFn = dyn Fn(&Request) -> Response + Send + Sync;
/// Takes a connection over after its request head, or gives it back with
/// the response refusing it.
pub(crate) type UpgradeFn =
    dyn Fn(Request, TcpStream, Vec<u8>) -> Result<(), Refused> + Send + Sync;

/// Whether an upgrade request would find no slot free: the reader thread
/// asks it of every complete request to such a route, so that it can
/// refuse the upgrade itself and no worker is involved. Must be cheap and
/// never block.
pub(crate) type FullFn = dyn Fn(&Request) -> bool + Send + Sync;

/// An upgrade refused: the server answers `response` on `stream` and
/// closes it as it does any response, so a refusal costs a worker one
/// write, not the time the client takes to go away.
pub(crate) struct Refused {
    pub(crate) stream: TcpStream,
    /// What the client sent after the request head (read away before closing).
    pub(crate) leftover: Vec<u8>,
    pub(crate) response: Response,
    /// Counted as shed for this reason, when a limit refused it.
    pub(crate) shed: Option<ShedReason>,
}

pub(crate) enum Handler {
    /// Answers `GET` and `HEAD`.
    Respond(Box<RespondFn>),
    /// Takes over `GET` connections.
    Upgrade(Box<UpgradeFn>),
}

struct Route {
    path: String,
    /// Reachable without the token.
    public: bool,
    handler: Handler,
    /// For an upgrade route: whether its slots are all taken.
    full: Option<Box<FullFn>>,
}

/// What the connection should do with a request.
pub(crate) enum Dispatch<'a> {
    Respond(Response),
    Upgrade(&'a UpgradeFn),
}

/// Exact-path routes plus an optional bearer token and the `Host` allow-list.
pub(crate) struct Router {
    routes: Vec<Route>,
    token: Option<Secret>,
    hosts: HostPolicy,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.path).collect::<Vec<_>>(),
            )
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl Router {
    pub(crate) fn new(token: Option<String>) -> Self {
        Router {
            routes: Vec::new(),
            token: token.map(|t| Secret::new(t.as_bytes())),
            hosts: HostPolicy::default(),
        }
    }

    /// Also answers to these host names (see [`super::host`]).
    pub(crate) fn allowed_hosts(mut self, names: &[String]) -> Self {
        self.hosts.allow(names);
        self
    }

    /// The address the server is bound to, which decides the `Host`
    /// values accepted besides the allowed names (127.0.0.1 until set).
    pub(crate) fn bound_to(&mut self, ip: IpAddr) {
        self.hosts.set_bound(ip);
    }

    /// Adds (or replaces) the handler of `path`. `public` routes skip the token.
    pub(crate) fn route(mut self, path: &str, public: bool, handler: Handler) -> Self {
        self.routes.retain(|r| r.path != path);
        self.routes.push(Route {
            path: path.to_owned(),
            public,
            handler,
            full: None,
        });
        self
    }

    /// Lets the reader refuse upgrades to `path` with `503` while `full`
    /// says so, before they reach a worker (see [`Router::refused_early`]).
    pub(crate) fn refuse_when_full(mut self, path: &str, full: Box<FullFn>) -> Self {
        if let Some(route) = self.routes.iter_mut().find(|r| r.path == path) {
            route.full = Some(full);
        }
        self
    }

    /// Whether the reader should answer this complete request `503` at
    /// once: an upgrade that [`Router::dispatch`] would hand to its
    /// handler (same `Host`, token and method checks, in the same order)
    /// and that would find no slot. A flood of such upgrades then costs no
    /// worker time, and the requests queued for workers do not wait
    /// behind it. The handler checks again: a slot taken meanwhile is
    /// still refused there.
    pub(crate) fn refused_early(&self, request: &Request) -> Option<(ShedReason, &'static str)> {
        let route = self.routes.iter().find(|r| r.path == request.path)?;
        let full = route.full.as_ref()?;
        let dispatched = matches!(route.handler, Handler::Upgrade(_))
            && request.method == "GET"
            && self.hosts.check(request).is_ok()
            && (route.public || self.authorized(route, request));
        (dispatched && full(request)).then_some((ShedReason::WsClientsFull, FULL_MESSAGE))
    }

    /// Looks the request up: 400/421/403 for a `Host` or `Origin` that is
    /// not allowed (on every path, public ones and unknown ones included),
    /// 404 for an unknown path, 401 without the token, 405 for a method
    /// other than GET (and HEAD for answers).
    pub(crate) fn dispatch(&self, request: &Request) -> Dispatch<'_> {
        if let Err(refusal) = self.hosts.check(request) {
            return Dispatch::Respond(refusal);
        }
        let Some(route) = self.routes.iter().find(|r| r.path == request.path) else {
            return Dispatch::Respond(Response::error(404, "no such path"));
        };
        if !route.public && !self.authorized(route, request) {
            let query_only = request.query_param("token").is_some()
                && !QUERY_TOKEN_PATHS.contains(&route.path.as_str());
            // Never echo what was given: it may be the right token in the wrong place.
            let message = if query_only {
                "a valid bearer token is required in an Authorization: Bearer header \
                 (?token= is accepted only on / and /ws)"
            } else {
                "a valid bearer token is required"
            };
            return Dispatch::Respond(
                Response::error(401, message).with_header("WWW-Authenticate", "Bearer"),
            );
        }
        match (&route.handler, request.method.as_str()) {
            (Handler::Respond(f), "GET" | "HEAD") => Dispatch::Respond(f(request)),
            (Handler::Upgrade(f), "GET") => Dispatch::Upgrade(f.as_ref()),
            (Handler::Respond(_), _) => Dispatch::Respond(
                Response::error(405, "only GET and HEAD are allowed")
                    .with_header("Allow", "GET, HEAD"),
            ),
            (Handler::Upgrade(_), _) => Dispatch::Respond(
                Response::error(405, "only GET is allowed").with_header("Allow", "GET"),
            ),
        }
    }

    fn authorized(&self, route: &Route, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = request.header("authorization").and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
        let given = bearer.or_else(|| {
            QUERY_TOKEN_PATHS
                .contains(&route.path.as_str())
                .then(|| request.query_param("token"))
                .flatten()
        });
        given.is_some_and(|g| token.matches(g.as_bytes()))
    }
}

/// The token, kept as a keyed digest so a comparison leaks neither its
/// content nor its length through timing.
///
/// Comparing the bytes directly must either stop at a length mismatch
/// (which tells an attacker the length) or loop over the real token's
/// length (which takes time proportional to it). Instead both sides go
/// through SipHash-1-3 (std's `RandomState`, keyed with random 128-bit keys
/// chosen when the server starts), twice with two keys, and the two 128-bit
/// digests are compared with one XOR/OR: the time taken depends only on the
/// length of what the client sent, which the client knows anyway. The
/// token's own digest is computed once, here. Without the keys an attacker
/// cannot aim at a digest, so a match means the right token (a chance
/// collision is 2^-128); the bytes are compared as well for certainty,
/// which only happens once the digests matched. No crypto dependency needed:
/// SipHash is a keyed PRF designed for exactly this kind of
/// attacker-facing input.
struct Secret {
    keys: [RandomState; 2],
    digest: [u64; 2],
    token: Vec<u8>,
}

impl Secret {
    fn new(token: &[u8]) -> Self {
        let keys = [RandomState::new(), RandomState::new()];
        let digest = Self::digest(&keys, token);
        Secret {
            keys,
            digest,
            token: token.to_vec(),
        }
    }

    fn digest(keys: &[RandomState; 2], bytes: &[u8]) -> [u64; 2] {
        keys.each_ref().map(|key| {
            let mut hasher = key.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        })
    }

    fn matches(&self, given: &[u8]) -> bool {
        let digest = Self::digest(&self.keys, given);
        let differ = (digest[0] ^ self.digest[0]) | (digest[1] ^ self.digest[1]);
        // Reached only when the digests matched: the lengths are then equal
        // unless SipHash collided, so this reveals nothing new.
        differ == 0
            && given.len() == self.token.len()
            && given
                .iter()
                .zip(&self.token)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_itself_only() {
        let secret = Secret::new(b"s3cret");
        assert!(secret.matches(b"s3cret"));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret!",
            b"S3cret",
            b"x3cret",
            b"s3cres",
        ] {
            assert!(!secret.matches(wrong), "{wrong:?}");
        }
    }
}
