//! Why a registration of the engine's was refused, and how refusals are
//! counted (`custom_metrics_rejected_total{reason}`).

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

impl MetricError {
    /// The `reason` label of `custom_metrics_rejected_total`.
    pub(super) fn reason(&self) -> Rejection {
        match self {
            MetricError::InvalidName { .. }
            | MetricError::InvalidLabel { .. }
            | MetricError::InvalidBuckets { .. }
            | MetricError::LabelCount { .. } => Rejection::Invalid,
            MetricError::BuiltinClash { .. } | MetricError::Clash { .. } => Rejection::Clash,
            MetricError::Mismatch { .. } => Rejection::Mismatch,
            MetricError::TooManyFamilies { .. } => Rejection::FamilyLimit,
        }
    }
}

/// Why a registration was refused: the `reason` label of
/// `custom_metrics_rejected_total`, in label order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    Clash = 0,
    FamilyLimit = 1,
    Invalid = 2,
    Mismatch = 3,
}

impl Rejection {
    pub(crate) const ALL: [Rejection; 4] = [
        Rejection::Clash,
        Rejection::FamilyLimit,
        Rejection::Invalid,
        Rejection::Mismatch,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::Clash => "clash",
            Rejection::FamilyLimit => "family_limit",
            Rejection::Invalid => "invalid",
            Rejection::Mismatch => "mismatch",
        }
    }
}
