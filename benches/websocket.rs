//! The WebSocket stream: messages delivered per second to 1, 10 and 100
//! loopback clients, the latency from emit to client receipt at 10,000
//! events/s with 100 clients, and the drain thread's throughput with 100
//! clients attached.
//!
//! Run: `cargo bench --bench websocket`. Clients and server share this
//! machine's two cores, so the figures include the clients' own cost; the
//! clients are read by two `epoll(7)` threads, which parse the server's
//! frames themselves, to keep that cost small.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgate_obs::{Observability, Overflow, Phase};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tungstenite::protocol::WebSocketConfig;

mod support;

/// The `seq` of a server message, read without parsing the JSON: it
/// follows `type` at the start of every message.
fn seq_of(text: &[u8]) -> Option<u64> {
    let start = text.windows(6).position(|w| w == b"\"seq\":")? + 6;
    let digits = &text[start..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// Loopback clients standing in for dashboards on other machines: a few
/// threads read them all with `epoll(7)`, so the clients cost this two-core
/// machine little next to the server they measure (a thread per client
/// would put a hundred more threads on the cores the server uses).
struct Clients {
    /// The last seq each client saw.
    last_seq: Arc<Vec<AtomicU64>>,
    /// Event messages received by all clients.
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<u64>>>,
}

/// Called with each event's seq; a returned value is kept as a sample.
type OnEvent = Arc<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// Threads reading the clients: one per core.
const READER_THREADS: usize = 2;

/// Each client's read buffer: a pass of the server at 10,000 events/s
/// carries about 8 KiB.
const CLIENT_READ_BUFFER: usize = 16 * 1024;

impl Clients {
    fn connect(addr: SocketAddr, count: usize, on_event: OnEvent) -> Clients {
        let last_seq: Arc<Vec<AtomicU64>> =
            Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut groups: Vec<Vec<(usize, FrameReader)>> =
            (0..READER_THREADS).map(|_| Vec::new()).collect();
        for i in 0..count {
            let stream = TcpStream::connect(addr).expect("connect");
            // tungstenite zero-fills its whole read buffer (128 KiB by
            // default) before every read, the last one of each drained
            // socket too: a quarter of the readers' CPU, taken from the
            // server's cores. Real dashboards run elsewhere.
            let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
            let (ws, _) = tungstenite::client::client_with_config(
                format!("ws://{addr}/ws"),
                stream,
                Some(config),
            )
            .expect("WebSocket handshake");
            groups[i % READER_THREADS].push((i, FrameReader::after_hello(ws)));
        }
        let threads = groups
            .into_iter()
            // A reader with no client would spin: epoll_wait refuses room for no event.
            .filter(|group| !group.is_empty())
            .map(|group| {
                let (seen, count, quit, on_event) = (
                    last_seq.clone(),
                    received.clone(),
                    stop.clone(),
                    on_event.clone(),
                );
                std::thread::Builder::new()
                    .name("bench-reader".into())
                    .spawn(move || read_all(group, &seen, &count, &quit, &*on_event))
                    .expect("spawn a reader")
            })
            .collect();
        Clients {
            last_seq,
            received,
            stop,
            threads,
        }
    }

    fn caught_up(&self, seq: u64) -> bool {
        // Acquire: pairs with the reader's Release.
        self.last_seq
            .iter()
            .all(|s| s.load(Ordering::Acquire) >= seq)
    }

    fn received(&self) -> u64 {
        // Relaxed: read after the readers caught up.
        self.received.load(Ordering::Relaxed)
    }

    fn finish(self) -> Vec<u64> {
        // Relaxed: a stop flag.
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("a reader thread failed (see its panic)"))
            .collect()
    }
}

/// A client's socket past the handshake and `hello`, read a frame at a
/// time by hand. At a million messages a second, tungstenite's message
/// machinery (a buffer zero-filled per read, an allocation and a UTF-8
/// check per message) took about half of the machine's CPU in the latency
/// run, from the cores the server under measurement needs; a dashboard
/// runs elsewhere. The frames are still checked: an unexpected one fails
/// the bench.
struct FrameReader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` read and not parsed yet: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl FrameReader {
    /// Reads `hello` through tungstenite, then takes the socket: the server
    /// sends nothing else before an event is emitted, so tungstenite holds
    /// no bytes of later frames.
    fn after_hello(mut ws: tungstenite::WebSocket<TcpStream>) -> FrameReader {
        let hello = ws.read().expect("hello");
        assert!(
            hello
                .to_text()
                .is_ok_and(|t| t.contains(r#""type":"hello""#)),
            "{hello:?}"
        );
        let stream = ws.into_inner();
        stream.set_nonblocking(true).expect("non-blocking");
        FrameReader {
            stream,
            buf: vec![0; CLIENT_READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Calls `on_text` with every complete text frame the socket holds;
    /// answers pings. `Err` once the connection is gone.
    fn read_ready(&mut self, mut on_text: impl FnMut(&[u8])) -> Result<(), ()> {
        loop {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(()),
            }
            while let Some((opcode, payload)) = self.next_frame() {
                match opcode {
                    0x1 => on_text(&self.buf[payload]),
                    0x9 => {
                        let ping = self.buf[payload].to_vec();
                        self.send_pong(&ping)?;
                    }
                    0x8 => return Err(()),
                    other => panic!("unexpected frame opcode {other:#x} from the server"),
                }
            }
        }
    }

    /// The next complete frame in the buffer: its opcode and payload range.
    fn next_frame(&mut self) -> Option<(u8, std::ops::Range<usize>)> {
        let bytes = &self.buf[self.start..self.end];
        let (&head, &len7) = (bytes.first()?, bytes.get(1)?);
        assert_eq!(head & 0xF0, 0x80, "a final frame with no extension bits");
        assert_eq!(len7 & 0x80, 0, "server frames are not masked");
        let (header, len) = match len7 {
            126 => (
                4,
                u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            ),
            127 => (
                10,
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            ),
            n => (2, n as usize),
        };
        if bytes.len() < header + len {
            return None;
        }
        let payload = self.start + header..self.start + header + len;
        self.start = payload.end;
        Some((head & 0x0F, payload))
    }

    /// A client's frames are masked; a zero mask leaves the payload as is.
    fn send_pong(&mut self, payload: &[u8]) -> Result<(), ()> {
        let mut frame = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        self.stream.set_nonblocking(false).map_err(|_| ())?;
        let sent = self.stream.write_all(&frame).map_err(|_| ());
        self.stream.set_nonblocking(true).map_err(|_| ())?;
        sent
    }
}

/// One reader thread: waits in `epoll(7)` for any of its clients'
/// sockets, then reads every complete message each ready one holds.
/// (`poll(2)` over fifty sockets per wake-up took a tenth of the
/// machine's CPU in the latency run.)
fn read_all(
    mut group: Vec<(usize, FrameReader)>,
    last_seq: &[AtomicU64],
    received: &AtomicU64,
    stop: &AtomicBool,
    on_event: &(dyn Fn(u64) -> Option<u64> + Send + Sync),
) -> Vec<u64> {
    let mut samples = Vec::new();
    // SAFETY: epoll_create1 takes no pointers.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1");
    for (slot, (_, client)) in group.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: slot as u64,
        };
        let fd = client.stream.as_raw_fd();
        // SAFETY: `event` is a valid epoll_event for the call's duration.
        let added = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        assert_eq!(added, 0, "epoll_ctl");
    }
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; group.len()];
    // Relaxed: a stop flag polled in a loop.
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `ready` is a valid, exclusively borrowed array of `ready.len()` events.
        let n = unsafe { libc::epoll_wait(epoll, ready.as_mut_ptr(), ready.len() as i32, 100) };
        for event in ready.iter().take(n.max(0) as usize) {
            let slot = event.u64 as usize;
            let (index, client) = &mut group[slot];
            let read = client.read_ready(|text| {
                let Some(seq) = seq_of(text) else { return };
                // Events (not lagged) have `"seq":` right after a short type.
                if text.get(8..20).is_some_and(|t| t.contains(&b':')) {
                    // Relaxed: a count, read after the readers caught up.
                    received.fetch_add(1, Ordering::Relaxed);
                    if let Some(sample) = on_event(seq) {
                        samples.push(sample);
                    }
                }
                // Release: the bench thread reads it to know we caught up.
                last_seq[*index].store(seq, Ordering::Release);
            });
            if read.is_err() {
                let fd = client.stream.as_raw_fd();
                // SAFETY: removing a registered descriptor; the event argument may be null.
                unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
            }
        }
    }
    // SAFETY: `epoll` is this thread's own descriptor, closed once.
    unsafe { libc::close(epoll) };
    samples
}

fn server(replay: usize) -> Observability {
    Observability::builder()
        .queue_capacity(200_000)
        .overflow(Overflow::Block)
        .websocket_replay(replay)
        .serve("127.0.0.1:0")
        .no_log()
        .start()
        .expect("server starts")
}

fn wait_for(clients: &Clients, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !clients.caught_up(seq) {
        assert!(
            Instant::now() < deadline,
            "the clients did not all receive seq {seq} within 60 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn delivered(c: &mut Criterion) {
    let mut group = c.benchmark_group("websocket/delivered");
    group.sample_size(10);
    const EVENTS: u64 = 10_000;
    for clients in [1usize, 10, 100] {
        let obs = server(200_000);
        let addr = obs.local_addr().expect("bound");
        let readers = Clients::connect(addr, clients, Arc::new(|_| None));
        let run = obs.emitter().run("wo", "run");
        group.throughput(Throughput::Elements(EVENTS * clients as u64));
        group.bench_function(format!("{clients} clients"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    obs.flush();
                    let start_seq = obs.stats().processed.total();
                    let start = Instant::now();
                    for i in 0..EVENTS {
                        run.phase_completed(i as u32, Phase::Build, true, Duration::from_millis(3));
                    }
                    wait_for(&readers, start_seq + EVENTS);
                    total += start.elapsed();
                }
                total
            })
        });
        let received = readers.received();
        readers.finish();
        println!(
            "websocket/delivered/{clients} clients: {received} event messages received in all"
        );
    }
    group.finish();
}

/// p50 / p99 from emit to receipt, 100 clients, 10,000 events/s for 3 s.
fn latency(_: &mut Criterion) {
    const CLIENTS: usize = 100;
    const RATE: u64 = 10_000;
    const EVENTS: u64 = 30_000;
    let obs = server(50_000);
    let addr = obs.local_addr().expect("bound");
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..EVENTS).map(|_| AtomicU64::new(0)).collect());
    obs.flush();
    // Event i gets seq first_seq + i: one warm-up event comes first.
    let first_seq = obs.stats().processed.total() + 2;
    let on_event: OnEvent = {
        let sent = sent.clone();
        Arc::new(move |seq| {
            let i = seq.checked_sub(first_seq)?;
            // Acquire: pairs with the producer's Release of the send time.
            let at = sent.get(i as usize)?.load(Ordering::Acquire);
            (at > 0).then(|| (base.elapsed().as_nanos() as u64).saturating_sub(at))
        })
    };
    let readers = Clients::connect(addr, CLIENTS, on_event);
    let run = obs.emitter().run("wo", "run");
    run.phase_started(0, Phase::Build); // the warm-up event
    let period = Duration::from_nanos(1_000_000_000 / RATE);
    let start = Instant::now();
    for i in 0..EVENTS {
        // An engine does other work between events: sleep, not spin, so
        // the producer does not take a core from the server.
        let due = start + period * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // Release: the client that reads this event's seq sees the time.
        sent[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
        run.phase_completed(i as u32, Phase::Build, true, Duration::from_millis(3));
    }
    obs.flush();
    let last = obs.stats().processed.total();
    wait_for(&readers, last);
    let mut samples = readers.finish();
    samples.sort_unstable();
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "websocket/latency: {CLIENTS} clients, {RATE} events/s, {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        pick(0.5) as f64 / 1e6,
        pick(0.99) as f64 / 1e6,
        samples.last().copied().unwrap_or(0) as f64 / 1e6,
    );
}

fn drain_with_clients(c: &mut Criterion) {
    let mut group = c.benchmark_group("websocket/drain");
    group.sample_size(10);
    const EVENTS: u64 = 100_000;
    group.throughput(Throughput::Elements(EVENTS));
    let obs = server(10_000);
    let addr = obs.local_addr().expect("bound");
    let gate = support::DrainGate::attach(&obs);
    let readers = Clients::connect(addr, 100, Arc::new(|_| None));
    let run = obs.emitter().run("wo", "run");
    group.bench_function("events processed with 100 clients attached", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| gate.time_drain(&obs, &run, EVENTS))
                .sum()
        })
    });
    // The clients share the two cores with the drain thread, so wall time
    // mostly measures waiting for a core; the drain thread's own CPU time
    // says what it can sustain.
    let rounds = 20;
    if let Some(before) = support::drain_thread_cpu() {
        let wall: Duration = (0..rounds)
            .map(|_| gate.time_drain(&obs, &run, EVENTS))
            .sum();
        if let Some(after) = support::drain_thread_cpu() {
            let cpu = after.saturating_sub(before).as_secs_f64().max(0.01);
            println!(
                "websocket/drain with 100 clients: {:.2} M events per drain-thread CPU second ({:.2} M/s wall)",
                (rounds * EVENTS) as f64 / cpu / 1e6,
                (rounds * EVENTS) as f64 / wall.as_secs_f64() / 1e6
            );
        }
    }
    readers.finish();
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = latency, delivered, drain_with_clients
}
criterion_main!(benches);
