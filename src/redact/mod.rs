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

use keys::{builtin_secret_key, is_secret_location, normalize};
use shapes::{
    AUTH_SCHEMES, aws_key_id_len, aws_secret, bearer, contains, count, encoded_url_password,
    ends_with_ignore_case, extend_over_next, github_len, gitlab_len, google_len, is_base64url,
    is_escape, is_key_char, is_value_end, jwt_len, npm_len, openai_len, pem_before, pem_len,
    sendgrid_len, slack_len, slack_webhook_len, stripe_len, url_password, vault_len,
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
        let mut first_bytes = BUILTIN_FIRST;
        let mut custom_starts = [false; 256];
        for pattern in &self.patterns {
            let Some(&first) = pattern.prefix.as_bytes().first() else {
                return Err("a redact pattern needs a non-empty prefix".into());
            };
            starts.allow_all_after(first);
            first_bytes[usize::from(first)] = true;
            custom_starts[usize::from(first)] = true;
        }
        Ok(Redactor {
            keys,
            patterns: self.patterns.clone(),
            first: first_bytes,
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
    first: [bool; 256],
    /// Byte pairs a rule can be triggered at.
    starts: Pairs,
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
    first: BUILTIN_FIRST,
    starts: BUILTIN_STARTS,
    custom_starts: [false; 256],
};

/// A set of byte pairs: a rule is only tried at a byte followed by one its
/// shapes allows (`g` before `h i l`, `s` before `k`), so common letters
/// that start a rule (`s`, `r`, `n`, `h`) cost one bit lookup at the
/// other places they occur. 8 KiB, one bit per pair.
#[derive(Clone, Debug)]
struct Pairs([u64; 1024]);

impl Pairs {
    /// Whether `b` followed by `next` (0 at the end of the text) may start
    /// a match.
    #[inline]
    fn get(&self, b: u8, next: u8) -> bool {
        self.get_const(b, next)
    }

    const fn get_const(&self, b: u8, next: u8) -> bool {
        let k = (b as usize) << 8 | next as usize;
        self.0[k >> 6] >> (k & 63) & 1 == 1
    }

    const fn set(&mut self, b: u8, next: u8) {
        let k = (b as usize) << 8 | next as usize;
        self.0[k >> 6] |= 1 << (k & 63);
    }

    /// Any byte (or the end) after `b` may start a match.
    const fn allow_all_after(&mut self, b: u8) {
        let first = (b as usize) << 2;
        let mut w = 0;
        while w < 4 {
            self.0[first + w] = u64::MAX;
            w += 1;
        }
    }
}

/// The bytes a built-in rule can be triggered at.
const BUILTIN_FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let mut next = 0;
        while next < 256 {
            if BUILTIN_STARTS.get_const(b as u8, next as u8) {
                t[b] = true;
            }
            next += 1;
        }
        b += 1;
    }
    t
};

/// The byte pairs a built-in rule can be triggered at.
const BUILTIN_STARTS: Pairs = {
    const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    // A rule's first byte and the bytes its shapes allow after it (every
    // byte for `:` and `=`, which end the key of a `key=value`).
    const RULES: [(u8, &[u8]); 14] = [
        (b'g', b"hil"),       // ghp_ gho_ …, github_pat_, glpat-
        (b'e', b"y"),         // eyJ (JWT)
        (b's', b"k"),         // sk- (OpenAI), sk_ (Stripe)
        (b'r', b"k"),         // rk_ (Stripe)
        (b'x', b"o"),         // xoxb- …
        (b'A', b"KSI"),       // AKIA ASIA (AWS), AIza (Google)
        (b'B', b"eE"),        // Bearer
        (b'b', b"eE"),        // bearer
        (b'-', b"-"),         // -----BEGIN, --password
        (b'n', b"p"),         // npm_
        (b'S', b"G"),         // SG. (SendGrid)
        (b'h', b"v"),         // hvs. (Vault)
        (b'T', UPPER_DIGITS), // a Slack webhook's team id
        (b'%', b"3"),         // %3D %3A (URL-encoded)
    ];
    let mut t = Pairs([0; 1024]);
    let mut r = 0;
    while r < RULES.len() {
        let (b, nexts) = RULES[r];
        let mut n = 0;
        while n < nexts.len() {
            t.set(b, nexts[n]);
            n += 1;
        }
        r += 1;
    }
    t.allow_all_after(b':');
    t.allow_all_after(b'=');
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
            // Most bytes start no rule: one table lookup, then the pair.
            let b = bytes[i];
            if !self.first[usize::from(b)]
                || !self.starts.get(b, bytes.get(i + 1).copied().unwrap_or(0))
                || !self.may_match_at(bytes, i)
            {
                i += 1;
                continue;
            }
            match self.match_at(bytes, i) {
                Some((start, end)) => {
                    let start = if start > i {
                        pem_before(bytes, i, start).unwrap_or(start)
                    } else {
                        start
                    };
                    let end =
                        self.extend_over_flag(bytes, start, extend_over_next(bytes, start, end));
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

    /// A match ending in a flag that names a secret (`password= --token`)
    /// is extended over the flag's argument, as a match running into any
    /// other credential is, so the argument is not left readable.
    fn extend_over_flag(&self, s: &[u8], start: usize, end: usize) -> usize {
        let span = &s[start..end];
        let Some(p) = span.windows(2).rposition(|w| w == b"--") else {
            return end;
        };
        let flag = start + p;
        if flag + 2 + count(&s[flag + 2..end], is_key_char) != end {
            return end;
        }
        match self.flag_value(s, flag) {
            Some((_, value_end)) => extend_over_next(s, start, value_end),
            None => end,
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
            b'r' => next == b'k' && !after_letter,
            b'n' => next == b'p' && !after_letter,
            b'S' => next == b'G' && !after_letter,
            b'h' => next == b'v' && !after_letter,
            b'T' => i > 0 && s[i - 1] == b'/',
            b'-' => next == b'-',
            b'%' => matches!(next, b'3'),
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
            b's' if !after_letter => openai_len(at).or_else(|| stripe_len(at)).map(whole),
            b'r' if !after_letter => stripe_len(at).map(whole),
            b'x' => slack_len(at).map(whole),
            b'A' if !after_letter => aws_key_id_len(at).or_else(|| google_len(at)).map(whole),
            b'n' if !after_letter => npm_len(at).map(whole),
            b'S' if !after_letter => sendgrid_len(at).map(whole),
            b'h' if !after_letter => vault_len(at).map(whole),
            b'T' if i > 0 && s[i - 1] == b'/' => slack_webhook_len(at).map(whole),
            b'B' | b'b' if !after_letter => bearer(at).map(|(a, b)| (i + a, i + b)),
            b'-' => pem_len(at).map(whole).or_else(|| self.flag_value(s, i)),
            b':' => url_password(s, i).or_else(|| self.key_value(s, i)),
            b'=' => self.key_value(s, i).or_else(|| aws_secret(s, i)),
            b'%' => encoded_url_password(s, i).or_else(|| self.encoded_key_value(s, i)),
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

    /// The argument after a command-line flag naming a secret
    /// (`--password x`, `--api-key "x y"`), the flag at `s[i]` (`--`). The
    /// `--password=x` form is a `key=value` pair. A flag for where a secret
    /// is rather than what (`--password-file`, `--token-stdin`), a negated
    /// or prompting flag (`--no-password`, `--ask-password`) and an
    /// argument that is itself a flag keep what follows. Short flags
    /// (`-p`) are too ambiguous to act on: `ssh -p 22`, `mkdir -p`.
    fn flag_value(&self, s: &[u8], i: usize) -> Option<(usize, usize)> {
        if i > 0
            && !matches!(
                s[i - 1],
                b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'[' | b'(' | b',' | b'='
            )
        {
            return None;
        }
        let name_start = i + 2;
        let name_len = count(&s[name_start..], is_key_char);
        if s.get(name_start + name_len) != Some(&b' ')
            || !self.is_secret_flag(&s[name_start..name_start + name_len])
        {
            return None;
        }
        let mut v = name_start + name_len;
        while v < s.len() && matches!(s[v], b' ' | b'\t') {
            v += 1;
        }
        let quote = s.get(v).copied().filter(|&q| q == b'"' || q == b'\'');
        if quote.is_some() {
            v += 1;
        }
        if v >= s.len()
            || s[v..].starts_with(REDACTED.as_bytes())
            || (quote.is_none() && s[v] == b'-')
        {
            return None;
        }
        let vend = match quote {
            Some(q) => v + count(&s[v..], |b| b != q),
            None => v + count(&s[v..], |b| !is_value_end(b)),
        };
        (vend > v).then_some((v, vend))
    }

    /// Whether a flag's name (after `--`) names a secret that its argument
    /// holds: see [`flag_value`](Self::flag_value).
    fn is_secret_flag(&self, name: &[u8]) -> bool {
        const NOT_THE_SECRET: [&[u8]; 4] = [b"no-", b"ask-", b"prompt-", b"show-"];
        if name.is_empty()
            || name.len() > 64
            || !name.iter().all(|&b| is_key_char(b))
            || NOT_THE_SECRET.iter().any(|p| name.starts_with(p))
        {
            return false;
        }
        // Key characters are ASCII.
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        self.is_secret_key(name) && !is_secret_location(&normalize(name))
    }

    /// The value of a URL-encoded `key%3Dvalue` or `key%3A%20value` (at
    /// `s[t]`, the `%` of `%3D` / `%3A`) when the key names a secret: to
    /// the next encoded `& space , ;` or quote, a `+`, or where a bare value
    /// ends. An encoded quote around the key or value is skipped.
    fn encoded_key_value(&self, s: &[u8], t: usize) -> Option<(usize, usize)> {
        if !(is_escape(s, t, b"3d") || is_escape(s, t, b"3a")) {
            return None;
        }
        let mut end = t;
        if end >= 3 && (is_escape(s, end - 3, b"22") || is_escape(s, end - 3, b"27")) {
            end -= 3;
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
        // `%26session`: an escape's hex digits before the key are not part
        // of it; `%_secret` has none.
        let after_escape = start >= 1
            && s[start - 1] == b'%'
            && key.len() > 2
            && key.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit);
        let secret = self.is_secret_key(key) || (after_escape && self.is_secret_key(&key[2..]));
        if !secret {
            return None;
        }
        let mut v = t + 3;
        while v < s.len() && (s[v] == b'+' || is_escape(s, v, b"20")) {
            v += if s[v] == b'+' { 1 } else { 3 };
        }
        let quoted = is_escape(s, v, b"22") || is_escape(s, v, b"27");
        if quoted {
            v += 3;
        }
        if s[v.min(s.len())..].starts_with(REDACTED.as_bytes()) {
            return None;
        }
        let mut vend = v;
        while vend < s.len() {
            let b = s[vend];
            let stop = if quoted {
                is_escape(s, vend, b"22") || is_escape(s, vend, b"27") || is_value_end(b)
            } else {
                is_value_end(b)
                    || b == b'+'
                    || [b"26", b"20", b"2c", b"3b", b"22", b"27"]
                        .iter()
                        .any(|hex| is_escape(s, vend, hex))
            };
            if stop {
                break;
            }
            vend += 1;
        }
        (vend > v).then_some((v, vend))
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
                // Every element is scanned, whatever its position; a secret
                // name before a value also hides the value.
                let mut i = 0;
                while i < items.len() {
                    let hides = self.hides_next(items, i);
                    self.redact_json_at(&mut items[i], depth + 1);
                    if hides {
                        if !is_redacted(&items[i + 1]) {
                            items[i + 1] = Value::String(REDACTED.to_owned());
                        }
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            Value::Object(map) => self.redact_map(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Whether `items[i]` names a secret whose value is the next element:
    /// the key of a `["Authorization", "x"]` pair (a key alone of up to 64
    /// bytes, see [`is_key_alone`]), or a flag naming a secret in an
    /// argument list (`["--password", "x"]`; the same exceptions as in
    /// text).
    fn hides_next(&self, items: &[serde_json::Value], i: usize) -> bool {
        let (Some(s), Some(next)) = (items[i].as_str(), items.get(i + 1)) else {
            return false;
        };
        if s.is_empty() || s.len() > 64 {
            return false;
        }
        if items.len() == 2 && is_key_alone(s) {
            return self.is_secret_key(s);
        }
        let value_is_a_flag = next.as_str().is_some_and(|v| v.starts_with('-'));
        s.strip_prefix("--")
            .is_some_and(|name| !value_is_a_flag && self.is_secret_flag(name.as_bytes()))
    }

    fn redact_map(&self, map: &mut Metadata, depth: usize) {
        self.redact_keys(map);
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

    /// Keys are scanned like any string: one holding a credential is
    /// renamed, and one that would then collide with another key gets a
    /// `#2`, `#3`… suffix rather than overwrite it.
    fn redact_keys(&self, map: &mut Metadata) {
        let dirty: Vec<(String, String)> = map
            .keys()
            .filter_map(|k| match self.redact_str(k) {
                Cow::Owned(clean) => Some((k.clone(), clean)),
                Cow::Borrowed(_) => None,
            })
            .collect();
        let moved: Vec<(String, serde_json::Value)> = dirty
            .into_iter()
            .filter_map(|(old, clean)| map.remove(&old).map(|v| (clean, v)))
            .collect();
        for (clean, v) in moved {
            let mut key = clean.clone();
            let mut n = 2;
            while map.contains_key(&key) {
                key = format!("{clean}#{n}");
                n += 1;
            }
            map.insert(key, v);
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
                let mut i = 0;
                while i < items.len() {
                    let hides = self.hides_next(items, i);
                    if !self.json_is_clean(&items[i], depth + 1) {
                        return false;
                    }
                    if hides {
                        if !is_redacted(&items[i + 1]) {
                            return false;
                        }
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                true
            }
            Value::Object(map) => self.map_is_clean(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => true,
        }
    }

    fn map_is_clean(&self, map: &Metadata, depth: usize) -> bool {
        map.iter().all(|(key, v)| {
            if matches!(self.redact_str(key), Cow::Owned(_)) {
                return false;
            }
            if self.is_secret_key(key) {
                is_redacted(v)
            } else {
                self.json_is_clean(v, depth + 1)
            }
        })
    }
}

/// Whether `s` reads as a key alone (`Authorization`, `X-Api-Key`,
/// `Client Secret`) rather than text that mentions one (`DB_PASSWORD=x`,
/// `mysql --password x --host db`): key characters and at most three
/// spaces.
fn is_key_alone(s: &str) -> bool {
    s.bytes().all(|b| is_key_char(b) || b == b' ') && s.bytes().filter(|&b| b == b' ').count() <= 3
}

fn is_redacted(v: &serde_json::Value) -> bool {
    v.as_str() == Some(REDACTED)
}

#[cfg(test)]
mod tests;
