//! The log writer under pressure: a slow or stuck sink never holds up the
//! caller for debug/info, warn/error are never dropped, every drop is
//! counted, nothing accepted is lost at shutdown, a failing sink is survived.

use crate::common;

use std::time::Duration;

use agentgate_obs::logging::Level;
use agentgate_obs::{Observability, ProgressEmitter};
use common::{FailingLogSink, GatedLogSink, lines_with_message};

struct OpenOnDrop(GatedLogSink);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[test]
fn a_million_info_records_into_a_stuck_sink_never_block_the_caller_and_every_drop_is_counted() {
    const RECORDS: u64 = 1_000_000;
    let sink = GatedLogSink::closed();
    let obs = Observability::builder()
        .log_to(sink.clone())
        .log_capacity(1024)
        .start()
        .unwrap();
    // Opens the gate however the test ends, so a failure cannot hang the
    // shutdown in `obs`'s drop (declared later, dropped first).
    let _open_on_exit = OpenOnDrop(sink.clone());
    let log = obs.logger("flood");
    // The sink does not accept a single byte until the flood is over: if
    // an info record ever waited for space, this would never finish.
    let log_in_thread = log.clone();
    common::within(
        Duration::from_secs(120),
        "an info flood into a stuck sink",
        move || {
            for i in 0..RECORDS {
                log_in_thread.info("flood", [("i", i.into())]);
            }
        },
    );
    let during = obs.log_stats();
    // Only the queue (1024) and the writer's first batch (at most 64 KiB of
    // lines of 60+ bytes) got in.
    assert!(during.dropped >= RECORDS - 1024 - 1100, "{during:?}");
    sink.open();
    obs.shutdown();
    let stats = obs.log_stats();
    let lines = sink.buffer.log_lines();
    assert_eq!(stats.written + stats.dropped, RECORDS, "{stats:?}");
    assert_eq!(stats.written, lines.len() as u64);
    assert_eq!(stats.lost, 0);
    // What got in came out in order, from the first record on.
    let order: Vec<u64> = lines.iter().map(|l| l["i"].as_u64().unwrap()).collect();
    assert_eq!(order[0], 0);
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn under_a_flood_into_a_slow_sink_only_debug_and_info_are_dropped() {
    let sink = GatedLogSink::slow(Duration::from_micros(200));
    let obs = Observability::builder()
        .log_to(sink.clone())
        .log_level(Level::Debug)
        .log_capacity(64)
        .start()
        .unwrap();
    let log = obs.logger("flood");
    let (mut important, mut unimportant) = (0u64, 0u64);
    for i in 0..100_000u64 {
        match i % 500 {
            0 => {
                log.warn("must arrive", [("i", i.into())]);
                important += 1;
            }
            250 => {
                log.error("must arrive", [("i", i.into())]);
                important += 1;
            }
            n if n % 2 == 0 => {
                log.info("may drop", []);
                unimportant += 1;
            }
            _ => {
                log.debug("may drop", []);
                unimportant += 1;
            }
        }
    }
    obs.shutdown();
    let stats = obs.log_stats();
    let lines = sink.buffer.log_lines();
    let arrived = lines_with_message(&lines, "must arrive").len() as u64;
    let droppable_written = lines_with_message(&lines, "may drop").len() as u64;
    assert_eq!(arrived, important);
    assert!(
        stats.dropped > 0,
        "the flood should have overrun a 64-record queue"
    );
    assert_eq!(stats.dropped, unimportant - droppable_written, "{stats:?}");
    assert_eq!(stats.written, important + droppable_written);
}

#[test]
fn everything_accepted_is_written_at_shutdown() {
    let sink = GatedLogSink::slow(Duration::from_millis(1));
    let obs = Observability::builder()
        .log_to(sink.clone())
        .log_capacity(100_000)
        .start()
        .unwrap();
    let log = obs.logger("m");
    for i in 0..20_000u64 {
        log.info("accepted", [("i", i.into())]);
    }
    let emitter = obs.emitter();
    for i in 0..1_000 {
        emitter.emit_phase_started("wo-1", "run-1", i, agentgate_obs::Phase::Build);
    }
    // Shut down at once, with most of it still queued.
    obs.shutdown();
    let stats = obs.log_stats();
    assert_eq!(stats.dropped, 0);
    let lines = sink.buffer.log_lines();
    assert_eq!(lines_with_message(&lines, "accepted").len(), 20_000);
    assert_eq!(
        lines_with_message(&lines, "Progress: phase_started").len(),
        1_000
    );
    assert_eq!(stats.written, 21_000);
}

#[test]
fn a_sink_that_returns_errors_is_counted_and_does_not_break_the_program() {
    let obs = Observability::builder()
        .log_to(FailingLogSink { panics: false })
        .start()
        .unwrap();
    let log = obs.logger("m");
    for _ in 0..100 {
        log.error("into the void", []);
    }
    obs.flush_logs();
    log.info("still logging", []);
    obs.shutdown();
    let stats = obs.log_stats();
    assert!(stats.sink_errors >= 1, "{stats:?}");
    assert_eq!(stats.lost, 101);
    assert_eq!(stats.written, 0);
}

#[test]
fn a_sink_that_panics_is_counted_and_does_not_break_the_program() {
    let obs = Observability::builder()
        .log_to(FailingLogSink { panics: true })
        .start()
        .unwrap();
    let log = obs.logger("m");
    log.warn("first", []);
    obs.flush_logs();
    log.warn("second", []);
    obs.flush_logs();
    let stats = obs.log_stats();
    assert_eq!(stats.sink_errors, 2, "each batch is tried again: {stats:?}");
    assert_eq!(stats.lost, 2);
    obs.emitter()
        .emit_phase_started("wo-1", "run-1", 1, agentgate_obs::Phase::Build);
    obs.flush();
    assert_eq!(obs.stats().processed.total(), 1);
}

#[test]
fn records_logged_after_shutdown_are_counted_as_dropped() {
    let sink = GatedLogSink::slow(Duration::ZERO);
    let obs = Observability::builder()
        .log_to(sink.clone())
        .start()
        .unwrap();
    let log = obs.logger("late");
    obs.shutdown();
    log.error("too late", []);
    log.info("too late", []);
    assert_eq!(obs.log_stats().dropped, 2);
    assert!(sink.buffer.text().is_empty());
}

#[test]
fn dropped_log_records_are_exported_as_a_metric() {
    let sink = GatedLogSink::closed();
    let obs = Observability::builder()
        .log_to(sink.clone())
        .log_capacity(16)
        .start()
        .unwrap();
    let _open_on_exit = OpenOnDrop(sink.clone());
    let log = obs.logger("flood");
    for i in 0..10_000u64 {
        log.info("flood", [("i", i.into())]);
    }
    let dropped = obs.log_stats().dropped;
    assert!(dropped > 0);
    let text = obs
        .metrics()
        .render_as(agentgate_obs::metrics::Format::Prometheus);
    let samples = common::parse_exposition(&text).unwrap();
    assert_eq!(
        common::sample_value(&samples, "agentgate_log_records_dropped_total", &[]),
        Some(dropped as f64)
    );
    assert_eq!(
        common::sample_value(&samples, "agentgate_log_sink_errors_total", &[]),
        Some(0.0)
    );
}
