//! Replays every committed fuzz seed (`fuzz/seeds/<target>/`) through the
//! same entry points the fuzz targets call, so each crash the fuzzer ever
//! found, once its input is copied there, stays fixed on every test run,
//! without nightly or cargo-fuzz.

use std::path::Path;

use agentgate_obs::fuzzing;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a readable seed");
            (path.display().to_string(), bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no seeds for {target}");
    inputs
}

#[test]
fn every_websocket_client_message_seed_is_answered_by_the_protocol() {
    for (_name, bytes) in seeds("ws_client_message") {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            fuzzing::ws_client_text(text);
        }
        fuzzing::ws_client_bytes(&bytes);
    }
}

#[test]
fn every_event_json_seed_decodes_and_survives_the_round_trip() {
    for (name, bytes) in seeds("event_json_round_trip") {
        let text = String::from_utf8(bytes).expect("UTF-8 seed");
        fuzzing::event_json_round_trip(&text);
        if !name.contains("regression") {
            // The hand-written seeds are valid events: they must decode,
            // or the target would only ever exercise the error path.
            let decoded = serde_json::from_str::<agentgate_obs::ProgressEvent>(&text);
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
        }
    }
}

#[test]
fn every_protobuf_exposition_seed_decodes_to_the_text_samples_with_exact_native_counts() {
    for (_name, bytes) in seeds("protobuf_exposition") {
        fuzzing::protobuf_round_trip(&bytes);
    }
}

#[test]
fn every_exposition_seed_parses_back_to_its_label_values() {
    for (_name, bytes) in seeds("exposition_labels") {
        let text = String::from_utf8_lossy(&bytes);
        let values: Vec<String> = text.split('\0').take(32).map(str::to_owned).collect();
        fuzzing::exposition_round_trip(&values);
    }
}

#[test]
fn every_http_seed_is_routed_as_the_design_says() {
    let harness = fuzzing::HttpHarness::new();
    for (_name, bytes) in seeds("http_routing") {
        harness.request(&bytes);
    }
}

#[test]
fn every_redaction_seed_loses_its_planted_credential() {
    for (_name, bytes) in seeds("redact") {
        fuzzing::redact_planted(&bytes);
    }
}

#[test]
fn a_long_number_in_agent_metrics_decodes_to_the_same_value_after_a_round_trip() {
    // Found by the fuzzer: serde_json's default float parser is not
    // correctly rounded for long literals, so the shortest form it printed
    // for the decoded number read back as a neighbouring float, and
    // decode(encode(decode(text))) != decode(text).
    let text = r#"{"type":"run_completed","timestamp":"2026-05-23T23:40:25.123Z","workOrderId":"w","runId":"r","result":"failed","engineResult":"failed_timeout","iterations":3,"durationMs":9,"metrics":{"totalDurationMs":9,"iterationCount":2,"phaseBreakdown":{},"agentMetrics":{"tokens":12888888888888887888888888888888888888888888888888888888888888888888888}}}"#;
    fuzzing::event_json_round_trip(text);
}
