//! The errors that cross modules: [`Error`], why the pipeline could not
//! start or a setting it refused, and [`MetricError`], why a metric of the
//! engine's could not be registered (public as `metrics::MetricError`).

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A thread could not be spawned.
    #[error("could not spawn the {name} thread: {source}")]
    Spawn {
        /// Which thread.
        name: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log file could not be opened for appending.
    #[error("could not open the log file {path:?}: {source}")]
    LogFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// [`Observability::install_global`](crate::Observability::install_global)
    /// was called a second time in this process; the emitter installed
    /// first stays.
    #[error(
        "a global emitter is already installed: Observability::install_global may be called once per process"
    )]
    GlobalAlreadyInstalled,
    /// [`Observability::install_metrics_recorder`](crate::Observability::install_metrics_recorder)
    /// found a `metrics` recorder installed already (ours or another); the
    /// first one stays.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[error("a metrics recorder is already installed: the metrics crate takes one per process")]
    MetricsRecorderAlreadyInstalled,
    /// The journal or log file's path names something other than a
    /// regular file (a FIFO, a device, a socket, a directory): nothing is
    /// opened, so a FIFO without a reader cannot hang `start()`.
    #[error(
        "{path:?} is a {kind}, not a regular file: the journal and the log file are only written to regular files or new paths"
    )]
    NotARegularFile {
        /// The path.
        path: std::path::PathBuf,
        /// What it names: `FIFO`, `device`, `socket`, `directory`.
        kind: &'static str,
    },
    /// The journal file could not be opened for appending.
    #[error("could not open the journal {path:?}: {source}")]
    Journal {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server could not bind its address.
    #[error("could not serve on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The URL of a receiver the metrics are sent to (a Pushgateway, a remote write
    /// receiver) is not one this crate can send to: not `http://` (a receiver behind
    /// TLS is reached through a local proxy), user info in it, no host, a
    /// bad port, or a path where a base URL is expected.
    #[error("the {target} URL {url:?} cannot be used: {reason}")]
    InvalidUrl {
        /// The receiver: `Pushgateway` or `remote write`.
        target: &'static str,
        /// The URL as given, with its user info replaced by `[REDACTED]`
        /// and the redaction rules applied: an error must not carry a
        /// password or an API key on to where it is printed.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A one-shot delivery
    /// ([`Observability::remote_write_once`](crate::Observability::remote_write_once))
    /// did not deliver every sample: the receiver refused the request, or
    /// answered errors (or nothing) until the retries or the wait ran out.
    /// Counted on `/metrics` like any other send.
    #[error("the metrics did not all reach {url}: {reason}")]
    Delivery {
        /// The receiver's URL, with the redaction rules applied (an
        /// `api_key=…` in its query is `[REDACTED]`).
        url: String,
        /// The last error (the start of the receiver's answer, say),
        /// redacted.
        reason: String,
        /// The receiver refused samples (a `4xx` other than `429`): sending
        /// the same again will not help. Otherwise it could not be reached
        /// or answered errors, and a later try may succeed.
        refused: bool,
    },
    /// A metric of the engine's could not be registered, for `?` in a
    /// function that sets up the pipeline and the engine's metrics.
    #[error(transparent)]
    Metric(#[from] MetricError),
}

/// Why a metric of the engine's could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The metric name is not `[a-zA-Z_][a-zA-Z0-9_]*` (at most 200 bytes,
    /// not starting with `__`).
    #[error("invalid metric name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A label name is invalid, repeated or reserved (`le` on a histogram).
    #[error("invalid label {label:?} on {name}: {reason}")]
    InvalidLabel {
        /// The family's full name.
        name: String,
        /// The label name as given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bucket bounds must be finite and strictly increasing, at most 200.
    #[error("invalid buckets for {name}: {reason}")]
    InvalidBuckets {
        /// The family's full name.
        name: String,
        /// What is wrong with them.
        reason: String,
    },
    /// The name, or a series name it implies (`_bucket`, `_sum`, `_count`,
    /// `_created`, a counter's name without `_total`), is a built-in family's.
    #[error("{name} clashes with the built-in family {builtin}")]
    BuiltinClash {
        /// The family's full name.
        name: String,
        /// The built-in family's name.
        builtin: String,
    },
    /// The name, or a series name it implies, is another family's.
    #[error("{name} clashes with the family {other}")]
    Clash {
        /// The family's full name.
        name: String,
        /// The other family's name.
        other: String,
    },
    /// The family exists with another type, help text, label names or
    /// buckets.
    #[error("{name} is already registered with another {what}")]
    Mismatch {
        /// The family's full name.
        name: String,
        /// `type`, `help`, `label names` or `buckets`.
        what: &'static str,
    },
    /// A [`CounterVec`](crate::metrics::CounterVec) (or gauge or histogram vector)
    /// was given another number of label values than it has label names.
    #[error("{name} has {expected} labels, {got} values were given")]
    LabelCount {
        /// The family's full name.
        name: String,
        /// Its number of label names.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// [`MetricsConfig::custom_family_limit`](crate::metrics::MetricsConfig::custom_family_limit)
    /// families are registered already.
    #[error("{name}: the engine's metrics are limited to {limit} families")]
    TooManyFamilies {
        /// The family's full name.
        name: String,
        /// The limit.
        limit: usize,
    },
}
