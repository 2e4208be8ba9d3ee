//! The small value types events are made of: phases, strategies, results and
//! the payload structs of the original TypeScript interface.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a field-less enum with a fixed wire name per variant, `ALL`,
/// `as_str`, `Display` and `FromStr`, so the wire names live in one place.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used on the wire and in metric labels.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownVariant { kind: stringify!($name), value: s.chars().take(64).collect() }),
                }
            }
        }
    };
}

/// Returned when a string names no variant of one of the wire enums.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownVariant {
    kind: &'static str,
    value: String,
}

wire_enum! {
    /// A phase of one iteration. The engine runs them in this order;
    /// `Feedback` only after a failed `Verify`.
    Phase {
        /// The agent writes or changes code.
        Build = "build",
        /// The workspace is captured.
        Snapshot = "snapshot",
        /// Gates check the snapshot.
        Verify = "verify",
        /// Failures are turned into feedback for the next iteration.
        Feedback = "feedback",
    }
}

impl Phase {
    /// Position in [`Phase::ALL`], for per-phase arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

wire_enum! {
    /// The convergence strategy of a task.
    Strategy {
        /// A fixed number of iterations.
        Fixed = "fixed",
        /// Fixed iterations, then adaptive.
        Hybrid = "hybrid",
        /// Loop until the gates pass.
        Ralph = "ralph",
        /// The engine decides per iteration.
        Adaptive = "adaptive",
        /// A person decides.
        Manual = "manual",
    }
}

wire_enum! {
    /// The engine's own result of a run, kept as `engineResult` on `run_completed`.
    RunResult {
        /// Every gate passed.
        Passed = "passed",
        /// Verification failed on the last iteration.
        FailedVerification = "failed_verification",
        /// The build phase failed.
        FailedBuild = "failed_build",
        /// The run ran out of time.
        FailedTimeout = "failed_timeout",
        /// The engine hit an error.
        FailedError = "failed_error",
        /// The run was canceled.
        Canceled = "canceled",
    }
}

wire_enum! {
    /// What a run came to, as dashboards and `runs_completed_total{result}` see it.
    RunOutcome {
        /// The engine's `passed`.
        Succeeded = "succeeded",
        /// Every `failed_*` result.
        Failed = "failed",
        /// The engine's `canceled`.
        Canceled = "canceled",
    }
}

impl From<RunResult> for RunOutcome {
    fn from(result: RunResult) -> Self {
        match result {
            RunResult::Passed => RunOutcome::Succeeded,
            RunResult::Canceled => RunOutcome::Canceled,
            RunResult::FailedVerification
            | RunResult::FailedBuild
            | RunResult::FailedTimeout
            | RunResult::FailedError => RunOutcome::Failed,
        }
    }
}

/// The most characters of a goal an event carries.
pub const GOAL_MAX_CHARS: usize = 100;

/// What a run was asked to do, as `run_started` carries it.
///
/// ```
/// use agentgate_obs::{Strategy, TaskSpec};
/// let spec = TaskSpec::new("é".repeat(300), Strategy::Ralph, 5);
/// assert_eq!(spec.goal.chars().count(), 100); // cut on a character boundary
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// The goal, at most [`GOAL_MAX_CHARS`] characters.
    pub goal: String,
    /// The convergence strategy.
    pub strategy: Strategy,
    /// The iteration limit the engine enforces.
    pub max_iterations: u32,
}

impl TaskSpec {
    /// A task spec whose goal is cut to [`GOAL_MAX_CHARS`] characters.
    pub fn new(goal: impl AsRef<str>, strategy: Strategy, max_iterations: u32) -> Self {
        TaskSpec {
            goal: truncate_chars(goal.as_ref(), GOAL_MAX_CHARS).to_owned(),
            strategy,
            max_iterations,
        }
    }
}

/// What marks a string cut short by a byte bound: U+2026 `…` (3 bytes).
pub(crate) const TRUNCATION_MARKER: &str = "\u{2026}";

/// `s` itself if it has at most `max` bytes; otherwise its longest prefix
/// that ends on a character boundary and leaves room for
/// [`TRUNCATION_MARKER`], followed by the marker: at most `max` bytes
/// (`max` is at least the marker's length).
pub(crate) fn bound_bytes(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut cut = max.saturating_sub(TRUNCATION_MARKER.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut bounded = String::with_capacity(cut + TRUNCATION_MARKER.len());
    bounded.push_str(&s[..cut]);
    bounded.push_str(TRUNCATION_MARKER);
    std::borrow::Cow::Owned(bounded)
}

/// The longest prefix of `s` with at most `max` characters.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

/// Milliseconds spent per phase; phases that did not run are absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimings {
    /// Build phase, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub build: Option<u64>,
    /// Snapshot phase, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub snapshot: Option<u64>,
    /// Verify phase, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verify: Option<u64>,
    /// Feedback phase, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback: Option<u64>,
}

impl PhaseTimings {
    /// The milliseconds recorded for `phase`.
    pub fn get(&self, phase: Phase) -> Option<u64> {
        match phase {
            Phase::Build => self.build,
            Phase::Snapshot => self.snapshot,
            Phase::Verify => self.verify,
            Phase::Feedback => self.feedback,
        }
    }

    /// Sets the milliseconds for `phase`.
    pub fn set(&mut self, phase: Phase, ms: Option<u64>) {
        let slot = match phase {
            Phase::Build => &mut self.build,
            Phase::Snapshot => &mut self.snapshot,
            Phase::Verify => &mut self.verify,
            Phase::Feedback => &mut self.feedback,
        };
        *slot = ms;
    }

    /// Adds `ms` to `phase`, saturating.
    pub fn add(&mut self, phase: Phase, ms: u64) {
        let sum = self.get(phase).unwrap_or(0).saturating_add(ms);
        self.set(phase, Some(sum));
    }
}

/// The outcome of one gate in one iteration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSummary {
    /// Gate name, as the engine gave it.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long the check took, when the engine said.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
}

/// What the engine measured over a whole run, carried by `run_completed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionMetrics {
    /// Wall time of the run, ms.
    pub total_duration_ms: u64,
    /// Iterations run.
    pub iteration_count: u32,
    /// Milliseconds per phase over all iterations.
    pub phase_breakdown: PhaseTimings,
    /// Whatever the agent reported (tokens, cost …), passed through as is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_metrics: Option<serde_json::Value>,
}

/// The result of delivering a run's work as a pull request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResult {
    /// Whether delivery succeeded.
    pub success: bool,
    /// The pull request, when one was opened.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pr_url: Option<String>,
    /// CI status of the pull request, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ci_status: Option<String>,
}
