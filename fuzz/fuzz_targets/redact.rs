//! Arbitrary text with a credential planted at an arbitrary place: the
//! redaction rules never panic and the credential never survives (see
//! `agentgate_obs::fuzzing::redact_planted` for the input layout).
#![no_main]

use agentgate_obs::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::redact_planted(data);
});
