//! What leaves the process: metrics delivered to servers beyond a scrape
//! (a Pushgateway, with fakes for the failures a real one will not produce
//! on demand), and alerts delivered to a person, checked against the real
//! servers.

#[path = "../common/mod.rs"]
mod common;

mod alerting;
mod pushgateway;
