//! One record to one JSON line, on the writer thread.
//!
//! Field order is fixed: `level`, `module`, `message`, `timestamp`, the
//! context fields that are set (`workOrderId`, `runId`, `iteration`,
//! `phase`, `correlationId`), then the extra fields. Every string goes
//! through [`redact`](crate::redact) and serde_json's escaping, so control
//! characters, quotes and odd Unicode come out as valid JSON. An extra field
//! may not take a core field's name: it is written as `extra.<name>`
//! instead, and a repeated extra key keeps its first value.

use std::io::Write as _;

use serde_json::Value;

use super::record::{Body, FieldValue, Record};
use crate::context::LogContext;
use crate::event::{ProgressEvent, SpanId, Timestamp, TraceId};
use crate::redact::{REDACTED, Redactor};

/// Keys an extra field can never take.
const CORE_KEYS: [&str; 11] = [
    "level",
    "module",
    "message",
    "timestamp",
    "workOrderId",
    "runId",
    "iteration",
    "phase",
    "correlationId",
    "trace_id",
    "span_id",
];

/// The context part of a line.
#[derive(Default)]
struct Ctx<'a> {
    work_order_id: Option<&'a str>,
    run_id: Option<&'a str>,
    iteration: Option<u64>,
    phase: Option<&'a str>,
    correlation_id: Option<&'a str>,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
}

impl<'a> From<&'a LogContext> for Ctx<'a> {
    fn from(c: &'a LogContext) -> Self {
        Ctx {
            work_order_id: c.work_order_id.as_deref(),
            run_id: c.run_id.as_deref(),
            iteration: c.iteration.map(u64::from),
            phase: c.phase.map(|p| p.as_str()),
            correlation_id: c.correlation_id.as_deref(),
            trace_id: c.trace_id,
            span_id: c.span_id,
        }
    }
}

/// Appends `record` as one JSON line (with its `\n`) to `out`. Nested
/// values are redacted in place: the record is the writer's own by now.
pub(crate) fn write_line(out: &mut Vec<u8>, record: &mut Record, r: &Redactor) {
    out.extend_from_slice(b"{\"level\":\"");
    out.extend_from_slice(record.level.as_str().as_bytes());
    out.extend_from_slice(b"\",\"module\":");
    write_str(out, &record.module, r);
    let timestamp = record.timestamp;
    match &mut record.body {
        Body::Message {
            message,
            context,
            fields,
        } => {
            out.extend_from_slice(b",\"message\":");
            write_str(out, message, r);
            write_timestamp(out, timestamp);
            let ctx = context.as_deref().map(Ctx::from).unwrap_or_default();
            write_context(out, &ctx, Some(r));
            let mut seen = SeenKeys::new(fields.len());
            for (key, value) in fields.iter_mut() {
                if seen.insert(key) {
                    write_key(out, key, Some(r));
                    write_value(out, key, value, r);
                }
            }
        }
        Body::Progress(event) => write_progress(out, timestamp, event),
    }
    out.extend_from_slice(b"}\n");
}

fn write_timestamp(out: &mut Vec<u8>, timestamp: Timestamp) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, ",\"timestamp\":\"{timestamp}\"");
}

/// The extra keys written so far: a repeated key keeps its first value.
/// A short list is scanned; a hostile number of fields gets a set, so the
/// writer's work stays linear.
enum SeenKeys {
    Few(Vec<&'static str>),
    Many(std::collections::HashSet<&'static str>),
}

impl SeenKeys {
    fn new(fields: usize) -> Self {
        if fields <= 16 {
            SeenKeys::Few(Vec::with_capacity(fields))
        } else {
            SeenKeys::Many(std::collections::HashSet::with_capacity(fields))
        }
    }

    /// True when `key` was not seen before.
    fn insert(&mut self, key: &'static str) -> bool {
        match self {
            SeenKeys::Few(keys) if keys.contains(&key) => false,
            SeenKeys::Few(keys) => {
                keys.push(key);
                true
            }
            SeenKeys::Many(keys) => keys.insert(key),
        }
    }
}

/// `r`: the redactor, `None` for text redacted already (progress events).
fn write_context(out: &mut Vec<u8>, ctx: &Ctx<'_>, r: Option<&Redactor>) {
    let text = |out: &mut Vec<u8>, key: &str, v: Option<&str>| {
        if let Some(v) = v {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            match r {
                Some(r) => write_str(out, v, r),
                None => write_raw_str(out, v),
            }
        }
    };
    text(out, "workOrderId", ctx.work_order_id);
    text(out, "runId", ctx.run_id);
    if let Some(i) = ctx.iteration {
        // Writing into a Vec cannot fail.
        let _ = write!(out, ",\"iteration\":{i}");
    }
    text(out, "phase", ctx.phase);
    // Like progress events: the run id stands in for a missing correlation id.
    text(out, "correlationId", ctx.correlation_id.or(ctx.run_id));
    // OpenTelemetry's names for log records, so that log backends join
    // the line to its trace.
    if let Some(trace_id) = ctx.trace_id {
        out.extend_from_slice(b",\"trace_id\":\"");
        trace_id.write_hex(out);
        out.push(b'"');
        if let Some(span_id) = ctx.span_id {
            out.extend_from_slice(b",\"span_id\":\"");
            span_id.write_hex(out);
            out.push(b'"');
        }
    }
}

/// Writes `,"key":`, renaming a core key to `extra.key`.
/// `r`: the redactor, `None` for keys we wrote ourselves.
fn write_key(out: &mut Vec<u8>, key: &str, r: Option<&Redactor>) {
    out.push(b',');
    let key: std::borrow::Cow<'_, str> = match r {
        Some(r) => r.redact_str(key),
        None => key.into(),
    };
    if CORE_KEYS.contains(&&*key) {
        write_raw_str(out, &format!("extra.{key}"));
    } else {
        write_raw_str(out, &key);
    }
    out.push(b':');
}

fn write_value(out: &mut Vec<u8>, key: &str, value: &mut FieldValue, r: &Redactor) {
    if r.is_secret_key(key) {
        write_raw_str(out, REDACTED);
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = match value {
        FieldValue::Str(s) => {
            write_str(out, s, r);
            Ok(())
        }
        FieldValue::I64(n) => write!(out, "{n}"),
        FieldValue::U64(n) => write!(out, "{n}"),
        FieldValue::F64(x) if x.is_finite() => write!(out, "{x}"),
        FieldValue::F64(x) => {
            write_raw_str(out, &x.to_string());
            Ok(())
        }
        FieldValue::Bool(b) => write!(out, "{b}"),
        FieldValue::Json(v) => {
            r.redact_json(v);
            write_json(out, v);
            Ok(())
        }
    };
}

/// A progress event as `Progress: <type>`: ids, iteration and phase as
/// context, then `eventType`, the payload, and `metadata` (nested, so it
/// cannot overwrite anything). Not redacted again: the drain thread
/// redacted the event before any sink saw it.
fn write_progress(out: &mut Vec<u8>, timestamp: Timestamp, event: &ProgressEvent) {
    let ty = event.event_type().as_str();
    out.extend_from_slice(b",\"message\":");
    write_raw_str(out, &format!("Progress: {ty}"));
    write_timestamp(out, timestamp);
    let Ok(Value::Object(mut payload)) = serde_json::to_value(event) else {
        // An event always serializes to an object; if not, the line
        // still carries the ids.
        payload_fallback(out, event);
        return;
    };
    for key in [
        "type",
        "timestamp",
        "workOrderId",
        "runId",
        "correlationId",
        "traceId",
    ] {
        payload.remove(key);
    }
    let iteration = payload.remove("iteration");
    let phase = payload.remove("phase");
    let ctx = Ctx {
        work_order_id: Some(&event.work_order_id),
        run_id: Some(&event.run_id),
        iteration: iteration.as_ref().and_then(Value::as_u64),
        phase: phase.as_ref().and_then(Value::as_str),
        correlation_id: Some(&event.correlation_id),
        trace_id: event.trace_id,
        span_id: None,
    };
    write_context(out, &ctx, None);
    out.extend_from_slice(b",\"eventType\":");
    write_raw_str(out, ty);
    for (key, value) in payload {
        write_key(out, &key, None);
        write_json(out, &value);
    }
}

fn payload_fallback(out: &mut Vec<u8>, event: &ProgressEvent) {
    let ctx = Ctx {
        work_order_id: Some(&event.work_order_id),
        run_id: Some(&event.run_id),
        correlation_id: Some(&event.correlation_id),
        trace_id: event.trace_id,
        ..Ctx::default()
    };
    write_context(out, &ctx, None);
}

/// A redacted, escaped JSON string.
fn write_str(out: &mut Vec<u8>, s: &str, r: &Redactor) {
    write_raw_str(out, &r.redact_str(s));
}

/// An escaped JSON string, not redacted (for text we wrote ourselves).
fn write_raw_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // A Value has string keys and finite numbers only: cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::log::Level;

    fn line(fields: Vec<(&'static str, FieldValue)>, message: &'static str) -> Value {
        let mut record = Record {
            level: Level::Info,
            module: Cow::Borrowed("executor"),
            timestamp: Timestamp::from_millis(0),
            body: Body::Message {
                message: Cow::Borrowed(message),
                context: None,
                fields,
            },
        };
        let mut out = Vec::new();
        write_line(&mut out, &mut record, Redactor::builtin());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn control_characters_and_quotes_stay_valid_json() {
        let v = line(
            vec![("k", "\u{0}\u{1b}[31m\"\\\n\u{2028}".into())],
            "a\r\nb\t\"",
        );
        assert_eq!(v["message"], "a\r\nb\t\"");
        assert_eq!(v["k"], "\u{0}\u{1b}[31m\"\\\n\u{2028}");
    }

    #[test]
    fn extra_fields_cannot_overwrite_core_fields() {
        let v = line(vec![("level", "debug".into()), ("level", "x".into())], "m");
        assert_eq!(v["level"], "info");
        assert_eq!(v["extra.level"], "debug");
    }

    #[test]
    fn non_finite_floats_are_strings() {
        let v = line(vec![("x", f64::NAN.into()), ("y", 1.5f64.into())], "m");
        assert_eq!(v["x"], "NaN");
        assert_eq!(v["y"], 1.5);
    }
}
