//! The route table: exact paths to handlers, with authentication and
//! method checks in one place.
//!
//! A handler either answers ([`Handler::Respond`]) or takes the connection
//! over ([`Handler::Upgrade`], for the WebSocket endpoint): it receives the
//! parsed request, the socket (on which it may set its own timeouts) and
//! any bytes the client sent after the request head.

use std::net::TcpStream;

use super::http::{Request, Response};

/// Answers a request.
pub(crate) type RespondFn = dyn Fn(&Request) -> Response + Send + Sync;
/// Takes a connection over after its request head.
pub(crate) type UpgradeFn = dyn Fn(Request, TcpStream, Vec<u8>) + Send + Sync;

pub(crate) enum Handler {
    /// Answers `GET` and `HEAD`.
    Respond(Box<RespondFn>),
    /// Takes over `GET` connections.
    #[allow(dead_code)] // Used by the WebSocket endpoint, which plugs into this router.
    Upgrade(Box<UpgradeFn>),
}

struct Route {
    path: String,
    /// Reachable without the token.
    public: bool,
    handler: Handler,
}

/// What the connection should do with a request.
pub(crate) enum Dispatch<'a> {
    Respond(Response),
    Upgrade(&'a UpgradeFn),
}

/// Exact-path routes plus an optional bearer token.
pub(crate) struct Router {
    routes: Vec<Route>,
    token: Option<String>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.path).collect::<Vec<_>>(),
            )
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Router {
    pub(crate) fn new(token: Option<String>) -> Self {
        Router {
            routes: Vec::new(),
            token,
        }
    }

    /// Adds (or replaces) the handler of `path`. `public` routes skip the token.
    pub(crate) fn route(mut self, path: &str, public: bool, handler: Handler) -> Self {
        self.routes.retain(|r| r.path != path);
        self.routes.push(Route {
            path: path.to_owned(),
            public,
            handler,
        });
        self
    }

    /// Looks the request up: 404 for an unknown path, 401 without the
    /// token, 405 for a method other than GET (and HEAD for answers).
    pub(crate) fn dispatch(&self, request: &Request) -> Dispatch<'_> {
        let Some(route) = self.routes.iter().find(|r| r.path == request.path) else {
            return Dispatch::Respond(Response::error(404, "no such path"));
        };
        if !route.public && !self.authorized(request) {
            return Dispatch::Respond(
                Response::error(401, "a valid bearer token is required")
                    .with_header("WWW-Authenticate", "Bearer"),
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

    fn authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = request.header("authorization").and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
        let given = bearer.or_else(|| request.query_param("token"));
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }
}

/// Compares without returning early at the first difference, so response
/// timing does not tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
