//! One redaction layer for every output. See `docs/REDACTION.md`.
//!
//! Applied in two places, with the same rules and the same embedder
//! configuration ([`Builder::redact_keys`](crate::Builder::redact_keys),
//! [`Builder::redact_pattern`](crate::Builder::redact_pattern)):
//! - on the drain thread, to every event carrying caller strings, before
//!   the tracker, the sinks (metrics, WebSocket hub, progress log lines),
//!   the journal and the listeners see it: `/ws`, `hello`, `/api/runs`,
//!   the dashboard and any future sink get the redacted event, and the
//!   engine's threads pay nothing;
//! - on the log writer thread, to the fields and messages of log records,
//!   which come from callers directly.
//!
//! Two kinds of rule:
//! - a field whose key names a secret has its whole value replaced, at any
//!   depth of nested data (and the second element of a `["password", "x"]`
//!   pair);
//! - inside any string, substrings shaped like a credential are replaced:
//!   known token prefixes, JWTs, `Bearer` credentials, URL passwords, PEM
//!   private keys, `key=value` / `key: value` pairs whose key names a
//!   secret, AWS keys, and the embedder's own patterns.
//!
//! A string with nothing to redact is returned borrowed: the common case
//! allocates nothing.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::{EventKind, Metadata, ProgressEvent};

mod keys;
mod seen;
mod shapes;

pub(crate) use seen::CleanIds;

use keys::{builtin_secret_key, normalize};
use shapes::{
    AUTH_SCHEMES, aws_key_id_len, aws_secret, bearer, contains, count, ends_with_ignore_case,
    extend_over_next, github_len, gitlab_len, is_base64url, is_key_char, is_value_end, jwt_len,
    openai_len, pem_len, slack_len, url_password,
};

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Nested data deeper than this is cut off rather than walked, so a hostile
/// value cannot exhaust a thread's stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// What replaces nested data deeper than [`MAX_DEPTH`].
const TOO_DEEP: &str = "[TOO DEEP]";

/// The characters a token's body may be made of, for [`RedactPattern`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenCharset {
    /// `A-Z a-z 0-9`.
    Alphanumeric,
    /// `A-Z a-z 0-9 _ -` (base64url; the default).
    Base64Url,
    /// `A-Z a-z 0-9 + / =`.
    Base64,
    /// `0-9 a-f A-F`.
    Hex,
}

impl TokenCharset {
    fn contains(self, b: u8) -> bool {
        match self {
            TokenCharset::Alphanumeric => b.is_ascii_alphanumeric(),
            TokenCharset::Base64Url => is_base64url(b),
            TokenCharset::Base64 => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
            TokenCharset::Hex => b.is_ascii_hexdigit(),
        }
    }
}

/// A credential shape of the embedder's own: a fixed prefix followed by at
/// least `min_len` characters of a [`TokenCharset`]. The prefix and the
/// whole body (however long) become [`REDACTED`], wherever the prefix
/// occurs, also inside a word: choose a distinctive prefix.
///
/// ```
/// use agentgate_obs::redact::{RedactPattern, TokenCharset};
/// // acme_live_ followed by 24 or more letters and digits
/// let pattern = RedactPattern::prefix("acme_live_").min_len(24).charset(TokenCharset::Alphanumeric);
/// # let _ = pattern;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedactPattern {
    prefix: String,
    min_len: usize,
    charset: TokenCharset,
}

impl RedactPattern {
    /// Tokens starting with `prefix` (case-sensitive, not empty), by default
    /// followed by at least 16 [`TokenCharset::Base64Url`] characters.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RedactPattern {
            prefix: prefix.into(),
            min_len: 16,
            charset: TokenCharset::Base64Url,
        }
    }

    /// The fewest body characters after the prefix for a match (default 16).
    pub fn min_len(mut self, min_len: usize) -> Self {
        self.min_len = min_len;
        self
    }

    /// The characters of the body (default [`TokenCharset::Base64Url`]).
    pub fn charset(mut self, charset: TokenCharset) -> Self {
        self.charset = charset;
        self
    }

    /// Length of the match at the start of `s`, if any.
    fn match_len(&self, s: &[u8]) -> Option<usize> {
        let rest = s.strip_prefix(self.prefix.as_bytes())?;
        let body = count(rest, |b| self.charset.contains(b));
        (body >= self.min_len).then_some(self.prefix.len() + body)
    }
}

/// The builder's redaction settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct RedactConfig {
    keys: Vec<String>,
    patterns: Vec<RedactPattern>,
}

impl RedactConfig {
    pub(crate) fn add_key(&mut self, key: String) {
        self.keys.push(key);
    }

    pub(crate) fn add_pattern(&mut self, pattern: RedactPattern) {
        self.patterns.push(pattern);
    }

    /// The redactor, or why a key or pattern would redact everything.
    pub(crate) fn build(&self) -> Result<Redactor, String> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let normalized = normalize(key);
            if normalized.is_empty() {
                return Err(format!(
                    "redact key {key:?} is empty once `_ - . space` are ignored"
                ));
            }
            keys.push(normalized.into_boxed_slice());
        }
        let mut starts = BUILTIN_STARTS;
        let mut custom_starts = [false; 256];
        for pattern in &self.patterns {
            let Some(&first) = pattern.prefix.as_bytes().first() else {
                return Err("a redact pattern needs a non-empty prefix".into());
            };
            starts[usize::from(first)] = true;
            custom_starts[usize::from(first)] = true;
        }
        Ok(Redactor {
            keys,
            patterns: self.patterns.clone(),
            starts,
            custom_starts,
        })
    }
}

/// The rules in force: the built-in ones plus the embedder's keys and
/// patterns. Shared by the drain thread and the log writer.
#[derive(Clone, Debug)]
pub(crate) struct Redactor {
    /// Extra secret key words, normalized like keys are.
    keys: Vec<Box<[u8]>>,
    patterns: Vec<RedactPattern>,
    /// Bytes a rule can be triggered at.
    starts: [bool; 256],
    /// First bytes of the embedder's patterns.
    custom_starts: [bool; 256],
}

impl Default for Redactor {
    fn default() -> Self {
        DEFAULT.clone()
    }
}

/// The built-in rules alone.
static DEFAULT: Redactor = Redactor {
    keys: Vec::new(),
    patterns: Vec::new(),
    starts: BUILTIN_STARTS,
    custom_starts: [false; 256],
};

/// The bytes a built-in rule can be triggered at.
const BUILTIN_STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b"gesxABb-:=";
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

impl Redactor {
    /// The built-in rules alone.
    pub(crate) fn builtin() -> &'static Redactor {
        &DEFAULT
    }

    /// Whether a field with this key holds a secret.
    pub(crate) fn is_secret_key(&self, key: &str) -> bool {
        let mut buf = [0u8; 128];
        let long;
        let k: &[u8] = if key.len() <= buf.len() {
            let mut len = 0;
            for b in key
                .bytes()
                .filter(|b| !matches!(b, b'_' | b'-' | b'.' | b' '))
            {
                buf[len] = b.to_ascii_lowercase();
                len += 1;
            }
            &buf[..len]
        } else {
            // No real key is this long; rare enough to allocate.
            long = normalize(key);
            &long
        };
        builtin_secret_key(k) || self.keys.iter().any(|w| contains(k, w))
    }

    /// `s` with every credential replaced by [`REDACTED`]; borrowed when
    /// there is none. Matches are taken left to right and do not overlap.
    pub(crate) fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let bytes = s.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !self.starts[usize::from(b)] || !self.may_match_at(bytes, i) {
                i += 1;
                continue;
            }
            match self.match_at(bytes, i) {
                Some((start, end)) => {
                    let end = extend_over_next(bytes, start, end);
                    // Every rule starts and ends a match at an ASCII byte
                    // or the end of `s`: both are char boundaries.
                    debug_assert!(copied <= i && i <= start && start < end);
                    let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                    if start > i {
                        // The bytes between the trigger and the span (the
                        // user of `https://user:pass@`, which may itself be
                        // a token) are scanned on their own. Such a region
                        // holds no `/`, so this nests at most once more.
                        o.push_str(&s[copied..=i]);
                        o.push_str(&self.redact_str(&s[i + 1..start]));
                    } else {
                        o.push_str(&s[copied..start]);
                    }
                    o.push_str(REDACTED);
                    copied = end;
                    i = end;
                }
                None => i += 1,
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

    /// A cheap look at `s[i]` and its neighbours before the rules: most
    /// trigger bytes are letters inside words (`e`, `s`) that no rule can
    /// start at.
    #[inline]
    fn may_match_at(&self, s: &[u8], i: usize) -> bool {
        let after_letter = i > 0 && s[i - 1].is_ascii_alphabetic();
        let next = s.get(i + 1).copied().unwrap_or(0);
        let builtin = match s[i] {
            b'e' | b's' | b'A' | b'B' | b'b' => !after_letter,
            b'g' => matches!(next, b'h' | b'i' | b'l'),
            b'x' => next == b'o',
            b'-' => next == b'-',
            _ => true,
        };
        builtin || self.custom_starts[usize::from(s[i])]
    }

    /// The span to replace for a rule triggered at `s[i]`, which may start
    /// after `i` (the value of a `key=value`, the password of a URL).
    fn match_at(&self, s: &[u8], i: usize) -> Option<(usize, usize)> {
        let at = &s[i..];
        let after_letter = i > 0 && s[i - 1].is_ascii_alphabetic();
        let whole = |len: usize| (i, i + len);
        let builtin = match s[i] {
            b'g' => github_len(at).or_else(|| gitlab_len(at)).map(whole),
            b'e' if !after_letter => jwt_len(at).map(whole),
            b's' if !after_letter => openai_len(at).map(whole),
            b'x' => slack_len(at).map(whole),
            b'A' if !after_letter => aws_key_id_len(at).map(whole),
            b'B' | b'b' if !after_letter => bearer(at).map(|(a, b)| (i + a, i + b)),
            b'-' => pem_len(at).map(whole),
            b':' => url_password(s, i).or_else(|| self.key_value(s, i)),
            b'=' => self.key_value(s, i).or_else(|| aws_secret(s, i)),
            _ => None,
        };
        builtin.or_else(|| {
            self.patterns
                .iter()
                .find_map(|p| p.match_len(at))
                .map(whole)
        })
    }

    /// The value after `key=` / `key:` (at `s[t]`) when the key names a
    /// secret: quoted (to the closing quote) or bare (to whitespace or
    /// `& , ; " ' < > ) ] }`). `Authorization: Bearer x` keeps its scheme.
    fn key_value(&self, s: &[u8], t: usize) -> Option<(usize, usize)> {
        let mut end = t;
        while end > 0 && t - end < 4 && matches!(s[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        if end > 0 && matches!(s[end - 1], b'"' | b'\'') {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && end - start < 128 && is_key_char(s[start - 1]) {
            start -= 1;
        }
        if start == end {
            return None;
        }
        // Key characters are ASCII.
        let key = std::str::from_utf8(&s[start..end]).ok()?;
        if !self.is_secret_key(key) {
            return None;
        }
        let mut v = t + 1;
        while v < s.len() && v - t <= 4 && matches!(s[v], b' ' | b'\t') {
            v += 1;
        }
        let quote = s.get(v).copied().filter(|&q| q == b'"' || q == b'\'');
        if quote.is_some() {
            v += 1;
        }
        if s[v..].starts_with(REDACTED.as_bytes()) {
            return None;
        }
        let vend = match quote {
            Some(q) => {
                let mut j = v;
                while j < s.len() && s[j] != q {
                    j += if s[j] == b'\\' { 2 } else { 1 };
                }
                j.min(s.len())
            }
            None => v + count(&s[v..], |b| !is_value_end(b)),
        };
        if vend == v {
            return None;
        }
        if quote.is_none() && s.get(vend) == Some(&b' ') {
            // `Bearer xyz`: keep the scheme, redact what follows it. A
            // value merely ending like a scheme (`x_token xyz`) goes whole,
            // with what follows.
            let word = &s[v..vend];
            let scheme = AUTH_SCHEMES.iter().find(|w| ends_with_ignore_case(word, w));
            if let Some(scheme) = scheme {
                let cred = vend + 1;
                let cend = cred + count(&s[cred..], |b| !is_value_end(b));
                if word.len() > scheme.len() {
                    return Some((v, cend));
                }
                if s[cred..].starts_with(REDACTED.as_bytes()) {
                    return None;
                }
                return (cend > cred).then_some((cred, cend));
            }
        }
        Some((v, vend))
    }

    /// Redacts a progress event in place: ids, payload strings, nested
    /// metadata. Allocates only when something is redacted; skips the ids
    /// in `seen`.
    pub(crate) fn redact_event(&self, event: &mut ProgressEvent, seen: &mut CleanIds) {
        seen.redact(self, &mut event.work_order_id);
        seen.redact(self, &mut event.run_id);
        seen.redact(self, &mut event.correlation_id);
        if let Some(metadata) = &mut event.metadata {
            self.redact_metadata(metadata);
        }
        self.redact_kind(&mut event.kind);
    }

    /// Redacts the strings of an event payload in place.
    pub(crate) fn redact_kind(&self, kind: &mut EventKind) {
        match kind {
            EventKind::RunStarted { task_spec } => self.redact_string(&mut task_spec.goal),
            EventKind::RunCompleted { metrics, .. } => {
                if let Some(agent) = &mut metrics.agent_metrics {
                    self.redact_json(agent);
                }
            }
            EventKind::RunCanceled { reason } => self.redact_string(reason),
            EventKind::RunFailed { error } => self.redact_string(error),
            EventKind::IterationStarted { feedback, .. } => {
                if let Some(feedback) = feedback {
                    self.redact_string(feedback);
                }
            }
            EventKind::IterationCompleted { gate_results, .. } => {
                for gate in gate_results {
                    self.redact_string(&mut gate.name);
                }
            }
            EventKind::GateChecked { gate, .. } => self.redact_string(gate),
            EventKind::DeliveryCompleted {
                pr_url, ci_status, ..
            } => {
                for s in [pr_url, ci_status].into_iter().flatten() {
                    self.redact_string(s);
                }
            }
            EventKind::PhaseStarted { .. }
            | EventKind::PhaseCompleted { .. }
            | EventKind::DeliveryStarted => {}
        }
    }

    pub(crate) fn redact_string(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.redact_str(s) {
            *s = clean;
        }
    }

    pub(crate) fn redact_arc(&self, s: &mut Arc<str>) {
        if let Cow::Owned(clean) = self.redact_str(s) {
            *s = Arc::from(clean);
        }
    }

    /// Metadata is shared with the caller: copied only when it changes.
    pub(crate) fn redact_metadata(&self, metadata: &mut Arc<Metadata>) {
        if self.map_is_clean(metadata, 0) {
            return;
        }
        self.redact_map(Arc::make_mut(metadata), 0);
    }

    /// Redacts nested data in place: secret keys at any depth, credentials
    /// in any string, and anything deeper than [`MAX_DEPTH`].
    pub(crate) fn redact_json(&self, value: &mut serde_json::Value) {
        self.redact_json_at(value, 0);
    }

    fn redact_json_at(&self, value: &mut serde_json::Value, depth: usize) {
        use serde_json::Value;
        if depth >= MAX_DEPTH && matches!(value, Value::Array(_) | Value::Object(_)) {
            *value = Value::String(TOO_DEEP.to_owned());
            return;
        }
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => {
                if let [Value::String(key), v] = items.as_mut_slice()
                    && self.is_secret_key(key)
                {
                    // A `["password", "x"]` pair.
                    if !is_redacted(v) {
                        *v = Value::String(REDACTED.to_owned());
                    }
                    return;
                }
                items
                    .iter_mut()
                    .for_each(|v| self.redact_json_at(v, depth + 1));
            }
            Value::Object(map) => self.redact_map(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn redact_map(&self, map: &mut Metadata, depth: usize) {
        for (key, v) in map.iter_mut() {
            if self.is_secret_key(key) {
                if !is_redacted(v) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                }
            } else {
                self.redact_json_at(v, depth + 1);
            }
        }
    }

    /// Whether [`redact_json_at`](Self::redact_json_at) would leave `value`
    /// as it is; allocates nothing.
    fn json_is_clean(&self, value: &serde_json::Value, depth: usize) -> bool {
        use serde_json::Value;
        if depth >= MAX_DEPTH && matches!(value, Value::Array(_) | Value::Object(_)) {
            return false;
        }
        match value {
            Value::String(s) => matches!(self.redact_str(s), Cow::Borrowed(_)),
            Value::Array(items) => {
                if let [Value::String(key), v] = items.as_slice()
                    && self.is_secret_key(key)
                {
                    return is_redacted(v);
                }
                items.iter().all(|v| self.json_is_clean(v, depth + 1))
            }
            Value::Object(map) => self.map_is_clean(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => true,
        }
    }

    fn map_is_clean(&self, map: &Metadata, depth: usize) -> bool {
        map.iter().all(|(key, v)| {
            if self.is_secret_key(key) {
                is_redacted(v)
            } else {
                self.json_is_clean(v, depth + 1)
            }
        })
    }
}

fn is_redacted(v: &serde_json::Value) -> bool {
    v.as_str() == Some(REDACTED)
}

#[cfg(test)]
mod tests;
