//! The pipeline as an engine drives it: events and their JSON, metadata,
//! guards, listeners, run tracking, a full ring, faults, shutdown and
//! redaction of every output.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod bounded_runs;
mod event_json;
mod event_metadata;
mod faults;
mod guards;
mod listener_panic_hook;
mod listeners;
mod overload;
mod redaction;
mod run_tracking;
mod shutdown;
