//! Decoding OTLP trace requests with the official `opentelemetry-proto`
//! definitions: `otlp_decode.py` beside this file, run by a Python that
//! has Debian's protobuf runtime (`python3-protobuf`) and the PyPI package
//! `opentelemetry-proto` (both installed by `scripts/install-deps`, the
//! latter into [`python_path`]).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Where `scripts/install-deps` puts the `opentelemetry-proto` package.
pub fn python_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("agentgate-obs/otlp-python")
}

/// A Python able to decode OTLP, or `None` (after printing `SKIPPED`, or
/// failing under `CI=true`) when there is none.
pub fn decoder(test: &str) -> Option<Decoder> {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .env("PYTHONPATH", python_path())
            .args([
                "-c",
                "import google.protobuf; from opentelemetry.proto.collector.trace.v1 import trace_service_pb2",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(Decoder {
                python: python.to_owned(),
            });
        }
    }
    let why = format!(
        "{test}: no python3 with the protobuf runtime (Debian package python3-protobuf) and \
         opentelemetry-proto (PyPI, into {}): run scripts/install-deps",
        python_path().display()
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{why}; under CI=true a missing external tool fails the check");
    }
    println!("SKIPPED: {why}");
    None
}

/// Runs `otlp_decode.py`.
pub struct Decoder {
    python: String,
}

impl Decoder {
    /// Every span of the request bodies, as `otlp_decode.py` prints them;
    /// panics when one does not decode.
    pub fn spans(&self, content_type: &str, bodies: &[Vec<u8>]) -> Vec<Value> {
        let dir = super::TempDir::new("otlp-decode");
        let files: Vec<PathBuf> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let path = dir.path().join(format!("request-{i}"));
                std::fs::write(&path, body).expect("the body is written");
                path
            })
            .collect();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/otlp_decode.py");
        let output = Command::new(&self.python)
            .env("PYTHONPATH", python_path())
            .arg(script)
            .arg(content_type)
            .args(&files)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "the official definitions refuse a request: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        match serde_json::from_slice(&output.stdout) {
            Ok(Value::Array(spans)) => spans,
            other => panic!("the decoder printed {other:?}"),
        }
    }
}
