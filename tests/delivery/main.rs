//! What leaves the process: metrics delivered to servers beyond a scrape,
//! and alerts delivered to a person, checked against the real servers.

#[path = "../common/mod.rs"]
mod common;

mod alerting;
