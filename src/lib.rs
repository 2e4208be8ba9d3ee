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
//!
//! The crate root holds what instrumenting an engine takes: the
//! [`Builder`] and the running [`Observability`], the [`Emitter`] (and
//! its [`ProgressEmitter`] interface), [`RunHandle`], the guards
//! ([`RunGuard`], [`IterationGuard`], [`PhaseGuard`]), the [`global`]
//! emitter, and the types an emit takes. The rest lives by concern:
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`event`] | the events themselves: [`EventKind`](event::EventKind), [`EventType`](event::EventType), the wire format, [`Timestamp`](event::Timestamp) |
//! | [`logging`] | JSON logs: [`Logger`](logging::Logger), levels and filters, the per-thread [`LogContext`](logging::LogContext), the `log` bridge, the `tracing` layer |
//! | [`metrics`] | the Prometheus metrics, the engine's own families, the `metrics` crate recorder |
//! | [`runs`] | what the tracker knows of each run: [`RunSnapshot`](runs::RunSnapshot) |
//! | [`stats`] | the pipeline's accounting: [`PipelineStats`](stats::PipelineStats) |
//! | [`journal`] | the event journal and its readers |
//! | [`redact`] | the redaction rules' public knobs |
//! | [`demo`] | the simulated engine behind `agentgate-obs demo` |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod context;
mod dashboard;
#[cfg(feature = "cli")]
pub mod demo;
mod diagnostics;
mod emitter;
mod error;
pub mod event;
mod export;
mod exposition;
mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod global;
mod guard;
mod http_client;
pub mod journal;
#[cfg(test)]
mod layering;
mod log;
pub mod metrics;
mod observability;
mod panic_hook;
mod pipeline;
pub mod redact;
mod replay;
mod routes;
mod server;
pub mod stats;
mod tracker;
mod ws;

pub use emitter::{Emitter, ProgressEmitter, RunHandle, Subscription, WithMetadata};
pub use error::Error;
pub use event::{
    DeliveryResult, ExecutionMetrics, InvalidTraceparent, Metadata, Phase, PhaseTimings,
    ProgressEvent, RunResult, SpanId, Strategy, TaskSpec, TraceId, TraceParent,
};
pub use global::global;
pub use guard::{IterationGuard, PhaseGuard, RunGuard};
pub use observability::{Builder, Observability};
pub use pipeline::Overflow;

pub mod logging {
    //! Structured JSON logs, one object per line, stamped with the calling
    //! thread's [`LogContext`], redacted, and written by a writer thread so
    //! that the engine never waits on a disk. See `docs/LOGGING.md`.
    //!
    //! ```text
    //! {"level":"info","module":"executor","message":"Build finished","timestamp":"2026-01-05T10:00:00.123Z","workOrderId":"wo-1","runId":"run-1","iteration":2,"phase":"build","correlationId":"req-9","durationMs":1234}
    //! ```
    //!
    //! Sources: [`Logger`] (one per module), the `log` crate through
    //! [`install_log_bridge`], `tracing` through `TracingLayer` (cargo
    //! feature `tracing`), and the pipeline itself (a `Progress: <type>` line
    //! per processed event). All of them end in the writer of an
    //! [`Observability`](crate::Observability), configured on its
    //! [`Builder`](crate::Builder): `log_to`, `log_file`, `no_log`,
    //! `log_level`, `log_capacity`. The level filter comes from the builder,
    //! overridden by the `AGENTGATE_LOG` environment variable when it is set
    //! (`info`, `debug`, `agentgate_obs=debug,executor=warn`).
    //!
    //! The context ([`LogContext`], [`with_context`]) is per thread and
    //! scoped; the guards enter theirs with `in_context`. Losses are never
    //! silent: [`LogStats`] counts records dropped because the writer was
    //! behind, records lost to a failing sink, and the sink's failures.

    pub use crate::context::{ContextGuard, LogContext, spawn_with_context, with_context};
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub use crate::log::TracingLayer;
    pub use crate::log::{
        Field, FieldValue, InvalidLogFilter, Level, LogBridgeError, LogFilter, LogStats, Logger,
        install_log_bridge, unrouted_records,
    };
}

pub mod runs {
    //! What the pipeline knows about each run: [`RunSnapshot`]s, as
    //! [`Observability::runs`](crate::Observability::runs), `/api/runs` and
    //! the WebSocket `hello` give them.
    //!
    //! A run becomes terminal exactly once, by whichever of `run_completed`,
    //! `run_canceled` or `run_failed` comes first; the tracker keeps at most
    //! [`Builder::max_runs`](crate::Builder::max_runs) runs (the least
    //! recently updated active run is evicted first) and gate results up to
    //! [`MAX_GATES_PER_ITERATION`] per iteration.

    pub use crate::tracker::{
        DeliveryState, GATE_NAME_MAX_BYTES, MAX_GATES_PER_ITERATION, RUN_GOAL_MAX_BYTES,
        RUN_TEXT_MAX_BYTES, RunSnapshot, RunStatus, StepStatus,
    };
}

/// Every Rust block of the README, compiled and run as a doc test, so that
/// no snippet there calls what does not exist.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
