//! The Alertmanager configuration shipped in `deploy/alertmanager/`: valid
//! for amtool, and every shipped alert routed to the receiver of its
//! severity. Its inhibitions need a running Alertmanager: the delivery
//! tests check them (`tests/delivery/alerting.rs`).

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::external_tool;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/alertmanager")
}

/// Runs amtool with `args` in `deploy/alertmanager/`: its exit status and
/// everything it printed.
fn amtool(args: &[&str]) -> Option<(bool, String)> {
    let amtool = external_tool("amtool", &format!("amtool {}", args.join(" ")))?;
    let out = Command::new(amtool)
        .args(args)
        .current_dir(config_dir())
        .output()
        .expect("amtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

/// The receiver `amtool config routes test` picks for `labels`, checked by
/// amtool itself against `expected` (`--verify.receivers` makes it exit
/// non-zero on a mismatch).
fn assert_routed(labels: &[(&str, &str)], expected: &str) {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
    let verify = format!("--verify.receivers={expected}");
    args.push(&verify);
    args.extend(labels.iter().map(String::as_str));
    let Some((ok, out)) = amtool(&args) else {
        return;
    };
    assert!(
        ok,
        "{labels:?} should go to {expected}; amtool {args:?} said:\n{out}"
    );
    let receivers: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("Warning:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(receivers, [expected], "{labels:?}: amtool said:\n{out}");
}

/// Every alert of the shipped rules with its `severity` label, in order.
fn shipped_alerts() -> Vec<(String, String)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/agentgate.rules.yml");
    let rules = std::fs::read_to_string(path).expect("the shipped rules");
    let mut alerts: Vec<(String, Option<String>)> = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push((name.to_owned(), None));
        } else if let (Some(severity), Some((_, slot @ None))) =
            (line.strip_prefix("severity: "), alerts.last_mut())
        {
            *slot = Some(severity.to_owned());
        }
    }
    alerts
        .into_iter()
        .map(|(name, severity)| {
            let severity = severity.unwrap_or_else(|| panic!("{name} has no severity label"));
            (name, severity)
        })
        .collect()
}

#[test]
fn the_shipped_alertmanager_config_passes_amtool_check_config() {
    let Some((ok, out)) = amtool(&["check-config", "alertmanager.yml"]) else {
        return;
    };
    assert!(ok && out.contains("SUCCESS"), "{out}");
    assert!(out.contains("3 receivers"), "{out}");
    assert!(out.contains("4 inhibit rules"), "{out}");
}

#[test]
fn every_shipped_alert_is_routed_to_the_receiver_of_its_severity_and_the_watchdog_to_the_heartbeat()
{
    let alerts = shipped_alerts();
    assert!(alerts.len() >= 9, "{alerts:?}");
    assert!(
        alerts.iter().any(|(name, _)| name == "Watchdog"),
        "{alerts:?}"
    );
    for (name, severity) in &alerts {
        let expected = match (name.as_str(), severity.as_str()) {
            ("Watchdog", _) => "heartbeat",
            (_, "page") => "page",
            (_, "ticket") => "ticket",
            _ => panic!("{name}: severity {severity} has no route in alertmanager.yml"),
        };
        let labels = [
            ("alertname", name.as_str()),
            ("severity", severity.as_str()),
            ("job", "agentgate"),
            ("instance", "engine-1:3000"),
        ];
        if name == "Watchdog" {
            // As Prometheus sends it: no job, no instance.
            assert_routed(&labels[..2], expected);
        } else {
            assert_routed(&labels, expected);
        }
    }
}

#[test]
fn an_alert_of_no_known_severity_still_reaches_the_ticket_queue() {
    assert_routed(&[("alertname", "SomeoneElsesAlert")], "ticket");
    assert_routed(
        &[("alertname", "SomeoneElsesAlert"), ("severity", "critical")],
        "ticket",
    );
}

#[test]
fn the_watchdog_goes_to_the_heartbeat_whatever_its_severity() {
    // The Watchdog route comes first and does not continue: an alert named
    // Watchdog never wakes anyone, whatever its severity.
    assert_routed(
        &[("alertname", "Watchdog"), ("severity", "page")],
        "heartbeat",
    );
}
