//! Reads our own Prometheus text exposition back into samples, for the
//! senders: what they send is then exactly what `/metrics` shows, every
//! family included (the engine's own ones too), with no second walk over
//! the metric state to keep in step with the renderer.
//!
//! It reads what `Metrics::render_as(Format::Prometheus)` writes, nothing
//! more: `# ` comment lines, and sample lines `name{label="value",…} value`
//! without timestamps, label values escaped with `\\`, `\"` and `\n`,
//! values as Go's `strconv` would print them (`+Inf`, `-Inf`, `NaN`).

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextSample {
    pub(crate) name: String,
    /// In the order written (ours are sorted by name within a family,
    /// `le` last).
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

/// Every sample of `text`, and how many lines were not samples this reader
/// understands (none for our own output: a count above zero is a bug to
/// log, not a reason to send nothing).
pub(crate) fn samples(text: &str) -> (Vec<TextSample>, usize) {
    let mut out = Vec::with_capacity(text.len() / 64);
    let mut skipped = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match sample(line) {
            Some(sample) => out.push(sample),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

fn sample(line: &str) -> Option<TextSample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((label.to_owned(), value));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let value = value(rest.strip_prefix(' ')?)?;
    Some(TextSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

fn value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Appends `text` (our exposition) to `out` with every label named in
/// `names` renamed as a scrape without `honor_labels` renames a label that
/// clashes with a target label: `exported_<name>`, prefixed again while
/// that name is taken too. For the Pushgateway, which overwrites a pushed
/// label named like its grouping key: two series that differ only in it
/// become one series twice, and the whole push is refused with a `400`.
/// Comment lines, values and the other labels are copied as they are; a
/// line this reader does not understand too.
pub(crate) fn rename_labels(text: &str, names: &[&str], out: &mut String) {
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') || !rename_in_line(line, names, out) {
            out.push_str(line);
        }
    }
}

/// [`rename_labels`] for one sample line; `false` (and nothing written)
/// when there is nothing to rename or the line is not understood.
fn rename_in_line(line: &str, names: &[&str], out: &mut String) -> bool {
    let Some(open) = line.find(['{', ' ']) else {
        return false;
    };
    if line.as_bytes()[open] != b'{' {
        return false;
    }
    // Each label name's span.
    let mut labels: Vec<(usize, usize)> = Vec::new();
    let mut at = open + 1;
    loop {
        let rest = &line[at..];
        if rest.starts_with('}') {
            break;
        }
        let Some(eq) = rest.find("=\"") else {
            return false;
        };
        let Some(close) = closing_quote(&rest[eq + 2..]) else {
            return false;
        };
        labels.push((at, at + eq));
        at += eq + 2 + close + 1;
        if line[at..].starts_with(',') {
            at += 1;
        }
    }
    let name_of = |&(start, end): &(usize, usize)| &line[start..end];
    if !labels.iter().any(|label| names.contains(&name_of(label))) {
        return false;
    }
    let mut copied = 0;
    for label in &labels {
        let name = name_of(label);
        if !names.contains(&name) {
            continue;
        }
        let exported = crate::exposition::exported_name(name, |candidate| {
            names.contains(&candidate) || labels.iter().any(|l| name_of(l) == candidate)
        });
        out.push_str(&line[copied..label.0]);
        out.push_str(&exported);
        copied = label.1;
    }
    out.push_str(&line[copied..]);
    true
}

/// The byte offset of the quote closing a label value (escapes skipped).
fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, MetricsConfig};

    #[test]
    fn counters_gauges_and_histogram_series_come_back_with_their_labels() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{result=\"failed\"} 3\n\
                    b 1.5\nh_bucket{phase=\"build\",le=\"+Inf\"} 7\nh_sum{phase=\"build\"} 0.25\n";
        let (samples, skipped) = samples(text);
        assert_eq!(skipped, 0);
        let got: Vec<_> = samples
            .iter()
            .map(|s| (s.name.as_str(), s.labels.clone(), s.value))
            .collect();
        let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            got,
            [
                ("a_total", l(&[("result", "failed")]), 3.0),
                ("b", l(&[]), 1.5),
                ("h_bucket", l(&[("phase", "build"), ("le", "+Inf")]), 7.0),
                ("h_sum", l(&[("phase", "build")]), 0.25),
            ]
        );
    }

    #[test]
    fn escaped_label_values_and_special_floats_are_read_back_exactly() {
        let (samples, skipped) =
            samples("x{v=\"a\\\"b\\\\c\\nd,}e\"} +Inf\ny -Inf\nz NaN\nw 1e-7\n");
        assert_eq!(skipped, 0);
        assert_eq!(samples[0].labels[0].1, "a\"b\\c\nd,}e");
        assert_eq!(samples[0].value, f64::INFINITY);
        assert_eq!(samples[1].value, f64::NEG_INFINITY);
        assert!(samples[2].value.is_nan());
        assert_eq!(samples[3].value, 1e-7);
    }

    #[test]
    fn lines_that_are_not_samples_are_counted_not_guessed() {
        let (samples, skipped) =
            samples("ok 1\nbroken{a=\"x} 1\nnovalue\nbad 1.2.3\n{a=\"b\"} 1\n");
        assert_eq!(samples.len(), 1);
        assert_eq!(skipped, 4);
    }

    #[test]
    fn labels_named_like_the_grouping_key_are_renamed_exported_and_nothing_else_changes() {
        let text = "# HELP b_total B, job=\"x\".\n# TYPE b_total counter\n\
                    b_total{job=\"a\\\",job=\\\\\",myjob=\"m\",work_order=\"w\"} 2\n\
                    c_total{result=\"ok\"} 1\nd 3\nbroken{job=\"x} 1\n";
        let mut out = String::new();
        rename_labels(text, &["job", "work_order"], &mut out);
        assert_eq!(
            out,
            "# HELP b_total B, job=\"x\".\n# TYPE b_total counter\n\
             b_total{exported_job=\"a\\\",job=\\\\\",myjob=\"m\",exported_work_order=\"w\"} 2\n\
             c_total{result=\"ok\"} 1\nd 3\nbroken{job=\"x} 1\n"
        );
        let (renamed, skipped) = samples(&out);
        assert_eq!(skipped, 1, "the broken line is copied, not fixed");
        let mut out = String::new();
        rename_labels(
            "b{exported_job=\"old\",job=\"new\"} 1\n",
            &["job"],
            &mut out,
        );
        assert_eq!(
            out, "b{exported_job=\"old\",exported_exported_job=\"new\"} 1\n",
            "a taken exported_ name is prefixed again, as a scrape does"
        );
        assert_eq!(
            renamed[0].labels[0],
            ("exported_job".into(), "a\",job=\\".into())
        );
    }

    #[test]
    fn every_line_of_our_own_exposition_is_understood() {
        let metrics = Metrics::new("agentgate", MetricsConfig::default()).unwrap();
        let tools = metrics
            .counter("tool_calls_total", "Tools.", &[("tool", "we\"ird\\name\n")])
            .unwrap();
        tools.increment(2);
        let text = metrics.render();
        let (samples, skipped) = samples(&text);
        assert_eq!(skipped, 0);
        let sample_lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(samples.len(), sample_lines);
        let tool = samples
            .iter()
            .find(|s| s.name == "agentgate_tool_calls_total")
            .unwrap();
        assert_eq!(tool.labels, [("tool".into(), "we\"ird\\name\n".into())]);
        assert_eq!(tool.value, 2.0);
    }
}
