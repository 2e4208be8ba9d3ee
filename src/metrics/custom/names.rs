//! What a name of the engine's must look like.
//!
//! Beyond the syntax, names are held to the lints of `promtool check
//! metrics` (Prometheus' `promlint`), which fails a whole exposition over
//! one of them: `/metrics` passes it with the engine's families too.

use super::MetricError;
use crate::error::Error;
use crate::exposition::writer::Kind;

/// The longest metric or label name accepted, in bytes.
const MAX_NAME_LEN: usize = 200;

/// Base units and what promlint wants instead of the others.
const UNITS: &[(&str, &str)] = &[
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
];

/// SI and binary prefixes promlint recognizes before a unit.
const UNIT_PREFIXES: &[&str] = &[
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

/// Abbreviated units promlint refuses as a name part.
const UNIT_ABBREVIATIONS: &[&str] = &[
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

pub(super) fn validate_name(name: &str) -> Result<(), MetricError> {
    match name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(MetricError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
    }
}

pub(crate) fn validate_label_name(label: &str) -> Result<(), &'static str> {
    if matches!(label, "le" | "quantile") {
        return Err("reserved for histogram buckets and summary quantiles");
    }
    name_problem(label).map_or(Ok(()), Err)
}

/// What makes `name` unusable as a metric or label name, if anything.
/// Colons, which Prometheus allows in metric names, are left to
/// recording rules (and promlint refuses them).
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("longer than 200 bytes");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Some("starts with a digit");
    }
    if name.starts_with("__") {
        return Some("names starting with __ are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some("only ASCII letters, digits and _ are allowed");
    }
    let bytes = name.as_bytes();
    if bytes
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
    {
        return Some("names are snake_case, not camelCase");
    }
    None
}

/// promlint's rules on a family's full name for its type.
pub(super) fn lint_family(name: &str, kind: Kind) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let has_part =
        |part: &str| lower.ends_with(&format!("_{part}")) || lower.contains(&format!("_{part}_"));
    if kind != Kind::Counter && name.ends_with("_total") {
        return Some("only a counter's name ends in _total");
    }
    if kind != Kind::Histogram
        && ["_count", "_sum", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        return Some("only a histogram's series end in _count, _sum or _bucket");
    }
    if name.ends_with("_created") {
        return Some("_created is reserved for creation timestamps");
    }
    let type_name = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    if has_part(type_name) {
        return Some("the name should not include its type");
    }
    if UNIT_ABBREVIATIONS.iter().any(|a| has_part(a)) {
        return Some(
            "abbreviated units (ms, s, kb…) are refused: spell out the base unit (seconds, bytes)",
        );
    }
    for part in name.split('_') {
        let unit = UNITS.iter().find_map(|&(unit, base)| {
            let rest = UNIT_PREFIXES
                .iter()
                .find_map(|p| part.strip_prefix(p))
                .unwrap_or(part);
            (rest == unit && (rest != part || unit != base)).then_some(())
        });
        if unit.is_some() {
            return Some("use a base unit (seconds, bytes, meters…), not a prefixed or larger one");
        }
    }
    None
}

/// Checks histogram bounds: finite, strictly increasing, at most 200.
pub(crate) fn validate_buckets(bounds: &[f64]) -> Result<(), String> {
    let max = crate::metrics::config::MAX_CUSTOM_BUCKETS;
    if bounds.len() > max {
        return Err(format!("at most {max} bounds"));
    }
    let valid = bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bounds must be finite and strictly increasing: {bounds:?}"
        ))
    }
}

/// Checks a metric name prefix: letters, digits, `_` and `:`, not starting
/// with a digit.
pub(crate) fn validate_namespace(namespace: &str) -> Result<(), Error> {
    let valid = !namespace.is_empty()
        && !namespace.starts_with(|c: char| c.is_ascii_digit())
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "namespace {namespace:?} is not a valid metric name prefix"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_promtool_would_lint_are_refused() {
        let refused = [
            ("a_request_ms", Kind::Gauge),
            ("a_latency_milliseconds", Kind::Histogram),
            ("a_uptime_hours", Kind::Gauge),
            ("a_size_kilobytes", Kind::Gauge),
            ("a_my_counter_total", Kind::Counter),
            ("a_queue_gauge", Kind::Gauge),
            ("a_size_total", Kind::Gauge),
            ("a_queue_count", Kind::Gauge),
            ("a_x_bucket", Kind::Counter),
            ("a_x_created", Kind::Histogram),
        ];
        for (name, kind) in refused {
            assert!(lint_family(name, kind).is_some(), "{name}");
        }
        let accepted = [
            ("a_request_seconds", Kind::Histogram),
            ("a_prompt_tokens", Kind::Histogram),
            ("a_tool_calls_total", Kind::Counter),
            ("a_size_bytes", Kind::Gauge),
            ("a_items_count_total", Kind::Counter),
            ("a_sms_sent_total", Kind::Counter),
        ];
        for (name, kind) in accepted {
            assert_eq!(lint_family(name, kind), None, "{name}");
        }
        assert!(name_problem("fooBar").is_some());
        assert!(name_problem("HTTP_requests").is_none());
        assert!(validate_label_name("le").is_err());
    }
}
