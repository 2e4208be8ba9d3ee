//! Delivering the metrics instead of waiting for a scrape, against the real
//! receivers: a Pushgateway (and fakes for the failures a real one will not
//! produce on demand).

#[path = "../common/mod.rs"]
mod common;

mod pushgateway;
