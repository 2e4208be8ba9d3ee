//! The shapes of credentials inside free text: each recognizer answers
//! whether (and how far) the bytes at a position look like one kind of
//! secret. Kept apart from the scanner in `mod.rs`, which decides where to
//! look and what to replace.

use super::REDACTED;

/// Authorization schemes whose credential follows after a space.
pub(super) const AUTH_SCHEMES: [&[u8]; 6] = [
    b"bearer",
    b"basic",
    b"token",
    b"digest",
    b"negotiate",
    b"apikey",
];

pub(super) fn count(s: &[u8], f: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|&&b| f(b)).count()
}

/// The longest body the rules with a shape check beyond length (`sk-`,
/// `xox?-`, a JWT's header) look at. A failed shape check is retried at
/// every later trigger inside the same run of characters (`sk-sk-sk-…`),
/// so the run must be bounded to keep the scan linear (at most this many
/// bytes looked at per trigger); real tokens are shorter.
const MAX_SHAPED_BODY: usize = 256;

/// Like [`count`], but `None` past [`MAX_SHAPED_BODY`].
fn count_bounded(s: &[u8], f: impl Fn(u8) -> bool) -> Option<usize> {
    let n = s
        .iter()
        .take(MAX_SHAPED_BODY + 1)
        .take_while(|&&b| f(b))
        .count();
    (n <= MAX_SHAPED_BODY).then_some(n)
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return false;
    };
    haystack
        .windows(needle.len())
        .any(|w| w[0] == first && &w[1..] == rest)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub(super) fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

pub(super) fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Where a bare value ends.
pub(super) fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'&' | b',' | b';' | b'"' | b'\'' | b'<' | b'>' | b')' | b']' | b'}'
        )
}

/// `ghp_ gho_ ghu_ ghs_ ghr_` + 36 or more letters and digits, or
/// `github_pat_` + 22 or more word characters.
pub(super) fn github_len(s: &[u8]) -> Option<usize> {
    const GITHUB: [&[u8]; 5] = [b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"];
    if GITHUB.iter().any(|p| s.starts_with(p)) {
        let body = count(&s[4..], |b| b.is_ascii_alphanumeric());
        return (body >= 36).then_some(4 + body);
    }
    let rest = s.strip_prefix(b"github_pat_")?;
    let body = count(rest, is_word);
    (body >= 22).then_some(11 + body)
}

/// `glpat-` + 20 or more base64url characters (GitLab).
pub(super) fn gitlab_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"glpat-")?;
    let body = count(rest, is_base64url);
    (body >= 20).then_some(6 + body)
}

/// `sk-` + 20 or more base64url characters with a letter and a digit
/// (OpenAI, Anthropic: `sk-proj-…`, `sk-ant-…`).
pub(super) fn openai_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"sk-")?;
    let body = &rest[..count_bounded(rest, is_base64url)?];
    let shaped = body.len() >= 20
        && body.iter().any(u8::is_ascii_digit)
        && body.iter().any(u8::is_ascii_alphabetic);
    shaped.then_some(3 + body.len())
}

/// `xoxb- xoxp- xoxa- xoxr- xoxs-` + 10 or more of `A-Z a-z 0-9 -` with a
/// digit (Slack).
pub(super) fn slack_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"xox")?;
    let (&kind, rest) = rest.split_first()?;
    let rest = rest
        .strip_prefix(b"-")
        .filter(|_| b"bpars".contains(&kind))?;
    let body = &rest[..count_bounded(rest, |b| b.is_ascii_alphanumeric() || b == b'-')?];
    (body.len() >= 10 && body.iter().any(u8::is_ascii_digit)).then_some(5 + body.len())
}

/// `sk_live_ sk_test_ rk_live_ rk_test_` + 16 or more letters and digits
/// (Stripe secret and restricted keys).
pub(super) fn stripe_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"sk_").or_else(|| s.strip_prefix(b"rk_"))?;
    let rest = rest
        .strip_prefix(b"live_")
        .or_else(|| rest.strip_prefix(b"test_"))?;
    let body = count(rest, |b| b.is_ascii_alphanumeric());
    (body >= 16).then_some(8 + body)
}

/// `AIza` + 35 or more base64url characters (a Google API key).
pub(super) fn google_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"AIza")?;
    let body = count(rest, is_base64url);
    (body >= 35).then_some(4 + body)
}

/// `npm_` + 36 or more letters and digits (an npm access token).
pub(super) fn npm_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"npm_")?;
    let body = count(rest, |b| b.is_ascii_alphanumeric());
    (body >= 36).then_some(4 + body)
}

/// `SG.` + 16 or more base64url characters + `.` + 16 or more (a SendGrid
/// API key: 22 and 43 in practice).
pub(super) fn sendgrid_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"SG.")?;
    let id = count(rest, is_base64url);
    let secret = rest[id..].strip_prefix(b".")?;
    let body = count(secret, is_base64url);
    (id >= 16 && body >= 16).then_some(3 + id + 1 + body)
}

/// `hvs.` `hvb.` `hvr.` + 24 or more base64url characters (a HashiCorp
/// Vault service, batch or recovery token).
pub(super) fn vault_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"hv")?;
    let (&kind, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b".").filter(|_| b"sbr".contains(&kind))?;
    let body = count(rest, is_base64url);
    (body >= 24).then_some(4 + body)
}

/// A Slack webhook's path after `/`: `T` + 8 or more of `A-Z 0-9`, `/`, an
/// upper-case letter + 8 or more of `A-Z 0-9`, `/`, then 16 or more of
/// `A-Z a-z 0-9 /` (the secret, and a workflow's further segments).
pub(super) fn slack_webhook_len(s: &[u8]) -> Option<usize> {
    let id = |s: &[u8]| count(s, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let team = s.strip_prefix(b"T")?;
    let team_len = id(team);
    let rest = team[team_len..].strip_prefix(b"/")?;
    let hook_len = id(rest);
    let secret = rest[hook_len..].strip_prefix(b"/")?;
    let secret_len = count(secret, |b| b.is_ascii_alphanumeric() || b == b'/');
    let shaped = team_len >= 8 && hook_len >= 9 && rest[0].is_ascii_uppercase() && secret_len >= 16;
    shaped.then_some(1 + team_len + 1 + hook_len + 1 + secret_len)
}

/// `AKIA` / `ASIA` + exactly 16 of `A-Z 0-9` (an AWS access key id).
pub(super) fn aws_key_id_len(s: &[u8]) -> Option<usize> {
    if !(s.starts_with(b"AKIA") || s.starts_with(b"ASIA")) {
        return None;
    }
    let body = count(&s[4..], |b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let next = s.get(4 + body).copied().unwrap_or(b' ');
    (body == 16 && !next.is_ascii_alphanumeric()).then_some(20)
}

/// `=` + exactly 40 of `A-Z a-z 0-9 + /` with upper and lower case and a
/// digit (an AWS secret access key; a hex SHA has no upper case).
pub(super) fn aws_secret(s: &[u8], t: usize) -> Option<(usize, usize)> {
    let v = t + 1;
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let len = count(&s[v..], is_b64);
    let body = &s[v..v + len];
    let shaped = len == 40
        && s.get(v + len) != Some(&b'=')
        && body.iter().any(u8::is_ascii_uppercase)
        && body.iter().any(u8::is_ascii_lowercase)
        && body.iter().any(u8::is_ascii_digit);
    shaped.then_some((v, v + len))
}

/// A JWT: three base64url segments joined by dots, the first two at least
/// a few characters long (the signature may be empty for `alg: none`).
pub(super) fn jwt_len(s: &[u8]) -> Option<usize> {
    if !s.starts_with(b"eyJ") {
        return None;
    }
    let header = count_bounded(s, is_base64url)?;
    let rest = s[header..].strip_prefix(b".")?;
    let payload = count(rest, is_base64url);
    let rest = rest[payload..].strip_prefix(b".")?;
    let signature = count(rest, is_base64url);
    (header >= 10 && payload >= 4).then_some(header + payload + signature + 2)
}

/// Whether `s[i..]` starts with the escape `%` + `hex` (either case).
pub(super) fn is_escape(s: &[u8], i: usize, hex: &[u8; 2]) -> bool {
    s.len() >= i + 3 && s[i] == b'%' && s[i + 1..i + 3].eq_ignore_ascii_case(hex)
}

/// The password of a URL-encoded `scheme%3A%2F%2Fuser%3Apassword%40host`,
/// triggered at the `%` of `%3A%2F%2F`.
pub(super) fn encoded_url_password(s: &[u8], t: usize) -> Option<(usize, usize)> {
    if !(is_escape(s, t, b"3a") && is_escape(s, t + 3, b"2f") && is_escape(s, t + 6, b"2f")) {
        return None;
    }
    let authority_start = t + 9;
    // The authority ends at an encoded `/ ? #` or anything a URL cannot hold.
    let mut end = authority_start;
    while end < s.len() {
        let b = s[end];
        if b.is_ascii_whitespace()
            || matches!(b, b'/' | b'?' | b'#' | b'&' | b'"' | b'\'' | b'<' | b'>')
        {
            break;
        }
        if is_escape(s, end, b"2f") || is_escape(s, end, b"3f") || is_escape(s, end, b"23") {
            break;
        }
        end += 1;
    }
    let at = (authority_start..end)
        .rev()
        .find(|&j| is_escape(s, j, b"40"))?;
    let colon = (authority_start..at).find(|&j| is_escape(s, j, b"3a"))?;
    let (start, end) = (colon + 3, at);
    let password = &s[start..end];
    (!password.is_empty() && password != REDACTED.as_bytes()).then_some((start, end))
}

/// `Bearer <credential>` (any case): the credential's span, when it looks
/// like one: 8 or more of `A-Z a-z 0-9 . _ ~ + / = -` with a digit, a
/// symbol or an upper-case letter after the first (so `Bearer
/// authentication` stays).
pub(super) fn bearer(s: &[u8]) -> Option<(usize, usize)> {
    if s.len() < 7 || !s[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = 7 + count(&s[7..], |b| b == b' ');
    let is_cred = |b: u8| b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b);
    let cred = &s[start..start + count(&s[start..], is_cred)];
    let shaped = cred.len() >= 8
        && (cred.iter().any(|b| !b.is_ascii_alphabetic())
            || cred[1..].iter().any(u8::is_ascii_uppercase));
    shaped.then_some((start, start + cred.len()))
}

/// A PEM private key block, `-----BEGIN … PRIVATE KEY-----` to the matching
/// `-----END … -----`, whole; to the end of the string when it has no end
/// (a cut block is still a secret).
pub(super) fn pem_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"-----BEGIN ")?;
    let label_len = rest.iter().take(64).position(|&b| b == b'-')?;
    let label = &rest[..label_len];
    if !contains(label, b"PRIVATE KEY") || !rest[label_len..].starts_with(b"-----") {
        return None;
    }
    let body = 11 + label_len + 5;
    let Some(end) = find(&s[body..], b"-----END ") else {
        return Some(s.len());
    };
    let after_end = body + end + 9;
    match find(&s[after_end..], b"-----") {
        Some(close) => Some(after_end + close + 5),
        None => Some(s.len()),
    }
}

/// Where a PEM block starts whose header lies between a rule's trigger and
/// the span it matched: a flag named `--secret-----BEGIN … PRIVATE KEY-----`
/// takes the label's first word for its value, and the block's body would
/// be left readable after it. The match then starts at the header.
pub(super) fn pem_before(s: &[u8], trigger: usize, start: usize) -> Option<usize> {
    let mut from = trigger;
    while let Some(p) = find(&s[from..start], b"-----BEGIN") {
        let p = from + p;
        if pem_len(&s[p..]).is_some() {
            return Some(p);
        }
        from = p + 1;
    }
    None
}

/// A match whose characters run into the start of another credential
/// would leave that credential's rest readable after it: a match running
/// into a PEM header (`token=-----BEGIN …`, a base64url body followed by
/// `-----BEGIN`) extends to the end of the block, one ending in `bearer `
/// over the credential that follows.
pub(super) fn extend_over_next(s: &[u8], start: usize, end: usize) -> usize {
    let mut end = end;
    // Where the search for a PEM header goes on from: a header found in an
    // extension may start up to its length before the old end.
    let mut from = start;
    loop {
        let mut next = extend_over_pem(s, from, end);
        if ends_with_ignore_case(&s[start..next], b"bearer")
            && let Some((_, cred_end)) = bearer(&s[next - 6..])
        {
            next = next - 6 + cred_end;
        }
        if next == end {
            return end;
        }
        from = end.saturating_sub(b"-----BEGIN".len()).max(start);
        end = next;
    }
}

pub(super) fn ends_with_ignore_case(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `end` extended over every PEM block whose header starts in `from..end`.
fn extend_over_pem(s: &[u8], from: usize, end: usize) -> usize {
    let mut from = from;
    let mut end = end;
    while let Some(p) = find(&s[from..end], b"-----BEGIN") {
        let p = from + p;
        match pem_len(&s[p..]) {
            // Blocks do not nest: go on after this one, so each byte is
            // searched once.
            Some(len) => {
                end = end.max(p + len);
                from = p + len;
            }
            None => from = p + 1,
        }
    }
    end
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The password of `scheme://user:password@host`, triggered at the `:`
/// of `://`. A user alone (`ssh://git@host`) is kept.
pub(super) fn url_password(s: &[u8], t: usize) -> Option<(usize, usize)> {
    if !s[t..].starts_with(b"://") {
        return None;
    }
    let authority_start = t + 3;
    let authority = &s[authority_start..];
    let len = count(authority, |b| {
        !b.is_ascii_whitespace() && !matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>')
    });
    let at = authority[..len].iter().rposition(|&b| b == b'@')?;
    let colon = authority[..at].iter().position(|&b| b == b':')?;
    let (start, end) = (authority_start + colon + 1, authority_start + at);
    let password = &s[start..end];
    (!password.is_empty() && password != REDACTED.as_bytes()).then_some((start, end))
}
