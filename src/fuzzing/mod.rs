//! Entry points for the fuzz targets in `fuzz/`. **Not part of the stable
//! API**: hidden from the docs, changed without notice, and only here
//! because a fuzz target, being another crate, can call nothing private.
//!
//! Each function takes arbitrary input, runs it through the same code the
//! server and pipeline run, and panics when a promise is broken: a crash,
//! a round trip that changes a value, an answer docs/PROTOCOL.md and
//! docs/SECURITY.md do not allow.

mod http;
pub mod strict;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::event::ProgressEvent;
use crate::exposition::{Format, escape_label_value};
use crate::metrics::{Metrics, MetricsConfig};
use crate::ws::WsConfig;
use crate::ws::protocol::{self, Filter, MAX_SUBSCRIPTIONS, Reply};

pub use http::{HttpHarness, TOKEN as HTTP_TOKEN};

/// The types of message the server may answer a client message with.
const ANSWER_TYPES: [&str; 4] = ["pong", "subscribed", "unsubscribed", "error"];

/// One text message from a WebSocket client, handled as the client thread
/// handles it: exactly one answer, of an allowed type, valid JSON, and the
/// connection stays.
pub fn ws_client_text(text: &str) {
    let mut filter = Filter::default();
    let reply = protocol::reply(&mut filter, 7, &Message::Text(text.into()));
    let Reply::Send(answer) = reply else {
        panic!("a text message must be answered, got {reply:?}");
    };
    check_answer(&answer);
}

/// Raw bytes from a WebSocket client after the handshake, read by
/// tungstenite with the server's limits and answered message by message.
/// Whatever the bytes, reading ends (in an answer, a close code or a
/// refusal) and every answer is well formed.
pub fn ws_client_bytes(bytes: &[u8]) {
    let socket = Duplex {
        input: bytes,
        output: Vec::new(),
    };
    let config = crate::ws::socket_config(&WsConfig::default());
    let mut ws = WebSocket::from_raw_socket(socket, Role::Server, Some(config));
    let mut filter = Filter::default();
    // Each message consumes at least two bytes of input, so this bounds the loop.
    for _ in 0..=bytes.len() {
        match ws.read() {
            Ok(message) => match protocol::reply(&mut filter, 0, &message) {
                Reply::Send(answer) => {
                    check_answer(&answer);
                    // The output side is a Vec: a write error is tungstenite's state, not ours.
                    let _ = ws.write(Message::Text(answer.into()));
                }
                Reply::Ignore => {}
                Reply::Close => return,
            },
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // Decides the close code; must not panic whatever the error.
                let _ = protocol::close_for(&e);
                return;
            }
        }
        assert!(filter.targets().count() <= MAX_SUBSCRIPTIONS);
    }
    panic!("reading {} bytes did not end", bytes.len());
}

fn check_answer(answer: &str) {
    let value: serde_json::Value = match serde_json::from_str(answer) {
        Ok(value) => value,
        Err(e) => panic!("the answer is not JSON ({e}): {answer}"),
    };
    let ty = value["type"].as_str().unwrap_or_default();
    assert!(ANSWER_TYPES.contains(&ty), "answer type {ty:?}: {answer}");
    if ty == "error" {
        assert_eq!(value["code"], "INVALID_MESSAGE", "{answer}");
    }
}

/// A non-blocking socket stand-in: reads come from `input`, then
/// `WouldBlock`; writes go to `output`.
struct Duplex<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.input.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// JSON text decoded as an event, encoded, decoded again: the second
/// decode equals the first, the encoding is stable, and the WebSocket form
/// (colon `type`, `seq`) decodes to the same event and is written byte for
/// byte the same by the direct encoder; and a journal line the replay's
/// fast scan reads, the serde parser reads the same.
pub fn event_json_round_trip(text: &str) {
    crate::journal::assert_agrees_with_serde(text);
    let Ok(event) = serde_json::from_str::<ProgressEvent>(text) else {
        return;
    };
    let encoded = match serde_json::to_string(&event) {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded event does not encode: {e}: {event:?}"),
    };
    let again: ProgressEvent = match serde_json::from_str(&encoded) {
        Ok(again) => again,
        Err(e) => panic!("our own encoding does not decode: {e}: {encoded}"),
    };
    assert_eq!(again, event, "decode(encode(e)) != e for {encoded}");
    let twice = serde_json::to_string(&again).unwrap_or_default();
    assert_eq!(twice, encoded, "the encoding is not stable");
    let wire = serde_json::to_string(&event.wire(42)).unwrap_or_default();
    let from_wire: ProgressEvent = match serde_json::from_str(&wire) {
        Ok(e) => e,
        Err(e) => panic!("the WebSocket form does not decode: {e}: {wire}"),
    };
    assert_eq!(from_wire, event, "the WebSocket form differs: {wire}");
    let mut written = Vec::new();
    crate::event::write_wire(&mut written, 42, &event);
    assert_eq!(
        String::from_utf8_lossy(&written),
        wire,
        "the direct encoder differs from serde_json"
    );
    crate::journal::assert_agrees_with_serde(&wire);
}

/// The gate label limit the exposition target runs with: small, so the
/// fuzzer reaches the `other` series.
pub const EXPOSITION_GATE_LIMIT: usize = 8;

/// Gate checks with arbitrary names and exemplars with arbitrary run ids,
/// rendered in both formats and parsed back by [`strict::parse`]: every
/// gate's count comes back under exactly its own name (or `other` past the
/// limit), and every label value escapes and unescapes to itself.
pub fn exposition_round_trip(values: &[String]) {
    for value in values {
        let mut escaped = String::new();
        escape_label_value(value, &mut escaped);
        let line = format!("m{{l=\"{escaped}\"}} 1\n");
        let parsed = match strict::parse(&line, false) {
            Ok(parsed) => parsed,
            Err(e) => panic!("an escaped label value does not parse: {e}"),
        };
        assert_eq!(parsed[0].labels[0].1, *value, "escaping round trip");
    }

    let config = MetricsConfig::default().gate_label_limit(EXPOSITION_GATE_LIMIT);
    let metrics = match Metrics::new("fuzz", config) {
        Ok(metrics) => metrics,
        Err(e) => panic!("a valid configuration was refused: {e}"),
    };
    let mut expected: BTreeMap<(String, bool), u64> = BTreeMap::new();
    let mut named: Vec<&str> = Vec::new();
    for (i, gate) in values.iter().enumerate() {
        let passed = i % 3 != 0;
        metrics.record_gate_check(gate, passed);
        // The cap's rule, restated: the first `limit` distinct names other
        // than `other` get their own series.
        let counts_as_named = gate != "other"
            && (named.contains(&gate.as_str()) || named.len() < EXPOSITION_GATE_LIMIT);
        if counts_as_named && !named.contains(&gate.as_str()) {
            named.push(gate);
        }
        let label = if counts_as_named {
            gate.as_str()
        } else {
            "other"
        };
        *expected.entry((label.to_owned(), passed)).or_default() += 1;
        let run: Arc<str> = Arc::from(gate.as_str());
        let trace = crate::metrics::histogram::Trace {
            run_id: &run,
            correlation_id: &run,
            trace_id: None,
            millis: i as u64,
        };
        metrics.observe_run((i as u64 + 1) * 1_000_000, Some(trace));
    }
    metrics.increment_runs_started();
    for (format, openmetrics) in [(Format::Prometheus, false), (Format::OpenMetrics, true)] {
        let text = metrics.render_as(format);
        let samples = match strict::parse(&text, openmetrics) {
            Ok(samples) => samples,
            Err(e) => panic!("{format:?} exposition rejected: {e}\n{text}"),
        };
        let counter = "fuzz_gate_checks_total";
        let mut seen: BTreeMap<(String, bool), u64> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == counter) {
            let label = |k: &str| s.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v);
            let (Some(gate), Some(passed)) = (label("gate"), label("passed")) else {
                panic!("a gate sample without its labels: {s:?}");
            };
            if s.value > 0.0 {
                seen.insert((gate.clone(), passed == "true"), s.value as u64);
            }
        }
        assert_eq!(seen, expected, "{format:?} gate counts");
    }
}

/// `text` through the built-in redaction rules, for the benchmarks.
pub fn redact_text(text: &str) -> std::borrow::Cow<'_, str> {
    crate::redact::Redactor::builtin().redact_str(text)
}

/// Arbitrary text with a credential planted in it, redacted by the
/// built-in rules: no panic, and the planted credential does not survive,
/// neither in the text alone nor with the text planted in nested data in
/// every position a string can take (see `plant_in_data`).
///
/// Input layout: `[kind, before, after, pos_hi, pos_lo, len, body…(len), text…]`.
/// `kind` picks the credential's shape, `body` its characters (mapped into
/// the shape's alphabet and padded to its minimum length), `before` and
/// `after` the separators around it (a credential glued to a letter is
/// another word), `pos` where in `text` it goes. The check: the planted
/// needle occurs in the output no more often than in the text around it.
/// Text that parses as JSON is also redacted as nested data (no panic).
pub fn redact_planted(data: &[u8]) {
    use crate::redact::Redactor;

    let r = Redactor::builtin();
    let [kind, before, after, pos_hi, pos_lo, len, rest @ ..] = data else {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = r.redact_str(text);
        }
        return;
    };
    let len = usize::from(*len).min(rest.len());
    let (body, text) = rest.split_at(len);
    let text = String::from_utf8_lossy(text);
    let mut pos = (usize::from(*pos_hi) << 8 | usize::from(*pos_lo)).min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let (left, right) = text.split_at(pos);
    const BEFORE: &[u8] = b" \n\t\"',;_=(";
    const AFTER: &[u8] = b" \n\t,;)";
    let before = char::from(BEFORE[usize::from(*before) % BEFORE.len()]);
    let after = char::from(AFTER[usize::from(*after) % AFTER.len()]);
    let (secret, needle) = plant(*kind, body);
    let input = format!("{left}{before}{secret}{after}{right}");
    let out = r.redact_str(&input);
    let occurrences = |s: &str| s.matches(needle.as_str()).count();
    let around = occurrences(left) + occurrences(right);
    assert!(
        occurrences(&out) <= around,
        "planted {needle:?} survived:\ninput:  {input:?}\noutput: {out:?}"
    );

    let in_data = |metadata: &crate::event::Metadata| -> usize {
        let mut strings = Vec::new();
        for (key, value) in metadata {
            strings.push(key.as_str());
            collect_strings(value, &mut strings);
        }
        strings.iter().map(|s| occurrences(s)).sum()
    };
    // The needle may also be part of the data's own words (`--verbose`).
    let scaffolding = in_data(&plant_in_data(""));
    let mut metadata = std::sync::Arc::new(plant_in_data(&input));
    r.redact_metadata(&mut metadata);
    let survived = in_data(&metadata);
    assert!(
        survived <= around * PLACES + scaffolding,
        "planted {needle:?} survived in nested data:\ninput:  {input:?}\noutput: {metadata:?}"
    );

    if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&text) {
        r.redact_json(&mut value);
    }
}

/// How many places [`plant_in_data`] puts its text in.
const PLACES: usize = 8;

/// Metadata holding `text` in every position a string can take: a value,
/// a key (of the metadata and of a nested object), the first and the
/// second element of a pair, an element of a nested array, an argument
/// after a flag and before another, an element of a longer list.
fn plant_in_data(text: &str) -> crate::event::Metadata {
    use serde_json::json;
    let mut nested = serde_json::Map::new();
    nested.insert(text.to_owned(), json!(1));
    let mut metadata = crate::event::Metadata::new();
    metadata.insert(text.to_owned(), json!(0));
    metadata.insert("value".into(), json!(text));
    metadata.insert("pair".into(), json!([text, "PATH=/usr/bin"]));
    metadata.insert("header".into(), json!([["Authorization", text]]));
    metadata.insert("deep".into(), json!({"a": [[{"b": text}]], "k": nested}));
    metadata.insert("argv".into(), json!(["tool", "--verbose", text, "x"]));
    metadata.insert("list".into(), json!([1, text, text.len()]));
    metadata
}

fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                out.push(key);
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

/// A credential of shape `kind` built from `body`, and the part of it that
/// must not survive.
fn plant(kind: u8, body: &[u8]) -> (String, String) {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const PASS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$*+";
    const KEYS: [&str; 6] = [
        "password",
        "secret",
        "token",
        "api_key",
        "passwd",
        "X-Auth-Token",
    ];
    let chars = |alphabet: &[u8], min: usize, max: usize| -> String {
        let mut s: String = body
            .iter()
            .take(max)
            .map(|&b| char::from(alphabet[usize::from(b) % alphabet.len()]))
            .collect();
        let mut i = 0;
        while s.len() < min {
            s.push(char::from(alphabet[i % alphabet.len()]));
            i += 7;
        }
        s
    };
    let whole = |s: String| (s.clone(), s);
    match kind % 23 {
        0 => whole(format!("ghp_{}", chars(ALNUM, 36, 80))),
        1 => whole(format!(
            "github_pat_{}",
            chars(B64URL, 22, 80).replace('-', "_")
        )),
        2 => whole(format!("glpat-{}", chars(B64URL, 20, 60))),
        3 => whole(format!("sk-proj-a1{}", chars(B64URL, 18, 150))),
        4 => whole(format!("xoxb-1{}", chars(ALNUM, 10, 80))),
        5 => {
            let id: String = chars(UPPER, 16, 16).chars().take(16).collect();
            whole(format!("AKIA{id}"))
        }
        6 => whole(format!(
            "eyJ{}.eyJ{}.{}",
            chars(B64URL, 7, 40),
            chars(B64URL, 1, 40),
            chars(B64URL, 0, 60)
        )),
        7 => {
            let key = chars(ALNUM, 16, 120);
            let block = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{key}\n-----END OPENSSH PRIVATE KEY-----"
            );
            (block, key)
        }
        8 => {
            let pass = chars(PASS, 1, 40);
            let url = format!("https://user:{pass}@git.example.com/repo");
            (url, format!(":{pass}@"))
        }
        9 => {
            let key = KEYS[body.first().map_or(0, |&b| usize::from(b) % KEYS.len())];
            let pair = format!("{key}={}", chars(ALNUM, 1, 40));
            whole(pair)
        }
        10 => {
            let credential = format!("9{}", chars(B64URL, 7, 60));
            (format!("Bearer {credential}"), credential)
        }
        11 => whole(format!("sk_live_{}", chars(ALNUM, 16, 99))),
        12 => whole(format!("rk_test_{}", chars(ALNUM, 16, 99))),
        13 => whole(format!("AIza{}", chars(B64URL, 35, 60))),
        14 => whole(format!("npm_{}", chars(ALNUM, 36, 60))),
        15 => whole(format!(
            "SG.{}.{}",
            chars(B64URL, 22, 30),
            chars(B64URL, 43, 60)
        )),
        16 => whole(format!("hvs.{}", chars(B64URL, 24, 120))),
        17 => {
            let secret = chars(ALNUM, 24, 40);
            let team: String = chars(UPPER, 8, 10);
            let url = format!("https://hooks.slack.com/services/T{team}/B{team}/{secret}");
            (url, secret)
        }
        18 => {
            let key = chars(ALNUM, 16, 88);
            (format!("AccountName=a;AccountKey={key}=="), key)
        }
        19 => {
            let sig = chars(ALNUM, 8, 60);
            let url = format!("https://a.blob.core.windows.net/c?sv=1&sig={sig}%3D");
            (url, sig)
        }
        20 => {
            let flag = ["--password", "--api-key", "--token", "--client-secret"]
                [body.first().map_or(0, |&b| usize::from(b) % 4)];
            let value = format!("v{}", chars(PASS, 1, 40));
            (format!(" {flag} {value}"), value)
        }
        21 => {
            let key = KEYS[body.first().map_or(0, |&b| usize::from(b) % KEYS.len())];
            let value = chars(ALNUM, 1, 40);
            (format!("{key}%3D{value}"), format!("%3D{value}"))
        }
        _ => {
            let pass = chars(ALNUM, 1, 40);
            let url = format!("https%3A%2F%2Fuser%3A{pass}%40git.example.com%2Frepo");
            (url, format!("%3A{pass}%40"))
        }
    }
}

/// An arbitrary registry rendered as protobuf and as text, the protobuf
/// read back by the decoder in `exposition::proto` (a walk over the wire
/// format independent of the encoder): every text sample is in the
/// protobuf with the same labels and value, nothing else is, and every
/// native histogram counts each observation exactly once within its
/// bucket cap.
///
/// Input layout: `[schema, max_buckets, rest…]`; `rest` is split on NUL
/// into at most 16 chunks: chunk `i` names a gate (checked, passing when
/// `i` is odd), a label value of the engine's own counter, gauge and
/// histogram, and its bytes (taken eight at a time, little-endian) are
/// durations in nanoseconds observed as phase, run and queue latencies,
/// and as seconds by the engine's histogram.
pub fn protobuf_round_trip(data: &[u8]) {
    use crate::event::Phase;
    use crate::exposition::proto::decode;

    let [schema, max_buckets, rest @ ..] = data else {
        return;
    };
    let schema = (*schema as i8).rem_euclid(13) - 4;
    let max_buckets = u32::from(*max_buckets % 64) + 1;
    let config = MetricsConfig::default()
        .gate_label_limit(EXPOSITION_GATE_LIMIT)
        .native_schema(schema)
        .native_max_buckets(max_buckets);
    let metrics = match Metrics::new("fuzz", config) {
        Ok(metrics) => metrics,
        Err(e) => panic!("a valid configuration was refused: {e}"),
    };
    for (i, chunk) in rest.split(|&b| b == 0).take(16).enumerate() {
        let value = String::from_utf8_lossy(chunk);
        metrics.record_gate_check(&value, i % 2 == 1);
        let labels = [("key", value.as_ref())];
        if let Ok(c) = metrics.counter("fuzz_things_total", "Things.", &labels) {
            c.increment(i as u64 + 1);
        }
        if let Ok(g) = metrics.gauge("fuzz_level", "Level.", &labels) {
            g.set(-(i as f64) / 3.0);
        }
        let histogram = metrics.histogram("fuzz_size_seconds", "Sizes.", &labels);
        for word in chunk.chunks(8) {
            let mut bytes = [0u8; 8];
            bytes[..word.len()].copy_from_slice(word);
            let nanos = u64::from_le_bytes(bytes);
            let phase = Phase::ALL[nanos as usize % Phase::ALL.len()];
            metrics.observe_phase(phase, nanos, None);
            metrics.observe_run(nanos >> 8, None);
            metrics.observe_queue_latencies(&[nanos >> 20, nanos % 1_000], None);
            if let Ok(h) = &histogram {
                // Negative, zero, tiny, huge and infinite values too.
                let value = match nanos % 11 {
                    0 => -(nanos as f64) / 1e9,
                    1 => 0.0,
                    2 => f64::from_bits(nanos >> 12),
                    3 => nanos as f64 * 1e12,
                    4 if nanos % 3 == 0 => f64::INFINITY,
                    _ => nanos as f64 / 1e9,
                };
                h.record(value);
            }
        }
    }

    // Schema reductions are counted when native buckets are first served:
    // serve them once, so that both forms below show the same counts.
    let _ = metrics.render_protobuf();
    let text = metrics.render_as(Format::Prometheus);
    let samples = match strict::parse(&text, false) {
        Ok(samples) => samples,
        Err(e) => panic!("text exposition rejected: {e}\n{text}"),
    };
    let bytes = metrics.render_protobuf();
    let families = match decode::families(&bytes) {
        Ok(families) => families,
        Err(e) => panic!("protobuf exposition does not decode: {e}"),
    };
    // The render gauges describe the previous render: compare all else.
    let rendered = |name: &str| name.starts_with("fuzz_metrics_render_");
    let mut expected = 0;
    for s in samples.iter().filter(|s| !rendered(&s.name)) {
        let (family_name, part) = [("_bucket", 1), ("_sum", 2), ("_count", 3)]
            .iter()
            .find_map(|(suffix, part)| {
                let base = s.name.strip_suffix(suffix)?;
                families
                    .iter()
                    .any(|f| f.name == base && f.kind == 4)
                    .then_some((base, *part))
            })
            .unwrap_or((s.name.as_str(), 0));
        let Some(family) = families.iter().find(|f| f.name == family_name) else {
            panic!("{} has no family in the protobuf exposition", s.name);
        };
        let le = s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v);
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(k, _)| part != 1 || k != "le")
            .cloned()
            .collect();
        let Some(metric) = family.metrics.iter().find(|m| m.labels == labels) else {
            panic!("{} {labels:?} missing from the protobuf exposition", s.name);
        };
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        let found = match (part, &metric.histogram) {
            (0, None) => metric.value.is_some_and(|v| same(v, s.value)),
            (1, Some(h)) => match le.map(String::as_str) {
                Some("+Inf") => h.count as f64 == s.value,
                Some(le) => h.buckets.iter().any(|(upper, count, _)| {
                    le.parse::<f64>().is_ok_and(|b| b == *upper) && *count as f64 == s.value
                }),
                None => false,
            },
            (2, Some(h)) => same(h.sum, s.value),
            (3, Some(h)) => h.count as f64 == s.value,
            _ => false,
        };
        assert!(
            found,
            "{} {labels:?} = {} differs in protobuf: {metric:?}",
            s.name, s.value
        );
        expected += usize::from(part == 0 || part == 3);
    }
    let written: usize = families
        .iter()
        .filter(|f| !rendered(&f.name))
        .map(|f| f.metrics.len())
        .sum();
    assert_eq!(written, expected, "series in protobuf but not in text");

    for family in &families {
        for m in &family.metrics {
            let Some(h) = &m.histogram else { continue };
            let Some(schema_now) = h.schema else {
                // The engine's own histograms keep classic buckets only.
                assert!(
                    family.name == "fuzz_fuzz_size_seconds",
                    "{} lacks native buckets",
                    family.name
                );
                continue;
            };
            assert!(
                (i64::from(crate::metrics::MIN_NATIVE_SCHEMA)..=i64::from(schema))
                    .contains(&schema_now)
            );
            assert_eq!(
                h.zero_threshold,
                Some(crate::metrics::NATIVE_ZERO_THRESHOLD)
            );
            let mut total = h.zero_count;
            let mut populated = 0;
            // Negative observations have buckets of their own, delta-coded
            // apart from the positive ones.
            for (spans, deltas) in [
                (&h.spans, &h.deltas),
                (&h.negative_spans, &h.negative_deltas),
            ] {
                let mut running = 0i64;
                for &d in deltas {
                    running += d;
                    assert!(running >= 0, "a negative bucket count in {}", family.name);
                    total += running as u64;
                    populated += usize::from(running > 0);
                }
                let span_buckets: u64 = spans.iter().map(|s| s.1).sum();
                assert_eq!(
                    span_buckets,
                    deltas.len() as u64,
                    "spans and deltas disagree"
                );
            }
            assert_eq!(
                total, h.count,
                "native buckets of {} {:?}",
                family.name, m.labels
            );
            let capped = schema_now > i64::from(crate::metrics::MIN_NATIVE_SCHEMA);
            assert!(
                !capped || populated <= max_buckets as usize,
                "{populated} buckets"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_protobuf_exposition_holds_every_text_sample_and_exact_native_counts() {
        let mut wide = vec![3u8, 160];
        for i in 0..400u64 {
            wide.extend_from_slice(&(i * i * 7_777 + 1).to_le_bytes()[..7]);
            wide.push(if i % 50 == 0 { 0 } else { 1 });
        }
        for input in [
            &[][..],
            &[3, 0],
            &[
                8, 2, b'a', 0, b'"', b'\\', b'\n', 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                0xFF,
            ],
            &[0xF4, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            &wide,
        ] {
            super::protobuf_round_trip(input);
        }
    }
}
