//! WebSocket client messages: the bytes as one text message, and as the raw
//! frames a client sends after the handshake.
#![no_main]

use agentgate_obs::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        fuzzing::ws_client_text(text);
    }
    fuzzing::ws_client_bytes(data);
});
