//! The JSON log lines a pipeline writes, and its log writer under pressure.

#[path = "../common/mod.rs"]
mod common;

mod json_logs;
mod log_backpressure;
