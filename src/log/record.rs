//! What crosses the channel to the writer thread: the record's parts,
//! owned and cheap to build. Nothing here is JSON yet; formatting and
//! redaction happen on the writer thread.

use std::borrow::Cow;
use std::sync::Arc;

use super::level::Level;
use crate::context::LogContext;
use crate::event::{ProgressEvent, Timestamp};

/// The value of an extra field of a log record.
///
/// Built with `From`: strings (`&'static str` without copying, `String`),
/// integers, floats, booleans, and any [`serde_json::Value`] for nested data.
///
/// ```
/// use agentgate_obs::logging::FieldValue;
/// let values: [FieldValue; 4] = ["build".into(), 1234u64.into(), true.into(), serde_json::json!({"a": 1}).into()];
/// assert!(matches!(values[1], FieldValue::U64(1234)));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue {
    /// A string; redacted when it contains a token.
    Str(Cow<'static, str>),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float; non-finite values are written as strings.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Nested data; secret keys at any depth are redacted.
    Json(serde_json::Value),
}

impl FieldValue {
    /// A string value copied from a borrowed `&str`.
    pub fn text(s: &str) -> Self {
        FieldValue::Str(Cow::Owned(s.to_owned()))
    }
}

impl From<&'static str> for FieldValue {
    fn from(s: &'static str) -> Self {
        FieldValue::Str(Cow::Borrowed(s))
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::Str(Cow::Owned(s))
    }
}

impl From<Cow<'static, str>> for FieldValue {
    fn from(s: Cow<'static, str>) -> Self {
        FieldValue::Str(s)
    }
}

impl From<&Arc<str>> for FieldValue {
    fn from(s: &Arc<str>) -> Self {
        FieldValue::text(s)
    }
}

macro_rules! from_int {
    ($variant:ident as $target:ty: $($t:ty),*) => {$(
        impl From<$t> for FieldValue {
            fn from(n: $t) -> Self {
                FieldValue::$variant(<$target>::from(n))
            }
        }
    )*};
}
from_int!(I64 as i64: i8, i16, i32, i64);
from_int!(U64 as u64: u8, u16, u32, u64);
from_int!(F64 as f64: f32, f64);

impl From<usize> for FieldValue {
    fn from(n: usize) -> Self {
        // usize is at most 64 bits on every supported target.
        FieldValue::U64(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

impl From<serde_json::Value> for FieldValue {
    fn from(v: serde_json::Value) -> Self {
        FieldValue::Json(v)
    }
}

/// One extra field: a key and its value.
pub type Field = (&'static str, FieldValue);

/// A record's content beyond level, module and time.
#[derive(Debug)]
pub(crate) enum Body {
    /// A message with extra fields, in the context of the logging thread.
    Message {
        message: Cow<'static, str>,
        context: Option<Arc<LogContext>>,
        fields: Vec<Field>,
    },
    /// A processed progress event, written as `Progress: <type>`.
    Progress(Box<ProgressEvent>),
}

/// One log record on its way to the writer thread.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) level: Level,
    pub(crate) module: Cow<'static, str>,
    pub(crate) timestamp: Timestamp,
    pub(crate) body: Body,
}
