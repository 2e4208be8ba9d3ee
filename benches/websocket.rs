//! The WebSocket stream: messages delivered per second to 1, 10 and 100
//! loopback clients, the latency from emit to client receipt at 10,000
//! events/s with 100 clients, and the drain thread's throughput with 100
//! clients attached.
//!
//! Run: `cargo bench --bench websocket`. Clients and server share this
//! machine's two cores, so the figures include the clients' own cost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgate_obs::{Observability, Overflow, Phase};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tungstenite::{Message, WebSocket};

mod support;

/// The `seq` of a server message, read without parsing the JSON: it
/// follows `type` at the start of every message.
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find("\"seq\":")? + 6;
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// A reading client on its own thread. It publishes the last seq it saw
/// and how many event messages it received, and calls `on_event` with each
/// event's seq.
struct Reader {
    last_seq: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl Reader {
    fn connect(addr: SocketAddr, on_event: impl Fn(u64) -> Option<u64> + Send + 'static) -> Reader {
        let (mut ws, _): (WebSocket<_>, _) =
            tungstenite::connect(format!("ws://{addr}/ws")).expect("WebSocket handshake");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        }
        let last_seq = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, count, quit) = (last_seq.clone(), received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            // Relaxed: a stop flag polled in a loop.
            while !quit.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Text(text)) => {
                        let text = text.as_str();
                        if let Some(seq) = seq_of(text) {
                            if text
                                .as_bytes()
                                .get(8..20)
                                .is_some_and(|t| t.contains(&b':'))
                            {
                                count.fetch_add(1, Ordering::Relaxed);
                                if let Some(sample) = on_event(seq) {
                                    samples.push(sample);
                                }
                            }
                            // Release: the bench thread reads it to know we caught up.
                            seen.store(seq, Ordering::Release);
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            samples
        });
        Reader {
            last_seq,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn caught_up(&self, seq: u64) -> bool {
        // Acquire: pairs with the reader's Release.
        self.last_seq.load(Ordering::Acquire) >= seq
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
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

fn wait_for(readers: &[Reader], seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !readers.iter().all(|r| r.caught_up(seq)) && Instant::now() < deadline {
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
        let readers: Vec<Reader> = (0..clients)
            .map(|_| Reader::connect(addr, |_| None))
            .collect();
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
        let received: u64 = readers
            .iter()
            .map(|r| r.received.load(Ordering::Relaxed))
            .sum();
        for r in readers {
            r.finish();
        }
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
    let readers: Vec<Reader> = (0..CLIENTS)
        .map(|_| {
            let sent = sent.clone();
            Reader::connect(addr, move |seq| {
                let i = seq.checked_sub(first_seq)?;
                // Acquire: pairs with the producer's Release of the send time.
                let at = sent.get(i as usize)?.load(Ordering::Acquire);
                (at > 0).then(|| (base.elapsed().as_nanos() as u64).saturating_sub(at))
            })
        })
        .collect();
    let run = obs.emitter().run("wo", "run");
    run.phase_started(0, Phase::Build); // the warm-up event
    let period = Duration::from_nanos(1_000_000_000 / RATE);
    let start = Instant::now();
    for i in 0..EVENTS {
        let due = start + period * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        // Release: the client that reads this event's seq sees the time.
        sent[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
        run.phase_completed(i as u32, Phase::Build, true, Duration::from_millis(3));
    }
    obs.flush();
    let last = obs.stats().processed.total();
    wait_for(&readers, last);
    let mut samples: Vec<u64> = readers.into_iter().flat_map(Reader::finish).collect();
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
    let readers: Vec<Reader> = (0..100).map(|_| Reader::connect(addr, |_| None)).collect();
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
    for r in readers {
        r.finish();
    }
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
