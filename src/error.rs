//! [`Error`]: why the pipeline could not start, or a setting it refused.

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
    /// [`Observability::install_global`](crate::Observability::install_global) was called a second time in this
    /// process; the emitter installed first stays.
    #[error(
        "a global emitter is already installed: Observability::install_global may be called once per process"
    )]
    GlobalAlreadyInstalled,
    /// [`Observability::install_metrics_recorder`](crate::Observability::install_metrics_recorder) found a `metrics`
    /// recorder installed already (ours or another); the first one stays.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[error("a metrics recorder is already installed: the metrics crate takes one per process")]
    MetricsRecorderAlreadyInstalled,
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
}
