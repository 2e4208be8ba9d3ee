//! The Prometheus rules shipped in `deploy/prometheus/`: valid for promtool,
//! their unit tests pass, and every metric they use is one the server renders.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use agentgate_obs::metrics::Format;
use common::external_tool;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

fn promtool(args: &[&str]) -> Option<String> {
    let promtool = external_tool("promtool", &format!("promtool {}", args.join(" ")))?;
    let out = Command::new(promtool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Some(text)
}

#[test]
fn the_shipped_rules_pass_promtool_check_rules() {
    if let Some(out) = promtool(&["check", "rules", "agentgate.rules.yml"]) {
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn the_shipped_rules_pass_their_promtool_unit_tests() {
    if let Some(out) = promtool(&["test", "rules", "agentgate.rules.test.yml"]) {
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn every_metric_the_rules_use_is_rendered_by_the_server() {
    let rules = std::fs::read_to_string(rules_dir().join("agentgate.rules.yml")).expect("rules");
    let used: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("agentgate_") && !word.contains(':'))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect();
    assert!(used.len() >= 6, "{used:?}");
    let obs = common::quiet().start().expect("pipeline starts");
    let exposition = obs.metrics().render_as(Format::Prometheus);
    let missing: Vec<_> = used
        .iter()
        .filter(|name| !exposition.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the rules use metrics /metrics does not have: {missing:?}"
    );
}
