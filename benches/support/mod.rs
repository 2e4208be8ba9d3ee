//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentgate_obs::event::EventKind;
use agentgate_obs::{Observability, Phase, RunHandle, Subscription};
use parking_lot::Mutex;

/// Times `iters` calls of `f` in batches of `batch`, running `between`
/// untimed after each (a flush, so that a batch never finds the ring full).
pub fn batched(
    iters: u64,
    batch: u64,
    mut f: impl FnMut(u64),
    mut between: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = batch.min(iters - done);
        let start = Instant::now();
        for i in 0..n {
            f(done + i);
        }
        total += start.elapsed();
        done += n;
        between();
    }
    total
}

/// Holds the drain thread in a listener on demand, so a benchmark can fill
/// the ring first and then time the drain thread alone, without the
/// producer competing for a core or waking it per event.
pub struct DrainGate {
    held: Arc<AtomicBool>,
    _listener: Subscription,
}

impl DrainGate {
    /// Subscribes the gate; it is also "one listener" for the pipeline.
    pub fn attach(obs: &Observability) -> DrainGate {
        let held = Arc::new(AtomicBool::new(false));
        let hold = held.clone();
        let listener = obs.emitter().subscribe(move |_| {
            // Acquire: pairs with the Release that lets the drain thread go.
            while hold.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        });
        DrainGate {
            held,
            _listener: listener,
        }
    }

    /// Holds the drain thread at the next event (for a benchmark that times
    /// the release itself).
    pub fn hold(&self) {
        // Release: the drain thread sees the hold before the next event.
        self.held.store(true, Ordering::Release);
    }

    /// Lets the drain thread go.
    pub fn release(&self) {
        // Release: see `hold`.
        self.held.store(false, Ordering::Release);
    }

    /// Queues `events` phase events while the drain thread is held, then
    /// returns how long it takes to process them all. The ring must hold
    /// `events + 1`.
    pub fn time_drain(&self, obs: &Observability, run: &RunHandle, events: u64) -> Duration {
        // Release: the drain thread sees the hold before the next event.
        self.held.store(true, Ordering::Release);
        run.phase_started(0, Phase::Build); // the drain thread now waits in the gate
        for i in 0..events {
            run.phase_completed(i as u32, Phase::Build, true, Duration::from_millis(5));
        }
        let start = Instant::now();
        // Release: see above.
        self.held.store(false, Ordering::Release);
        obs.flush();
        start.elapsed()
    }
}

/// CPU time the pipeline's drain thread has used so far, from
/// `/proc/self/task/*/stat` (10 ms resolution): lets a benchmark whose
/// clients share the machine's cores report the drain thread's own
/// throughput apart from the time it waited for a core.
pub fn drain_thread_cpu() -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "agentgate-obs-d" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised name; utime and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on Linux.
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// CPU time the calling thread has run so far (`CLOCK_THREAD_CPUTIME_ID`,
/// to the nanosecond): unlike wall time, it leaves out the time the thread
/// waited for a core, which on a virtual machine the host or another
/// tenant can take at any moment. (`/proc/thread-self/schedstat` would be
/// safe to read, but a running thread's figure there moves only at the
/// scheduler's tick.)
pub fn this_thread_cpu() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// What the drain thread marks during a burst.
#[derive(Clone, Copy, Default)]
pub struct Marks {
    /// When it processed the burst's last event.
    last: Option<Instant>,
    /// Its CPU time when the gate let it go, and at the last event.
    cpu_at_release: Option<Duration>,
    cpu_at_last: Option<Duration>,
}

/// Marks a burst from the drain thread, in a listener subscribed after
/// the gate's: it sees the burst's first event right after the release.
pub struct LastSeen {
    marks: Arc<Mutex<Marks>>,
    _sub: Subscription,
}

impl LastSeen {
    pub fn attach(obs: &Observability, last_iteration: u32) -> LastSeen {
        let marks = Arc::new(Mutex::new(Marks::default()));
        let mark = marks.clone();
        let sub = obs.emitter().subscribe(move |e| match e.kind {
            EventKind::PhaseStarted { iteration: 0, .. } => {
                mark.lock().cpu_at_release = this_thread_cpu();
            }
            EventKind::PhaseCompleted { iteration, .. } if iteration == last_iteration => {
                let cpu = this_thread_cpu();
                let mut marks = mark.lock();
                marks.last = Some(Instant::now());
                marks.cpu_at_last = cpu;
            }
            _ => {}
        });
        LastSeen { marks, _sub: sub }
    }

    pub fn reset(&self) {
        *self.marks.lock() = Marks::default();
    }

    pub fn last(&self) -> Option<Instant> {
        self.marks.lock().last
    }

    /// The drain thread's CPU time from the release to the last event.
    pub fn cpu(&self) -> Option<Duration> {
        let marks = *self.marks.lock();
        Some(marks.cpu_at_last?.saturating_sub(marks.cpu_at_release?))
    }
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Pipelines compared burst for burst: each round times one burst of
/// `phase_completed` events on every pipeline, in the next of all the
/// orders of them, so that each setup's bursts follow each other setup's
/// (and what it leaves behind: writes, sends, caches) equally often. The
/// medians are printed in wall time and in the drain thread's own CPU time,
/// which leaves out the waits for a core that a shared machine's other
/// tenants cause.
pub struct Interleaved {
    /// What the lines printed start with, e.g. `remote write, interleaved`.
    what: &'static str,
    events: u64,
    pipelines: Vec<(&'static str, Observability, DrainGate, LastSeen, RunHandle)>,
}

impl Interleaved {
    /// Starts every setup's pipeline; the first is the baseline.
    pub fn start(
        what: &'static str,
        events: u64,
        setups: Vec<(&'static str, agentgate_obs::Builder)>,
    ) -> Interleaved {
        let pipelines = setups
            .into_iter()
            .map(|(name, builder)| {
                let obs = builder.start().expect("pipeline starts");
                let gate = DrainGate::attach(&obs);
                let last = LastSeen::attach(&obs, events as u32 - 1);
                let run = obs.emitter().run("wo-1", "run-1");
                (name, obs, gate, last, run)
            })
            .collect();
        Interleaved {
            what,
            events,
            pipelines,
        }
    }

    /// The pipeline of setup `i`.
    pub fn pipeline(&self, i: usize) -> &Observability {
        &self.pipelines[i].1
    }

    /// The setups' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.pipelines.iter().map(|(name, ..)| *name).collect()
    }

    /// Runs `rounds` rounds (a multiple of the number of orders), calling
    /// `around(setup, true)` just before each burst is emitted and
    /// `around(setup, false)` once the drain thread has processed it; then
    /// prints the medians against the first setup's.
    pub fn run(&self, rounds: usize, mut around: impl FnMut(usize, bool)) {
        let orders = permutations(self.pipelines.len());
        let mut wall = vec![Vec::new(); self.pipelines.len()];
        let mut cpu = vec![Vec::new(); self.pipelines.len()];
        for round in 0..rounds {
            for &i in &orders[round % orders.len()] {
                let (_, obs, gate, last, run) = &self.pipelines[i];
                around(i, true);
                last.reset();
                gate.hold();
                run.phase_started(0, Phase::Build);
                for n in 0..self.events {
                    run.phase_completed(n as u32, Phase::Build, true, Duration::from_millis(5));
                }
                let start = Instant::now();
                gate.release();
                let end = loop {
                    match last.last() {
                        Some(end) => break end,
                        None => std::thread::sleep(Duration::from_micros(100)),
                    }
                };
                wall[i].push((end - start).as_secs_f64());
                if let Some(time) = last.cpu() {
                    cpu[i].push(time.as_secs_f64());
                }
                around(i, false);
                obs.flush();
            }
        }
        self.report(&format!("{rounds} bursts"), &mut wall);
        if cpu.iter().all(|t| t.len() == rounds) {
            self.report(
                &format!("{rounds} bursts in drain-thread CPU time"),
                &mut cpu,
            );
        } else {
            println!(
                "{}: no drain-thread CPU time (CLOCK_THREAD_CPUTIME_ID failed)",
                self.what
            );
        }
    }

    /// Prints each setup's median burst as a rate, against the first's.
    fn report(&self, label: &str, seconds: &mut [Vec<f64>]) {
        let medians: Vec<f64> = seconds.iter_mut().map(|t| median(t)).collect();
        let names = self.names();
        for (name, median) in names.iter().zip(&medians) {
            println!(
                "{} medians of {label}: {name}: {:.2} M events/s ({:+.1} % against {})",
                self.what,
                self.events as f64 / median / 1e6,
                (medians[0] / median - 1.0) * 100.0,
                names[0],
            );
        }
    }
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut orders = Vec::new();
    for first in 0..n {
        for rest in permutations(n - 1) {
            let mut order = vec![first];
            order.extend(rest.into_iter().map(|i| if i >= first { i + 1 } else { i }));
            orders.push(order);
        }
    }
    orders
}
