//! Event JSON: decode, encode, decode again; nothing may change.
#![no_main]

use agentgate_obs::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        fuzzing::event_json_round_trip(text);
    }
});
