//! The shipped alerts reach a person: demo engines scraped by a real
//! Prometheus with the shipped rules, a real Alertmanager with the shipped
//! configuration, and a webhook receiver in the test.
//!
//! Only waits are shortened, and only in copies derived from the shipped
//! files: every `for:` of the rules divided by 60 (minutes become seconds),
//! the rule groups, the evaluation and the scrape every second, alerts
//! resent to Alertmanager every second, and Alertmanager's `group_wait`
//! and `group_interval` one second. The
//! expressions, labels, annotations, routes and inhibitions are the
//! shipped ones.
#![cfg(feature = "cli")]

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use agentgate_obs::demo::{DemoConfig, RunTally, run_engine};
use common::alertmanager::{Alertmanager, Notification, Webhook};
use common::external_tool;
use common::prometheus::Prometheus;
use serde_json::json;

/// From the first failing runs to the firing notification: the shortened
/// `for:` of AgentgateRunsFailing (15 s), a few evaluations and
/// Alertmanager's group_wait, with room for a loaded machine.
const FIRING_WINDOW: Duration = Duration::from_secs(45);
/// From the engine's recovery to the resolved notification: an evaluation
/// or two and one group_interval, with the same room.
const RESOLVED_WINDOW: Duration = Duration::from_secs(30);

fn shipped(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Prometheus duration (`15m`, `1h30m`, `500ms`) in milliseconds.
fn duration_ms(text: &str) -> u64 {
    let mut total = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {text}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => panic!("unit {other:?} in {text}"),
        };
        total += n * factor;
        rest = &rest[unit..];
    }
    total
}

/// Rewrites the value of every line whose key (after indentation and an
/// optional `- `) is `key`, keeping everything else byte for byte; returns
/// the new text and how many lines changed.
fn rewrite_key(text: &str, key: &str, new_value: impl Fn(&str) -> String) -> (String, usize) {
    let mut changed = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let body = line.trim_start().trim_start_matches("- ");
        let indent = &line[..line.len() - body.len()];
        match body.strip_prefix(key).and_then(|v| v.strip_prefix(": ")) {
            Some(value) => {
                changed += 1;
                out.push_str(&format!("{indent}{key}: {}", new_value(value.trim())));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    (out, changed)
}

/// The shipped rules with every `for:` divided by 60 and every group
/// evaluated each second; nothing else differs.
fn rules_with_short_waits() -> String {
    let shipped = shipped("deploy/prometheus/agentgate.rules.yml");
    let (rules, fors) = rewrite_key(&shipped, "for", |d| format!("{}ms", duration_ms(d) / 60));
    let (rules, intervals) = rewrite_key(&rules, "interval", |_| "1s".to_owned());
    assert!(
        fors >= 4 && intervals >= 1,
        "{fors} for:, {intervals} interval:"
    );
    let differing = shipped
        .lines()
        .zip(rules.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, fors + intervals, "only the waits differ");
    assert!(rules.contains("alert: AgentgateRunsFailing") && rules.contains("for: 15000ms"));
    rules
}

/// The shipped Alertmanager configuration with its webhooks pointed at
/// `webhook` (the same paths) and one-second group waits and intervals.
fn alertmanager_config_for(webhook: &Webhook) -> String {
    let shipped = shipped("deploy/alertmanager/alertmanager.yml");
    let (config, urls) = rewrite_key(&shipped, "url", |url| {
        let path = url
            .split_whitespace()
            .next()
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|u| u.find('/').map(|slash| u[slash..].to_owned()))
            .unwrap_or_else(|| panic!("a shipped webhook URL without a path: {url}"));
        webhook.url(&path)
    });
    let (config, waits) = rewrite_key(&config, "group_wait", |_| "1s".to_owned());
    let (config, intervals) = rewrite_key(&config, "group_interval", |_| "1s".to_owned());
    assert!(
        urls == 3 && waits >= 3 && intervals >= 3,
        "{urls} url:, {waits} group_wait:, {intervals} group_interval:"
    );
    config
}

/// The runbook of `alert` as the test's Prometheus loaded it from the
/// rules: the shipped text, parsed by Prometheus.
fn loaded_runbook(prom: &Prometheus, alert: &str) -> String {
    // HTTP/1.0: Prometheus answers it unchunked, as `http_raw` reads it.
    let request = format!(
        "GET /api/v1/rules?type=alert HTTP/1.0\r\nHost: {}\r\n\r\n",
        prom.addr
    );
    let reply = common::http_raw(prom.addr, request.as_bytes()).expect("GET /api/v1/rules");
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("rules JSON");
    body["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["name"] == alert)
        .and_then(|r| r["annotations"]["runbook"].as_str())
        .unwrap_or_else(|| panic!("{alert} has no runbook in {}", reply.body))
        .to_owned()
}

/// The alert named `alertname` in `n` if `n` has the status `status`.
fn alert_in(n: &Notification, alertname: &str, status: &str) -> Option<serde_json::Value> {
    if n.body["status"] != status {
        return None;
    }
    n.alerts()
        .iter()
        .find(|a| a["labels"]["alertname"] == alertname)
        .cloned()
}

/// The demo engine with `work_orders` runs of the first seed (from 1)
/// whose runs end as `wanted` says, and their tally. A seed gives the same
/// runs whatever the threads do, so the seed is picked on a pipeline of its
/// own and replayed into the engine under test.
fn demo_shape(work_orders: usize, wanted: impl Fn(&RunTally) -> bool) -> (DemoConfig, RunTally) {
    let scratch = common::quiet().start().expect("scratch pipeline");
    (1..=100_000)
        .map(|seed| DemoConfig {
            work_orders,
            concurrency: 2,
            seed,
            time_scale: 0.0,
        })
        .find_map(|config| {
            let tally = run_engine(&scratch.emitter(), &config, &AtomicBool::new(false));
            wanted(&tally).then_some((config, tally))
        })
        .expect("a seed of that shape")
}

#[test]
fn a_failing_engine_pages_with_its_runbook_through_alertmanager_then_resolves_once_its_runs_pass() {
    let test = "alerts through a real Prometheus and Alertmanager";
    let (Some(prometheus), Some(alertmanager)) = (
        external_tool("prometheus", test),
        external_tool("prometheus-alertmanager", test),
    ) else {
        return;
    };
    let mut webhook = Webhook::start();
    let am = Alertmanager::start(&alertmanager, &alertmanager_config_for(&webhook));
    let obs = common::quiet()
        .serve("127.0.0.1:0")
        .start()
        .expect("engine starts");
    let engine = obs.local_addr().expect("serving");
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - agentgate.rules.yml\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: agentgate\n    static_configs:\n      - targets: ['{engine}']\n",
        am.addr
    );
    let prom = Prometheus::start_with_flags(
        &prometheus,
        &prom_config,
        &[("agentgate.rules.yml", &rules_with_short_waits())],
        // Prometheus can find Alertmanager only after its first rule
        // evaluation: the Watchdog's first send is then lost, and resent
        // after this delay (1 min by default).
        &["--rules.alert.resend-delay=1s"],
    );
    // A scrape before any run: every run after it counts in the rates.
    prom.wait_for(
        "count(agentgate_runs_completed_total == 0)",
        3.0,
        Duration::from_secs(30),
    );

    // The demo engine on a bad stretch: 8 runs, most of them failed or
    // canceled, as when a dependency of the engine is down. Its default
    // seed fails too few runs for the rule (more than half of at least 4).
    let (bad_stretch, failing) = demo_shape(8, |t| t.failed + t.canceled >= 5);
    let replayed = run_engine(&obs.emitter(), &bad_stretch, &AtomicBool::new(false));
    obs.flush();
    let failing_since = Instant::now();
    assert_eq!(replayed, failing, "the seed replays the same runs");
    let not_succeeded = failing.failed + failing.canceled;

    let (fired, alert) = webhook.wait_for(FIRING_WINDOW, "firing AgentgateRunsFailing", |n| {
        alert_in(n, "AgentgateRunsFailing", "firing")
    });
    let firing_took = fired.at - failing_since;
    assert!(
        firing_took >= Duration::from_secs(15),
        "fired after {firing_took:?}, before its `for:` (15 s in the copy) elapsed"
    );
    assert_eq!(fired.body["receiver"], "page", "{:#}", fired.body);
    assert_eq!(fired.path, "/agentgate/page");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["instance"], engine.to_string());
    let runbook = loaded_runbook(&prom, "AgentgateRunsFailing");
    assert!(runbook.contains("dashboard"), "{runbook}");
    assert_eq!(alert["annotations"]["runbook"], runbook.as_str());
    let share = 100 * not_succeeded / failing.total();
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with(&share.to_string())),
        "{share} % did not succeed: {:#}",
        alert["annotations"]
    );

    // The fix: the same engine's runs pass again, 16 in a row, so more than
    // half of the last hour's runs succeeded. This is how the rule resolves
    // for on-call too; an engine that stays idle instead keeps the alert
    // until its failures are an hour old.
    let (good_stretch, passing) = demo_shape(16, |t| t.succeeded == 16);
    run_engine(&obs.emitter(), &good_stretch, &AtomicBool::new(false));
    obs.flush();
    assert!(failing.succeeded + passing.succeeded > not_succeeded);
    let recovered_at = Instant::now();
    let (resolved, alert) =
        webhook.wait_for(RESOLVED_WINDOW, "resolved AgentgateRunsFailing", |n| {
            alert_in(n, "AgentgateRunsFailing", "resolved")
        });
    let resolving_took = resolved.at - recovered_at;
    assert_eq!(resolved.body["receiver"], "page");
    assert_eq!(alert["labels"]["instance"], engine.to_string());
    assert_eq!(alert["status"], "resolved");

    // The dead man's switch arrived at its own receiver, and nothing else
    // fired: the engine stayed up and dropped nothing.
    let seen = webhook.seen();
    assert!(
        seen.iter().any(|n| n.body["receiver"] == "heartbeat"
            && n.path == "/agentgate/heartbeat"
            && alert_in(n, "Watchdog", "firing").is_some()),
        "no Watchdog heartbeat: {:#?}",
        seen.iter().map(|n| &n.body).collect::<Vec<_>>()
    );
    let others: Vec<_> = seen
        .iter()
        .flat_map(|n| n.alerts())
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or_default())
        .filter(|name| !["AgentgateRunsFailing", "Watchdog"].contains(name))
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:?}");
    println!(
        "seed {} {failing:?}, then seed {} {passing:?}: firing notification {firing_took:.1?} after the failing runs, \
         resolved notification {resolving_took:.1?} after the passing runs",
        bad_stretch.seed, good_stretch.seed
    );
}

/// An alert as Prometheus posts it to Alertmanager.
fn alert(name: &str, severity: &str, instance: &str) -> serde_json::Value {
    json!({
        "labels": {
            "alertname": name,
            "severity": severity,
            "job": "agentgate",
            "instance": instance,
        },
        "annotations": { "summary": name },
    })
}

#[test]
fn the_shipped_inhibitions_silence_what_a_more_telling_alert_explains_on_the_same_engine_only() {
    let test = "the shipped inhibitions in a real Alertmanager";
    let Some(alertmanager) = external_tool("prometheus-alertmanager", test) else {
        return;
    };
    let webhook = Webhook::start();
    let am = Alertmanager::start(&alertmanager, &alertmanager_config_for(&webhook));
    am.post_alerts(&json!([
        // Engine a cannot be scraped: its other alerts are stale figures.
        alert("AgentgateTargetDown", "page", "a:3000"),
        alert("AgentgateRunsFailing", "page", "a:3000"),
        alert("AgentgateJournalDropping", "ticket", "a:3000"),
        // Engine b: the same alert, but b is scraped fine.
        alert("AgentgateRunsFailing", "page", "b:3000"),
        // Engine c emits after shutdown: every kind of event is dropped.
        alert("AgentgateLifecycleEventsDropped", "page", "c:3000"),
        alert("AgentgateEventsDropped", "ticket", "c:3000"),
        // Engine d drops events: its ring being nearly full says no more.
        alert("AgentgateEventsDropped", "ticket", "d:3000"),
        alert("AgentgateQueueNearCapacity", "ticket", "d:3000"),
        // Engine e's journal writes fail: hence the lines it drops.
        alert("AgentgateJournalWriteErrors", "ticket", "e:3000"),
        alert("AgentgateJournalDropping", "ticket", "e:3000"),
        // Engine f: nearly full and losing journal lines, but no cause above.
        alert("AgentgateQueueNearCapacity", "ticket", "f:3000"),
        alert("AgentgateJournalDropping", "ticket", "f:3000"),
        { "labels": { "alertname": "Watchdog", "severity": "none" } },
    ]));
    let inhibited = [
        ("AgentgateRunsFailing", "a:3000"),
        ("AgentgateJournalDropping", "a:3000"),
        ("AgentgateEventsDropped", "c:3000"),
        ("AgentgateQueueNearCapacity", "d:3000"),
        ("AgentgateJournalDropping", "e:3000"),
    ];
    // The inhibitor learns of source alerts on its own thread: poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    let states = loop {
        let alerts = am.alerts();
        let states: Vec<(String, String, bool)> = alerts
            .iter()
            .map(|a| {
                let labels = &a["labels"];
                let name = labels["alertname"].as_str().unwrap_or_default().to_owned();
                let instance = labels["instance"].as_str().unwrap_or_default().to_owned();
                let is_inhibited = a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|by| !by.is_empty());
                (name, instance, is_inhibited)
            })
            .collect();
        let settled = states.len() == 13
            && states.iter().all(|(name, instance, is_inhibited)| {
                *is_inhibited == inhibited.contains(&(name.as_str(), instance.as_str()))
            });
        if settled || Instant::now() > deadline {
            break states;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wrong: Vec<_> = states
        .iter()
        .filter(|(name, instance, is_inhibited)| {
            *is_inhibited != inhibited.contains(&(name.as_str(), instance.as_str()))
        })
        .collect();
    assert!(
        states.len() == 13 && wrong.is_empty(),
        "alerts whose inhibition is wrong (name, instance, inhibited): {wrong:?} of {states:?}"
    );
}
