//! The `Host` allow-list and the `Origin` check: the defence against DNS
//! rebinding, applied to every request before routing and authentication.
//!
//! DNS rebinding: a page on `http://evil.example:3000/` makes its name
//! resolve to `127.0.0.1` after loading, so the browser lets it read our
//! answers as same-origin. The browser still sends `Host: evil.example:3000`
//! (and `Origin: http://evil.example:3000`), both derived from the URL the
//! attacker chose, so comparing them with each other proves nothing (the old
//! WebSocket check did just that). What the attacker cannot choose is a name
//! we did not expect. So, like Jupyter and the Kubernetes dashboard, only
//! these `Host` values are accepted:
//!
//! - the bound IP literal; for a loopback bind also `localhost`, any
//!   loopback IP literal (`127.0.0.1`, `[::1]`);
//! - for an unspecified bind (`0.0.0.0`, `[::]`): any IP literal (the
//!   server answers on every address of the machine, and a rebinding attack
//!   always arrives under a DNS name, never as an IP literal) and `localhost`;
//! - the names the embedder adds with `Builder::allowed_hosts`.
//!
//! The port in `Host` is not compared with the bound port: rebinding is
//! about the name, and a port forward (`ssh -L 8080:127.0.0.1:3000`,
//! `docker -p 8080:3000`, a reverse proxy) legitimately changes the port
//! the browser sees. The `Origin` check below does compare ports.
//!
//! Anything else gets `421 Misdirected Request` naming the refused host and
//! how to allow it; no `Host` (or two) gets `400`, as HTTP/1.1 requires.
//!
//! `Origin`, when a request carries one (browsers send it on WebSocket
//! upgrades and cross-origin requests), must be an `http`/`https` origin
//! whose host and port are those of the (already allowed) `Host`: the same
//! origin. Anything else, `Origin: null` included, gets `403`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::http::{Request, Response};

/// The loopback name accepted for loopback and unspecified binds.
const LOCALHOST: &str = "localhost";
/// Longest host name echoed back in a refusal.
const ECHO_MAX: usize = 100;

/// Which `Host` values the server answers to.
#[derive(Clone, Debug)]
pub(crate) struct HostPolicy {
    bound: IpAddr,
    /// Normalized names from `Builder::allowed_hosts`.
    names: Vec<String>,
}

impl Default for HostPolicy {
    fn default() -> Self {
        HostPolicy {
            bound: IpAddr::V4(Ipv4Addr::LOCALHOST),
            names: Vec::new(),
        }
    }
}

/// A host as parsed from `Host` or an origin, normalized: lowercase, no
/// trailing dot, IP literals in canonical form without brackets.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl HostPolicy {
    /// The policy for a server bound to `bound`, plus `names` (each
    /// checked by [`normalize_allowed`]; invalid ones are skipped).
    #[cfg(test)]
    pub(crate) fn new(bound: IpAddr, names: &[String]) -> Self {
        HostPolicy {
            bound,
            names: names
                .iter()
                .filter_map(|n| normalize_allowed(n).ok())
                .collect(),
        }
    }

    /// The bound address is known only once the listener is bound.
    pub(crate) fn set_bound(&mut self, bound: IpAddr) {
        self.bound = bound;
    }

    /// Adds allowed names (invalid ones are skipped: the builder checks them).
    pub(crate) fn allow(&mut self, names: &[String]) {
        self.names
            .extend(names.iter().filter_map(|n| normalize_allowed(n).ok()));
    }

    /// `Ok` when the request's `Host` (and `Origin`, if any) are allowed;
    /// otherwise the response refusing it.
    pub(crate) fn check(&self, request: &Request) -> Result<(), Response> {
        let mut hosts = request.headers.iter().filter(|(n, _)| n == "host");
        let (Some((_, value)), None) = (hosts.next(), hosts.next()) else {
            let message = if request.header("host").is_some() {
                "more than one Host header"
            } else {
                "the Host header is required"
            };
            return Err(Response::error(400, message));
        };
        let Some(host) = parse_authority(value.trim()) else {
            return Err(Response::error(400, "the Host header is malformed"));
        };
        if !self.allows(&host.host) {
            return Err(Response::error(
                421,
                &format!(
                    "this server does not answer to the host {}: it answers to the IP address it \
                     is bound to{} and to names added with Builder::allowed_hosts \
                     (protection against DNS rebinding)",
                    echo(&host.host.to_string()),
                    if self.bound.is_loopback() || self.bound.is_unspecified() {
                        ", localhost"
                    } else {
                        ""
                    },
                ),
            ));
        }
        let mut origins = request.headers.iter().filter(|(n, _)| n == "origin");
        match (origins.next(), origins.next()) {
            (None, _) => Ok(()),
            (Some((_, origin)), None) if same_origin(origin.trim(), &host) => Ok(()),
            _ => Err(Response::error(
                403,
                "cross-origin requests are refused: Origin must be this server's own http(s) \
                 origin (the scheme, host and port the page was loaded from)",
            )),
        }
    }

    fn allows(&self, host: &Host) -> bool {
        let loopback = self.bound.is_loopback();
        let unspecified = self.bound.is_unspecified();
        match host {
            Host::Ip(ip) => {
                unspecified
                    || *ip == self.bound
                    || (loopback && ip.is_loopback())
                    || self.names.contains(&ip.to_string())
            }
            Host::Name(name) => {
                ((loopback || unspecified) && name == LOCALHOST)
                    || self.names.iter().any(|n| n == name)
            }
        }
    }
}

/// Checks and normalizes a name for `Builder::allowed_hosts`: a DNS name
/// or an IP literal, without scheme, port or path.
pub(crate) fn normalize_allowed(name: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "allowed host {name:?} must be a host name or an IP address, without scheme, port or path"
        )
    };
    let name = name.trim();
    // A bare IPv6 literal has colons but no port.
    if let Ok(ip) = name.parse::<Ipv6Addr>() {
        return Ok(ip.to_string());
    }
    match parse_authority(name) {
        Some(Authority { host, port: None }) => Ok(match host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name,
        }),
        _ => Err(bad()),
    }
}

/// Parses `host[:port]` (RFC 9110 §7.2 `uri-host [ ":" port ]`; IPv6 in
/// brackets). `None` when malformed.
fn parse_authority(text: &str) -> Option<Authority> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (Host::Ip(IpAddr::V6(ip.parse().ok()?)), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return None;
        }
        let host = match name.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(name.to_ascii_lowercase()),
        };
        (host, port)
    };
    let port = match port {
        // `host:` with an empty port is allowed by the grammar.
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some(Authority { host, port })
}

/// Whether `origin` (`scheme://host[:port]`) is the origin `host` was
/// reached at: same host, same port (a missing port being the scheme's).
fn same_origin(origin: &str, host: &Authority) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some(origin) = parse_authority(rest.strip_suffix('/').unwrap_or(rest)) else {
        return false;
    };
    origin.host == host.host
        && origin.port.unwrap_or(default_port) == host.port.unwrap_or(default_port)
}

/// A host for an error message: already validated (letters, digits, `-._:[]`), cut short.
fn echo(host: &str) -> String {
    let cut: String = host.chars().take(ECHO_MAX).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn status(policy: &HostPolicy, headers: &[(&str, &str)]) -> u16 {
        policy
            .check(&request(headers))
            .map_or_else(|r| r.status, |()| 200)
    }

    #[test]
    fn a_loopback_bind_answers_to_loopback_names_and_allowed_names_only() {
        let policy = HostPolicy::new("127.0.0.1".parse().unwrap(), &["Dash.Example.".into()]);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "localhost.",
            "[::1]:3000",
            "[::1]",
            "dash.example",
            "DASH.example:8443",
        ] {
            assert_eq!(status(&policy, &[("host", ok)]), 200, "{ok}");
        }
        for refused in [
            "evil.example",
            "10.0.0.1",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(status(&policy, &[("host", refused)]), 421, "{refused}");
        }
        for malformed in ["", "a b", "[::1", "::1", "a:b", "x:99999", "a/b", "a@b"] {
            assert_eq!(
                status(&policy, &[("host", malformed)]),
                400,
                "{malformed:?}"
            );
        }
        assert_eq!(status(&policy, &[]), 400);
        assert_eq!(
            status(&policy, &[("host", "localhost"), ("host", "localhost")]),
            400
        );
    }

    #[test]
    fn an_unspecified_bind_answers_to_any_ip_literal_but_to_no_unknown_name() {
        let policy = HostPolicy::new("0.0.0.0".parse().unwrap(), &[]);
        for ok in ["10.1.2.3:3000", "[fe80::1]", "localhost", "127.0.0.1"] {
            assert_eq!(status(&policy, &[("host", ok)]), 200, "{ok}");
        }
        assert_eq!(status(&policy, &[("host", "evil.example")]), 421);
        let specific = HostPolicy::new("192.168.1.5".parse().unwrap(), &[]);
        assert_eq!(status(&specific, &[("host", "192.168.1.5:3000")]), 200);
        assert_eq!(status(&specific, &[("host", "localhost")]), 421);
        assert_eq!(status(&specific, &[("host", "10.0.0.1")]), 421);
    }

    #[test]
    fn an_origin_must_be_the_same_origin_as_the_allowed_host() {
        let policy = HostPolicy::new("127.0.0.1".parse().unwrap(), &[]);
        let with = |origin| status(&policy, &[("host", "127.0.0.1:3000"), ("origin", origin)]);
        assert_eq!(with("http://127.0.0.1:3000"), 200);
        assert_eq!(with("https://127.0.0.1:3000/"), 200);
        assert_eq!(with("http://localhost:3000"), 403);
        assert_eq!(with("http://127.0.0.1:3001"), 403);
        assert_eq!(with("http://127.0.0.1"), 403);
        assert_eq!(with("null"), 403);
        assert_eq!(with("ftp://127.0.0.1:3000"), 403);
        assert_eq!(with("http://evil.example:3000"), 403);
        let default_port = |origin| status(&policy, &[("host", "localhost"), ("origin", origin)]);
        assert_eq!(default_port("http://localhost"), 200);
        assert_eq!(default_port("http://localhost:80"), 200);
        assert_eq!(default_port("http://localhost:3000"), 403);
    }

    #[test]
    fn allowed_names_are_checked_and_normalized() {
        assert_eq!(normalize_allowed("Box.Local.").unwrap(), "box.local");
        assert_eq!(normalize_allowed("[::1]").unwrap(), "::1");
        assert_eq!(normalize_allowed("::1").unwrap(), "::1");
        for bad in ["", "http://x", "x:80", "x/y", "a b"] {
            assert!(normalize_allowed(bad).is_err(), "{bad:?}");
        }
    }
}
