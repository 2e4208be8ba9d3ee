//! Redaction of secrets, applied on the writer thread before anything is
//! written.
//!
//! Two rules:
//! - a field whose key names a secret (password, secret, token, apiKey,
//!   authorization, cookie, credential, private key; any case, `_`/`-`
//!   ignored, at any depth of nested data) has its whole value replaced;
//! - inside any string (messages included), substrings shaped like a GitHub
//!   token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more characters,
//!   `github_pat_…`) or a JWT (`eyJ….eyJ….sig`) are replaced.
//!
//! Keys ending in `token` are secrets (`accessToken`, `x-auth-token`) but
//! counts such as `inputTokens` or `tokenCount` are not; plain hex such as a
//! 40-character git SHA matches no rule and stays readable.

use std::borrow::Cow;

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Nested data deeper than this is cut off rather than walked, so a hostile
/// value cannot exhaust the writer thread's stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Whether a field with this key holds a secret.
pub(crate) fn is_secret_key(key: &str) -> bool {
    const CONTAINS: [&str; 8] = [
        "password",
        "passwd",
        "secret",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "privatekey",
    ];
    if key.len() > 128 {
        // No real key is this long; treat it as data and check it whole.
        return CONTAINS.iter().any(|w| contains_ignore_case(key, w));
    }
    let mut normalized = [0u8; 128];
    let mut len = 0;
    for b in key
        .bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.' | b' '))
    {
        normalized[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let k = &normalized[..len];
    k.ends_with(b"token") || CONTAINS.iter().any(|w| contains(k, w.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Length of a token starting at `s[0]`, if one does.
fn token_at(s: &[u8]) -> Option<usize> {
    const GITHUB: [&[u8]; 5] = [b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"];
    if GITHUB.iter().any(|p| s.starts_with(p)) {
        let body = s[4..]
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric())
            .count();
        return (body >= 36).then_some(4 + body);
    }
    if let Some(rest) = s.strip_prefix(b"github_pat_") {
        let body = rest.iter().take_while(|&&b| is_word(b)).count();
        return (body >= 22).then_some(11 + body);
    }
    if s.starts_with(b"eyJ") {
        return jwt_len(s);
    }
    None
}

/// A JWT: three base64url segments joined by dots, the first two at least
/// a few characters long (the signature may be empty for `alg: none`).
fn jwt_len(s: &[u8]) -> Option<usize> {
    let header = s.iter().take_while(|&&b| is_base64url(b)).count();
    let rest = s[header..].strip_prefix(b".")?;
    let payload = rest.iter().take_while(|&&b| is_base64url(b)).count();
    let rest = rest[payload..].strip_prefix(b".")?;
    let signature = rest.iter().take_while(|&&b| is_base64url(b)).count();
    (header >= 10 && payload >= 4).then_some(header + payload + signature + 2)
}

/// `s` with every token replaced by [`REDACTED`]; borrowed when clean.
pub(crate) fn redact_str(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // A token starts at a word boundary with `g` or `e`.
        let candidate = (b == b'g' || b == b'e') && (i == 0 || !is_word(bytes[i - 1]));
        if let Some(len) = candidate.then(|| token_at(&bytes[i..])).flatten() {
            // Token bytes are ASCII, so `i` and `i + len` are char boundaries.
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[copied..i]);
            o.push_str(REDACTED);
            i += len;
            copied = i;
        } else {
            i += 1;
        }
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Redacts nested data in place: secret keys at any depth, tokens in any
/// string, and anything deeper than [`MAX_DEPTH`].
pub(crate) fn redact_json(value: &mut serde_json::Value) {
    redact_json_at(value, 0);
}

fn redact_json_at(value: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    if depth >= MAX_DEPTH && matches!(value, Value::Array(_) | Value::Object(_)) {
        *value = Value::String("[TOO DEEP]".to_owned());
        return;
    }
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = redact_str(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json_at(v, depth + 1)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_json_at(v, depth + 1);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognized_in_any_spelling() {
        for key in [
            "password",
            "DB_PASSWORD",
            "apiKey",
            "api_key",
            "X-Api-Key",
            "Authorization",
            "set-cookie",
            "client_secret",
            "accessToken",
            "token",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "auth",
            "inputTokens",
            "tokenCount",
            "author",
            "runId",
            "sha",
            "commit",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn tokens_inside_text_are_replaced_and_the_rest_kept() {
        let pat = format!("ghp_{}", "a1B2".repeat(9));
        let text = format!("cloning with {pat} now");
        assert_eq!(redact_str(&text), "cloning with [REDACTED] now");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(redact_str(&format!("Bearer {jwt}")), "Bearer [REDACTED]");
        let sha = "3f786850e387550fdab836ed7e6dc881de23001b";
        assert!(matches!(redact_str(sha), Cow::Borrowed(_)));
        assert_eq!(redact_str("ghp_short"), "ghp_short");
        assert_eq!(redact_str("éghp_ü"), "éghp_ü");
    }
}
