//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod alertmanager;
pub mod browser;
#[cfg(feature = "cli")]
pub mod demo;
pub mod exposition;
pub mod metrics;
pub mod metrics_proto;
pub mod otlp;
pub mod prometheus;
pub mod pushgateway;
pub mod receiver;
pub mod ws;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use agentgate_obs::{Builder, Emitter, Observability, ProgressEvent, Subscription};
use parking_lot::{Condvar, Mutex};

pub use exposition::ParsedSample;

/// The lines a child process writes to `stdout`, as they come, read on a
/// thread of their own so that the pipe never fills.
pub fn stdout_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A builder for a pipeline that writes nothing to the terminal.
pub fn quiet() -> Builder {
    Observability::builder().no_log()
}

/// Every event a listener saw, in order.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<ProgressEvent>>>,
}

impl Recorder {
    /// Subscribes a new recorder to `emitter`.
    pub fn attach(emitter: &Emitter) -> (Recorder, Subscription) {
        let recorder = Recorder::default();
        let sink = recorder.clone();
        let sub = emitter.subscribe(move |e| sink.events.lock().push(e.clone()));
        (recorder, sub)
    }

    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// The types of the events seen, in order (`run_started`, …).
    pub fn types(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .iter()
            .map(|e| e.event_type().as_str())
            .collect()
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than
/// `limit`: a guard against deadlocks, not a performance assertion.
pub fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("{what} did not finish within {limit:?} (deadlock?)"),
    }
}

// ---- HTTP and exposition helpers ----

/// A raw HTTP response as the metrics tests read it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` bytes to `addr` and reads the whole reply (the server
/// closes every connection after one response).
pub fn http_raw(addr: std::net::SocketAddr, raw: &[u8]) -> std::io::Result<HttpReply> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    // The server may answer before reading everything; a failed write is
    // fine as long as the reply arrives.
    let _ = stream.write_all(raw);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_http_reply(&bytes)
}

/// `GET path` with extra header lines (`"Name: value"`).
pub fn http_get(addr: std::net::SocketAddr, path: &str, headers: &[&str]) -> HttpReply {
    http_get_with_host(addr, Some(&addr.to_string()), path, headers)
}

/// `GET path` sent to `addr` with `Host: host` (none when `None`) and extra
/// header lines: what a browser sends after DNS rebinding, or a proxy.
pub fn http_get_with_host(
    addr: std::net::SocketAddr,
    host: Option<&str>,
    path: &str,
    headers: &[&str],
) -> HttpReply {
    let mut raw = format!("GET {path} HTTP/1.1\r\n");
    if let Some(host) = host {
        raw.push_str(&format!("Host: {host}\r\n"));
    }
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    match http_raw(addr, raw.as_bytes()) {
        Ok(reply) => reply,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

fn parse_http_reply(bytes: &[u8]) -> std::io::Result<HttpReply> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpReply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Parses a whole exposition with the strict parser
/// ([`exposition::parse`]): as OpenMetrics when it ends with `# EOF`, as
/// the Prometheus text format otherwise.
pub fn parse_exposition(text: &str) -> Result<Vec<ParsedSample>, String> {
    exposition::parse(text, text.ends_with("# EOF\n"))
}

/// The value of the sample with exactly these labels.
pub fn sample_value(samples: &[ParsedSample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
        .map(|s| s.value)
}

/// The path of an external tool (promtool, prometheus, chromium, ...) on
/// PATH. When it is missing, a check that needs it skips locally: this
/// prints `SKIPPED:` naming the Debian package to install and returns
/// `None`. Under `CI=true` it fails the test instead, because CI installs
/// every tool (`scripts/install-deps`) and a skipped check there would pass
/// without having checked anything.
pub fn external_tool(name: &str, test: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!(
            "{test}: `{name}` not found on PATH (install the Debian package {}, \
             or run scripts/install-deps as root)",
            debian_package(name)
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{why}; under CI=true a missing external tool fails the check");
        }
        println!("SKIPPED: {why}");
    }
    found
}

/// A python3 that imports `module` (say `google.protobuf`): Debian's
/// `/usr/bin/python3` first, whose modules the Debian packages serve, then
/// the one on `PATH` (which may be another installation, pyenv's say).
/// With the same rule as [`external_tool`]: when none does, it skips
/// locally (printing `SKIPPED:` and the Debian package) and fails under
/// `CI=true`.
pub fn python_module(module: &str, test: &str) -> Option<&'static str> {
    let imports = |python: &str| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|python| imports(python));
    if found.is_none() {
        let why = format!(
            "{test}: no python3 imports `{module}` (install the Debian package {}, \
             or run scripts/install-deps as root)",
            debian_package(&format!("python3:{module}"))
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{why}; under CI=true a missing external tool fails the check");
        }
        println!("SKIPPED: {why}");
    }
    found
}

/// The Debian package that provides `command`, from the one table of them
/// in `scripts/install-deps` (lines `"command package"`).
fn debian_package(command: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps");
    let table = std::fs::read_to_string(script).unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.strip_suffix('"'))
        .filter_map(|entry| entry.split_once(' '))
        .find(|(c, _)| *c == command)
        .map_or_else(|| format!("that provides {command}"), |(_, p)| p.to_owned())
}

// ---- JSON log helpers ----

/// A `Write` that keeps everything in memory, shared between clones: hand
/// one to `Builder::log_to`, read the lines through another.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn new() -> Self {
        LogBuffer::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).expect("log output is UTF-8")
    }

    /// Every line parsed as JSON; fails the test on the first line that
    /// does not parse.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        parse_log_lines(&self.text())
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses JSON lines; every line must be one JSON object with the core
/// log fields.
pub fn parse_log_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for key in ["level", "module", "message", "timestamp"] {
                assert!(v[key].is_string(), "no {key} in {line}");
            }
            v
        })
        .collect()
}

/// The log lines whose `message` is `message`.
pub fn lines_with_message<'a>(
    lines: &'a [serde_json::Value],
    message: &str,
) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// A log sink that blocks every write until the gate opens, then writes
/// into a [`LogBuffer`] (optionally sleeping per write, to stay slow).
#[derive(Clone)]
pub struct GatedLogSink {
    gate: Arc<(Mutex<bool>, Condvar)>,
    pub buffer: LogBuffer,
    delay: Duration,
}

impl GatedLogSink {
    /// Closed: writes wait for `open`.
    pub fn closed() -> Self {
        GatedLogSink {
            gate: Arc::new((Mutex::new(false), Condvar::new())),
            buffer: LogBuffer::new(),
            delay: Duration::ZERO,
        }
    }

    /// Open, but every write takes `delay`.
    pub fn slow(delay: Duration) -> Self {
        let sink = GatedLogSink::closed();
        sink.open();
        GatedLogSink { delay, ..sink }
    }

    pub fn open(&self) {
        let (open, cv) = &*self.gate;
        *open.lock() = true;
        cv.notify_all();
    }
}

impl Write for GatedLogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (open, cv) = &*self.gate;
        let mut open = open.lock();
        while !*open {
            cv.wait(&mut open);
        }
        drop(open);
        std::thread::sleep(self.delay);
        self.buffer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A log sink that always fails, or panics when `panics` is set.
pub struct FailingLogSink {
    pub panics: bool,
}

impl Write for FailingLogSink {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        if self.panics {
            panic!("log sink exploded");
        }
        Err(io::Error::other("disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A quiet pipeline serving HTTP on a free loopback port, with `token` if given.
pub fn served(token: Option<&str>) -> (Observability, std::net::SocketAddr) {
    let mut builder = quiet().serve("127.0.0.1:0");
    if let Some(token) = token {
        builder = builder.token(token);
    }
    let obs = builder.start().expect("start");
    let addr = obs.local_addr().expect("serving");
    (obs, addr)
}

/// A new server on `addr` (the address of one just stopped) holding one
/// succeeded run: what a client sees after the server restarted.
pub fn server_with_one_finished_run(
    addr: std::net::SocketAddr,
    work_order: &str,
    run: &str,
) -> Observability {
    use agentgate_obs::{ExecutionMetrics, ProgressEmitter, RunResult, Strategy, TaskSpec};
    let server = quiet()
        .serve(addr.to_string())
        .start()
        .expect("the address is free again");
    let emitter = server.emitter();
    emitter.emit_run_started(work_order, run, &TaskSpec::new("g", Strategy::Fixed, 1));
    emitter.emit_run_completed(
        work_order,
        run,
        RunResult::Passed,
        &ExecutionMetrics::default(),
    );
    server.flush();
    server
}

/// A listener that holds the drain thread while engaged, so a test can
/// fill the ring and know it stays full.
pub struct Stall {
    held: Arc<std::sync::atomic::AtomicBool>,
    _sub: Subscription,
}

impl Stall {
    /// Subscribes the stall, engaged: the drain thread stops at the next event.
    pub fn attach(emitter: &Emitter) -> Stall {
        let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let hold = held.clone();
        let sub = emitter.subscribe(move |_| {
            // Acquire: pairs with the Release in `release`.
            while hold.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        Stall { held, _sub: sub }
    }

    /// Lets the drain thread go on.
    pub fn release(&self) {
        // Release: the drain thread sees it at its next look.
        self.held.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A fresh directory under the system's temporary directory, removed
/// (with what it holds) when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `name` tells tests apart; the process id and a counter keep
    /// concurrent test processes and repeated calls apart.
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // Relaxed: only uniqueness matters.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("agentgate-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines of a journal file (without their newlines).
pub fn journal_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("a readable journal")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `seq` of every line of a journal file.
pub fn journal_seqs(path: &std::path::Path) -> Vec<u64> {
    journal_lines(path)
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["seq"].as_u64().expect("a seq")
        })
        .collect()
}

/// Raises the soft limit on open files to at least `needed` (up to the
/// hard limit): the client and server ends of every connection live in
/// this one process.
pub fn raise_fd_limit(needed: u64) {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < needed
    {
        let _ = rlimit::Resource::NOFILE.set(needed.min(hard), hard);
    }
}

/// A FIFO at `path`, made with `mkfifo(1)`.
pub fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// When [`run_measured`] stops a child before it ends on its own.
pub struct Measure {
    /// Killed (SIGKILL) after this long.
    pub timeout: Duration,
    /// Killed once its peak resident set passes this many KiB, so that a
    /// regression shows as a failed bound, not a machine out of memory.
    pub kill_above_kib: u64,
    /// Sent SIGINT (a Ctrl-C) once a line of its stdout contains this:
    /// for `replay`, which serves until then.
    pub interrupt_on: Option<&'static str>,
}

/// How a child measured by [`run_measured`] ended.
#[derive(Debug)]
pub struct Measured {
    /// Its exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Why the test killed it, if it did.
    pub killed: Option<String>,
    /// Its peak resident set in KiB, as the kernel accounted it (`wait4`).
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (stdout and stderr captured) to its end and measures
/// its peak memory exactly: `wait4` of this one child gives its own
/// `ru_maxrss`, whatever other children the test process runs.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which gives its rusage"
)]
pub fn run_measured(command: &mut std::process::Command, measure: &Measure) -> Measured {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let pid = child.id() as libc::pid_t;
    let lines = stdout_lines(child.stdout.take().expect("piped stdout"));
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let started = std::time::Instant::now();
    let mut stdout = String::new();
    let mut killed = None;
    let mut interrupted = false;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: plain system calls on our own child, with valid pointers
        // to locals.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", io::Error::last_os_error());
        if reaped == pid {
            break (status, usage);
        }
        while let Ok(line) = lines.try_recv() {
            if !interrupted && measure.interrupt_on.is_some_and(|text| line.contains(text)) {
                interrupted = true;
                // SAFETY: a signal to our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let peak = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
        if killed.is_none() {
            if peak > measure.kill_above_kib {
                killed = Some(format!(
                    "peak RSS {peak} KiB passed {} KiB",
                    measure.kill_above_kib
                ));
            } else if started.elapsed() > measure.timeout {
                killed = Some(format!("still running after {:?}", measure.timeout));
            }
            if killed.is_some() {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        killed,
        // Linux gives ru_maxrss in KiB.
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        stdout,
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A `KiB` line of `/proc/PID/status` (`VmHWM:`, `VmRSS:`).
fn proc_status_kib(pid: libc::pid_t, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
