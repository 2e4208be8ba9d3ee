//! The files that ship beside the code: the documents, the Prometheus
//! rules in `deploy/` and the fuzz seeds.

#[path = "../common/mod.rs"]
mod common;

mod docs;
mod fuzz_seeds;
mod prometheus_rules;
