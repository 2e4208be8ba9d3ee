//! Millisecond UTC timestamps, written as RFC 3339 (`2026-11-23T23:40:25.123Z`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, the precision of the wire format.
///
/// Times before 1970 clamp to the epoch and times past year 9999 to its
/// last millisecond, so formatting never fails.
///
/// ```
/// use agentgate_obs::event::Timestamp;
/// let t = Timestamp::from_millis(1_763_941_225_123);
/// assert_eq!(t.to_string(), "2025-11-23T23:40:25.123Z");
/// assert_eq!("2025-11-23T23:40:25.123Z".parse::<Timestamp>().unwrap(), t);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const MAX_MILLIS: u64 = 253_402_300_799_999;

impl Timestamp {
    /// A timestamp `millis` after the epoch (clamped to year 9999).
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        })
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Now, by the system clock.
    pub fn now() -> Self {
        Timestamp::from(SystemTime::now())
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp::from_millis(u64::try_from(millis).unwrap_or(MAX_MILLIS))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In range by construction, so humantime cannot fail here.
        fmt::Display::fmt(&humantime::format_rfc3339_millis(self.to_system_time()), f)
    }
}

/// Returned when a string is not an RFC 3339 UTC timestamp.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid RFC 3339 UTC timestamp: {0}")]
pub struct InvalidTimestamp(humantime::TimestampError);

impl std::str::FromStr for Timestamp {
    type Err = InvalidTimestamp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339(s)
            .map(Timestamp::from)
            .map_err(InvalidTimestamp)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor rather than `Cow<str>`, whose `Deserialize` always
        // copies: the text is parsed where it lies (a tenth of a replayed
        // line's cost was that copy and its allocation).
        struct Rfc3339;
        impl serde::de::Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Rfc3339)
    }
}
