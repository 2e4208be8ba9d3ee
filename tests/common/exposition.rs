//! The one strict parser of the two text exposition formats: the fuzz
//! harness's own, included rather than copied, so that the tests need no
//! `fuzzing` feature. Written from the format documents rather than from
//! our writer: what it accepts is what a careful scraper accepts, and it
//! hands back label values unescaped.

#[path = "../../src/fuzzing/strict.rs"]
mod strict;

pub use strict::{Sample as ParsedSample, parse};
