//! The files that ship beside the code: the documents, the Prometheus
//! rules and the Alertmanager configuration in `deploy/`, and the fuzz seeds.

#[path = "../common/mod.rs"]
mod common;

mod alertmanager_config;
mod docs;
#[cfg(feature = "fuzzing")]
mod fuzz_seeds;
mod prometheus_rules;

/// The seeds go through the harness of the `fuzzing` feature, which the
/// test command turns on (`--all-features`); a plain `cargo test` says it
/// skipped them, and under `CI=true` their absence fails.
#[cfg(not(feature = "fuzzing"))]
#[test]
fn the_fuzz_seeds_are_replayed_with_the_fuzzing_feature() {
    let why = "fuzz seeds: replayed only with `--features fuzzing` (scripts/test turns it on)";
    assert!(
        std::env::var("CI").ok().is_none_or(|ci| ci != "true"),
        "{why}; under CI=true the check must run"
    );
    println!("SKIPPED: {why}");
}
