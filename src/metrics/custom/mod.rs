//! The engine's own metrics, on the same `/metrics` as ours.
//!
//! A family is registered once by name (under a lock: registration is the
//! cold path), a series once per distinct label values; what the caller
//! keeps is a handle on the series' atomics ([`handles`]). Everything is
//! bounded: families by [`MetricsConfig::custom_family_limit`], series per
//! family by [`MetricsConfig::custom_series_limit`] (later label values go
//! to one series whose every value is [`OVERFLOW`], and are counted), label
//! names per family by [`MAX_LABELS`].
//!
//! Names get the namespace prefix like ours (`tool_calls_total` is scraped
//! as `agentgate_tool_calls_total`), and a counter's name gets `_total`
//! if it lacks it, as OpenMetrics requires. Label values pass through the
//! redaction layer once, when their series is created.
//!
//! [`MetricsConfig::custom_family_limit`]: super::MetricsConfig::custom_family_limit
//! [`MetricsConfig::custom_series_limit`]: super::MetricsConfig::custom_series_limit

mod error;
pub(crate) mod handles;
mod names;
pub(crate) mod render;
pub(crate) mod vec;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use crate::error::MetricError;
use crate::exposition::escape_label_value;
use crate::exposition::writer::Kind;
use crate::redact::{REDACTED, Redactor};
pub(crate) use error::Rejection;
use handles::{CounterCell, GaugeCell, HistogramCell};
use names::{lint_family, validate_name};
pub(crate) use names::{validate_buckets, validate_label_name, validate_namespace};

/// The label value of the series that takes every label combination past
/// a family's series limit (the same word as for gate names).
pub const OVERFLOW: &str = "other";

/// Label names a family of the engine's may have at most.
pub const MAX_LABELS: usize = 16;

/// Who registered a family: the native API insists on one help text; the
/// `metrics` crate gives it separately (`describe_*`), maybe later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Native,
    Recorder,
}

/// A series' value cell; handles hold the inner `Arc`.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

/// One series: label values (redacted) and its cell.
#[derive(Debug)]
pub(crate) struct Series {
    /// Redacted, unescaped: the sort key.
    pub(crate) values: Box<[Box<str>]>,
    /// The same, escaped once, so scrapes only copy them.
    pub(crate) escaped: Box<[Box<str>]>,
    pub(crate) cell: Cell,
}

/// Label names and values, sorted by name.
type Labels<'r> = Vec<(&'r str, &'r str)>;

/// A series' label values, in its family's label-name order.
type LabelValues = Box<[Box<str>]>;

/// One family of the engine's.
#[derive(Debug)]
pub(crate) struct Family {
    /// The full name (namespace prefix; `_total` for a counter).
    pub(crate) name: Box<str>,
    pub(crate) kind: Kind,
    pub(crate) help: Mutex<Arc<str>>,
    pub(crate) origin: Origin,
    /// Sorted.
    pub(crate) label_names: Box<[Box<str>]>,
    /// Histograms only.
    pub(crate) bounds: Option<Arc<[f64]>>,
    /// Canonical `le` strings of the bounds, `+Inf` last.
    pub(crate) le: Box<[Box<str>]>,
    /// Writers' lookup, by redacted values in `label_names` order.
    series: Mutex<HashMap<LabelValues, Arc<Series>>>,
    /// Readers' view, sorted by values; replaced whole on a new series.
    pub(crate) sorted: ArcSwap<Vec<Arc<Series>>>,
    /// New label combinations turned away by the series limit.
    pub(crate) overflowed: AtomicU64,
}

/// What to register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) kind: Kind,
    /// Without the namespace prefix.
    pub(crate) name: &'a str,
    /// `None` from the `metrics` recorder.
    pub(crate) help: Option<&'a str>,
    pub(crate) labels: &'a [(&'a str, &'a str)],
    /// `None`: the configured default.
    pub(crate) buckets: Option<&'a [f64]>,
}

/// What a registration gives back.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) cell: Cell,
    /// The label values went to the overflow series.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) overflowed: bool,
}

#[derive(Debug, Default)]
struct State {
    families: HashMap<Box<str>, Arc<Family>>,
    /// Every series name a family implies, to the family that owns it.
    taken: HashMap<String, Box<str>>,
}

/// Every family of the engine's.
#[derive(Debug)]
pub(crate) struct Registry {
    namespace: String,
    family_limit: usize,
    series_limit: usize,
    default_buckets: Arc<[f64]>,
    /// Native buckets of the histograms: schema and fraction bounds, and
    /// the per-series cap; `None` when turned off.
    native: Option<CustomNative>,
    /// Series names the built-in families imply, to their family.
    builtin: HashMap<String, String>,
    redactor: Arc<Redactor>,
    clock: quanta::Clock,
    state: Mutex<State>,
    /// Readers' view, sorted by name.
    sorted: ArcSwap<Vec<Arc<Family>>>,
    /// Indexed by `Rejection as usize`.
    pub(crate) rejected: [AtomicU64; 4],
}

pub(crate) struct Limits<'a> {
    pub(crate) families: usize,
    pub(crate) series: usize,
    pub(crate) buckets: &'a [f64],
    /// Native buckets for the histograms: schema and per-series cap.
    pub(crate) native: Option<(i8, u32)>,
}

/// How the engine's histograms keep native buckets.
#[derive(Debug, Clone)]
pub(crate) struct CustomNative {
    pub(crate) schema: i8,
    pub(crate) bounds: Arc<[f64]>,
    pub(crate) max_buckets: u32,
}

impl Registry {
    pub(crate) fn new(
        namespace: &str,
        limits: Limits<'_>,
        builtin: &[(&str, Kind)],
        redactor: Arc<Redactor>,
        clock: quanta::Clock,
    ) -> Self {
        let builtin = builtin
            .iter()
            .flat_map(|&(name, kind)| implied(name, kind).into_iter().map(|n| (n, name.into())))
            .collect();
        Registry {
            namespace: namespace.to_owned(),
            family_limit: limits.families,
            series_limit: limits.series,
            default_buckets: Arc::from(limits.buckets),
            native: limits.native.map(|(schema, max_buckets)| CustomNative {
                schema,
                bounds: crate::metrics::native::fraction_bounds(schema),
                max_buckets,
            }),
            builtin,
            redactor,
            clock,
            state: Mutex::default(),
            sorted: ArcSwap::from_pointee(Vec::new()),
            rejected: Default::default(),
        }
    }

    /// Every family, sorted by name.
    pub(crate) fn families(&self) -> Arc<Vec<Arc<Family>>> {
        self.sorted.load_full()
    }

    /// The most series all families together may hold (overflow series
    /// included).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn max_series(&self) -> usize {
        self.family_limit
            .saturating_mul(self.series_limit.saturating_add(1))
    }

    /// Whether the histograms keep native buckets.
    pub(crate) fn native_enabled(&self) -> bool {
        self.native.is_some()
    }

    pub(crate) fn clock(&self) -> &quanta::Clock {
        &self.clock
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The full name `name` is scraped under.
    pub(crate) fn full_name(&self, kind: Kind, name: &str) -> String {
        let mut full = format!("{}_{name}", self.namespace);
        if kind == Kind::Counter && !full.ends_with("_total") {
            full.push_str("_total");
        }
        full
    }

    /// Registers (or finds) the family and the series; a refusal is
    /// counted in `custom_metrics_rejected_total`.
    pub(crate) fn register(
        &self,
        req: &Request<'_>,
        origin: Origin,
    ) -> Result<Registered, MetricError> {
        self.try_register(req, origin).inspect_err(|e| {
            // Relaxed: a count for reporting.
            self.rejected[e.reason() as usize].fetch_add(1, Ordering::Relaxed);
        })
    }

    fn try_register(&self, req: &Request<'_>, origin: Origin) -> Result<Registered, MetricError> {
        let (family, labels) = self.find_family(req, origin)?;
        Ok(family.series(self, &labels, self.series_limit))
    }

    /// Registers (or finds) the family alone, with no series yet: only
    /// `req.labels`' names matter. A refusal is counted.
    pub(crate) fn register_family(&self, req: &Request<'_>) -> Result<(), MetricError> {
        self.find_family(req, Origin::Native)
            .map(drop)
            .inspect_err(|e| {
                // Relaxed: a count for reporting.
                self.rejected[e.reason() as usize].fetch_add(1, Ordering::Relaxed);
            })
    }

    /// Checks the request and finds or creates its family; gives back the
    /// labels sorted by name.
    fn find_family<'r>(
        &self,
        req: &Request<'r>,
        origin: Origin,
    ) -> Result<(Arc<Family>, Labels<'r>), MetricError> {
        validate_name(req.name)?;
        let name = self.full_name(req.kind, req.name);
        if let Some(reason) = lint_family(&name, req.kind) {
            return Err(MetricError::InvalidName {
                name: req.name.to_owned(),
                reason,
            });
        }
        let mut labels: Vec<(&str, &str)> = req.labels.to_vec();
        labels.sort_unstable_by_key(|&(k, _)| k);
        for (i, &(label, _)) in labels.iter().enumerate() {
            let invalid = |reason| MetricError::InvalidLabel {
                name: name.clone(),
                label: label.to_owned(),
                reason,
            };
            validate_label_name(label).map_err(invalid)?;
            if i > 0 && labels[i - 1].0 == label {
                return Err(invalid("given twice"));
            }
        }
        if labels.len() > MAX_LABELS {
            return Err(MetricError::InvalidLabel {
                name,
                label: labels[MAX_LABELS].0.to_owned(),
                reason: "more than 16 labels",
            });
        }
        let bounds = match req.kind {
            Kind::Histogram => Some(match req.buckets {
                Some(b) => {
                    validate_buckets(b).map_err(|reason| MetricError::InvalidBuckets {
                        name: name.clone(),
                        reason,
                    })?;
                    Arc::from(b)
                }
                None => self.default_buckets.clone(),
            }),
            _ => None,
        };
        let family = self.family(req, origin, name, &labels, bounds)?;
        Ok((family, labels))
    }

    /// Finds or creates the family, checking it matches the request.
    fn family(
        &self,
        req: &Request<'_>,
        origin: Origin,
        name: String,
        labels: &[(&str, &str)],
        bounds: Option<Arc<[f64]>>,
    ) -> Result<Arc<Family>, MetricError> {
        let mut state = self.state.lock();
        if let Some(family) = state.families.get(name.as_str()) {
            let mismatch = |what| MetricError::Mismatch {
                name: name.clone(),
                what,
            };
            if family.kind != req.kind {
                return Err(mismatch("type"));
            }
            let same_labels = family.label_names.len() == labels.len()
                && family
                    .label_names
                    .iter()
                    .zip(labels)
                    .all(|(a, (b, _))| **a == **b);
            if !same_labels {
                return Err(mismatch("label names"));
            }
            // Only bounds asked for explicitly must agree; none means "as registered".
            if req.buckets.is_some() && family.bounds.as_deref() != bounds.as_deref() {
                return Err(mismatch("buckets"));
            }
            if let Some(help) = req.help {
                let mut current = family.help.lock();
                if family.origin == Origin::Native && **current != *help {
                    return Err(mismatch("help"));
                }
                if family.origin == Origin::Recorder && current.is_empty() {
                    *current = Arc::from(help);
                }
            }
            return Ok(family.clone());
        }
        if state.families.len() >= self.family_limit {
            return Err(MetricError::TooManyFamilies {
                name,
                limit: self.family_limit,
            });
        }
        let implied = implied(&name, req.kind);
        for n in &implied {
            if let Some(builtin) = self.builtin.get(n) {
                return Err(MetricError::BuiltinClash {
                    name,
                    builtin: builtin.clone(),
                });
            }
            if let Some(other) = state.taken.get(n) {
                return Err(MetricError::Clash {
                    name,
                    other: other.to_string(),
                });
            }
        }
        let family = Arc::new(Family {
            name: name.as_str().into(),
            kind: req.kind,
            help: Mutex::new(Arc::from(req.help.unwrap_or(""))),
            origin,
            label_names: labels.iter().map(|&(k, _)| k.into()).collect(),
            le: bounds
                .iter()
                .flat_map(|b| b.iter().copied().chain(std::iter::once(f64::INFINITY)))
                .map(|b| crate::exposition::canonical_float(b).into_boxed_str())
                .collect(),
            bounds,
            series: Mutex::default(),
            sorted: ArcSwap::from_pointee(Vec::new()),
            overflowed: AtomicU64::new(0),
        });
        for n in implied {
            state.taken.insert(n, name.as_str().into());
        }
        state.families.insert(name.as_str().into(), family.clone());
        let mut sorted = Vec::clone(&self.sorted.load());
        let at = sorted.partition_point(|f| *f.name < *name);
        sorted.insert(at, family.clone());
        self.sorted.store(Arc::new(sorted));
        Ok(family)
    }

    /// Sets the help text of a family the `metrics` crate registered
    /// (`describe_*` may come before or after the first use).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn describe(&self, kind: Kind, name: &str, help: &str) {
        let full = self.full_name(kind, name);
        if let Some(family) = self.state.lock().families.get(full.as_str())
            && family.origin == Origin::Recorder
            && family.kind == kind
        {
            *family.help.lock() = Arc::from(help);
        }
    }
}

/// A label value as every output shows it: the whole value when the
/// label's name names a secret, else the credentials inside it, replaced
/// by `[REDACTED]`. For the engine's series, and for the labels the
/// senders add (a Pushgateway's grouping key, remote write's labels).
pub(crate) fn redact_label_value<'a>(
    redactor: &Redactor,
    name: &str,
    value: &'a str,
) -> std::borrow::Cow<'a, str> {
    if redactor.is_secret_key(name) {
        std::borrow::Cow::Borrowed(REDACTED)
    } else {
        redactor.redact_str(value)
    }
}

impl Family {
    /// Finds or creates the series of `labels` (sorted, names checked).
    fn series(&self, registry: &Registry, labels: &[(&str, &str)], limit: usize) -> Registered {
        let values: Box<[Box<str>]> = labels
            .iter()
            .map(|&(k, v)| Box::from(redact_label_value(&registry.redactor, k, v).as_ref()))
            .collect();
        let mut series = self.series.lock();
        if let Some(s) = series.get(&values) {
            return Registered {
                cell: s.cell.clone(),
                overflowed: false,
            };
        }
        let overflow: Box<[Box<str>]> = labels.iter().map(|_| Box::from(OVERFLOW)).collect();
        // The overflow series does not count towards the limit.
        let named = series.len() - usize::from(series.contains_key(&overflow));
        let (values, overflowed) = if named < limit || labels.is_empty() {
            (values, false)
        } else {
            // Relaxed: a count for reporting.
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            (overflow, true)
        };
        if let Some(s) = series.get(&values) {
            return Registered {
                cell: s.cell.clone(),
                overflowed,
            };
        }
        let cell = match (self.kind, &self.bounds) {
            (Kind::Histogram, Some(bounds)) => Cell::Histogram(Arc::new(
                HistogramCell::new(bounds.clone(), registry.clock.clone())
                    .with_native(registry.native.clone()),
            )),
            (Kind::Gauge, _) => Cell::Gauge(Arc::default()),
            _ => Cell::Counter(Arc::default()),
        };
        let escaped = values
            .iter()
            .map(|v| {
                let mut out = String::new();
                escape_label_value(v, &mut out);
                out.into_boxed_str()
            })
            .collect();
        let new = Arc::new(Series {
            values: values.clone(),
            escaped,
            cell: cell.clone(),
        });
        series.insert(values, new.clone());
        let mut sorted = Vec::clone(&self.sorted.load());
        let at = sorted.partition_point(|s| s.values < new.values);
        sorted.insert(at, new);
        self.sorted.store(Arc::new(sorted));
        Registered { cell, overflowed }
    }
}

/// Every series name a family implies: what another family must not use.
fn implied(name: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Counter => {
            let base = name.strip_suffix("_total").unwrap_or(name);
            vec![
                base.to_owned(),
                format!("{base}_total"),
                format!("{base}_created"),
            ]
        }
        Kind::Gauge => vec![name.to_owned()],
        Kind::Histogram => ["", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .map(|suffix| format!("{name}{suffix}"))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(series: usize) -> Registry {
        Registry::new(
            "ns",
            Limits {
                families: 3,
                series,
                buckets: &[1.0],
                native: None,
            },
            &[
                ("ns_runs_started_total", Kind::Counter),
                ("ns_active_runs", Kind::Gauge),
            ],
            Arc::new(Redactor::builtin().clone()),
            crate::pipeline::new_clock(),
        )
    }

    fn counter(
        r: &Registry,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Registered, MetricError> {
        let req = Request {
            kind: Kind::Counter,
            name,
            help: Some("h"),
            labels,
            buckets: None,
        };
        r.register(&req, Origin::Native)
    }

    #[test]
    fn names_clashing_with_built_in_series_are_refused() {
        let r = registry(10);
        assert!(matches!(
            counter(&r, "runs_started", &[]),
            Err(MetricError::BuiltinClash { .. })
        ));
        assert!(matches!(
            counter(&r, "active_runs", &[]),
            Err(MetricError::BuiltinClash { .. })
        ));
        assert_eq!(
            r.rejected[Rejection::Clash as usize].load(Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn label_values_past_the_limit_share_the_overflow_series() {
        let r = registry(2);
        for tool in ["a", "b", "c", "d"] {
            let reg = counter(&r, "calls", &[("tool", tool)]).expect("registers");
            assert_eq!(reg.overflowed, tool > "b");
        }
        let family = &r.families()[0];
        let sorted = family.sorted.load();
        let values: Vec<&str> = sorted.iter().map(|s| &*s.values[0]).collect();
        assert_eq!(values, ["a", "b", OVERFLOW]);
        assert_eq!(family.overflowed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn label_values_are_redacted_and_secret_label_names_hide_their_value() {
        let r = registry(10);
        counter(
            &r,
            "calls",
            &[("api_key", "abc"), ("url", "https://u:hunter2@x.example/")],
        )
        .expect("registers");
        let family = &r.families()[0];
        let series = &family.sorted.load()[0];
        assert_eq!(&*series.values[0], REDACTED);
        assert!(
            !series.values[1].contains("hunter2"),
            "{:?}",
            series.values[1]
        );
    }
}
