//! A streaming writer for one scrape, in either format.

use super::Format;
use super::escape::{escape_help, escape_label_value, write_float, write_u64};

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
    fn before(&mut self, next: Option<&str>, out: &mut String, format: Format);
}

/// Writes families and samples into a string; the caller writes families
/// in sorted order and each family's series in sorted label order.
pub(crate) struct Writer<'a> {
    out: &'a mut String,
    format: Format,
    labels_open: bool,
    interleave: Option<&'a mut dyn Interleave>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut String, format: Format) -> Self {
        Writer {
            out,
            format,
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

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// `# HELP` and `# TYPE` for a family. `name` is the sample name of a
    /// counter (with `_total`) or the base name of the others.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        if let Some(other) = self.interleave.as_deref_mut() {
            other.before(Some(name), self.out, self.format);
        }
        let family = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.out.push_str("# HELP ");
        self.out.push_str(family);
        self.out.push(' ');
        escape_help(help, self.out, self.format == Format::OpenMetrics);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(family);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// A family with one unlabelled sample: most of the pipeline's own.
    pub(crate) fn single_u64(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, "").value_u64(value);
    }

    /// Starts a sample line: `name` followed by `suffix` (`_bucket`, …).
    pub(crate) fn sample(&mut self, name: &str, suffix: &str) -> &mut Self {
        self.out.push_str(name);
        self.out.push_str(suffix);
        self
    }

    /// Adds a label, escaping its value.
    pub(crate) fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.open_label(key);
        escape_label_value(value, self.out);
        self.out.push('"');
        self
    }

    /// Adds a label whose value is already escaped.
    pub(crate) fn label_escaped(&mut self, key: &str, escaped: &str) -> &mut Self {
        self.open_label(key);
        self.out.push_str(escaped);
        self.out.push('"');
        self
    }

    fn open_label(&mut self, key: &str) {
        self.out.push(if self.labels_open { ',' } else { '{' });
        self.labels_open = true;
        self.out.push_str(key);
        self.out.push_str("=\"");
    }

    fn close_labels(&mut self) {
        if self.labels_open {
            self.out.push('}');
            self.labels_open = false;
        }
        self.out.push(' ');
    }

    /// Ends the line with an integer value.
    pub(crate) fn value_u64(&mut self, value: u64) {
        self.close_labels();
        write_u64(value, self.out);
        self.out.push('\n');
    }

    /// Ends the line with a float value.
    pub(crate) fn value_f64(&mut self, value: f64) {
        self.close_labels();
        write_float(value, self.out);
        self.out.push('\n');
    }

    /// Ends a bucket line with its count and, in OpenMetrics, an exemplar:
    /// `# {labels} value timestamp`. `labels` are already escaped.
    pub(crate) fn value_with_exemplar(&mut self, value: u64, exemplar: Option<ExemplarRef<'_>>) {
        self.close_labels();
        write_u64(value, self.out);
        if let (Format::OpenMetrics, Some((labels, observed, millis))) = (self.format, exemplar) {
            self.out.push_str(" # {");
            for (i, (key, escaped)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                self.out.push_str(escaped);
                self.out.push('"');
            }
            self.out.push_str("} ");
            write_float(observed, self.out);
            self.out.push(' ');
            write_u64(millis / 1000, self.out);
            self.out.push('.');
            let frac = millis % 1000;
            // Three digits, so the timestamp reads back as the same millisecond.
            self.out.push(char::from(b'0' + (frac / 100) as u8));
            self.out.push(char::from(b'0' + (frac / 10 % 10) as u8));
            self.out.push(char::from(b'0' + (frac % 10) as u8));
        }
        self.out.push('\n');
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub(crate) fn finish(self) {
        if let Some(other) = self.interleave {
            other.before(None, self.out, self.format);
        }
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}
