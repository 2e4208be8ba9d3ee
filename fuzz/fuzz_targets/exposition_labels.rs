//! Exposition of arbitrary gate names and label values, parsed back by a
//! strict parser to the same values. The input is split on NUL bytes into
//! names (at most 32, so one input stays cheap).
#![no_main]

use agentgate_obs::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<String> = text.split('\0').take(32).map(str::to_owned).collect();
    fuzzing::exposition_round_trip(&values);
});
