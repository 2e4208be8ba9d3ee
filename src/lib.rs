//! Live observability for a synchronous agent execution engine: typed
//! progress events, a run tracker, and a pipeline that costs the engine's
//! threads almost nothing and never stalls them.
//!
//! ```
//! use agentgate_obs::{Observability, Phase, ProgressEmitter, Strategy, TaskSpec};
//! use std::time::Duration;
//!
//! let obs = Observability::builder().start()?;          // drain thread running
//! let emitter = obs.emitter();                           // Clone + Send + Sync
//! let _sub = emitter.subscribe(|e| println!("{}", e.event_type()));
//! emitter.emit_run_started("wo-1", "run-1", &TaskSpec::new("fix it", Strategy::Ralph, 3));
//! let run = emitter.run("wo-1", "run-1");                // ids interned once
//! run.phase_completed(1, Phase::Build, true, Duration::from_millis(1234));
//! obs.flush();                                           // everything above processed
//! assert_eq!(obs.active_runs(), 1);
//! # Ok::<(), agentgate_obs::Error>(())
//! ```
//!
//! The architecture, from the engine's thread outwards: [`Emitter`] and
//! [`RunHandle`] push `Copy` envelopes onto a bounded lock-free ring; one
//! drain thread turns them into [`ProgressEvent`]s, keeps the state of every
//! run and calls the listeners. See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod context;
mod dashboard;
#[cfg(feature = "cli")]
pub mod demo;
mod diagnostics;
mod emitter;
mod event;
pub mod exposition;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod global;
mod guard;
pub mod journal;
mod log;
pub mod metrics;
mod observability;
mod panic_hook;
mod pipeline;
mod redact;
mod server;
mod tracker;
mod ws;

pub use context::{ContextGuard, LogContext, spawn_with_context, with_context};
pub use emitter::{Emitter, ProgressEmitter, RunHandle, Subscription, WithMetadata};
pub use event::{
    DeliveryResult, EventKind, EventType, ExecutionMetrics, GOAL_MAX_CHARS, GateSummary, Metadata,
    Phase, PhaseTimings, ProgressEvent, RunOutcome, RunResult, Strategy, TaskSpec, Timestamp,
    TypeStyle, UnknownVariant, WireEvent,
};
pub use global::global;
pub use guard::{IterationGuard, PhaseGuard, RunGuard};
#[cfg(feature = "tracing")]
pub use log::TracingLayer;
pub use log::{
    Field, FieldValue, InvalidLogFilter, Level, LogBridgeError, LogFilter, LogStats, Logger,
    install_log_bridge, unrouted_records,
};
pub use observability::{Builder, Error, Observability};
pub use pipeline::Overflow;
pub use pipeline::stats::{EventCounts, PipelineStats};
pub use redact::{REDACTED, RedactPattern, TokenCharset};
pub use tracker::{DeliveryState, MAX_GATES_PER_ITERATION, RunSnapshot, RunStatus, StepStatus};
