//! The WebSocket stream: messages delivered per second to 1, 10 and 100
//! loopback clients, the latency from emit to client receipt at 10,000
//! events/s with 100 clients, and the drain thread's throughput with 100
//! clients attached.
//!
//! Run: `cargo bench --bench websocket`. Clients and server share this
//! machine's two cores, so the figures include the clients' own cost; the
//! clients are read by two `poll(2)` threads to keep that cost small.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgate_obs::{Observability, Overflow, Phase};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

mod support;

/// The `seq` of a server message, read without parsing the JSON: it
/// follows `type` at the start of every message.
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find("\"seq\":")? + 6;
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// Loopback clients standing in for dashboards on other machines: a few
/// threads read them all with `poll(2)`, so the clients cost this two-core
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
        let mut groups: Vec<Vec<(usize, WebSocket<TcpStream>)>> =
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
            ws.get_ref().set_nonblocking(true).expect("non-blocking");
            groups[i % READER_THREADS].push((i, ws));
        }
        let threads = groups
            .into_iter()
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
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

/// One reader thread: waits in `poll(2)` for any of its clients' sockets,
/// then reads every complete message each ready one holds.
fn read_all(
    mut group: Vec<(usize, WebSocket<TcpStream>)>,
    last_seq: &[AtomicU64],
    received: &AtomicU64,
    stop: &AtomicBool,
    on_event: &(dyn Fn(u64) -> Option<u64> + Send + Sync),
) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut fds: Vec<libc::pollfd> = group
        .iter()
        .map(|(_, ws)| libc::pollfd {
            fd: ws.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Relaxed: a stop flag polled in a loop.
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready <= 0 {
            continue;
        }
        for (pfd, (index, ws)) in fds.iter_mut().zip(group.iter_mut()) {
            if std::mem::take(&mut pfd.revents) == 0 {
                continue;
            }
            loop {
                match ws.read() {
                    Ok(Message::Text(text)) => {
                        let text = text.as_str();
                        let Some(seq) = seq_of(text) else { continue };
                        // Events (not hello or lagged) have `"seq":` right after a short type.
                        if text
                            .as_bytes()
                            .get(8..20)
                            .is_some_and(|t| t.contains(&b':'))
                        {
                            received.fetch_add(1, Ordering::Relaxed);
                            if let Some(sample) = on_event(seq) {
                                samples.push(sample);
                            }
                        }
                        // Release: the bench thread reads it to know we caught up.
                        last_seq[*index].store(seq, Ordering::Release);
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        break;
                    }
                    Err(_) => {
                        // Gone: poll ignores negative descriptors.
                        pfd.fd = -1;
                        break;
                    }
                }
            }
        }
    }
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
    while !clients.caught_up(seq) && Instant::now() < deadline {
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
