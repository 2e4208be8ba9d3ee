//! What leaves the process: metrics delivered beyond a scrape (to a
//! Pushgateway and through remote write to a Prometheus, with fakes for
//! the failures a real server will not produce on demand), runs as OTLP
//! traces (decoded with the official definitions), and alerts delivered
//! to a person, checked against the real servers.

#[path = "../common/mod.rs"]
mod common;

mod alerting;
mod crash;
mod otlp;
mod pushgateway;
mod remote_write;
