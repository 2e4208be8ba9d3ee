//! Timestamps from the CPU's cycle counter.
//!
//! Reading the system clock costs 40–60 ns on these machines, as much as the
//! whole rest of an emit; the cycle counter (via `quanta`) costs ~15 ns. The
//! emitter stamps events with raw ticks and the drain thread turns them into
//! wall-clock time against an anchor it re-reads every second, so NTP steps
//! and drift show up within a second.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::Timestamp;

/// The pipeline's tick source. Under Miri, which cannot execute `rdtsc`
/// (nor the CPUID probe `quanta` calibrates with), a mock clock that stands
/// still: timestamps are then the anchor's wall time, which is all the
/// Miri tests need.
pub(crate) fn new_clock() -> quanta::Clock {
    #[cfg(miri)]
    {
        quanta::Clock::mock().0
    }
    #[cfg(not(miri))]
    {
        quanta::Clock::new()
    }
}

/// How often the drain thread re-reads the wall clock.
const REANCHOR_NANOS: u64 = 1_000_000_000;

/// Nanoseconds since the Unix epoch by the system clock.
fn system_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Converts raw ticks to wall-clock timestamps. Owned by the drain thread.
pub(crate) struct WallClock {
    clock: quanta::Clock,
    /// The wall-clock source: the system clock, or a fixed script in tests
    /// (whose assertions must not depend on how busy the machine is).
    wall_now: fn() -> u64,
    anchor_ticks: u64,
    anchor_wall_nanos: u64,
}

impl WallClock {
    pub(crate) fn new(clock: quanta::Clock) -> Self {
        Self::with_wall_source(clock, system_nanos)
    }

    fn with_wall_source(clock: quanta::Clock, wall_now: fn() -> u64) -> Self {
        let mut wall = WallClock {
            clock,
            wall_now,
            anchor_ticks: 0,
            anchor_wall_nanos: 0,
        };
        wall.reanchor();
        wall
    }

    fn reanchor(&mut self) {
        self.anchor_ticks = self.clock.raw();
        self.anchor_wall_nanos = (self.wall_now)();
    }

    /// Nanoseconds since the epoch at `ticks`.
    pub(crate) fn wall_nanos(&mut self, ticks: u64) -> u64 {
        let mut ahead = self.clock.delta_as_nanos(self.anchor_ticks, ticks);
        if ahead > REANCHOR_NANOS {
            self.reanchor();
            ahead = self.clock.delta_as_nanos(self.anchor_ticks, ticks);
        }
        if ahead > 0 {
            self.anchor_wall_nanos.saturating_add(ahead)
        } else {
            // Stamped before the anchor (queued across a re-anchor).
            let behind = self.clock.delta_as_nanos(ticks, self.anchor_ticks);
            self.anchor_wall_nanos.saturating_sub(behind)
        }
    }

    /// The wall-clock timestamp of `ticks`.
    pub(crate) fn timestamp(&mut self, ticks: u64) -> Timestamp {
        Timestamp::from_millis(self.wall_nanos(ticks) / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-01-01T00:00:00Z: the injected wall clock's reading.
    const ANCHOR_WALL: u64 = 1_767_225_600_000_000_000;

    fn fixed_wall() -> u64 {
        ANCHOR_WALL
    }

    // Regression: this used to compare against two reads of the real system
    // clock with a 5 ms tolerance, which failed under Miri on a busy machine
    // (stamped 7 ms before the earlier read). The arithmetic is what matters;
    // the clocks are injected.
    #[test]
    fn ticks_after_the_anchor_are_added_to_its_wall_time() {
        let (clock, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(3));
        let mut wall = WallClock::with_wall_source(clock.clone(), fixed_wall);
        mock.increment(Duration::from_micros(1_500));
        assert_eq!(wall.wall_nanos(clock.raw()), ANCHOR_WALL + 1_500_000);
        assert_eq!(
            wall.timestamp(clock.raw()).as_millis(),
            ANCHOR_WALL / 1_000_000 + 1
        );
    }

    #[test]
    fn ticks_stamped_before_the_anchor_are_subtracted_from_its_wall_time() {
        let (clock, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(3));
        let stamped = clock.raw();
        mock.increment(Duration::from_millis(250));
        let mut wall = WallClock::with_wall_source(clock, fixed_wall);
        assert_eq!(wall.wall_nanos(stamped), ANCHOR_WALL - 250_000_000);
    }

    #[test]
    fn ticks_more_than_a_second_ahead_re_anchor_on_the_wall_clock() {
        // A wall clock that was stepped forward by an hour after the anchor
        // (NTP): the conversion follows it once the ticks are a second on.
        use std::sync::atomic::{AtomicU64, Ordering};
        static WALL: AtomicU64 = AtomicU64::new(ANCHOR_WALL);
        fn stepped_wall() -> u64 {
            // Relaxed: a single-threaded test's own variable.
            WALL.load(Ordering::Relaxed)
        }
        let (clock, mock) = quanta::Clock::mock();
        let mut wall = WallClock::with_wall_source(clock.clone(), stepped_wall);
        let hour = 3_600_000_000_000;
        WALL.store(ANCHOR_WALL + hour + 2_000_000_000, Ordering::Relaxed);
        mock.increment(Duration::from_millis(500));
        assert_eq!(wall.wall_nanos(clock.raw()), ANCHOR_WALL + 500_000_000);
        mock.increment(Duration::from_millis(1_500));
        assert_eq!(
            wall.wall_nanos(clock.raw()),
            ANCHOR_WALL + hour + 2_000_000_000
        );
    }

    #[test]
    fn the_system_clock_source_reads_the_current_time() {
        // Only the order of magnitude: this is the real clock.
        let now = system_nanos();
        assert!(now > ANCHOR_WALL - 365 * 86_400 * 1_000_000_000, "{now}");
    }
}
