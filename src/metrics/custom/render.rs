//! Writes the engine's families, merged by name into the built-in ones.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::handles::{HistogramCell, Sampled};
use super::{Cell, Family, Origin, Registry, Series};
use crate::exposition::writer::{Interleave, Writer};

/// Walks the families in name order as the built-in ones are written.
pub(crate) struct Cursor<'r> {
    registry: &'r Registry,
    families: Arc<Vec<Arc<Family>>>,
    next: usize,
    /// Raw ticks and wall-clock nanoseconds read together once per scrape,
    /// to date exemplars.
    now: (u64, u64),
}

impl<'r> Cursor<'r> {
    pub(crate) fn new(registry: &'r Registry) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Cursor {
            registry,
            families: registry.families(),
            next: 0,
            now: (registry.clock().raw(), wall),
        }
    }
}

impl Interleave for Cursor<'_> {
    fn before(&mut self, next: Option<&str>, w: &mut Writer<'_>) {
        while let Some(family) = self.families.get(self.next) {
            if next.is_some_and(|n| *family.name >= *n) {
                return;
            }
            self.write(family, w);
            self.next += 1;
        }
    }
}

impl Cursor<'_> {
    fn write(&self, family: &Family, w: &mut Writer<'_>) {
        let help = family.help.lock().clone();
        // promtool lints an empty help text.
        let help: &str = match (help.is_empty(), family.origin) {
            (false, _) => &help,
            (true, Origin::Recorder) => "Recorded through the metrics crate; no description given.",
            (true, Origin::Native) => "No description given.",
        };
        w.family(&family.name, family.kind, help);
        let series = family.sorted.load();
        for s in series.iter() {
            match &s.cell {
                Cell::Counter(c) => {
                    labels(w.sample(&family.name, ""), family, s)
                        .value_u64(c.0.load(std::sync::atomic::Ordering::Relaxed));
                }
                Cell::Gauge(g) => labels(w.sample(&family.name, ""), family, s).value_f64(g.get()),
                Cell::Histogram(h) => self.histogram(w, family, s, h),
            }
        }
    }

    fn histogram(&self, w: &mut Writer<'_>, family: &Family, s: &Series, h: &HistogramCell) {
        let openmetrics = w.wants_exemplars();
        let (cumulative, sum) = h.read();
        for (i, (le, count)) in family.le.iter().zip(&cumulative).enumerate() {
            let sample = labels(w.sample(&family.name, "_bucket"), family, s);
            sample.label_escaped("le", le);
            // Cloned under the slot's lock, formatted after it.
            let sampled = if openmetrics {
                h.exemplars[i].sampled.lock().clone()
            } else {
                None
            };
            match sampled {
                Some(e) => {
                    let (correlation, run) = self.ids(&e);
                    let mut pairs =
                        vec![(super::super::render::CORRELATION_ID, correlation.as_str())];
                    if !run.is_empty() {
                        pairs.push((super::super::render::RUN_ID, run.as_str()));
                    }
                    let trace = e.context.trace_id.map(|t| t.to_string());
                    if let Some(trace) = &trace {
                        pairs.push((super::super::render::TRACE_ID, trace.as_str()));
                    }
                    let millis = self.wall_millis(e.ticks);
                    sample.value_with_exemplar(*count, Some((&pairs, e.value, millis)));
                }
                None => sample.value_with_exemplar(*count, None),
            }
        }
        labels(w.sample(&family.name, "_sum"), family, s).value_f64(sum);
        if w.wants_native()
            && let Some(native) = h.read_native()
        {
            w.native(&native);
        }
        labels(w.sample(&family.name, "_count"), family, s)
            .value_u64(cumulative.last().copied().unwrap_or(0));
    }

    /// The exemplar's correlation id (the context's, else its run id) and
    /// run id, redacted (the context holds the engine's strings as given)
    /// and cut to OpenMetrics' 128 characters.
    fn ids(&self, e: &Sampled) -> (String, String) {
        let redactor = self.registry.redactor();
        let run = e.context.run_id.as_deref().unwrap_or("");
        let correlation = e.context.correlation_id.as_deref().unwrap_or(run);
        let run = redactor.redact_str(run);
        let correlation = redactor.redact_str(correlation);
        let (run, correlation) =
            super::super::render::exemplar_ids(&run, &correlation, e.context.trace_id.is_some());
        (correlation, run)
    }

    /// Milliseconds since the epoch at `ticks`.
    fn wall_millis(&self, ticks: u64) -> u64 {
        let (now_ticks, now_wall) = self.now;
        let ago = self.registry.clock().delta_as_nanos(ticks, now_ticks);
        now_wall.saturating_sub(ago) / 1_000_000
    }
}

/// The series' labels, in name order.
fn labels<'w, 'a>(w: &'w mut Writer<'a>, family: &Family, s: &Series) -> &'w mut Writer<'a> {
    for (name, value) in family.label_names.iter().zip(s.escaped.iter()) {
        w.label_escaped(name, value);
    }
    w
}
