//! The protobuf exposition: `io.prometheus.client.MetricFamily` messages,
//! each preceded by its length (`encoding=delimited`), as `metrics.proto`
//! of Prometheus' client_model defines them:
//!
//! ```text
//! MetricFamily { string name = 1; string help = 2; MetricType type = 3; repeated Metric metric = 4; }
//! Metric       { repeated LabelPair label = 1; Gauge gauge = 2; Counter counter = 3; Histogram histogram = 7; }
//! LabelPair    { string name = 1; string value = 2; }
//! Gauge, Counter { double value = 1; }
//! Histogram    { uint64 sample_count = 1; double sample_sum = 2; repeated Bucket bucket = 3;
//!                sint32 schema = 5; double zero_threshold = 6; uint64 zero_count = 7;
//!                repeated BucketSpan positive_span = 12; repeated sint64 positive_delta = 13; }
//! Bucket       { uint64 cumulative_count = 1; double upper_bound = 2; Exemplar exemplar = 3; }
//! BucketSpan   { sint32 offset = 1; uint32 length = 2; }
//! Exemplar     { repeated LabelPair label = 1; double value = 2; Timestamp timestamp = 3; }
//! Timestamp    { int64 seconds = 1; int32 nanos = 2; }
//! ```
//!
//! [`Encoder`] is fed by the same calls that write the text formats (see
//! `writer.rs`): a family, then samples as the text would have them
//! (`_bucket` lines with `le` last, `_sum`, `_count`), which it folds back
//! into messages. Label values reach it escaped or not, as in the text.
//! Like client_golang, it leaves out the `+Inf` bucket (`sample_count` is
//! its count) and families without series.

use super::wire::{self, close, open, open_delimited, put_double, put_sint, put_string, put_uint};
use super::writer::Kind;

/// Native (sparse exponential) buckets of one histogram series: bucket
/// `k` of schema `s` holds the observations in `(2^((k-1)/2^s), 2^(k/2^s)]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Native {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) zero_count: u64,
    /// `(offset, length)`: the first span's offset is its first bucket's
    /// index, the others' the gap after the previous span.
    pub(crate) spans: Vec<(i32, u32)>,
    /// Each populated bucket's count minus the previous one's (the first
    /// minus zero), in span order.
    pub(crate) deltas: Vec<i64>,
    /// The same for negative values (bucket `k` holding `[-2^(k/2^s), -2^((k-1)/2^s))`).
    pub(crate) negative_spans: Vec<(i32, u32)>,
    pub(crate) negative_deltas: Vec<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suffix {
    None,
    Bucket,
    Sum,
    Count,
}

/// Builds the delimited stream of one exposition.
#[derive(Debug)]
pub(crate) struct Encoder {
    out: Vec<u8>,
    /// Content start of the open family, and how many metrics it holds.
    family: Option<(usize, usize)>,
    kind: Kind,
    suffix: Suffix,
    /// The current sample's labels: name and value (unescaped), as ranges
    /// of `values`, which is reused from sample to sample.
    labels: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    values: String,
    /// Content starts of the open `Metric` and its `Histogram`.
    histogram: Option<(usize, usize)>,
    /// Label names written as `exported_<name>`, as a scrape by a target
    /// with these labels would store them.
    renamed: Vec<String>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(Vec::new())
    }
}

impl Encoder {
    /// Appends to `out`.
    pub(crate) fn new(out: Vec<u8>) -> Self {
        Encoder {
            out,
            family: None,
            kind: Kind::Gauge,
            suffix: Suffix::None,
            labels: Vec::new(),
            values: String::new(),
            histogram: None,
            renamed: Vec::new(),
        }
    }

    /// Writes each label named in `names` as `exported_<name>` (see
    /// [`exported_name`](super::exported_name)), as the text exposition's
    /// renaming for a push does.
    pub(crate) fn renaming(mut self, names: &[&str]) -> Self {
        self.renamed = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The stream written so far (every family closed by [`finish`](Self::finish)).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.close_family();
        let start = open_delimited(&mut self.out);
        put_string(&mut self.out, 1, name);
        put_string(&mut self.out, 2, help);
        let ty = match kind {
            Kind::Counter => 0,
            Kind::Gauge => 1,
            Kind::Histogram => 4,
        };
        put_uint(&mut self.out, 3, ty);
        self.family = Some((start, 0));
        self.kind = kind;
    }

    fn close_family(&mut self) {
        self.close_histogram();
        match self.family.take() {
            // No series: no family, as client_golang (a parser may refuse one).
            Some((start, 0)) => self.out.truncate(start - 1),
            Some((start, _)) => close(&mut self.out, start),
            None => {}
        }
    }

    pub(crate) fn sample(&mut self, suffix: &str) {
        self.suffix = match suffix {
            "_bucket" => Suffix::Bucket,
            "_sum" => Suffix::Sum,
            "_count" => Suffix::Count,
            _ => Suffix::None,
        };
        self.labels.clear();
        self.values.clear();
    }

    pub(crate) fn label(&mut self, key: &str, value: &str) {
        let key = self.push(key);
        let start = self.values.len();
        self.values.push_str(value);
        self.labels.push((key, start..self.values.len()));
    }

    pub(crate) fn label_escaped(&mut self, key: &str, escaped: &str) {
        let key = self.push(key);
        let start = self.values.len();
        unescape(escaped, &mut self.values);
        self.labels.push((key, start..self.values.len()));
    }

    fn push(&mut self, text: &str) -> std::ops::Range<usize> {
        let start = self.values.len();
        self.values.push_str(text);
        start..self.values.len()
    }

    fn open_metric(&mut self) -> usize {
        if let Some((_, metrics)) = self.family.as_mut() {
            *metrics += 1;
        }
        let metric = open(&mut self.out, 4);
        for (name, value) in &self.labels {
            let name = &self.values[name.clone()];
            if self.kind == Kind::Histogram && name == "le" {
                continue;
            }
            let exported;
            let name = if self.renamed.iter().any(|r| r == name) {
                exported = super::exported_name(name, |candidate| {
                    self.labels
                        .iter()
                        .any(|(other, _)| &self.values[other.clone()] == candidate)
                });
                exported.as_str()
            } else {
                name
            };
            let value = &self.values[value.clone()];
            // A pair's length is known up front: no room to make later.
            let len = 2
                + wire::varint_len(name.len() as u64)
                + name.len()
                + wire::varint_len(value.len() as u64)
                + value.len();
            wire::put_varint(&mut self.out, wire::tag(1, wire::LEN));
            wire::put_varint(&mut self.out, len as u64);
            put_string(&mut self.out, 1, name);
            put_string(&mut self.out, 2, value);
        }
        metric
    }

    /// The open histogram series, opened with the current labels if none is.
    fn histogram(&mut self) {
        if self.histogram.is_none() {
            let metric = self.open_metric();
            let histogram = open(&mut self.out, 7);
            self.histogram = Some((metric, histogram));
        }
    }

    fn close_histogram(&mut self) {
        if let Some((metric, histogram)) = self.histogram.take() {
            close(&mut self.out, histogram);
            close(&mut self.out, metric);
        }
    }

    /// Ends a sample with its value.
    pub(crate) fn value(&mut self, value: f64) {
        match (self.kind, self.suffix) {
            (Kind::Histogram, Suffix::Sum) => {
                self.histogram();
                put_double(&mut self.out, 2, value);
            }
            (Kind::Histogram, _) => self.count(value as u64),
            (kind, _) => {
                let metric = self.open_metric();
                let field = if kind == Kind::Counter { 3 } else { 2 };
                let inner = open(&mut self.out, field);
                put_double(&mut self.out, 1, value);
                close(&mut self.out, inner);
                close(&mut self.out, metric);
            }
        }
    }

    /// Ends an integer sample: a histogram's `_count` closes its series.
    pub(crate) fn value_u64(&mut self, value: u64) {
        match (self.kind, self.suffix) {
            (Kind::Histogram, Suffix::Count) => self.count(value),
            _ => self.value(value as f64),
        }
    }

    fn count(&mut self, count: u64) {
        self.histogram();
        put_uint(&mut self.out, 1, count);
        self.close_histogram();
    }

    /// Ends a `_bucket` sample: its `le` is its last label; `exemplar`'s
    /// labels are escaped.
    pub(crate) fn bucket(&mut self, count: u64, exemplar: Option<super::writer::ExemplarRef<'_>>) {
        let Some((name, range)) = self.labels.last() else {
            return;
        };
        if &self.values[name.clone()] != "le" || self.kind != Kind::Histogram {
            return self.value_u64(count);
        }
        let le = &self.values[range.clone()];
        let upper = match le {
            "+Inf" => return self.histogram(),
            le => le.parse::<f64>().unwrap_or(f64::NAN),
        };
        self.histogram();
        let bucket = open(&mut self.out, 3);
        put_uint(&mut self.out, 1, count);
        put_double(&mut self.out, 2, upper);
        if let Some((labels, value, millis)) = exemplar {
            let e = open(&mut self.out, 3);
            let mut unescaped = String::new();
            for (key, escaped) in labels {
                unescaped.clear();
                unescape(escaped, &mut unescaped);
                let pair = open(&mut self.out, 1);
                put_string(&mut self.out, 1, key);
                put_string(&mut self.out, 2, &unescaped);
                close(&mut self.out, pair);
            }
            put_double(&mut self.out, 2, value);
            let ts = open(&mut self.out, 3);
            put_uint(&mut self.out, 1, millis / 1000);
            put_uint(&mut self.out, 2, millis % 1000 * 1_000_000);
            close(&mut self.out, ts);
            close(&mut self.out, e);
        }
        close(&mut self.out, bucket);
    }

    /// Adds native buckets to the histogram series being written.
    pub(crate) fn native(&mut self, native: &Native) {
        self.histogram();
        let out = &mut self.out;
        put_sint(out, 5, i64::from(native.schema));
        put_double(out, 6, native.zero_threshold);
        put_uint(out, 7, native.zero_count);
        for (span_field, delta_field, spans, deltas) in [
            (9, 10, &native.negative_spans, &native.negative_deltas),
            (12, 13, &native.spans, &native.deltas),
        ] {
            for &(offset, length) in spans {
                let span = open(out, span_field);
                put_sint(out, 1, i64::from(offset));
                put_uint(out, 2, u64::from(length));
                close(out, span);
            }
            for &delta in deltas {
                put_sint(out, delta_field, delta);
            }
        }
    }

    /// Closes the last family.
    pub(crate) fn finish(&mut self) {
        self.close_family();
    }
}

/// Undoes `escape_label_value`: `\\`, `\"` and `\n`; any other backslash
/// is kept as written.
fn unescape(escaped: &str, out: &mut String) {
    if !escaped.contains('\\') {
        out.push_str(escaped);
        return;
    }
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(c @ ('\\' | '"')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
}

/// A reader of what [`Encoder`] writes, for the tests and the fuzz target:
/// a second, independent walk over the wire format.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod decode {
    /// A decoded `MetricFamily`.
    #[derive(Debug, Default, PartialEq)]
    pub(crate) struct Family {
        pub(crate) name: String,
        pub(crate) help: String,
        pub(crate) kind: u64,
        pub(crate) metrics: Vec<Metric>,
    }

    /// A decoded `Metric`: a counter's or gauge's value, or a histogram.
    #[derive(Debug, Default, PartialEq)]
    pub(crate) struct Metric {
        pub(crate) labels: Vec<(String, String)>,
        pub(crate) value: Option<f64>,
        pub(crate) histogram: Option<Histogram>,
    }

    /// A decoded `Histogram`.
    #[derive(Debug, Default, PartialEq)]
    pub(crate) struct Histogram {
        pub(crate) count: u64,
        pub(crate) sum: f64,
        /// Upper bound, cumulative count, exemplar (labels, value, ms).
        pub(crate) buckets: Vec<(f64, u64, Option<Exemplar>)>,
        pub(crate) schema: Option<i64>,
        pub(crate) zero_threshold: Option<f64>,
        pub(crate) zero_count: u64,
        pub(crate) spans: Vec<(i64, u64)>,
        pub(crate) deltas: Vec<i64>,
        pub(crate) negative_spans: Vec<(i64, u64)>,
        pub(crate) negative_deltas: Vec<i64>,
    }

    /// Labels, value, timestamp in ms.
    pub(crate) type Exemplar = (Vec<(String, String)>, f64, u64);

    struct Reader<'a> {
        bytes: &'a [u8],
    }

    enum Value<'a> {
        Varint(u64),
        Fixed(f64),
        Bytes(&'a [u8]),
    }

    impl<'a> Reader<'a> {
        fn varint(&mut self) -> Result<u64, String> {
            let mut n = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = self.bytes.split_first().ok_or("truncated varint")?;
                self.bytes = rest;
                n |= u64::from(b & 0x7F) << shift;
                if b < 0x80 {
                    return Ok(n);
                }
            }
            Err("varint longer than ten bytes".to_owned())
        }

        fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
            if self.bytes.is_empty() {
                return Ok(None);
            }
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    if self.bytes.len() < 8 {
                        return Err("truncated double".to_owned());
                    }
                    let (v, rest) = self.bytes.split_at(8);
                    self.bytes = rest;
                    let mut b = [0; 8];
                    b.copy_from_slice(v);
                    Value::Fixed(f64::from_le_bytes(b))
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                    if self.bytes.len() < len {
                        return Err("truncated length-delimited field".to_owned());
                    }
                    let (v, rest) = self.bytes.split_at(len);
                    self.bytes = rest;
                    Value::Bytes(v)
                }
                w => return Err(format!("unexpected wire type {w}")),
            };
            Ok(Some((key >> 3, value)))
        }
    }

    fn each<'a>(
        bytes: &'a [u8],
        mut f: impl FnMut(u64, Value<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut r = Reader { bytes };
        while let Some((field, value)) = r.field()? {
            f(field, value)?;
        }
        Ok(())
    }

    fn text(bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }

    fn unzig(n: u64) -> i64 {
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }

    fn label(bytes: &[u8]) -> Result<(String, String), String> {
        let mut pair = (String::new(), String::new());
        each(bytes, |f, v| {
            match (f, v) {
                (1, Value::Bytes(b)) => pair.0 = text(b)?,
                (2, Value::Bytes(b)) => pair.1 = text(b)?,
                _ => return Err(format!("unexpected LabelPair field {f}")),
            }
            Ok(())
        })?;
        Ok(pair)
    }

    fn double(bytes: &[u8]) -> Result<f64, String> {
        let mut value = 0.0;
        each(bytes, |f, v| match (f, v) {
            (1, Value::Fixed(x)) => {
                value = x;
                Ok(())
            }
            _ => Err(format!("unexpected value field {f}")),
        })?;
        Ok(value)
    }

    fn exemplar(bytes: &[u8]) -> Result<Exemplar, String> {
        let mut e: Exemplar = (Vec::new(), 0.0, 0);
        each(bytes, |f, v| {
            match (f, v) {
                (1, Value::Bytes(b)) => e.0.push(label(b)?),
                (2, Value::Fixed(x)) => e.1 = x,
                (3, Value::Bytes(b)) => each(b, |f, v| {
                    match (f, v) {
                        (1, Value::Varint(s)) => e.2 += s * 1000,
                        (2, Value::Varint(n)) => e.2 += n / 1_000_000,
                        _ => return Err("unexpected Timestamp field".to_owned()),
                    }
                    Ok(())
                })?,
                _ => return Err(format!("unexpected Exemplar field {f}")),
            }
            Ok(())
        })?;
        Ok(e)
    }

    fn histogram(bytes: &[u8]) -> Result<Histogram, String> {
        let mut h = Histogram::default();
        each(bytes, |f, v| {
            match (f, v) {
                (1, Value::Varint(n)) => h.count = n,
                (2, Value::Fixed(x)) => h.sum = x,
                (3, Value::Bytes(b)) => {
                    let mut bucket = (0.0, 0, None);
                    each(b, |f, v| {
                        match (f, v) {
                            (1, Value::Varint(n)) => bucket.1 = n,
                            (2, Value::Fixed(x)) => bucket.0 = x,
                            (3, Value::Bytes(b)) => bucket.2 = Some(exemplar(b)?),
                            _ => return Err(format!("unexpected Bucket field {f}")),
                        }
                        Ok(())
                    })?;
                    h.buckets.push(bucket);
                }
                (5, Value::Varint(n)) => h.schema = Some(unzig(n)),
                (6, Value::Fixed(x)) => h.zero_threshold = Some(x),
                (7, Value::Varint(n)) => h.zero_count = n,
                (9 | 12, Value::Bytes(b)) => {
                    let mut span = (0, 0);
                    each(b, |f, v| {
                        match (f, v) {
                            (1, Value::Varint(n)) => span.0 = unzig(n),
                            (2, Value::Varint(n)) => span.1 = n,
                            _ => return Err(format!("unexpected BucketSpan field {f}")),
                        }
                        Ok(())
                    })?;
                    if f == 9 {
                        h.negative_spans.push(span);
                    } else {
                        h.spans.push(span);
                    }
                }
                (10, Value::Varint(n)) => h.negative_deltas.push(unzig(n)),
                (13, Value::Varint(n)) => h.deltas.push(unzig(n)),
                _ => return Err(format!("unexpected Histogram field {f}")),
            }
            Ok(())
        })?;
        Ok(h)
    }

    fn metric(bytes: &[u8]) -> Result<Metric, String> {
        let mut m = Metric::default();
        each(bytes, |f, v| {
            match (f, v) {
                (1, Value::Bytes(b)) => m.labels.push(label(b)?),
                (2 | 3, Value::Bytes(b)) => m.value = Some(double(b)?),
                (7, Value::Bytes(b)) => m.histogram = Some(histogram(b)?),
                _ => return Err(format!("unexpected Metric field {f}")),
            }
            Ok(())
        })?;
        Ok(m)
    }

    /// Every family of a delimited stream.
    pub(crate) fn families(mut bytes: &[u8]) -> Result<Vec<Family>, String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let mut r = Reader { bytes };
            let len = usize::try_from(r.varint()?).map_err(|e| e.to_string())?;
            if r.bytes.len() < len {
                return Err("truncated MetricFamily".to_owned());
            }
            let (message, rest) = r.bytes.split_at(len);
            bytes = rest;
            let mut family = Family::default();
            each(message, |f, v| {
                match (f, v) {
                    (1, Value::Bytes(b)) => family.name = text(b)?,
                    (2, Value::Bytes(b)) => family.help = text(b)?,
                    (3, Value::Varint(n)) => family.kind = n,
                    (4, Value::Bytes(b)) => family.metrics.push(metric(b)?),
                    _ => return Err(format!("unexpected MetricFamily field {f}")),
                }
                Ok(())
            })?;
            out.push(family);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::decode::{Family, Histogram, Metric};
    use super::*;
    use crate::exposition::writer::Writer;

    #[test]
    fn counters_gauges_and_histograms_become_metric_families_with_unescaped_labels() {
        let mut encoder = Encoder::default();
        let mut w = Writer::protobuf(&mut encoder);
        w.family("jobs_total", Kind::Counter, "Jobs.");
        w.sample("jobs_total", "")
            .label("name", "a\"b\\c\nd")
            .value_u64(3);
        w.family("empty", Kind::Gauge, "Has no series.");
        w.family("temp", Kind::Gauge, "Temperature.");
        w.sample("temp", "").value_f64(-1.5);
        w.family("lat_seconds", Kind::Histogram, "Latency.");
        let labels = [("run_id", "r\\\"1")];
        for (le, count) in [("0.1", 1), ("1.0", 2), ("+Inf", 3)] {
            let s = w.sample("lat_seconds", "_bucket");
            s.label("phase", "build").label_escaped("le", le);
            let exemplar = (le == "1.0").then_some((&labels[..], 0.5, 1_700_000_000_123));
            s.value_with_exemplar(count, exemplar);
        }
        w.sample("lat_seconds", "_sum")
            .label("phase", "build")
            .value_f64(7.25);
        w.native(&Native {
            schema: 3,
            zero_threshold: 1e-9,
            zero_count: 1,
            spans: vec![(-5, 2)],
            deltas: vec![1, -1],
            ..Native::default()
        });
        w.sample("lat_seconds", "_count")
            .label("phase", "build")
            .value_u64(3);
        w.finish();
        let families = decode::families(&encoder.into_bytes()).expect("decodes");
        let build = vec![("phase".to_owned(), "build".to_owned())];
        assert_eq!(
            families,
            vec![
                Family {
                    name: "jobs_total".into(),
                    help: "Jobs.".into(),
                    kind: 0,
                    metrics: vec![Metric {
                        labels: vec![("name".into(), "a\"b\\c\nd".into())],
                        value: Some(3.0),
                        histogram: None
                    }],
                },
                Family {
                    name: "temp".into(),
                    help: "Temperature.".into(),
                    kind: 1,
                    metrics: vec![Metric {
                        labels: vec![],
                        value: Some(-1.5),
                        histogram: None
                    }],
                },
                Family {
                    name: "lat_seconds".into(),
                    help: "Latency.".into(),
                    kind: 4,
                    metrics: vec![Metric {
                        labels: build,
                        value: None,
                        histogram: Some(Histogram {
                            count: 3,
                            sum: 7.25,
                            buckets: vec![
                                (0.1, 1, None),
                                (
                                    1.0,
                                    2,
                                    Some((
                                        vec![("run_id".into(), "r\"1".into())],
                                        0.5,
                                        1_700_000_000_123
                                    ))
                                ),
                            ],
                            schema: Some(3),
                            zero_threshold: Some(1e-9),
                            zero_count: 1,
                            spans: vec![(-5, 2)],
                            deltas: vec![1, -1],
                            ..Histogram::default()
                        }),
                    }],
                },
            ]
        );
    }

    #[test]
    fn unescaping_inverts_escaping_for_any_string() {
        for s in ["", "plain", "a\\nb", "\\", "\"\"", "x\ny\\", "é\\\"ß"] {
            let mut escaped = String::new();
            crate::exposition::escape_label_value(s, &mut escaped);
            let mut back = String::new();
            unescape(&escaped, &mut back);
            assert_eq!(back, s);
        }
    }
}
