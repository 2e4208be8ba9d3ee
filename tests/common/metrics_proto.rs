//! An independent reader of the protobuf exposition: a decoder that
//! `protoc` generates from `metrics.proto`, run by python3-protobuf.

use std::path::Path;

use super::{external_tool, python_module};

/// The delimited `MetricFamily` messages in `bytes`, as JSON: each family's
/// `name`, `help`, `type` and `metrics` (their `labels`, `value` or
/// histogram `count`, `sum`, `buckets`, `exemplars`, and when native
/// buckets are there `schema`, `zero_threshold`, `zero_count`, `spans`,
/// `deltas`). `None` when protoc or python3-protobuf is missing (a skip
/// that `test` names; a failure under `CI=true`).
pub fn decode(bytes: &[u8], test: &str) -> Option<Vec<serde_json::Value>> {
    let protoc = external_tool("protoc", test)?;
    let python = python_module("google.protobuf", test)?;
    let dir = std::env::temp_dir().join(format!(
        "agentgate-obs-protoc-{}-{}",
        std::process::id(),
        super::prometheus::free_port()
    ));
    let include = dir.join("include");
    std::fs::create_dir_all(include.join("google/protobuf")).expect("temp dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prometheus_metrics/metrics.proto"),
        include.join("metrics.proto"),
    )
    .expect("metrics.proto");
    // protoc needs the imported file's declaration only; the generated
    // module imports python3-protobuf's own `timestamp_pb2`.
    std::fs::write(
    include.join("google/protobuf/timestamp.proto"),
    "syntax = \"proto3\";\npackage google.protobuf;\nmessage Timestamp { int64 seconds = 1; int32 nanos = 2; }\n",
)
.expect("timestamp.proto");
    let status = std::process::Command::new(protoc)
        .arg(format!("-I{}", include.display()))
        .arg(format!("--python_out={}", dir.display()))
        .arg("metrics.proto")
        .status()
        .expect("run protoc");
    assert!(status.success(), "protoc failed");
    std::fs::write(dir.join("exposition.bin"), bytes).expect("body");
    std::fs::write(
        dir.join("decode.py"),
        r#"
import json, sys
from google.protobuf.internal.decoder import _DecodeVarint32
import metrics_pb2
data = open(sys.argv[1], "rb").read()
pos, families = 0, []
while pos < len(data):
    size, pos = _DecodeVarint32(data, pos)
    mf = metrics_pb2.MetricFamily()
    mf.ParseFromString(data[pos:pos + size])
    pos += size
    out = {"name": mf.name, "help": mf.help, "type": mf.type, "metrics": []}
    for m in mf.metric:
        d = {"labels": {l.name: l.value for l in m.label}}
        if m.HasField("counter"): d["value"] = m.counter.value
        if m.HasField("gauge"): d["value"] = m.gauge.value
        if m.HasField("histogram"):
            h = m.histogram
            d["count"] = h.sample_count
            d["sum"] = h.sample_sum
            d["buckets"] = [[b.upper_bound, b.cumulative_count] for b in h.bucket]
            d["exemplars"] = sum(1 for b in h.bucket if b.HasField("exemplar"))
            if h.HasField("schema"):
                d["schema"] = h.schema
                d["zero_threshold"] = h.zero_threshold
                d["zero_count"] = h.zero_count
                d["spans"] = [[s.offset, s.length] for s in h.positive_span]
                d["deltas"] = list(h.positive_delta)
        out["metrics"].append(d)
    families.append(out)
print(json.dumps(families))
"#,
    )
    .expect("decoder");
    let output = std::process::Command::new(python)
        .current_dir(&dir)
        .args(["decode.py", "exposition.bin"])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python3 decoder failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("decoder JSON");
    let _ = std::fs::remove_dir_all(&dir);
    Some(families)
}
