//! What a replay ([`Observability::replay`](crate::Observability::replay))
//! is asked to do and what it did.

use super::ReadReport;

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// Everything at once, as fast as the pipeline takes it.
    Max,
    /// The original timing (from the events' timestamps) divided by this
    /// factor: 1 is real time, 10 ten times faster. Parsed from text, it is
    /// within [`Speed::MIN_FACTOR`]`..=`[`Speed::MAX_FACTOR`]; a factor
    /// outside that range built by hand still replays (a wait too long to
    /// represent lasts until `stop`).
    Scaled(f64),
}

impl Speed {
    /// The slowest factor [`from_str`](std::str::FromStr::from_str) takes:
    /// a thousand times slower than real time.
    pub const MIN_FACTOR: f64 = 0.001;
    /// The fastest factor it takes: a day of journal in under a tenth of a
    /// second (`max` is faster still).
    pub const MAX_FACTOR: f64 = 1_000_000.0;
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `max`, or a factor from [`Speed::MIN_FACTOR`] to [`Speed::MAX_FACTOR`].
    fn from_str(text: &str) -> Result<Speed, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match text.parse::<f64>() {
            Ok(f) if (Speed::MIN_FACTOR..=Speed::MAX_FACTOR).contains(&f) => Ok(Speed::Scaled(f)),
            _ => Err(format!(
                "speed must be `max` or a number from {} to {}, not {text:?}",
                Speed::MIN_FACTOR,
                Speed::MAX_FACTOR
            )),
        }
    }
}

/// What a [`replay`](crate::Observability::replay) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// What was read, skipped lines included.
    pub read: ReadReport,
    /// Events fed to the pipeline.
    pub events: u64,
    /// Events missing from the journal, by gaps in `seq` (the writer was
    /// behind and dropped them, or the oldest rotated files are gone).
    pub missing: u64,
    /// Times `seq` went backwards: another process appended to the
    /// journal after this one (each restarts at 1).
    pub restarts: u64,
    /// The first and last `seq` read.
    pub seqs: Option<(u64, u64)>,
    /// Ended early because `stop` was set.
    pub stopped: bool,
}
