//! HTTP/1.1 pieces: parsing one request within size limits, writing one
//! response.
//!
//! Every connection carries one request (`Connection: close`), so an idle
//! client never holds a worker; Prometheus and browsers reconnect cheaply
//! on loopback.

use std::io::{self, Write};
use std::time::Duration;

/// Limits on what a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Request line plus headers, in bytes.
    pub(crate) max_head: usize,
    /// Headers per request.
    pub(crate) max_headers: usize,
    /// Body bytes read and discarded (no route takes a body).
    pub(crate) max_body: usize,
    /// Time to receive the whole request.
    pub(crate) request_timeout: Duration,
    /// Time to send the whole response.
    pub(crate) write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            // A slow client holds a worker at most this long.
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path without the query string, as sent (not decoded).
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// Header names lowercased; values as text (invalid UTF-8 replaced).
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header (name in lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, percent-decoded.
    pub(crate) fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response, written with `Content-Length` and `Connection: close`.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body.
    pub(crate) fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status, "application/json", body),
            Err(e) => Response::error(500, &format!("could not serialize the response: {e}")),
        }
    }

    /// A JSON error body: `{"error": reason, "message": …}`.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({"error": reason(status), "message": message});
        Response::new(status, "application/json", body.to_string())
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response; `head_only` for `HEAD` requests.
    pub(crate) fn write_to(&self, stream: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            // Values are ours, but a newline would split the response.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            head.push_str(name);
            head.push_str(": ");
            head.push_str(&value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        // One write, so one system call and (with TCP_NODELAY) no segment
        // holding the head alone: it matters when floods are served.
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        stream.write_all(&out)?;
        stream.flush()
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A request refused before routing: answer with this status and message,
/// then close.
pub(crate) type Rejection = (u16, &'static str);

/// What the bytes received so far on a connection amount to.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole request head yet.
    Partial,
    /// A whole head of `head_len` bytes, announcing a body of `body_len`
    /// bytes (which may not all have arrived).
    Complete {
        request: Request,
        head_len: usize,
        body_len: usize,
    },
}

/// Parses the start of a connection's input within `limits`. Pure, so the
/// reader can call it again as bytes trickle in, and the fuzz targets can
/// call it on anything.
pub(crate) fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, Rejection> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
            return Err((431, "the request head is too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err((431, "too many request headers")),
        Err(_) => return Err((400, "malformed request")),
    };
    if head_len > limits.max_head {
        return Err((431, "the request head is too large"));
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let request = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path,
        query,
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    };
    let body_len = body_length(&request, limits)?;
    Ok(Parsed::Complete {
        request,
        head_len,
        body_len,
    })
}

/// The announced body length, checked against the limits. No route takes a
/// body; it is read away so the client can read our answer (closing with
/// unread input resets the connection and may destroy the response).
///
/// Framing follows RFC 9112 §6.3: `Content-Length` together with
/// `Transfer-Encoding`, more than one `Content-Length` (even identical
/// ones, or a list such as `5, 5`: RFC 9110 §8.6 lets a recipient refuse
/// them, as nginx does, and no client we serve sends them), and a value
/// that is not plain decimal digits (`+5`, `-1`, `0x10`, empty) or does
/// not fit in a `u64` are all refused with 400, so no two readings of one
/// request can disagree on where it ends.
fn body_length(request: &Request, limits: &Limits) -> Result<usize, Rejection> {
    let mut lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str());
    let (first, second) = (lengths.next(), lengths.next());
    if request.header("transfer-encoding").is_some() {
        if first.is_some() {
            return Err((400, "Content-Length and Transfer-Encoding together"));
        }
        return Err((411, "chunked request bodies are not accepted"));
    }
    let length = match (first, second) {
        (None, _) => 0,
        (Some(_), Some(_)) => return Err((400, "more than one Content-Length")),
        (Some(value), None) => parse_content_length(value)?,
    };
    if length > limits.max_body as u64 {
        return Err((413, "the request body is too large"));
    }
    // Not above `max_body`, a `usize`.
    Ok(length as usize)
}

/// `Content-Length = 1*DIGIT` (optional whitespace around it trimmed).
fn parse_content_length(value: &str) -> Result<u64, Rejection> {
    let digits = value.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err((400, "invalid Content-Length"));
    }
    digits
        .bytes()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or((400, "Content-Length out of range"))
}

/// Most bytes read away after an early answer before closing anyway.
pub(crate) const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Longest time spent reading them.
pub(crate) const LINGER_TIME: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let request = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            query: Some("a=1&token=s%3Dcr%2Bt&x".into()),
            headers: Vec::new(),
        };
        assert_eq!(request.query_param("token").as_deref(), Some("s=cr+t"));
        assert_eq!(request.query_param("x").as_deref(), Some(""));
        assert_eq!(request.query_param("b"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn content_length_is_plain_digits_that_fit() {
        assert_eq!(parse_content_length(" 42\t"), Ok(42));
        assert_eq!(parse_content_length("007"), Ok(7));
        assert_eq!(parse_content_length("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "+5",
            "-1",
            "5 5",
            "5,5",
            "0x10",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(
                parse_content_length(bad).map_err(|e| e.0),
                Err(400),
                "{bad:?}"
            );
        }
    }
}
