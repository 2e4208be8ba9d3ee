//! Delivering the metrics to a receiver instead of waiting for a scrape:
//! for engines that exit before the next scrape, or that no Prometheus
//! can reach.
//!
//! Each receiver ([`Target`]) gets an exporter thread of its own that
//! delivers every interval and once more at shutdown, after the drain
//! thread has processed the last event, so a process that lives 200 ms
//! still delivers its final figures. The thread reads the metrics' atomics
//! as a scrape does: the drain thread and the engine never wait on it, and
//! a receiver that is down or slow costs only this thread's time.

pub(crate) mod otlp;
mod parse;
mod prompb;
pub(crate) mod pushgateway;
pub(crate) mod remote_write;

use std::cell::Cell;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::log::{Dispatch, FieldValue, Logger};
use crate::metrics::Metrics;

/// A receiver of the metrics.
pub(crate) trait Target: Send + 'static {
    /// Its name in logs and labels: `pushgateway`, `remote_write`.
    fn name(&self) -> &'static str;

    /// Delivers `metrics` as they are now, giving up at `deadline`; `last`
    /// on the final delivery at shutdown. Waits between tries through
    /// `pause`, and ends a periodic delivery when it says shutdown began.
    /// Counts and logs its own outcome: what failed and why differs per
    /// receiver.
    fn deliver(&mut self, metrics: &Metrics, deadline: Instant, last: bool, pause: &Pause<'_>);

    /// Waits between deliveries, until `until`, or until `finish` brings
    /// the final delivery's deadline (returned). A target fed between
    /// deliveries (OTLP's steps) takes what it is fed meanwhile.
    fn idle(&mut self, until: Instant, finish: &Receiver<Instant>) -> Idle {
        idle(until, finish)
    }
}

/// How waiting between deliveries ended.
#[derive(Debug)]
pub(crate) enum Idle {
    /// The next delivery is due.
    Due,
    /// The final delivery is asked for, by this deadline.
    Finish(Instant),
    /// The exporter was dropped without finishing.
    Dropped,
}

/// Waits on `finish` until `until`: [`Target::idle`] for a target fed by
/// nothing but the metrics.
pub(crate) fn idle(until: Instant, finish: &Receiver<Instant>) -> Idle {
    match finish.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(deadline) => Idle::Finish(deadline),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Idle::Due,
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Idle::Dropped,
    }
}

/// How a delivery waits between tries. A periodic delivery stops waiting
/// as soon as shutdown begins, so that the final one starts at once within
/// its wait instead of after the periodic one's timeout (what it had
/// queued then goes with the final delivery, or is counted as failed).
pub(crate) struct Pause<'a> {
    /// The exporter's finish channel, and where a final deadline received
    /// while pausing is kept for the exporter; `None`: a plain sleep.
    finish: Option<(&'a Receiver<Instant>, &'a Cell<Option<Instant>>)>,
}

impl Pause<'_> {
    /// A plain sleep: for the final delivery, and a one-shot one.
    pub(crate) fn plain() -> Pause<'static> {
        Pause { finish: None }
    }

    /// Waits `wait`; `false` as soon as shutdown began (or had begun), when
    /// the delivery should end.
    pub(crate) fn sleep(&self, wait: Duration) -> bool {
        let Some((finish, finishing)) = self.finish else {
            std::thread::sleep(wait);
            return true;
        };
        if finishing.get().is_some() {
            return false;
        }
        match finish.recv_timeout(wait) {
            Ok(deadline) => {
                finishing.set(Some(deadline));
                false
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => true,
            // The exporter was dropped: the thread ends after this delivery.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Whether shutdown began: the delivery should end now.
    pub(crate) fn stopped(&self) -> bool {
        self.finish.is_some() && !self.sleep(Duration::ZERO)
    }
}

/// Runs `work`, a part of an exporter thread's work: a panic in it is
/// caught and logged as `message` with `fields` and the panic's message,
/// and costs that part alone (`None`).
fn guarded<T, const N: usize>(
    log: Option<&Arc<Dispatch>>,
    message: &'static str,
    fields: [(&'static str, FieldValue); N],
    work: impl FnOnce() -> T,
) -> Option<T> {
    let panic = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(done) => return Some(done),
        Err(panic) => panic,
    };
    if let Some(log) = log {
        let text = panic
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let mut fields = Vec::from(fields);
        fields.push(("panic", text.into()));
        Logger::bound("agentgate_obs::export", log.clone()).error(message, fields);
    }
    None
}

/// When an exporter delivers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// Between two deliveries.
    pub(crate) interval: Duration,
    /// The most one periodic delivery may take (retries included).
    pub(crate) timeout: Duration,
    /// The most the final delivery may take, from the call to finish it.
    pub(crate) final_wait: Duration,
}

/// An exporter thread: delivers on [`Schedule`], then once more when
/// [`finish`](Exporter::finish)ed.
pub(crate) struct Exporter {
    name: &'static str,
    /// This receiver's own final wait.
    final_wait: Duration,
    /// Carries the final delivery's deadline.
    finish: Sender<Instant>,
    /// Closed by the thread when it ends.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    log: Option<Arc<Dispatch>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("name", &self.name)
            .finish()
    }
}

impl Exporter {
    /// Starts the thread delivering to `target` on `schedule`.
    pub(crate) fn start(
        mut target: Box<dyn Target>,
        metrics: Metrics,
        schedule: Schedule,
        log: Option<Arc<Dispatch>>,
    ) -> std::io::Result<Exporter> {
        let name = target.name();
        let (finish, finish_rx) = crossbeam_channel::bounded::<Instant>(1);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name(format!("agentgate-obs-{name}"))
            .spawn(move || {
                // Dropped when the thread ends, however it ends: `finish`
                // then stops waiting at once.
                let _done = done_tx;
                // A delivery that panics costs that delivery alone: the
                // thread goes on to the next one, and to the final one.
                let deliver = |target: &mut Box<dyn Target>,
                               deadline: Instant,
                               last: bool,
                               pause: &Pause<'_>| {
                    guarded(
                        thread_log.as_ref(),
                        "a delivery panicked; its figures were not delivered, the next delivery is made as usual",
                        [("target", name.into()), ("last", last.into())],
                        || target.deliver(&metrics, deadline, last, pause),
                    );
                };
                // What a target does between deliveries is guarded as a
                // delivery is: a panic there costs what it was taking, and
                // the next delivery comes at once.
                let idle = |target: &mut Box<dyn Target>, until: Instant| {
                    guarded(
                        thread_log.as_ref(),
                        "a target panicked between deliveries; what it was taking is lost, the next delivery is made now",
                        [("target", name.into())],
                        || target.idle(until, &finish_rx),
                    )
                    .unwrap_or(Idle::Due)
                };
                // A final deadline that came while a periodic delivery paused.
                let finishing = Cell::new(None);
                let mut next = Instant::now() + schedule.interval;
                loop {
                    if let Some(deadline) = finishing.take() {
                        deliver(&mut target, deadline, true, &Pause::plain());
                        return;
                    }
                    match idle(&mut target, next) {
                        Idle::Finish(deadline) => {
                            deliver(&mut target, deadline, true, &Pause::plain());
                            return;
                        }
                        Idle::Due => {
                            let pause = Pause {
                                finish: Some((&finish_rx, &finishing)),
                            };
                            deliver(&mut target, Instant::now() + schedule.timeout, false, &pause);
                            // The next one an interval after this one was due,
                            // or from now when delivering took longer.
                            next = (next + schedule.interval).max(Instant::now());
                        }
                        Idle::Dropped => return,
                    }
                }
            })?;
        Ok(Exporter {
            name,
            final_wait: schedule.final_wait,
            finish,
            done,
            thread: Some(thread),
            log,
        })
    }

    /// Delivers once more, now (call it once every event is processed), and
    /// waits for that delivery up to its final wait. Past it the thread is
    /// left to end on its own (its requests carry the same deadline), a
    /// warning is logged, and this returns: shutdown is never held longer.
    #[cfg(test)]
    pub(crate) fn finish(self) {
        finish_all(vec![self]);
    }
}

/// [`Exporter::finish`] for several exporters at once: their final
/// deliveries run side by side, each within its own final wait, so
/// shutdown waits for the longest of them, not their sum.
pub(crate) fn finish_all(exporters: Vec<Exporter>) {
    let now = Instant::now();
    let mut last_deadline = now;
    for exporter in &exporters {
        let deadline = now + exporter.final_wait;
        last_deadline = last_deadline.max(deadline);
        let _ = exporter.finish.try_send(deadline);
    }
    // A little past the deadlines: the deliveries themselves stop at theirs.
    let grace = last_deadline + Duration::from_millis(200);
    for mut exporter in exporters {
        let left = grace.saturating_duration_since(Instant::now());
        match exporter.done.recv_timeout(left) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Some(log) = &exporter.log {
                    Logger::bound("agentgate_obs::export", log.clone()).warn(
                        "the final delivery did not end within its wait; shutdown goes on without it",
                        [
                            ("target", exporter.name.into()),
                            ("waitMs", (exporter.final_wait.as_millis() as u64).into()),
                        ],
                    );
                }
            }
            _ => {
                if let Some(thread) = exporter.thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// How often a failing receiver is warned about at most: one that stays
/// down must not fill the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A receiver's warnings, at most one per [`WARN_EVERY`]; the next one
/// says how many were left out.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    last: Option<Instant>,
    suppressed: u64,
}

impl Warnings {
    /// Logs `message` with `fields` and the receiver's `url`, unless one
    /// was logged less than [`WARN_EVERY`] ago.
    pub(crate) fn warn(
        &mut self,
        log: Option<&Logger>,
        url: impl FnOnce() -> String,
        message: &'static str,
        mut fields: Vec<(&'static str, FieldValue)>,
    ) {
        let Some(log) = log else {
            return;
        };
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        self.last = Some(now);
        fields.push(("url", url().into()));
        if self.suppressed > 0 {
            fields.push(("warningsSuppressed", self.suppressed.into()));
            self.suppressed = 0;
        }
        log.warn(message, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;
    use parking_lot::Mutex;

    /// When each delivery came, its deadline, and whether it was the last.
    type Calls = Arc<Mutex<Vec<(Instant, Instant, bool)>>>;

    /// Records every delivery. Each takes `takes`, whatever its deadline
    /// (a receiver that hangs); the first `panics` ones panic.
    struct Recording {
        calls: Calls,
        takes: Duration,
        panics: usize,
    }

    impl Target for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }

        fn deliver(&mut self, _: &Metrics, deadline: Instant, last: bool, _: &Pause<'_>) {
            self.calls.lock().push((Instant::now(), deadline, last));
            if self.panics > 0 {
                self.panics -= 1;
                panic!("a bug in a receiver's code");
            }
            std::thread::sleep(self.takes);
        }
    }

    fn metrics() -> Metrics {
        Metrics::new("agentgate", MetricsConfig::default()).unwrap()
    }

    fn start_with(
        interval: Duration,
        takes: Duration,
        final_wait: Duration,
        panics: usize,
    ) -> (Exporter, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let target = Recording {
            calls: calls.clone(),
            takes,
            panics,
        };
        let schedule = Schedule {
            interval,
            timeout: Duration::from_secs(1),
            final_wait,
        };
        let exporter = Exporter::start(Box::new(target), metrics(), schedule, None).unwrap();
        (exporter, calls)
    }

    fn start(interval: Duration, takes: Duration, final_wait: Duration) -> (Exporter, Calls) {
        start_with(interval, takes, final_wait, 0)
    }

    #[test]
    fn a_short_process_delivers_once_at_finish_even_before_its_first_interval() {
        let (exporter, calls) = start(
            Duration::from_secs(60),
            Duration::ZERO,
            Duration::from_secs(2),
        );
        std::thread::sleep(Duration::from_millis(50));
        exporter.finish();
        let calls = calls.lock();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].2, "the one delivery is the last one");
    }

    #[test]
    fn deliveries_come_every_interval_then_once_more_at_finish() {
        let (exporter, calls) = start(
            Duration::from_millis(40),
            Duration::ZERO,
            Duration::from_secs(2),
        );
        std::thread::sleep(Duration::from_millis(300));
        exporter.finish();
        let calls = calls.lock();
        assert!(calls.len() >= 4, "{} deliveries", calls.len());
        assert!(calls.iter().rev().skip(1).all(|(_, _, last)| !last));
        assert!(calls.last().unwrap().2);
    }

    #[test]
    fn final_deliveries_that_hang_hold_shutdown_only_for_one_wait_together() {
        let wait = Duration::from_millis(300);
        let (first, first_calls) = start(Duration::from_secs(60), Duration::from_secs(30), wait);
        let (second, second_calls) = start(Duration::from_secs(60), Duration::from_secs(30), wait);
        let started = Instant::now();
        finish_all(vec![first, second]);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "finish took {took:?}");
        assert_eq!(first_calls.lock().len(), 1);
        assert_eq!(second_calls.lock().len(), 1);
    }

    #[test]
    fn each_final_delivery_gets_its_own_wait_not_the_longest_of_them() {
        let (short, short_calls) = start(
            Duration::from_secs(60),
            Duration::ZERO,
            Duration::from_millis(100),
        );
        let (long, long_calls) = start(
            Duration::from_secs(60),
            Duration::ZERO,
            Duration::from_secs(3),
        );
        let started = Instant::now();
        finish_all(vec![short, long]);
        let short_deadline = short_calls.lock()[0].1;
        let long_deadline = long_calls.lock()[0].1;
        assert!(
            short_deadline <= started + Duration::from_millis(150),
            "the short wait became {:?}",
            short_deadline - started
        );
        assert!(long_deadline >= started + Duration::from_secs(3));
    }

    #[test]
    fn a_delivery_that_panics_leaves_the_exporter_delivering_and_the_final_delivery_still_made() {
        let (exporter, calls) = start_with(
            Duration::from_millis(30),
            Duration::ZERO,
            Duration::from_secs(2),
            1,
        );
        // The panicking first one, then periodic ones again (a panic's
        // backtrace may take a while to print).
        let waited = Instant::now();
        while calls.lock().len() < 3 && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        exporter.finish();
        let calls = calls.lock();
        assert!(calls.len() >= 4, "{} deliveries", calls.len());
        assert!(calls.last().unwrap().2, "the final delivery was made");
    }
}
