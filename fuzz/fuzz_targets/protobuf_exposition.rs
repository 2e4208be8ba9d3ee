//! Arbitrary registries (gate names, the engine's own series, durations
//! from the input) rendered as protobuf and as text: the protobuf, decoded,
//! holds exactly the text's samples, and every native histogram counts
//! each observation once within its bucket cap.
#![no_main]

use agentgate_obs::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::protobuf_round_trip(data);
});
