//! The built-in rules for keys that name a secret (`password`,
//! `apiKey`, `refresh_token`, …) and the counts that merely look like one
//! (`inputTokens`, `maxTokens`).

use super::shapes::contains;

/// Lowercase ASCII without `_ - . space`.
pub(super) fn normalize(key: &str) -> Vec<u8> {
    key.bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.' | b' '))
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// Secret words a normalized key may contain anywhere.
const SECRET_WORDS: [&[u8]; 18] = [
    b"password",
    b"passwd",
    b"passphrase",
    b"secret",
    b"apikey",
    b"authorization",
    b"cookie",
    b"credential",
    b"privatekey",
    b"privkey",
    b"sshkey",
    b"clientkey",
    b"accesskey",
    b"accountkey",
    b"signingkey",
    b"signature",
    b"sessionid",
    b"sessionkey",
];

/// Words that make a key ending in `tokens` a count, not a secret.
const COUNT_WORDS: [&[u8]; 19] = [
    b"input",
    b"output",
    b"max",
    b"min",
    b"total",
    b"prompt",
    b"completion",
    b"cache",
    b"reasoning",
    b"count",
    b"num",
    b"used",
    b"remaining",
    b"limit",
    b"context",
    b"budget",
    b"estimated",
    b"generated",
    b"billed",
];

/// Whether a normalized key names a secret by the built-in rules.
pub(super) fn builtin_secret_key(k: &[u8]) -> bool {
    if SECRET_WORDS.iter().any(|w| contains(k, w)) {
        return true;
    }
    // `sig`: the signature of an Azure shared access signature URL.
    if k.ends_with(b"token") || k.ends_with(b"pwd") || k == b"session" || k == b"sig" {
        return true;
    }
    if let Some(stem) = k.strip_suffix(b"tokens") {
        // `tokens`, `refreshTokens`; not `inputTokens`, `maxTokens`.
        return !COUNT_WORDS.iter().any(|w| contains(stem, w));
    }
    if let Some(rest) = k.strip_prefix(b"token") {
        // `token_value`; not `tokenCount`, `tokensIn`.
        return matches!(
            rest,
            b"value" | b"val" | b"string" | b"str" | b"data" | b"raw" | b"text"
        );
    }
    false
}

/// Words that, ending a normalized flag name, say where a secret is rather
/// than what it is: `--password-file`, `--token-stdin`, `--secret-name`.
const LOCATION_WORDS: [&[u8]; 8] = [
    b"file", b"path", b"stdin", b"env", b"fd", b"dir", b"name", b"prompt",
];

/// Whether a normalized flag name names where a secret is, not the secret.
pub(super) fn is_secret_location(k: &[u8]) -> bool {
    LOCATION_WORDS.iter().any(|w| k.ends_with(w))
}
