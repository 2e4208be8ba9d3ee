//! The process-wide log facades: `Logger::new`, the `log` crate bridge and
//! the `tracing` layer all write to the most recently started pipeline with
//! logging on. A binary of its own: any other test starting such a
//! pipeline would take their records.

#[path = "../common/mod.rs"]
mod common;

mod logger;
mod tracing_layer;

/// The tests share the process-wide log writer, so under `cargo test`
/// (one process) they take turns.
static TURN: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
