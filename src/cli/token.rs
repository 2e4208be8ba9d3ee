//! Where `demo` and `watch` get the server's token: `--token`,
//! `--token-file PATH` or the `AGENTGATE_TOKEN` environment variable; and
//! where a receiver's token comes from (`--push-token-file PATH` or
//! `AGENTGATE_PUSH_TOKEN`, [`file_or_env`]).
//!
//! `--token` is the least private (other local users see a process's
//! arguments), so the help points at the other two. `--token` and
//! `--token-file` together are refused; either wins over the environment,
//! with a note on stderr that the environment was ignored. The token itself
//! is never printed.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use clap::Args;

use super::Usage;

/// The environment variable holding the token.
pub(crate) const TOKEN_ENV: &str = "AGENTGATE_TOKEN";

/// The most a token file's first line may hold, in bytes.
const MAX_TOKEN_LINE: u64 = 4096;

#[derive(Debug, Args, Default)]
pub(crate) struct TokenArgs {
    /// The bearer token. Other local users can read a process's arguments:
    /// prefer --token-file or the AGENTGATE_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the token from the first line of PATH (surrounding whitespace
    /// trimmed).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
}

/// Where the token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    File,
    Env,
}

/// A token and its source.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) source: Source,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value, not even in a debug print.
        f.debug_struct("Token")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TokenArgs {
    /// The token from the flags or the environment, if any. A note for
    /// stderr comes with it when a flag overrode the environment.
    pub(crate) fn resolve(&self) -> Result<(Option<Token>, Option<String>), Usage> {
        self.resolve_with(std::env::var_os(TOKEN_ENV))
    }

    fn resolve_with(
        &self,
        env: Option<OsString>,
    ) -> Result<(Option<Token>, Option<String>), Usage> {
        let env_set = env.is_some();
        let (value, source, flag) = match (&self.token, &self.token_file) {
            // clap refuses both; kept total for direct callers.
            (Some(_), Some(_)) => {
                return Err(Usage(
                    "give the token with --token or --token-file, not both".into(),
                ));
            }
            (Some(token), None) => (token.clone(), Source::Flag, "--token"),
            (None, Some(path)) => (read_token_file(path)?, Source::File, "--token-file"),
            (None, None) => {
                let Some(env) = env else {
                    return Ok((None, None));
                };
                (from_env(TOKEN_ENV, env)?, Source::Env, TOKEN_ENV)
            }
        };
        check(&value, flag)?;
        let note = (source != Source::Env && env_set)
            .then(|| format!("{TOKEN_ENV} is ignored: {flag} was given"));
        Ok((Some(Token { value, source }), note))
    }
}

/// A token for another receiver than our server (a Pushgateway behind a
/// proxy): from the file given with `file_flag`, or else the environment
/// variable `env_name`; with a note for stderr when the file overrode the
/// environment. No flag takes the token itself: other local users can read
/// a process's arguments.
pub(crate) fn file_or_env(
    file: Option<&Path>,
    file_flag: &str,
    env_name: &str,
) -> Result<(Option<Token>, Option<String>), Usage> {
    file_or_env_with(file, file_flag, env_name, std::env::var_os(env_name))
}

fn file_or_env_with(
    file: Option<&Path>,
    file_flag: &str,
    env_name: &str,
    env: Option<OsString>,
) -> Result<(Option<Token>, Option<String>), Usage> {
    let env_set = env.is_some();
    let (value, source, from) = match (file, env) {
        (Some(path), _) => (read_token_file(path)?, Source::File, file_flag),
        (None, Some(env)) => (from_env(env_name, env)?, Source::Env, env_name),
        (None, None) => return Ok((None, None)),
    };
    check(&value, from)?;
    let note = (source == Source::File && env_set)
        .then(|| format!("{env_name} is ignored: {file_flag} was given"));
    Ok((Some(Token { value, source }), note))
}

/// The token in the environment variable `name`, trimmed.
fn from_env(name: &str, value: OsString) -> Result<String, Usage> {
    let value = value
        .into_string()
        .map_err(|_| Usage(format!("{name} is not valid UTF-8")))?;
    if value.trim().is_empty() {
        return Err(Usage(format!(
            "{name} is set but empty: unset it or give it the token"
        )));
    }
    Ok(value.trim().to_owned())
}

/// A token the server and an `Authorization` header can carry.
fn check(value: &str, from: &str) -> Result<(), Usage> {
    if value.is_empty() {
        return Err(Usage(format!("the token from {from} is empty")));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Usage(format!(
            "the token from {from} holds whitespace or control characters"
        )));
    }
    Ok(())
}

/// The first line of `path`, trimmed.
fn read_token_file(path: &Path) -> Result<String, Usage> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Usage(format!("cannot read the token file {shown}: {e}")))?;
    let mut line = Vec::new();
    BufReader::new(file.take(MAX_TOKEN_LINE))
        .read_until(b'\n', &mut line)
        .map_err(|e| Usage(format!("cannot read the token file {shown}: {e}")))?;
    let line = String::from_utf8(line)
        .map_err(|_| Usage(format!("the token file {shown} is not UTF-8 text")))?;
    let token = line.trim();
    if token.is_empty() {
        return Err(Usage(format!(
            "the token file {shown} is empty: its first line must hold the token"
        )));
    }
    if !line.ends_with('\n') && line.len() as u64 >= MAX_TOKEN_LINE {
        return Err(Usage(format!(
            "the token file {shown}: the first line is longer than {MAX_TOKEN_LINE} bytes"
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, file: Option<&Path>) -> TokenArgs {
        TokenArgs {
            token: token.map(str::to_owned),
            token_file: file.map(Path::to_path_buf),
        }
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("agentgate-token-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("temp file");
        path
    }

    #[test]
    fn a_flag_wins_over_the_environment_with_a_note_that_does_not_show_the_token() {
        let (token, note) = args(Some("flag-t"), None)
            .resolve_with(Some("env-t".into()))
            .unwrap();
        let token = token.unwrap();
        assert_eq!(
            (token.value.as_str(), token.source),
            ("flag-t", Source::Flag)
        );
        let note = note.unwrap();
        assert!(note.contains("AGENTGATE_TOKEN is ignored"), "{note}");
        assert!(!note.contains("env-t") && !note.contains("flag-t"));
        assert!(!format!("{token:?}").contains("flag-t"));

        let (token, note) = args(None, None)
            .resolve_with(Some(" env-t\n".into()))
            .unwrap();
        assert_eq!(token.unwrap().value, "env-t");
        assert_eq!(note, None);
        assert_eq!(args(None, None).resolve_with(None).unwrap().0, None);
    }

    #[test]
    fn a_receivers_token_comes_from_its_file_or_else_its_own_environment_variable() {
        let none = file_or_env_with(None, "--push-token-file", "AGENTGATE_PUSH_TOKEN", None);
        assert_eq!(none.unwrap(), (None, None));
        let (token, note) = file_or_env_with(
            None,
            "--push-token-file",
            "AGENTGATE_PUSH_TOKEN",
            Some(" env-t \n".into()),
        )
        .unwrap();
        let token = token.unwrap();
        assert_eq!((token.value.as_str(), token.source), ("env-t", Source::Env));
        assert_eq!(note, None);

        let file = temp_file("push", "file-t\n");
        let (token, note) = file_or_env_with(
            Some(&file),
            "--push-token-file",
            "AGENTGATE_PUSH_TOKEN",
            Some("env-t".into()),
        )
        .unwrap();
        assert_eq!(token.unwrap().value, "file-t");
        let note = note.unwrap();
        assert!(note.contains("AGENTGATE_PUSH_TOKEN is ignored"), "{note}");
        assert!(!note.contains("env-t") && !note.contains("file-t"));
        let err =
            file_or_env_with(None, "--f", "AGENTGATE_PUSH_TOKEN", Some("a b".into())).unwrap_err();
        assert!(
            err.0.contains("AGENTGATE_PUSH_TOKEN holds whitespace"),
            "{}",
            err.0
        );
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn a_token_file_gives_its_first_line_trimmed_and_bad_files_are_explained() {
        let good = temp_file("good", "  s3cret \r\nsecond line\n");
        let (token, _) = args(None, Some(&good)).resolve_with(None).unwrap();
        assert_eq!(token.unwrap().value, "s3cret");

        let empty = temp_file("empty", "\n\nlater");
        let err = args(None, Some(&empty)).resolve_with(None).unwrap_err();
        assert!(err.0.contains("is empty"), "{}", err.0);

        let missing = std::env::temp_dir().join("agentgate-no-such-token-file");
        let err = args(None, Some(&missing)).resolve_with(None).unwrap_err();
        assert!(err.0.contains("cannot read the token file"), "{}", err.0);

        let err = args(None, None).resolve_with(Some("".into())).unwrap_err();
        assert!(err.0.contains("set but empty"), "{}", err.0);
        let err = args(Some("a b"), None).resolve_with(None).unwrap_err();
        assert!(err.0.contains("whitespace"), "{}", err.0);
        for path in [good, empty] {
            let _ = std::fs::remove_file(path);
        }
    }
}
