//! The programs that ship with the crate, run as processes: the demo, the
//! dashboard it serves, `watch`, and the example engine.

#[path = "../common/mod.rs"]
mod common;

mod dashboard;
mod demo_logs;
mod demo_security;
mod demo_timings;
mod example_engine;
mod exit_codes;
mod watch_client;
