//! HTTP requests with arbitrary paths, queries and headers through the
//! server's parser and the router with the real routes.
#![no_main]

use std::sync::OnceLock;

use agentgate_obs::fuzzing::HttpHarness;
use libfuzzer_sys::fuzz_target;

static HARNESS: OnceLock<HttpHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    HARNESS.get_or_init(HttpHarness::new).request(data);
});
