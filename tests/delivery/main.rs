//! Delivering the metrics instead of waiting for a scrape: remote write to
//! a real Prometheus and to receivers that fail in every way.

#[path = "../common/mod.rs"]
mod common;

mod remote_write;
