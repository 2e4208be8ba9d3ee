//! `agentgate-obs watch [URL]`: follows the WebSocket stream in a terminal.
//!
//! Connects with tungstenite, loads the `hello` snapshot, applies every
//! event, and on a lost connection reconnects with backoff, resuming with
//! `since` (and the server's `instance`, so a restarted server answers with
//! a fresh snapshot instead of a wrong replay). A gap in `seq` or a
//! `lagged` notice makes it resynchronise the same way: the result lines
//! and the exit status are only worth something if no event went missing.

mod display;
mod fleet;

use std::io::IsTerminal;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{HandshakeError, Message, WebSocket};

use super::token::{Source, TOKEN_ENV, Token, TokenArgs};
use super::{Exit, Failure, Usage};
use display::Display;
use fleet::{Change, Fleet, Status};

/// How often the loop wakes to redraw and check for idleness.
const TICK: Duration = Duration::from_millis(200);
/// Limit on connecting and on the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The stream (ws://HOST:PORT/ws), or the dashboard's address (http://HOST:PORT/).
    #[arg(default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// The server's bearer token (also --token-file or AGENTGATE_TOKEN),
    /// sent in an Authorization header.
    #[command(flatten)]
    token: TokenArgs,
    /// Exit once no run is active and the stream has been quiet for --idle:
    /// status 0 if every run succeeded, 1 if any failed or was canceled.
    #[arg(long)]
    until_idle: bool,
    /// How long the stream must be quiet for --until-idle.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Give up (status 3) after being unable to connect for this long
    /// [default: forever; 30s with --until-idle].
    #[arg(long, value_parser = humantime::parse_duration)]
    retry_for: Option<Duration>,
}

/// Where to resume the stream from.
#[derive(Debug, Default)]
struct Cursor {
    seq: Option<u64>,
    instance: String,
}

/// Why following one connection ended.
enum Followed {
    /// --until-idle: nothing active, nothing heard for a while.
    Idle,
    /// Ctrl-C.
    Interrupted,
    /// A gap in the stream: reconnect at once from the cursor.
    Resync(String),
    /// The connection broke: reconnect with backoff.
    Lost(String),
}

/// A refused or failed connection attempt.
struct ConnectError {
    message: String,
    /// Retrying cannot help (wrong token, wrong path).
    fatal: bool,
}

pub(crate) fn run(args: WatchArgs) -> Result<Exit, Failure> {
    // A token in the URL (the dashboard's `?token=` link) moves to the
    // header too: the URL is what messages show and what servers log.
    let (base, url_token) = take_token(&stream_url(&args.url).map_err(Usage)?);
    let (mut token, mut note) = args.token.resolve()?;
    if let Some(from_url) = url_token {
        match &token {
            Some(t) if t.source != Source::Env => {
                note = Some("the token in the URL is ignored: a token option was given".into());
            }
            _ => {
                if token.is_some() {
                    note = Some(format!("{TOKEN_ENV} is ignored: the URL holds a token"));
                }
                token = Some(Token {
                    value: from_url,
                    source: Source::Flag,
                });
            }
        }
    }
    if let Some(note) = note {
        display::tell(&format!("agentgate-obs watch: note: {note}"));
    }
    let shown = base.clone();
    let auth = match &token {
        Some(token) => Some(
            tungstenite::http::HeaderValue::from_str(&format!("Bearer {}", token.value))
                .ok()
                .filter(|_| !token.value.is_empty())
                .ok_or_else(|| Usage("the token must be non-empty printable ASCII".into()))?,
        ),
        None => None,
    };
    let retry_for = args
        .retry_for
        .or(args.until_idle.then_some(Duration::from_secs(30)));
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;

    let mut display = Display::new(std::io::stdout().is_terminal());
    let mut fleet = Fleet::default();
    let mut cursor = Cursor::default();
    let started = Instant::now();
    let mut down_since = Instant::now();
    let mut backoff = BACKOFF_FIRST;
    let ended = loop {
        // Relaxed: a request to stop soon, not a synchronization point.
        if stop.load(Ordering::Relaxed) {
            break Followed::Interrupted;
        }
        let url = with_query(&base, &cursor);
        let wait = match connect(&url, auth.as_ref()) {
            Ok(ws) => {
                backoff = BACKOFF_FIRST;
                match follow(
                    ws,
                    &mut fleet,
                    &mut display,
                    &mut cursor,
                    &shown,
                    &args,
                    &stop,
                ) {
                    Followed::Resync(why) => {
                        display.note(&format!("resynchronising: {why}"));
                        Duration::ZERO
                    }
                    Followed::Lost(why) => {
                        display.note(&format!("disconnected: {why}; reconnecting"));
                        down_since = Instant::now();
                        BACKOFF_FIRST
                    }
                    end => break end,
                }
            }
            Err(e) if e.fatal => {
                display.clear();
                display::tell(&format!("agentgate-obs watch: {shown}: {}", e.message));
                return Ok(Exit::Input);
            }
            Err(e) => {
                if retry_for.is_some_and(|limit| down_since.elapsed() >= limit) {
                    display.clear();
                    display::tell(&format!(
                        "agentgate-obs watch: {shown}: gave up after {}: {}",
                        humantime::format_duration(retry_for.unwrap_or_default()),
                        e.message
                    ));
                    display::say(&display::summary(&fleet, started.elapsed()));
                    return Ok(Exit::Unavailable);
                }
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            }
        };
        sleep_unless_stopped(wait, &stop, &display);
    };

    display.clear();
    display::say(&display::summary(&fleet, started.elapsed()));
    let all_succeeded = fleet.count(Status::Failed) + fleet.count(Status::Canceled) == 0;
    Ok(match ended {
        Followed::Idle if all_succeeded => Exit::Ok,
        Followed::Idle => Exit::RunsFailed,
        _ => Exit::Ok,
    })
}

fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool, display: &Display) {
    let until = Instant::now() + wait;
    // Relaxed: as in `run`.
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        display.tick();
        std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
    }
}

/// Reads one connection until it ends, the fleet is idle, or Ctrl-C.
fn follow(
    mut ws: WebSocket<TcpStream>,
    fleet: &mut Fleet,
    display: &mut Display,
    cursor: &mut Cursor,
    shown: &str,
    args: &WatchArgs,
    stop: &AtomicBool,
) -> Followed {
    let mut heard = Instant::now();
    let mut greeted = false;
    let end = loop {
        // Relaxed: as in `run`.
        if stop.load(Ordering::Relaxed) {
            break Followed::Interrupted;
        }
        if args.until_idle && greeted && fleet.active() == 0 && heard.elapsed() >= args.idle {
            break Followed::Idle;
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                heard = Instant::now();
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                match handle(&message, fleet, display, cursor) {
                    Ok(true) if !greeted => {
                        greeted = true;
                        display.note(&format!(
                            "watching {}: {} runs, {} active",
                            shown,
                            fleet.total(),
                            fleet.active()
                        ));
                    }
                    Ok(_) => {}
                    Err(end) => break end,
                }
            }
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "the server closed the stream".to_owned(),
                    |f| format!("the server closed the stream ({})", f.reason),
                );
                break Followed::Lost(why);
            }
            // Pings are answered by tungstenite itself.
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break Followed::Lost(e.to_string()),
        }
        display.tick();
    };
    let _ = ws.close(None);
    let _ = ws.flush();
    end
}

/// Applies one message; `Ok(true)` for a `hello`.
fn handle(
    message: &Value,
    fleet: &mut Fleet,
    display: &mut Display,
    cursor: &mut Cursor,
) -> Result<bool, Followed> {
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
    let seq = message.get("seq").and_then(Value::as_u64);
    match kind {
        "hello" => {
            if message.get("resumed").and_then(Value::as_bool) != Some(true) {
                let empty = Vec::new();
                let runs = message
                    .get("runs")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty);
                let changes = fleet.load(runs);
                display.forget_missing(fleet);
                for change in changes {
                    show(&change, fleet, display);
                }
            }
            cursor.instance = message
                .get("instance")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            cursor.seq = seq;
            Ok(true)
        }
        "lagged" => Err(Followed::Resync(format!(
            "this client fell {} events behind",
            message.get("missed").and_then(Value::as_u64).unwrap_or(0)
        ))),
        event if event.contains(':') => {
            let Some(seq) = seq else {
                return Ok(false);
            };
            match cursor.seq {
                Some(last) if seq <= last => return Ok(false),
                Some(last) if seq > last + 1 => {
                    return Err(Followed::Resync(format!(
                        "events {} to {} are missing",
                        last + 1,
                        seq - 1
                    )));
                }
                _ => {}
            }
            cursor.seq = Some(seq);
            if let Some(change) = fleet.apply(message) {
                show(&change, fleet, display);
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

fn show(change: &Change, fleet: &Fleet, display: &mut Display) {
    match change {
        Change::Active(key) => {
            if let Some(run) = fleet.get(key) {
                display.active(run);
            }
        }
        Change::Finished(key) => {
            if let Some(run) = fleet.get(key) {
                display.finished(run);
            }
        }
    }
}

/// `ws://HOST:PORT/PATH` from what the user typed: a stream URL, the
/// dashboard's `http://HOST:PORT/`, or a bare `HOST:PORT`.
fn stream_url(given: &str) -> Result<String, String> {
    let (scheme, rest) = given.split_once("://").unwrap_or(("ws", given));
    match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => {}
        "wss" | "https" => {
            return Err(format!(
                "{given}: TLS is not supported; watch the plain ws:// address (through a tunnel if remote)"
            ));
        }
        other => return Err(format!("{given}: unsupported scheme {other}://")),
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{given}: expected HOST:PORT"));
    }
    let (path, query) = path.split_at(path.find('?').unwrap_or(path.len()));
    let path = if matches!(path, "" | "/") {
        "/ws"
    } else {
        path
    };
    Ok(format!("ws://{authority}{path}{query}"))
}

/// `url` without its `token` query parameters, and the (decoded) value of
/// the first.
fn take_token(url: &str) -> (String, Option<String>) {
    let Some((path, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut token = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key != "token" {
                return true;
            }
            token.get_or_insert_with(|| percent_decode(value));
            false
        })
        .collect();
    if kept.is_empty() {
        (path.to_owned(), token)
    } else {
        (format!("{path}?{}", kept.join("&")), token)
    }
}

/// `%XX` escapes and `+` decoded; invalid escapes kept as they are.
fn percent_decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds the resume point to `base`'s query. The token goes in a header,
/// never in the URL (which proxies and servers log).
fn with_query(base: &str, cursor: &Cursor) -> String {
    let mut url = base.to_owned();
    let mut add = |key: &str, value: &str| {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(key);
        url.push('=');
        url.push_str(&percent_encode(value));
    };
    if let Some(seq) = cursor.seq {
        add("since", &seq.to_string());
        add("instance", &cursor.instance);
    }
    url
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens the stream, with a deadline on connecting and on the handshake.
fn connect(
    url: &str,
    auth: Option<&tungstenite::http::HeaderValue>,
) -> Result<WebSocket<TcpStream>, ConnectError> {
    let retry = |message: String| ConnectError {
        message,
        fatal: false,
    };
    let mut request = url.into_client_request().map_err(|e| ConnectError {
        message: format!("not a WebSocket URL: {e}"),
        fatal: true,
    })?;
    if let Some(auth) = auth {
        request
            .headers_mut()
            .insert(tungstenite::http::header::AUTHORIZATION, auth.clone());
    }
    let uri = request.uri();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addrs = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| retry(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    let stream = addrs
        .into_iter()
        .find_map(
            |addr| match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    last = Some(e);
                    None
                }
            },
        )
        .ok_or_else(|| retry(last.map_or("no address".into(), |e| e.to_string())))?;
    let setup = stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CONNECT_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true));
    setup.map_err(|e| retry(e.to_string()))?;
    let (ws, _) = tungstenite::client(request, stream).map_err(|e| match e {
        HandshakeError::Interrupted(_) => retry("the handshake timed out".into()),
        HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            let status = response.status();
            ConnectError {
                message: format!("the server refused the stream: HTTP {status}"),
                // 401, 403, 404: another try gets the same answer; 503 may not.
                fatal: status.is_client_error(),
            }
        }
        HandshakeError::Failure(e) => retry(e.to_string()),
    })?;
    // From now on reads wake every tick, to redraw and to check for idleness.
    ws.get_ref()
        .set_read_timeout(Some(TICK))
        .map_err(|e| retry(e.to_string()))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_address_and_a_bare_host_lead_to_the_stream() {
        for (given, expected) in [
            ("ws://127.0.0.1:3000/ws", "ws://127.0.0.1:3000/ws"),
            ("http://127.0.0.1:3000/", "ws://127.0.0.1:3000/ws"),
            ("http://127.0.0.1:3000", "ws://127.0.0.1:3000/ws"),
            ("127.0.0.1:3000", "ws://127.0.0.1:3000/ws"),
            ("http://h:1/?token=x", "ws://h:1/ws?token=x"),
        ] {
            assert_eq!(stream_url(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in ["wss://h/ws", "ftp://h/", "ws:///ws", "ws://user@h/ws"] {
            assert!(stream_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_resume_point_goes_in_the_query_encoded_and_the_token_never_does() {
        let cursor = Cursor {
            seq: Some(41),
            instance: "a b&c".into(),
        };
        assert_eq!(
            with_query("ws://h:1/ws", &cursor),
            "ws://h:1/ws?since=41&instance=a%20b%26c"
        );
        assert_eq!(with_query("ws://h:1/ws", &Cursor::default()), "ws://h:1/ws");
    }

    #[test]
    fn a_token_given_in_the_url_is_taken_out_of_it_and_decoded() {
        assert_eq!(
            take_token("ws://h:1/ws?a=1&token=s3%2Fcret&b=2&token=x"),
            ("ws://h:1/ws?a=1&b=2".to_owned(), Some("s3/cret".to_owned()))
        );
        assert_eq!(
            take_token("ws://h:1/ws?token=t"),
            ("ws://h:1/ws".to_owned(), Some("t".to_owned()))
        );
        assert_eq!(take_token("ws://h:1/ws"), ("ws://h:1/ws".to_owned(), None));
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
}
