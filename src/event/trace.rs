//! W3C Trace Context ids: the trace id every event of a run carries
//! (`traceId`), span ids, and the `traceparent` header an engine passes in
//! to make a run join its caller's trace.
//!
//! Ids are drawn from `fastrand`'s thread-local generator: seeded once per
//! thread, then a few arithmetic instructions a draw, no system call.

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A W3C trace id: 16 bytes, never all zero; 32 lowercase hex digits on
/// the wire (`traceId` of events, `trace_id` of log lines and exemplars,
/// OTLP JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// A W3C span id: 8 bytes, never all zero; 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl TraceId {
    /// A random trace id.
    pub fn random() -> TraceId {
        loop {
            let id = fastrand::u128(..);
            if id != 0 {
                return TraceId(id.to_be_bytes());
            }
        }
    }

    /// The id of these bytes; `None` for all zeros, which W3C reserves
    /// for "no trace".
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Parses 32 hex digits (either case); `None` otherwise or for zeros.
    pub fn from_hex(hex: &str) -> Option<TraceId> {
        let mut bytes = [0u8; 16];
        decode_hex(hex, &mut bytes)?;
        TraceId::from_bytes(bytes)
    }

    /// Writes the 32 lowercase hex digits into `out`.
    pub(crate) fn write_hex(self, out: &mut Vec<u8>) {
        encode_hex(&self.0, out);
    }
}

impl SpanId {
    /// A random span id.
    pub fn random() -> SpanId {
        loop {
            if let Some(id) = NonZeroU64::new(fastrand::u64(..)) {
                return SpanId(id);
            }
        }
    }

    /// The id of these bytes; `None` for all zeros.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        NonZeroU64::new(u64::from_be_bytes(bytes)).map(SpanId)
    }

    /// The 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }

    /// Parses 16 hex digits (either case); `None` otherwise or for zeros.
    pub fn from_hex(hex: &str) -> Option<SpanId> {
        let mut bytes = [0u8; 8];
        decode_hex(hex, &mut bytes)?;
        SpanId::from_bytes(bytes)
    }

    /// The span id a run's iteration or phase gets, derived from the run's
    /// root span: the engine's thread (for log lines in a phase's context)
    /// and the drain thread (building the span) compute the same id
    /// without telling each other. `slot` 0 is the iteration, 1 + the
    /// phase's index a phase, [`SpanId::DELIVERY_SLOT`] the delivery.
    pub(crate) fn child(self, iteration: u32, slot: u8) -> SpanId {
        // splitmix64's finaliser over the root and the position.
        let mut z = self.0.get() ^ ((u64::from(iteration) << 8) | u64::from(slot)).wrapping_add(1);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        SpanId(NonZeroU64::new(z).unwrap_or(NonZeroU64::MIN))
    }

    /// The span id of `phase` in `iteration` of the run whose span is
    /// `self`: the same on the engine's thread and on the drain thread.
    pub(crate) fn phase_child(self, iteration: u32, phase: super::Phase) -> SpanId {
        self.child(iteration, 1 + phase.index() as u8)
    }

    /// [`child`](Self::child)'s slot for the delivery span.
    pub(crate) const DELIVERY_SLOT: u8 = 0xD0;

    /// Writes the 16 lowercase hex digits into `out`.
    pub(crate) fn write_hex(self, out: &mut Vec<u8>) {
        encode_hex(&self.to_bytes(), out);
    }
}

fn decode_hex(hex: &str, out: &mut [u8]) -> Option<()> {
    let bytes = hex.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        *slot = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(())
}

fn encode_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xF)]);
    }
}

macro_rules! hex_id_traits {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut out = Vec::with_capacity(32);
                self.write_hex(&mut out);
                // Hex digits are ASCII.
                f.write_str(std::str::from_utf8(&out).unwrap_or_default())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let hex = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::from_hex(&hex).ok_or_else(|| {
                    serde::de::Error::custom(concat!(
                        "not a ",
                        stringify!($name),
                        ": lowercase hex, not all zeros"
                    ))
                })
            }
        }
    };
}

hex_id_traits!(TraceId);
hex_id_traits!(SpanId);

/// A W3C `traceparent` header: the caller's trace and span, which a run
/// started with it joins (its root span's parent is the caller's span).
///
/// ```
/// use agentgate_obs::TraceParent;
/// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The caller's trace.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the run's root span.
    pub parent_id: SpanId,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent `{value}`: {reason}")]
pub struct InvalidTraceparent {
    value: String,
    reason: &'static str,
}

impl TraceParent {
    /// Parses a `traceparent` value as W3C Trace Context level 1 says:
    /// `version-traceid-parentid-flags`, lowercase hex; version `ff` and
    /// all-zero ids are invalid; a version above `00` may carry more
    /// fields after the four, which are ignored.
    pub fn parse(value: &str) -> Result<TraceParent, InvalidTraceparent> {
        let fail = |reason| InvalidTraceparent {
            value: value.chars().take(80).collect(),
            reason,
        };
        let trimmed = value.trim();
        let mut parts = trimmed.splitn(5, '-');
        let (Some(version), Some(trace), Some(parent), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected four fields separated by `-`"));
        };
        let rest = parts.next();
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if version.len() != 2 || !lower_hex(version) || version == "ff" {
            return Err(fail("the version is not two lowercase hex digits below ff"));
        }
        if version == "00" && (rest.is_some() || flags.len() != 2) {
            return Err(fail("version 00 has exactly four fields"));
        }
        if !lower_hex(trace) || !lower_hex(parent) || flags.len() < 2 || !lower_hex(&flags[..2]) {
            return Err(fail("the ids and flags are lowercase hex"));
        }
        let trace_id = TraceId::from_hex(trace)
            .ok_or(fail("the trace id is not 32 hex digits, not all zero"))?;
        let parent_id = SpanId::from_hex(parent)
            .ok_or(fail("the parent id is not 16 hex digits, not all zero"))?;
        let flags =
            u8::from_str_radix(&flags[..2], 16).map_err(|_| fail("the flags are not hex"))?;
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl std::str::FromStr for TraceParent {
    type Err = InvalidTraceparent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceParent::parse(s)
    }
}

/// A run's place in its trace, chosen where the run's handle is made and
/// carried with its registration: the trace, the root span (the run), and
/// the caller's span when the run joined a caller's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunTrace {
    pub(crate) trace_id: TraceId,
    pub(crate) root: SpanId,
    pub(crate) parent: Option<SpanId>,
}

impl RunTrace {
    /// A new trace, or the caller's when `parent` is given.
    pub(crate) fn new(parent: Option<&TraceParent>) -> RunTrace {
        RunTrace {
            trace_id: parent.map_or_else(TraceId::random, |p| p.trace_id),
            root: SpanId::random(),
            parent: parent.map(|p| p.parent_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_lowercase_hex_and_parse_back() {
        let t = TraceId::random();
        assert_eq!(TraceId::from_hex(&t.to_string()), Some(t));
        assert_eq!(t.to_string().len(), 32);
        let s = SpanId::random();
        assert_eq!(SpanId::from_hex(&s.to_string()), Some(s));
        assert_eq!(s.to_string().len(), 16);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{t}\""),
            "JSON is the hex string"
        );
    }

    #[test]
    fn a_traceparent_that_breaks_the_w3c_grammar_is_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?}");
        }
        let future =
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever");
        assert!(future.is_ok());
    }

    #[test]
    fn child_span_ids_differ_by_iteration_and_slot_and_are_stable() {
        let root = SpanId::random();
        let a = root.child(1, 0);
        assert_eq!(a, root.child(1, 0));
        assert_ne!(a, root.child(2, 0));
        assert_ne!(a, root.child(1, 1));
        assert_ne!(a, root);
    }
}
