//! What a replay ([`Observability::replay`](crate::Observability::replay))
//! is asked to do and what it did.

use super::ReadReport;

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// Everything at once, as fast as the pipeline takes it.
    Max,
    /// The original timing (from the events' timestamps) divided by this
    /// factor: 1 is real time, 10 ten times faster.
    Scaled(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `max`, or a finite factor above 0.
    fn from_str(text: &str) -> Result<Speed, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Scaled(f)),
            _ => Err(format!(
                "speed must be `max` or a number above 0, not {text:?}"
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
