//! The overload soak (`scripts/soak`): under each overflow policy, two
//! threads of the simulated engine emit 10 M events through a 1,024-slot
//! ring while 50 WebSocket clients are connected (10 never read) and a
//! scraper loops on `/metrics`. Prints a summary and exits 1 if any
//! invariant is violated:
//!
//! - emitted = processed + dropped, per event type, exactly;
//! - no lifecycle event dropped;
//! - `active_runs` back to 0;
//! - the run counts in `/metrics` equal the simulated engine's;
//! - every scrape parses strictly and its counters never go backwards;
//! - every reading WebSocket client sees seqs without a silent gap (a jump
//!   is always announced by `lagged` with the exact count) and ends with 1001;
//! - the clients that never read are closed by the server;
//! - peak RSS under the bound; threads and descriptors back to baseline.
//!
//! `cargo run --release --example soak -- [EVENTS_PER_POLICY]`

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgate_obs::demo::{DemoConfig, RunTally, run_engine};
use agentgate_obs::event::EventType;
use agentgate_obs::fuzzing::strict;
use agentgate_obs::{Observability, Overflow};
use tungstenite::Message;

const RING: usize = 1_024;
const READING_CLIENTS: usize = 40;
const SILENT_CLIENTS: usize = 10;
const PEAK_RSS_BOUND_MB: u64 = 1_024;
/// How long a silent client may hold data back before the server closes it.
const STALL: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let policies = [
        ("DropNewest", Overflow::DropNewest),
        ("Block", Overflow::Block),
        (
            "BlockFor(1ms)",
            Overflow::BlockFor(Duration::from_millis(1)),
        ),
    ];
    let mut violations = Vec::new();
    let mut rows = Vec::new();
    for (name, policy) in policies {
        let (row, mut broken) = soak(name, policy, events);
        println!("{row}");
        rows.push(row);
        violations.extend(broken.drain(..).map(|v| format!("{name}: {v}")));
    }
    println!(
        "\nsoak summary ({events} events per policy, ring {RING}, {READING_CLIENTS}+{SILENT_CLIENTS} WebSocket clients, 1 scraper)"
    );
    println!(
        "| policy | emitted | processed | dropped | lifecycle dropped | runs | scrapes | ws msgs read | ws lagged | peak RSS | time |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        println!("{}", row.table_line());
    }
    if violations.is_empty() {
        println!("soak: all invariants held");
        ExitCode::SUCCESS
    } else {
        for v in &violations {
            println!("VIOLATED: {v}");
        }
        println!("soak: {} invariant(s) violated", violations.len());
        ExitCode::FAILURE
    }
}

struct Row {
    policy: &'static str,
    emitted: u64,
    processed: u64,
    dropped: u64,
    lifecycle_dropped: u64,
    runs: u64,
    scrapes: u64,
    ws_read: u64,
    ws_missed: u64,
    peak_rss_mb: u64,
    seconds: f64,
}

impl Row {
    fn table_line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} MB | {:.1} s |",
            self.policy,
            self.emitted,
            self.processed,
            self.dropped,
            self.lifecycle_dropped,
            self.runs,
            self.scrapes,
            self.ws_read,
            self.ws_missed,
            self.peak_rss_mb,
            self.seconds
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: emitted {} = processed {} + dropped {} (lifecycle dropped {}), {} runs, {} scrapes, ws read {} / lagged {}, peak RSS {} MB, {:.1} s",
            self.policy,
            self.emitted,
            self.processed,
            self.dropped,
            self.lifecycle_dropped,
            self.runs,
            self.scrapes,
            self.ws_read,
            self.ws_missed,
            self.peak_rss_mb,
            self.seconds
        )
    }
}

fn soak(policy_name: &'static str, policy: Overflow, events: u64) -> (Row, Vec<String>) {
    let mut broken = Vec::new();
    let started = Instant::now();
    let base_threads = thread_count();
    let base_fds = fd_count();
    reset_peak_rss();

    let obs = Observability::builder()
        .queue_capacity(RING)
        .overflow(policy)
        .serve("127.0.0.1:0")
        .websocket_max_clients(READING_CLIENTS + SILENT_CLIENTS)
        .websocket_stall_timeout(STALL)
        // The JSON log path stays in the workload, but its millions of
        // lines go nowhere: on stdout they made CI's output 2 GB.
        .log_to(std::io::sink())
        .start();
    let obs = match obs {
        Ok(obs) => Arc::new(obs),
        Err(e) => {
            broken.push(format!("could not start: {e}"));
            return (empty_row(policy_name), broken);
        }
    };
    let Some(addr) = obs.local_addr() else {
        broken.push("no address".into());
        return (empty_row(policy_name), broken);
    };

    let readers: Vec<_> = (0..READING_CLIENTS).map(|_| Reader::start(addr)).collect();
    let silent: Vec<TcpStream> = (0..SILENT_CLIENTS)
        .filter_map(|_| silent_client(addr))
        .collect();
    if silent.len() != SILENT_CLIENTS {
        broken.push(format!("only {} silent clients connected", silent.len()));
    }
    let scraper = Scraper::start(addr);

    // The engine: two worker threads, as many work orders as it takes.
    let stop = Arc::new(AtomicBool::new(false));
    let engine = {
        let (emitter, stop) = (obs.emitter(), stop.clone());
        std::thread::spawn(move || {
            let config = DemoConfig {
                work_orders: usize::MAX,
                concurrency: 2,
                seed: 7,
                time_scale: 0.0,
            };
            run_engine(&emitter, &config, &stop)
        })
    };
    while obs.stats().emitted.total() < events {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    // Workers finish the run in hand, then stop taking work orders.
    let tally: RunTally = engine.join().unwrap_or_default();
    obs.flush();

    let stats = obs.stats();
    for ty in EventType::ALL {
        let (e, p, d) = (stats.emitted[ty], stats.processed[ty], stats.dropped[ty]);
        if e != p + d {
            broken.push(format!("{ty}: emitted {e} != processed {p} + dropped {d}"));
        }
    }
    let lifecycle_dropped: u64 = EventType::ALL
        .iter()
        .filter(|t| t.is_lifecycle())
        .map(|&t| stats.dropped[t])
        .sum();
    if lifecycle_dropped > 0 {
        broken.push(format!("{lifecycle_dropped} lifecycle events dropped"));
    }
    if obs.active_runs() != 0 {
        broken.push(format!(
            "active_runs is {} after the engine finished",
            obs.active_runs()
        ));
    }
    check_run_counts(addr, &tally, &mut broken);

    // The silent clients stop taking data early on; the server must close them.
    let deadline = Instant::now() + STALL * 4;
    while obs.metrics().ws_clients() > READING_CLIENTS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if obs.metrics().ws_clients() > READING_CLIENTS as u64 {
        broken.push(format!(
            "{} WebSocket clients still connected; the {SILENT_CLIENTS} that never read were not all closed",
            obs.metrics().ws_clients()
        ));
    }

    let scrapes = scraper.finish(&mut broken);
    let last_seq = stats.processed.total();
    obs.shutdown();
    let mut ws_read = 0;
    let mut ws_missed = 0;
    for reader in readers {
        let outcome = reader.finish();
        ws_read += outcome.events;
        ws_missed += outcome.missed;
        if let Some(v) = outcome.violation {
            broken.push(format!("WebSocket reader: {v}"));
        } else if outcome.events + outcome.missed != last_seq.saturating_sub(outcome.hello_seq) {
            broken.push(format!(
                "WebSocket reader: {} events + {} missed != {} events after its hello",
                outcome.events,
                outcome.missed,
                last_seq - outcome.hello_seq
            ));
        }
    }
    drop(silent);
    let peak_rss_mb = peak_rss_kb() / 1024;
    if peak_rss_mb > PEAK_RSS_BOUND_MB {
        broken.push(format!(
            "peak RSS {peak_rss_mb} MB over {PEAK_RSS_BOUND_MB} MB"
        ));
    }
    drop(obs);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (thread_count() > base_threads || fd_count() > base_fds) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if thread_count() > base_threads {
        broken.push(format!(
            "threads {} > baseline {base_threads}",
            thread_count()
        ));
    }
    if fd_count() > base_fds {
        broken.push(format!("descriptors {} > baseline {base_fds}", fd_count()));
    }
    let row = Row {
        policy: policy_name,
        emitted: stats.emitted.total(),
        processed: stats.processed.total(),
        dropped: stats.dropped.total(),
        lifecycle_dropped,
        runs: tally.total(),
        scrapes,
        ws_read,
        ws_missed,
        peak_rss_mb,
        seconds: started.elapsed().as_secs_f64(),
    };
    (row, broken)
}

fn empty_row(policy: &'static str) -> Row {
    Row {
        policy,
        emitted: 0,
        processed: 0,
        dropped: 0,
        lifecycle_dropped: 0,
        runs: 0,
        scrapes: 0,
        ws_read: 0,
        ws_missed: 0,
        peak_rss_mb: 0,
        seconds: 0.0,
    }
}

/// `/metrics` after the flush agrees with what the engine says it ran.
fn check_run_counts(addr: SocketAddr, tally: &RunTally, broken: &mut Vec<String>) {
    let Some(text) = get(addr, "/metrics") else {
        broken.push("the final scrape failed".into());
        return;
    };
    let samples = match strict::parse(&text, false) {
        Ok(samples) => samples,
        Err(e) => {
            broken.push(format!("the final scrape does not parse: {e}"));
            return;
        }
    };
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && label.is_none_or(|(k, v)| s.labels.iter().any(|(n, x)| n == k && x == v))
            })
            .map_or(0, |s| s.value as u64)
    };
    let checks = [
        ("runs_started_total", None, tally.total()),
        (
            "runs_completed_total",
            Some(("result", "succeeded")),
            tally.succeeded,
        ),
        (
            "runs_completed_total",
            Some(("result", "failed")),
            tally.failed,
        ),
        (
            "runs_completed_total",
            Some(("result", "canceled")),
            tally.canceled,
        ),
        ("active_runs", None, 0),
    ];
    for (name, label, expected) in checks {
        let got = value(&format!("agentgate_{name}"), label);
        if got != expected {
            broken.push(format!(
                "/metrics {name} {label:?} = {got}, the engine says {expected}"
            ));
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8(reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_owned())
}

/// A thread scraping `/metrics` in a loop, checking every answer.
struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Vec<String>)>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            let mut broken = Vec::new();
            let mut last_started = 0.0;
            while !flag.load(Ordering::Relaxed) && broken.is_empty() {
                let Some(text) = get(addr, "/metrics") else {
                    broken.push("a scrape failed".to_owned());
                    break;
                };
                match strict::parse(&text, false) {
                    Ok(samples) => {
                        let started = samples
                            .iter()
                            .find(|s| s.name == "agentgate_runs_started_total")
                            .map_or(0.0, |s| s.value);
                        if started < last_started {
                            broken.push(format!(
                                "runs_started_total went back from {last_started} to {started}"
                            ));
                        }
                        last_started = started;
                    }
                    Err(e) => broken.push(format!("a scrape does not parse: {e}")),
                }
                scrapes += 1;
            }
            (scrapes, broken)
        });
        Scraper { stop, thread }
    }

    fn finish(self, broken: &mut Vec<String>) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok((scrapes, mut found)) => {
                broken.append(&mut found);
                scrapes
            }
            Err(_) => {
                broken.push("the scraper panicked".into());
                0
            }
        }
    }
}

/// What one reading WebSocket client saw.
struct ReadOutcome {
    hello_seq: u64,
    events: u64,
    missed: u64,
    violation: Option<String>,
}

/// A WebSocket client that reads everything, checking the seqs.
struct Reader {
    thread: JoinHandle<ReadOutcome>,
}

static READ_MESSAGES: AtomicU64 = AtomicU64::new(0);

impl Reader {
    fn start(addr: SocketAddr) -> Reader {
        let thread = std::thread::spawn(move || read_all(addr));
        Reader { thread }
    }

    fn finish(self) -> ReadOutcome {
        self.thread.join().unwrap_or(ReadOutcome {
            hello_seq: 0,
            events: 0,
            missed: 0,
            violation: Some("the reader panicked".into()),
        })
    }
}

/// The number after `"key":` in a message, without parsing the whole JSON.
fn field(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn read_all(addr: SocketAddr) -> ReadOutcome {
    let mut outcome = ReadOutcome {
        hello_seq: 0,
        events: 0,
        missed: 0,
        violation: None,
    };
    let mut ws = match tungstenite::connect(format!("ws://{addr}/ws")) {
        Ok((ws, _)) => ws,
        Err(e) => {
            outcome.violation = Some(format!("could not connect: {e}"));
            return outcome;
        }
    };
    let mut next: Option<u64> = None;
    loop {
        let message = match ws.read() {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                if code != Some(1001) {
                    outcome.violation = Some(format!("closed with {code:?}, not 1001"));
                }
                return outcome;
            }
            Ok(_) => continue,
            Err(e) => {
                outcome.violation = Some(format!("connection ended without a close: {e}"));
                return outcome;
            }
        };
        READ_MESSAGES.fetch_add(1, Ordering::Relaxed);
        let text = message.as_str();
        if text.starts_with(r#"{"type":"hello""#) {
            let seq = field(text, r#""seq":"#).unwrap_or(0);
            outcome.hello_seq = seq;
            next = Some(seq + 1);
        } else if !is_event(text) && text.contains(r#""type":"lagged""#) {
            let missed = field(text, r#""missed":"#).unwrap_or(0);
            outcome.missed += missed;
            next = next.map(|n| n + missed);
        } else if is_event(text) {
            let Some(seq) = field(text, r#""seq":"#) else {
                outcome.violation = Some(format!("a message without seq: {text}"));
                return outcome;
            };
            if next != Some(seq) {
                outcome.violation =
                    Some(format!("expected seq {next:?}, got {seq} (a silent gap)"));
                return outcome;
            }
            next = Some(seq + 1);
            outcome.events += 1;
        }
    }
}

/// Events start with their colon-form type; the server's own messages
/// (`lagged`, `pong`, …) have no colon in theirs.
fn is_event(text: &str) -> bool {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split('"').next())
        .is_some_and(|ty| ty.contains(':'))
}

/// A client that upgrades and then never reads a byte.
fn silent_client(addr: SocketAddr) -> Option<TcpStream> {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(stream)
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resets the kernel's peak-RSS mark, so each policy reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
