//! A strict parser of the two text exposition formats, written from the
//! format documents rather than from our writer: what it accepts is what a
//! careful scraper accepts, and it hands back label values unescaped so a
//! round trip can be compared byte for byte. The integration tests parse
//! with it too (`tests/common/exposition.rs` includes this file), and test
//! it there.

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Label names and unescaped values, in order.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Parses a whole exposition. `openmetrics` selects OpenMetrics 1.0 rules:
/// the text must end with `# EOF`, `"` is escaped in `# HELP`, exemplars
/// may follow a value. Any deviation is an error naming the line.
pub fn parse(text: &str, openmetrics: bool) -> Result<Vec<Sample>, String> {
    if text.is_empty() {
        return if openmetrics {
            Err("no # EOF".into())
        } else {
            Ok(Vec::new())
        };
    }
    let body = text
        .strip_suffix('\n')
        .ok_or("the text does not end with a newline")?;
    let mut samples = Vec::new();
    let mut lines = body.split('\n').enumerate().peekable();
    while let Some((no, line)) = lines.next() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", no + 1);
        if line == "# EOF" {
            if !openmetrics {
                return Err(err("# EOF in the Prometheus format"));
            }
            if lines.peek().is_some() {
                return Err(err("# EOF before the end"));
            }
            return Ok(samples);
        }
        if let Some(comment) = line.strip_prefix('#') {
            comment_line(comment, openmetrics).map_err(|m| err(&m))?;
            continue;
        }
        samples.push(sample_line(line, openmetrics).map_err(|m| err(&m))?);
    }
    if openmetrics {
        Err("no # EOF".into())
    } else {
        Ok(samples)
    }
}

fn comment_line(comment: &str, openmetrics: bool) -> Result<(), String> {
    let Some(rest) = comment.strip_prefix(' ') else {
        return if openmetrics {
            Err("a comment that is not HELP or TYPE".into())
        } else {
            Ok(())
        };
    };
    let mut parts = rest.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("HELP"), Some(name), text) => {
            metric_name(name)?;
            unescape(text.unwrap_or(""), openmetrics).map(|_| ())
        }
        (Some("TYPE"), Some(name), Some(kind)) => {
            metric_name(name)?;
            let known: &[&str] = if openmetrics {
                &[
                    "counter",
                    "gauge",
                    "histogram",
                    "gaugehistogram",
                    "summary",
                    "stateset",
                    "info",
                    "unknown",
                ]
            } else {
                &["counter", "gauge", "histogram", "summary", "untyped"]
            };
            if known.contains(&kind) {
                Ok(())
            } else {
                Err(format!("unknown type {kind:?}"))
            }
        }
        _ if openmetrics => Err("a comment that is not HELP or TYPE".into()),
        _ => Ok(()),
    }
}

/// Undoes the escapes of a `# HELP` text: `\\` and `\n`, and `\"` in OpenMetrics.
fn unescape(text: &str, quote: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            other => return Err(format!("invalid escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// Parses `{name="value",…}` at the start of `text`; returns the labels and
/// what follows the closing brace.
/// Label names and unescaped values, in order.
type Labels = Vec<(String, String)>;

fn label_set(text: &str) -> Result<(Labels, &str), String> {
    let mut rest = text.strip_prefix('{').ok_or("expected {")?;
    let mut out = Vec::new();
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((out, after));
    }
    loop {
        let eq = rest.find('=').ok_or("a label without =")?;
        let name = &rest[..eq];
        label_name(name)?;
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value not in quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape in a label value: {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name:?} twice"));
        }
        out.push((name.to_owned(), value));
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        let after = rest.strip_prefix('}').ok_or("expected , or }")?;
        return Ok((out, after));
    }
}

fn number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t if !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            t.parse().map_err(|_| format!("bad number {t:?}"))
        }
        t => Err(format!("bad number {t:?}")),
    }
}

fn sample_line(line: &str, openmetrics: bool) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    metric_name(name)?;
    let (labels, rest) = if line[name_end..].starts_with('{') {
        label_set(&line[name_end..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let (value_part, exemplar) = match rest.split_once(" # ") {
        Some((v, e)) if openmetrics => (v, Some(e)),
        Some(_) => return Err("an exemplar in the Prometheus format".into()),
        None => (rest, None),
    };
    let mut fields = value_part.split(' ');
    let value = number(fields.next().unwrap_or(""))?;
    if let Some(timestamp) = fields.next() {
        number(timestamp)?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    if let Some(exemplar) = exemplar {
        let (_, after) = label_set(exemplar)?;
        let after = after.strip_prefix(' ').ok_or("no value in the exemplar")?;
        for field in after.split(' ') {
            number(field)?;
        }
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}
