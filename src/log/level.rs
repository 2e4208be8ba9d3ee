//! Levels and the level filter, with per-module directives as in
//! `AGENTGATE_LOG=agentgate_obs=debug,executor=warn`.

use std::fmt;
use std::str::FromStr;

/// The severity of a record, from the most verbose to the most severe.
///
/// ```
/// use agentgate_obs::logging::Level;
/// assert!(Level::Error > Level::Warn);
/// assert_eq!("WARN".parse::<Level>().unwrap(), Level::Warn);
/// assert_eq!(Level::Info.as_str(), "info");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very fine-grained diagnostics.
    Trace,
    /// Diagnostics for developers.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the program survives.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The lowercase name written in the `level` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Verbosity rank: 1 for error up to 5 for trace; a filter admits a
    /// level when its own rank is at least the level's.
    const fn verbosity(self) -> u8 {
        match self {
            Level::Error => 1,
            Level::Warn => 2,
            Level::Info => 3,
            Level::Debug => 4,
            Level::Trace => 5,
        }
    }

    /// Whether a full writer channel makes this record wait instead of
    /// being dropped: warn and error are never dropped.
    pub(crate) const fn must_wait(self) -> bool {
        matches!(self, Level::Warn | Level::Error)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is neither a level nor a valid filter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid log filter {input:?}: {reason}")]
pub struct InvalidLogFilter {
    input: String,
    reason: &'static str,
}

impl FromStr for Level {
    type Err = InvalidLogFilter;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_verbosity(s) {
            Some(v) if v > 0 => Ok(LEVELS_BY_VERBOSITY[usize::from(v) - 1]),
            _ => Err(InvalidLogFilter {
                input: s.to_owned(),
                reason: "expected trace, debug, info, warn or error",
            }),
        }
    }
}

const LEVELS_BY_VERBOSITY: [Level; 5] = [
    Level::Error,
    Level::Warn,
    Level::Info,
    Level::Debug,
    Level::Trace,
];

/// `off` is 0, `error` 1 … `trace` 5.
fn parse_verbosity(s: &str) -> Option<u8> {
    const NAMES: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let s = s.trim();
    let found = NAMES.iter().position(|n| n.eq_ignore_ascii_case(s));
    // "warning" is common enough in the wild to accept.
    let found = found.or_else(|| s.eq_ignore_ascii_case("warning").then_some(2));
    found.and_then(|v| u8::try_from(v).ok())
}

/// Which records are written: a default level and per-module overrides.
///
/// Module directives match the module itself and everything under it
/// (`executor` matches `executor` and `executor::build`, not `executors`);
/// the longest matching directive wins.
///
/// ```
/// use agentgate_obs::logging::{Level, LogFilter};
/// let filter: LogFilter = "info,agentgate_obs=debug,executor=warn".parse()?;
/// assert!(filter.enabled(Level::Debug, "agentgate_obs::pipeline"));
/// assert!(!filter.enabled(Level::Info, "executor::build"));
/// assert!(filter.enabled(Level::Info, "executors"));
/// assert!(!LogFilter::off().enabled(Level::Error, "any"));
/// # Ok::<(), agentgate_obs::logging::InvalidLogFilter>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter {
    default: u8,
    /// Longest module first, so the first match is the most specific.
    modules: Vec<(String, u8)>,
}

impl LogFilter {
    /// The environment variable read by [`Builder::start`](crate::Builder::start).
    pub const ENV: &'static str = "AGENTGATE_LOG";

    /// Nothing is written.
    pub fn off() -> Self {
        LogFilter {
            default: 0,
            modules: Vec::new(),
        }
    }

    /// Whether a record of `level` from `module` is written.
    #[inline]
    pub fn enabled(&self, level: Level, module: &str) -> bool {
        level.verbosity() <= self.verbosity_for(module)
    }

    fn verbosity_for(&self, module: &str) -> u8 {
        self.modules
            .iter()
            .find(|(prefix, _)| matches_module(prefix, module))
            .map_or(self.default, |&(_, v)| v)
    }

    /// The most verbose level any module may write, `None` when off.
    pub fn max_level(&self) -> Option<Level> {
        let max = self
            .modules
            .iter()
            .map(|&(_, v)| v)
            .fold(self.default, u8::max);
        (max > 0).then(|| LEVELS_BY_VERBOSITY[usize::from(max) - 1])
    }
}

fn matches_module(prefix: &str, module: &str) -> bool {
    module
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl Default for LogFilter {
    /// `info` everywhere.
    fn default() -> Self {
        LogFilter::from(Level::Info)
    }
}

impl From<Level> for LogFilter {
    fn from(level: Level) -> Self {
        LogFilter {
            default: level.verbosity(),
            modules: Vec::new(),
        }
    }
}

impl FromStr for LogFilter {
    type Err = InvalidLogFilter;

    /// Comma-separated directives: `level` sets the default, `module=level`
    /// one module; `off` silences. Empty directives are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidLogFilter {
            input: s.to_owned(),
            reason,
        };
        let mut filter = LogFilter::default();
        for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                None => {
                    filter.default = parse_verbosity(directive).ok_or_else(|| {
                        bad("unknown level (trace, debug, info, warn, error, off)")
                    })?;
                }
                Some((module, level)) => {
                    let module = module.trim();
                    if module.is_empty() || module.contains(char::is_whitespace) {
                        return Err(bad("a module name is empty or contains spaces"));
                    }
                    let v = parse_verbosity(level).ok_or_else(|| {
                        bad("unknown level (trace, debug, info, warn, error, off)")
                    })?;
                    filter.modules.retain(|(m, _)| m != module);
                    filter.modules.push((module.to_owned(), v));
                }
            }
        }
        filter
            .modules
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_sets_the_default() {
        let f: LogFilter = "debug".parse().unwrap();
        assert!(f.enabled(Level::Debug, "x"));
        assert!(!f.enabled(Level::Trace, "x"));
    }

    #[test]
    fn the_longest_module_directive_wins() {
        let f: LogFilter = "warn,a=debug,a::b=error".parse().unwrap();
        assert!(f.enabled(Level::Debug, "a::c"));
        assert!(!f.enabled(Level::Warn, "a::b::c"));
        assert!(!f.enabled(Level::Info, "b"));
        assert_eq!(f.max_level(), Some(Level::Debug));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!("loud".parse::<LogFilter>().is_err());
        assert!("=info".parse::<LogFilter>().is_err());
        assert!("a=loud".parse::<LogFilter>().is_err());
        assert_eq!("".parse::<LogFilter>().unwrap(), LogFilter::default());
        assert_eq!("off".parse::<LogFilter>().unwrap().max_level(), None);
    }
}
