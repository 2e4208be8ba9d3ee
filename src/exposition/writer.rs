//! A streaming writer for one scrape, in any format: the two text
//! formats, or the protobuf exposition (through [`Encoder`], which folds
//! the samples back into messages).

use super::Format;
use super::escape::{escape_help, escape_label_value, write_float, write_u64};
use super::proto::{Encoder, Native};

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exemplar as written: escaped labels, observed value, time in ms.
pub(crate) type ExemplarRef<'e> = (&'e [(&'e str, &'e str)], f64, u64);

/// Families written by someone else, merged into a [`Writer`]'s sorted
/// stream: the engine's own metrics among the built-in ones.
pub(crate) trait Interleave {
    /// Writes, in order, every family of its own that sorts before
    /// `next` (every remaining one when `next` is `None`).
    fn before(&mut self, next: Option<&str>, w: &mut Writer<'_>);
}

enum Out<'a> {
    Text(&'a mut String),
    Protobuf(&'a mut Encoder),
}

/// Writes families and samples into a string or an [`Encoder`]; the caller
/// writes families in sorted order and each family's series in sorted
/// label order.
pub(crate) struct Writer<'a> {
    out: Out<'a>,
    format: Format,
    labels_open: bool,
    interleave: Option<&'a mut dyn Interleave>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut String, format: Format) -> Self {
        Writer {
            out: Out::Text(out),
            format,
            labels_open: false,
            interleave: None,
        }
    }

    /// A writer of the protobuf exposition.
    pub(crate) fn protobuf(encoder: &'a mut Encoder) -> Self {
        Writer {
            out: Out::Protobuf(encoder),
            format: Format::Prometheus,
            labels_open: false,
            interleave: None,
        }
    }

    /// Merges `other`'s families into this stream by name: they are written
    /// before the first family of ours that sorts after them.
    pub(crate) fn interleave(mut self, other: &'a mut dyn Interleave) -> Self {
        self.interleave = Some(other);
        self
    }

    /// Whether exemplars are written (OpenMetrics and protobuf): reading
    /// them costs the metrics' owners, so callers skip it otherwise.
    pub(crate) fn wants_exemplars(&self) -> bool {
        matches!(self.out, Out::Protobuf(_)) || self.format == Format::OpenMetrics
    }

    /// Whether native buckets are written (protobuf only).
    pub(crate) fn wants_native(&self) -> bool {
        matches!(self.out, Out::Protobuf(_))
    }

    /// Native buckets of the histogram series being written (before its
    /// `_count`); nothing in the text formats.
    pub(crate) fn native(&mut self, native: &Native) {
        if let Out::Protobuf(encoder) = &mut self.out {
            encoder.native(native);
        }
    }

    fn text(&mut self) -> Option<&mut String> {
        match &mut self.out {
            Out::Text(out) => Some(out),
            Out::Protobuf(_) => None,
        }
    }

    fn interleave_before(&mut self, next: Option<&str>) {
        if let Some(other) = self.interleave.take() {
            other.before(next, self);
            self.interleave = Some(other);
        }
    }

    /// `# HELP` and `# TYPE` for a family. `name` is the sample name of a
    /// counter (with `_total`) or the base name of the others.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.interleave_before(Some(name));
        let format = self.format;
        let out = match &mut self.out {
            Out::Text(out) => &mut **out,
            Out::Protobuf(encoder) => return encoder.family(name, kind, help),
        };
        let family = match (format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        out.push_str("# HELP ");
        out.push_str(family);
        out.push(' ');
        escape_help(help, out, format == Format::OpenMetrics);
        out.push_str("\n# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind.as_str());
        out.push('\n');
    }

    /// A family with one unlabelled sample: most of the pipeline's own.
    pub(crate) fn single_u64(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, "").value_u64(value);
    }

    /// Starts a sample line: `name` followed by `suffix` (`_bucket`, …).
    pub(crate) fn sample(&mut self, name: &str, suffix: &str) -> &mut Self {
        match &mut self.out {
            Out::Text(out) => {
                out.push_str(name);
                out.push_str(suffix);
            }
            Out::Protobuf(encoder) => encoder.sample(suffix),
        }
        self
    }

    /// Adds a label, escaping its value.
    pub(crate) fn label(&mut self, key: &str, value: &str) -> &mut Self {
        if let Out::Protobuf(encoder) = &mut self.out {
            encoder.label(key, value);
            return self;
        }
        if let Some(out) = self.open_label(key) {
            escape_label_value(value, out);
            out.push('"');
        }
        self
    }

    /// Adds a label whose value is already escaped.
    pub(crate) fn label_escaped(&mut self, key: &str, escaped: &str) -> &mut Self {
        if let Out::Protobuf(encoder) = &mut self.out {
            encoder.label_escaped(key, escaped);
            return self;
        }
        if let Some(out) = self.open_label(key) {
            out.push_str(escaped);
            out.push('"');
        }
        self
    }

    /// Text only: the separator and `key="`.
    fn open_label(&mut self, key: &str) -> Option<&mut String> {
        let open = std::mem::replace(&mut self.labels_open, true);
        let out = self.text()?;
        out.push(if open { ',' } else { '{' });
        out.push_str(key);
        out.push_str("=\"");
        Some(out)
    }

    /// Text only: the closing brace, if labels were written, and a space.
    fn close_labels(&mut self) -> Option<&mut String> {
        let open = std::mem::replace(&mut self.labels_open, false);
        let out = self.text()?;
        if open {
            out.push('}');
        }
        out.push(' ');
        Some(out)
    }

    /// Ends the line with an integer value.
    pub(crate) fn value_u64(&mut self, value: u64) {
        if let Out::Protobuf(encoder) = &mut self.out {
            return encoder.value_u64(value);
        }
        if let Some(out) = self.close_labels() {
            write_u64(value, out);
            out.push('\n');
        }
    }

    /// Ends the line with a float value.
    pub(crate) fn value_f64(&mut self, value: f64) {
        if let Out::Protobuf(encoder) = &mut self.out {
            return encoder.value(value);
        }
        if let Some(out) = self.close_labels() {
            write_float(value, out);
            out.push('\n');
        }
    }

    /// Ends a bucket line with its count and, in OpenMetrics, an exemplar:
    /// `# {labels} value timestamp`. `labels` are already escaped.
    pub(crate) fn value_with_exemplar(&mut self, value: u64, exemplar: Option<ExemplarRef<'_>>) {
        if let Out::Protobuf(encoder) = &mut self.out {
            return encoder.bucket(value, exemplar);
        }
        let format = self.format;
        let Some(out) = self.close_labels() else {
            return;
        };
        write_u64(value, out);
        if let (Format::OpenMetrics, Some((labels, observed, millis))) = (format, exemplar) {
            out.push_str(" # {");
            for (i, (key, escaped)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push_str("=\"");
                out.push_str(escaped);
                out.push('"');
            }
            out.push_str("} ");
            write_float(observed, out);
            out.push(' ');
            write_u64(millis / 1000, out);
            out.push('.');
            let frac = millis % 1000;
            // Three digits, so the timestamp reads back as the same millisecond.
            out.push(char::from(b'0' + (frac / 100) as u8));
            out.push(char::from(b'0' + (frac / 10 % 10) as u8));
            out.push(char::from(b'0' + (frac % 10) as u8));
        }
        out.push('\n');
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub(crate) fn finish(mut self) {
        self.interleave_before(None);
        let format = self.format;
        match &mut self.out {
            Out::Text(out) if format == Format::OpenMetrics => out.push_str("# EOF\n"),
            Out::Text(_) => {}
            Out::Protobuf(encoder) => encoder.finish(),
        }
    }
}
