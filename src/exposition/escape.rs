//! Escaping and number formatting for the text formats.
//!
//! Escaping is injective: every backslash is doubled, so an input that
//! already contains `\n` (backslash, n) comes out as `\\n` and can never be
//! confused with a newline. Nothing guesses whether a string is "already
//! escaped".

use std::fmt::Write;

/// Appends `value` escaped for a label value (inside double quotes): `\`,
/// `"` and newline become `\\`, `\"` and `\n`. Valid in both formats.
///
/// ```
/// # use agentgate_obs::metrics::escape_label_value;
/// let mut out = String::new();
/// escape_label_value("a\"b\\c\nd", &mut out);
/// assert_eq!(out, r#"a\"b\\c\nd"#);
/// ```
pub fn escape_label_value(value: &str, out: &mut String) {
    escape(value, out, true);
}

/// Appends `text` escaped for a `# HELP` line. Prometheus 0.0.4 escapes
/// only `\` and newline there; OpenMetrics also escapes `"`.
pub fn escape_help(text: &str, out: &mut String, quote: bool) {
    escape(text, out, quote);
}

fn escape(text: &str, out: &mut String, quote: bool) {
    let needs = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !text.bytes().any(needs) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Formats a float the canonical OpenMetrics way, which Prometheus' text
/// format also accepts: the shortest string that reads back as the same
/// number, positional between 1e-4 and 1e16 with at least one decimal
/// (`0.01`, `1.0`, `2.5`), scientific outside it with a signed two-digit
/// exponent (`1e-05`, `1e+16`), and `+Inf`, `-Inf`, `NaN`.
///
/// ```
/// # use agentgate_obs::metrics::canonical_float;
/// assert_eq!(canonical_float(0.01), "0.01");
/// assert_eq!(canonical_float(1.0), "1.0");
/// assert_eq!(canonical_float(1e-5), "1e-05");
/// assert_eq!(canonical_float(3600.0), "3600.0");
/// assert_eq!(canonical_float(f64::INFINITY), "+Inf");
/// ```
pub fn canonical_float(value: f64) -> String {
    let mut out = String::new();
    write_float(value, &mut out);
    out
}

/// Appends [`canonical_float`]'s form of `value` to `out`.
pub fn write_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        // Also covers -0.0, which reads back as the same bucket bound.
        out.push_str("0.0");
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e3", "-1e-5".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..-point {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
}

/// Appends an integer sample value.
pub(crate) fn write_u64(value: u64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_take_their_canonical_openmetrics_form() {
        let cases = [
            (0.005, "0.005"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (3600.0, "3600.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123456.789, "123456.789"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(canonical_float(value), expected, "{value:e}");
            if value.is_finite() {
                assert_eq!(canonical_float(value).parse::<f64>().ok(), Some(value));
            }
        }
    }

    #[test]
    fn escaping_is_injective_on_backslash_sequences() {
        let mut a = String::new();
        let mut b = String::new();
        escape_label_value("\\n", &mut a);
        escape_label_value("\n", &mut b);
        assert_eq!(a, "\\\\n");
        assert_eq!(b, "\\n");
        assert_ne!(a, b);
    }

    #[test]
    fn help_escapes_quotes_only_for_openmetrics() {
        let mut prom = String::new();
        let mut om = String::new();
        escape_help("say \"hi\"\\", &mut prom, false);
        escape_help("say \"hi\"\\", &mut om, true);
        assert_eq!(prom, "say \"hi\"\\\\");
        assert_eq!(om, "say \\\"hi\\\"\\\\");
    }
}
