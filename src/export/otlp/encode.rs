//! `ExportTraceServiceRequest` in OTLP's two HTTP encodings, by hand, as
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and the
//! trace, common and resource protos define it:
//!
//! ```text
//! ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
//! ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
//! Resource      { repeated KeyValue attributes = 1; }
//! ScopeSpans    { InstrumentationScope scope = 1; repeated Span spans = 2; }
//! InstrumentationScope { string name = 1; string version = 2; }
//! Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5;
//!        SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
//!        repeated KeyValue attributes = 9; repeated Event events = 11; Status status = 15; }
//! Span.Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
//! Status   { string message = 2; StatusCode code = 3; }
//! KeyValue { string key = 1; AnyValue value = 2; }
//! AnyValue { oneof { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
//! ```
//!
//! A nested message is written into the output, then its length put in
//! front of it: one pass, no size pre-computation, no protobuf crate and
//! no build step for a dozen fields.

use super::spans::{GateEvent, SpanData, Status, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// `SPAN_KIND_INTERNAL`: a run is work inside the engine.
const KIND_INTERNAL: u64 = 1;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// What every request says about its sender.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    /// `service.name` first, then the configured attributes.
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) scope_name: &'static str,
    pub(crate) scope_version: &'static str,
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, n: u64) {
    put_tag(out, field, FIXED64);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Writes field `field` as a message whose content `body` writes. One
/// byte is kept for the length, enough below 128 bytes (attributes, most
/// values); a longer message moves its bytes once to make room, so the
/// bytes of a request move about once per enclosing message of 128 bytes
/// or more (a span, the scope, the resource), not once per level.
fn put_message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_tag(out, field, LEN);
    let slot = out.len();
    out.push(0);
    body(out);
    let len = out.len() - slot - 1;
    if len < 0x80 {
        out[slot] = len as u8;
        return;
    }
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut rest = len as u64;
    while rest >= 0x80 {
        prefix[n] = (rest as u8) | 0x80;
        rest >>= 7;
        n += 1;
    }
    prefix[n] = rest as u8;
    n += 1;
    out[slot] = prefix[0];
    out.splice(slot + 1..slot + 1, prefix[1..n].iter().copied());
}

fn put_key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    put_message(out, field, |kv| {
        put_bytes(kv, 1, key.as_bytes());
        put_message(kv, 2, |any| match value {
            Value::Static(s) => put_bytes(any, 1, s.as_bytes()),
            Value::Str(s) => put_bytes(any, 1, s.as_bytes()),
            Value::Bool(b) => {
                put_tag(any, 2, VARINT);
                put_varint(any, u64::from(*b));
            }
            Value::Int(i) => {
                put_tag(any, 3, VARINT);
                put_varint(any, *i as u64);
            }
            Value::Double(d) => {
                put_tag(any, 4, FIXED64);
                any.extend_from_slice(&d.to_le_bytes());
            }
        });
    });
}

fn put_span(out: &mut Vec<u8>, span: &SpanData) {
    put_message(out, 2, |s| {
        put_bytes(s, 1, &span.trace_id.to_bytes());
        put_bytes(s, 2, &span.span_id.to_bytes());
        if let Some(parent) = span.parent {
            put_bytes(s, 4, &parent.to_bytes());
        }
        put_bytes(s, 5, span.name().as_bytes());
        put_tag(s, 6, VARINT);
        put_varint(s, KIND_INTERNAL);
        put_fixed64(s, 7, span.start_ns);
        put_fixed64(s, 8, span.end_ns);
        for (key, value) in &span.attributes() {
            put_key_value(s, 9, key, value);
        }
        for gate in &span.gates {
            put_event(s, gate);
        }
        if let Status::Error(message) = &span.status {
            put_message(s, 15, |st| {
                put_bytes(st, 2, message.as_bytes());
                put_tag(st, 3, VARINT);
                put_varint(st, STATUS_ERROR);
            });
        }
    });
}

fn put_event(out: &mut Vec<u8>, gate: &GateEvent) {
    let (name, attributes) = gate.name_and_attributes();
    put_message(out, 11, |e| {
        put_fixed64(e, 1, gate.time_ns);
        put_bytes(e, 2, name.as_bytes());
        for (key, value) in &attributes {
            put_key_value(e, 3, key, value);
        }
    });
}

/// The protobuf `ExportTraceServiceRequest` of `spans`.
pub(crate) fn protobuf(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 256);
    put_message(&mut out, 1, |rs| {
        put_message(rs, 1, |r| {
            for (key, value) in &resource.attributes {
                put_key_value(r, 1, key, &Value::from(value));
            }
        });
        put_message(rs, 2, |ss| {
            put_message(ss, 1, |scope| {
                put_bytes(scope, 1, resource.scope_name.as_bytes());
                put_bytes(scope, 2, resource.scope_version.as_bytes());
            });
            for span in spans {
                put_span(ss, span);
            }
        });
    });
    out
}

fn json_value(value: &Value) -> serde_json::Value {
    use serde_json::json;
    match value {
        Value::Static(s) => json!({ "stringValue": s }),
        Value::Str(s) => json!({ "stringValue": &**s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        // OTLP JSON writes 64-bit integers as strings.
        Value::Int(i) => json!({ "intValue": i.to_string() }),
        Value::Double(d) if d.is_finite() => json!({ "doubleValue": d }),
        Value::Double(d) => json!({ "stringValue": d.to_string() }),
    }
}

fn json_attributes<'a>(
    attributes: impl Iterator<Item = (&'a str, &'a Value)>,
) -> Vec<serde_json::Value> {
    attributes
        .map(|(key, value)| serde_json::json!({ "key": key, "value": json_value(value) }))
        .collect()
}

/// The OTLP/JSON `ExportTraceServiceRequest` of `spans`: protobuf's JSON
/// mapping with OTLP's exceptions (ids in hex, enums as numbers).
pub(crate) fn json(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    use serde_json::json;
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|span| {
            let mut s = json!({
                "traceId": span.trace_id.to_string(),
                "spanId": span.span_id.to_string(),
                "name": span.name(),
                "kind": KIND_INTERNAL,
                "startTimeUnixNano": span.start_ns.to_string(),
                "endTimeUnixNano": span.end_ns.to_string(),
                "attributes": json_attributes(span.attributes().iter().map(|(k, v)| (k.as_ref(), v))),
                "events": span.gates.iter().map(|gate| {
                    let (name, attributes) = gate.name_and_attributes();
                    json!({
                        "timeUnixNano": gate.time_ns.to_string(),
                        "name": name,
                        "attributes": json_attributes(attributes.iter().map(|(k, v)| (k.as_ref(), v))),
                    })
                }).collect::<Vec<_>>(),
            });
            if let Some(parent) = span.parent {
                s["parentSpanId"] = json!(parent.to_string());
            }
            if let Status::Error(message) = &span.status {
                s["status"] = json!({ "code": STATUS_ERROR, "message": message });
            }
            s
        })
        .collect();
    let resource_attributes: Vec<(&str, Value)> = resource
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(v)))
        .collect();
    let request = json!({
        "resourceSpans": [{
            "resource": {
                "attributes": json_attributes(resource_attributes.iter().map(|(k, v)| (*k, v))),
            },
            "scopeSpans": [{
                "scope": { "name": resource.scope_name, "version": resource.scope_version },
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::spans::What;
    use super::*;
    use crate::event::{SpanId, TraceId};

    #[test]
    fn a_nested_message_gets_its_length_in_front_even_past_127_bytes() {
        let mut out = Vec::new();
        put_message(&mut out, 1, |m| m.extend_from_slice(&[7u8; 300]));
        assert_eq!(&out[..3], &[0x0A, 0xAC, 0x02]);
        assert_eq!(out.len(), 3 + 300);
    }

    #[test]
    fn a_span_starts_with_its_ids_as_raw_bytes() {
        let span = SpanData {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent: None,
            start_ns: 1,
            end_ns: 2,
            what: What::Iteration {
                iteration: 1,
                success: None,
            },
            gates: vec![],
            metadata: None,
            status: Status::Unset,
            unfinished: false,
        };
        let mut out = Vec::new();
        put_span(&mut out, &span);
        // Field 2 (spans) of ScopeSpans, its length, then trace_id = 1.
        assert_eq!(out[0], 0x12);
        assert_eq!(&out[2..4], &[0x0A, 16]);
        assert_eq!(&out[4..20], &span.trace_id.to_bytes());
    }
}
