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

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::log::{Dispatch, Logger};
use crate::metrics::Metrics;

/// A receiver of the metrics.
pub(crate) trait Target: Send + 'static {
    /// Its name in logs and labels: `pushgateway`, `remote_write`.
    fn name(&self) -> &'static str;

    /// Delivers `metrics` as they are now, giving up at `deadline`; `last`
    /// on the final delivery at shutdown. Counts and logs its own outcome:
    /// what failed and why differs per receiver.
    fn deliver(&mut self, metrics: &Metrics, deadline: Instant, last: bool);
}

/// When an exporter delivers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// Between two deliveries.
    pub(crate) interval: Duration,
    /// The most one periodic delivery may take (retries included).
    pub(crate) timeout: Duration,
}

/// An exporter thread: delivers on [`Schedule`], then once more when
/// [`finish`](Exporter::finish)ed.
pub(crate) struct Exporter {
    name: &'static str,
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
        let thread = std::thread::Builder::new()
            .name(format!("agentgate-obs-{name}"))
            .spawn(move || {
                // Dropped when the thread ends, however it ends: `finish`
                // then stops waiting at once.
                let _done = done_tx;
                let mut next = Instant::now() + schedule.interval;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    match finish_rx.recv_timeout(wait) {
                        Ok(deadline) => {
                            target.deliver(&metrics, deadline, true);
                            return;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            target.deliver(&metrics, Instant::now() + schedule.timeout, false);
                            // The next one an interval after this one was due,
                            // or from now when delivering took longer.
                            next = (next + schedule.interval).max(Instant::now());
                        }
                        // The exporter was dropped without finishing.
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Exporter {
            name,
            finish,
            done,
            thread: Some(thread),
            log,
        })
    }

    /// Delivers once more, now (call it once every event is processed), and
    /// waits for that delivery up to `wait`. Past it the thread is left to
    /// end on its own (its requests carry the same deadline), a warning is
    /// logged, and this returns: shutdown is never held longer.
    #[cfg(test)]
    pub(crate) fn finish(self, wait: Duration) {
        finish_all(vec![self], wait);
    }
}

/// [`Exporter::finish`] for several exporters at once: their final
/// deliveries run side by side, within one `wait`.
pub(crate) fn finish_all(exporters: Vec<Exporter>, wait: Duration) {
    let deadline = Instant::now() + wait;
    for exporter in &exporters {
        let _ = exporter.finish.try_send(deadline);
    }
    // A little past the deadline: the deliveries themselves stop at it.
    let grace = deadline + Duration::from_millis(200);
    for mut exporter in exporters {
        let left = grace.saturating_duration_since(Instant::now());
        match exporter.done.recv_timeout(left) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Some(log) = &exporter.log {
                    Logger::bound("agentgate_obs::export", log.clone()).warn(
                        "the final delivery did not end within its wait; shutdown goes on without it",
                        [
                            ("target", exporter.name.into()),
                            ("waitMs", (wait.as_millis() as u64).into()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;
    use parking_lot::Mutex;

    type Calls = Arc<Mutex<Vec<(Instant, bool)>>>;

    /// Records every delivery: when it came and whether it was the last.
    /// Each takes `takes`, whatever its deadline: a receiver that hangs.
    struct Recording {
        calls: Calls,
        takes: Duration,
    }

    impl Target for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }

        fn deliver(&mut self, _: &Metrics, deadline: Instant, last: bool) {
            self.calls.lock().push((Instant::now(), last));
            let _ = deadline;
            std::thread::sleep(self.takes);
        }
    }

    fn metrics() -> Metrics {
        Metrics::new("agentgate", MetricsConfig::default()).unwrap()
    }

    fn start(interval: Duration, takes: Duration) -> (Exporter, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let target = Recording {
            calls: calls.clone(),
            takes,
        };
        let schedule = Schedule {
            interval,
            timeout: Duration::from_secs(1),
        };
        let exporter = Exporter::start(Box::new(target), metrics(), schedule, None).unwrap();
        (exporter, calls)
    }

    #[test]
    fn a_short_process_delivers_once_at_finish_even_before_its_first_interval() {
        let (exporter, calls) = start(Duration::from_secs(60), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(50));
        exporter.finish(Duration::from_secs(2));
        let calls = calls.lock();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].1, "the one delivery is the last one");
    }

    #[test]
    fn deliveries_come_every_interval_then_once_more_at_finish() {
        let (exporter, calls) = start(Duration::from_millis(40), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(300));
        exporter.finish(Duration::from_secs(2));
        let calls = calls.lock();
        assert!(calls.len() >= 4, "{} deliveries", calls.len());
        assert!(calls.iter().rev().skip(1).all(|(_, last)| !last));
        assert!(calls.last().unwrap().1);
    }

    #[test]
    fn final_deliveries_that_hang_hold_shutdown_only_for_one_wait_together() {
        let (first, first_calls) = start(Duration::from_secs(60), Duration::from_secs(30));
        let (second, second_calls) = start(Duration::from_secs(60), Duration::from_secs(30));
        let started = Instant::now();
        finish_all(vec![first, second], Duration::from_millis(300));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "finish took {took:?}");
        assert_eq!(first_calls.lock().len(), 1);
        assert_eq!(second_calls.lock().len(), 1);
    }
}
