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

/// Converts raw ticks to wall-clock timestamps. Owned by the drain thread.
pub(crate) struct WallClock {
    clock: quanta::Clock,
    anchor_ticks: u64,
    anchor_wall_nanos: u64,
}

impl WallClock {
    pub(crate) fn new(clock: quanta::Clock) -> Self {
        let mut wall = WallClock {
            clock,
            anchor_ticks: 0,
            anchor_wall_nanos: 0,
        };
        wall.reanchor();
        wall
    }

    fn reanchor(&mut self) {
        self.anchor_ticks = self.clock.raw();
        self.anchor_wall_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
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

    #[test]
    fn ticks_convert_to_the_system_time_within_a_few_milliseconds() {
        let clock = new_clock();
        let mut wall = WallClock::new(clock.clone());
        let before = Timestamp::now().as_millis();
        let stamped = wall.timestamp(clock.raw()).as_millis();
        let after = Timestamp::now().as_millis();
        assert!(
            before.saturating_sub(5) <= stamped && stamped <= after + 5,
            "{before} {stamped} {after}"
        );
    }
}
