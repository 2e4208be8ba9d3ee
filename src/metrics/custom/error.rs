//! How refused registrations of the engine's are counted
//! (`custom_metrics_rejected_total{reason}`). [`MetricError`] itself is in
//! the crate's `error` module, so that [`Error`](crate::Error) can wrap it.

use crate::error::MetricError;

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
