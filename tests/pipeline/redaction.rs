//! One redaction layer for every output: secrets planted in every string an
//! event can carry (goal, feedback, error, cancel reason, PR URL, CI status,
//! gate names, agent metrics, metadata at any depth, ids) reach none of
//! `/ws` (events and the `hello` snapshot), `/api/runs`, `/api/summary`,
//! `/metrics`, the JSON log lines, the journal or a listener. The dashboard renders only
//! what `/ws`, `/api/summary` and `/health` give it (`src/dashboard/*.js`
//! fetch nothing else; `model.js` reads the same run shape as `/api/runs`),
//! so it is covered by those.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use agentgate_obs::event::EventKind;
use agentgate_obs::redact::{REDACTED, RedactPattern, TokenCharset};
use agentgate_obs::{
    DeliveryResult, ExecutionMetrics, Metadata, Observability, Phase, PhaseTimings,
    ProgressEmitter, ProgressEvent, RunResult, Strategy, TaskSpec,
};
use common::ws::Client;
use common::{LogBuffer, Recorder, http_get};
use serde_json::{Value, json};

/// The secret parts planted below: none may appear in any output.
struct Secrets {
    github: String,
    feedback_password: &'static str,
    url_password: &'static str,
    bearer: &'static str,
    pr_password: &'static str,
    slack: &'static str,
    gate: String,
    short_gate: &'static str,
    agent_refresh: &'static str,
    meta_api_key: &'static str,
    meta_nested: &'static str,
    meta_openai: String,
    pem_body: &'static str,
    custom: &'static str,
    custom_key_value: &'static str,
}

impl Secrets {
    fn new() -> Self {
        Secrets {
            github: format!("ghp_{}", "Z9y8X7w6V5".repeat(4)),
            feedback_password: "hunter2-feedback",
            url_password: "Sup3rS3cretPw",
            bearer: "opaqueTok3nValue99",
            pr_password: "PrUrlPassw0rd",
            slack: "xoxb-123456789012-AbCdEfGhIjKl",
            gate: format!("sk-ant-api03-{}", "Gq7-".repeat(8)),
            short_gate: "Qz9xK7",
            agent_refresh: "refresh-token-value",
            meta_api_key: "meta-api-key-value",
            meta_nested: "nested-secret-value",
            meta_openai: format!("sk-proj-{}", "Hh5_".repeat(8)),
            pem_body: "MIIEowIBAAKCAQEAplantedPemBody",
            custom: "acme_live_0123456789abcdef0123",
            custom_key_value: "pin-4711-value",
        }
    }

    fn all(&self) -> Vec<&str> {
        vec![
            &self.github,
            self.feedback_password,
            self.url_password,
            self.bearer,
            self.pr_password,
            self.slack,
            &self.gate,
            self.short_gate,
            self.agent_refresh,
            self.meta_api_key,
            self.meta_nested,
            &self.meta_openai,
            self.pem_body,
            self.custom,
            self.custom_key_value,
        ]
    }

    /// Fails the test if `text` (one output, named `what`) holds a secret.
    fn assert_absent(&self, what: &str, text: &str) {
        for secret in self.all() {
            assert!(!text.contains(secret), "{what} leaks {secret:?}:\n{text}");
        }
    }
}

fn pipeline(log: &LogBuffer) -> Observability {
    Observability::builder()
        .log_to(log.clone())
        .serve("127.0.0.1:0")
        .redact_keys(["tenant_pin"])
        .redact_pattern(
            RedactPattern::prefix("acme_live_")
                .min_len(20)
                .charset(TokenCharset::Alphanumeric),
        )
        .start()
        .expect("start")
}

/// One run through every event that carries caller strings, plus a
/// canceled run and a failed one.
fn emit_secrets(obs: &Observability, s: &Secrets) {
    let emitter = obs.emitter();
    let goal = format!("Deploy with {} now", s.github);
    emitter.emit_run_started("wo-1", "run-1", &TaskSpec::new(goal, Strategy::Ralph, 3));
    let feedback = format!("retry: password={} please", s.feedback_password);
    emitter.emit_iteration_started("wo-1", "run-1", 1, 3, Some(&feedback));
    emitter.emit_phase_started("wo-1", "run-1", 1, Phase::Build);
    emitter.emit_gate_checked("wo-1", "run-1", 1, &s.gate, false);
    let short_gate = format!("pwd={}", s.short_gate);
    emitter.emit_gate_checked("wo-1", "run-1", 1, &short_gate, true);
    emitter.emit_iteration_completed("wo-1", "run-1", 1, false, &PhaseTimings::default());
    emitter.emit_delivery_started("wo-1", "run-1");
    emitter.emit_delivery_completed(
        "wo-1",
        "run-1",
        &DeliveryResult {
            success: true,
            pr_url: Some(format!(
                "https://ci:{}@github.com/org/repo/pull/7",
                s.pr_password
            )),
            ci_status: Some(format!("pending ({})", s.slack)),
        },
    );

    let mut metadata = Metadata::new();
    metadata.insert("apiKey".into(), json!(s.meta_api_key));
    metadata.insert(
        "nested".into(),
        json!({"deep": [{"client_secret": s.meta_nested}], "note": s.meta_openai}),
    );
    metadata.insert(
        "pem".into(),
        json!(format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            s.pem_body
        )),
    );
    metadata.insert("custom".into(), json!(format!("key {} here", s.custom)));
    metadata.insert("tenantPin".into(), json!(s.custom_key_value));
    metadata.insert("model".into(), json!("opus"));
    let mut event = ProgressEvent::new(
        "wo-1",
        "run-1",
        EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Verify,
        },
    );
    event.metadata = Some(Arc::new(metadata));
    emitter.emit(event);

    emitter.emit_run_completed(
        "wo-1",
        "run-1",
        RunResult::Passed,
        &ExecutionMetrics {
            agent_metrics: Some(json!({"refreshToken": s.agent_refresh, "inputTokens": 7})),
            ..ExecutionMetrics::default()
        },
    );
    emitter.emit_run_canceled(
        "wo-2",
        "run-2",
        &format!("Authorization: Bearer {}", s.bearer),
    );
    emitter.emit_run_failed(
        "wo-3",
        "run-3",
        &format!(
            "clone of https://bot:{}@git.example.com/x failed",
            s.url_password
        ),
    );
}

#[test]
fn secrets_in_event_strings_reach_no_websocket_event_snapshot_api_log_or_listener() {
    let secrets = Secrets::new();
    let log = LogBuffer::new();
    let obs = pipeline(&log);
    let addr = obs.local_addr().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let mut live = Client::connect(addr, "/ws");
    let hello = live.next_json();
    let first = hello["seq"].as_u64().unwrap();

    emit_secrets(&obs, &secrets);
    obs.flush_logs();

    let events = live.events_through(first + 12);
    assert_eq!(events.len(), 12);
    let ws_text = serde_json::to_string(&events).unwrap();
    secrets.assert_absent("/ws events", &ws_text);

    let mut late = Client::connect(addr, "/ws");
    let snapshot = late.next_json();
    assert_eq!(snapshot["type"], "hello");
    assert_eq!(snapshot["runs"].as_array().map(Vec::len), Some(3));
    secrets.assert_absent("the hello snapshot", &snapshot.to_string());

    let runs = http_get(addr, "/api/runs", &[]);
    assert_eq!(runs.status, 200);
    secrets.assert_absent("/api/runs", &runs.body);

    for path in ["/api/summary", "/metrics"] {
        let reply = http_get(addr, path, &[]);
        assert_eq!(reply.status, 200, "{path}");
        secrets.assert_absent(path, &reply.body);
    }

    let listener_text = format!("{:?}", recorder.events());
    assert_eq!(recorder.len(), 12);
    secrets.assert_absent("a listener's events", &listener_text);

    let log_text = log.text();
    assert!(log_text.contains("Progress: run_failed"), "{log_text}");
    secrets.assert_absent("the JSON log", &log_text);

    // Redacted, not dropped: what is not secret stays readable.
    let api: Value = serde_json::from_str(&runs.body).unwrap();
    let api_text = api.to_string();
    assert!(
        api_text.contains("Deploy with [REDACTED] now"),
        "{api_text}"
    );
    assert!(
        api_text.contains("https://ci:[REDACTED]@github.com/org/repo/pull/7"),
        "{api_text}"
    );
    assert!(
        api_text.contains("Authorization: Bearer [REDACTED]"),
        "{api_text}"
    );
    let meta = events
        .iter()
        .find(|e| e["metadata"].is_object())
        .map(|e| e["metadata"].clone())
        .expect("the event with metadata");
    assert_eq!(meta["apiKey"], REDACTED);
    assert_eq!(meta["nested"]["deep"][0]["client_secret"], REDACTED);
    assert_eq!(meta["tenantPin"], REDACTED);
    assert_eq!(meta["custom"], "key [REDACTED] here");
    assert_eq!(meta["model"], "opus");
    let completed = events
        .iter()
        .find(|e| e["type"] == "run:completed")
        .expect("run:completed");
    assert_eq!(completed["metrics"]["agentMetrics"]["inputTokens"], 7);
    obs.shutdown();
}

#[test]
fn a_secret_in_a_run_id_is_redacted_once_and_the_run_stays_one_run() {
    let (obs, addr) = common::served(None);
    let token = format!("ghp_{}", "Q1w2E3r4T5".repeat(4));
    let run_id = format!("run-{token}");
    let emitter = obs.emitter();
    emitter.emit_run_started("wo-1", &run_id, &TaskSpec::new("g", Strategy::Fixed, 1));
    let run = emitter.run("wo-1", &run_id);
    run.phase_completed(1, Phase::Build, true, Duration::from_millis(3));
    emitter.emit(ProgressEvent::new(
        "wo-1",
        &run_id,
        EventKind::DeliveryStarted,
    ));
    run.completed(RunResult::Passed, &ExecutionMetrics::default());
    obs.flush();
    let runs = obs.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(&*runs[0].run_id, "run-[REDACTED]");
    assert_eq!(runs[0].events, 4);
    let body = http_get(addr, "/api/runs", &[]).body;
    assert!(!body.contains(&token), "{body}");
    obs.shutdown();
}

#[test]
fn caller_log_fields_use_the_same_rules_and_embedder_configuration() {
    let secrets = Secrets::new();
    let log = LogBuffer::new();
    let obs = pipeline(&log);
    obs.logger("executor").info(
        format!(
            "pushing with {} to https://bot:{}@h/x",
            secrets.github, secrets.url_password
        ),
        [
            ("tenant_pin", secrets.custom_key_value.into()),
            ("note", format!("custom {}", secrets.custom).into()),
            (
                "headers",
                json!([["Authorization", format!("Bearer {}", secrets.bearer)]]).into(),
            ),
        ],
    );
    obs.flush_logs();
    let text = log.text();
    assert!(text.contains("pushing with [REDACTED]"), "{text}");
    secrets.assert_absent("a caller's log line", &text);
    obs.shutdown();
}

#[test]
fn an_empty_embedder_key_or_pattern_prefix_is_refused_at_start() {
    let err = common::quiet().redact_keys(["--"]).start().unwrap_err();
    assert!(matches!(err, agentgate_obs::Error::Config(_)), "{err}");
    let err = common::quiet()
        .redact_pattern(RedactPattern::prefix(""))
        .start()
        .unwrap_err();
    assert!(matches!(err, agentgate_obs::Error::Config(_)), "{err}");
}

/// A credential as an engine would write it (`text`) and the part of it that
/// must reach no output (`secret`: no character JSON or Prometheus escape, so
/// a leak is found in every output's text as it is).
struct Shape {
    text: String,
    secret: String,
}

impl Shape {
    fn new(text: impl Into<String>, secret: impl Into<String>) -> Self {
        let (text, secret) = (text.into(), secret.into());
        assert!(text.contains(&secret), "{text} does not hold {secret}");
        Shape { text, secret }
    }
}

/// Plants `shape.text` in every position a caller string can take (event
/// strings, gate names, metadata values and keys, the first and second
/// element of a pair, nested arrays, an argument vector, agent metrics, a
/// custom metric's label, a log message, field and field key) and checks
/// that `shape.secret` reaches none of the eight outputs: `/ws` events, the
/// `hello` snapshot, `/api/runs`, `/api/summary`, `/metrics`, a listener,
/// the JSON log and the journal.
fn assert_redacted_in_every_output(shape: &Shape) {
    let Shape { text, secret } = shape;
    let dir = common::TempDir::new("redaction-matrix");
    let journal = dir.join("events.jsonl");
    let log = LogBuffer::new();
    let obs = Observability::builder()
        .log_to(log.clone())
        .serve("127.0.0.1:0")
        .journal(&journal)
        .start()
        .expect("start");
    let addr = obs.local_addr().unwrap();
    let (recorder, _sub) = Recorder::attach(&obs.emitter());
    let mut live = Client::connect(addr, "/ws");
    let first = live.next_json()["seq"].as_u64().unwrap();

    let emitter = obs.emitter();
    emitter.emit_run_started("wo-1", "run-1", &TaskSpec::new(text, Strategy::Ralph, 3));
    emitter.emit_iteration_started("wo-1", "run-1", 1, 3, Some(text));
    emitter.emit_gate_checked("wo-1", "run-1", 1, text, false);
    let mut metadata = Metadata::new();
    metadata.insert("value".into(), json!(text));
    metadata.insert(text.clone(), json!(1));
    metadata.insert("env".into(), json!([text, "PATH=/usr/bin"]));
    metadata.insert("pairs".into(), json!([["HOME=/root", text]]));
    metadata.insert("argv".into(), json!(["deploy", text, "--verbose"]));
    metadata.insert("nested".into(), json!({"deep": [[text], {"note": text}]}));
    let mut event = ProgressEvent::new(
        "wo-1",
        "run-1",
        EventKind::PhaseStarted {
            iteration: 1,
            phase: Phase::Build,
        },
    );
    event.metadata = Some(Arc::new(metadata));
    emitter.emit(event);
    emitter.emit_delivery_completed(
        "wo-1",
        "run-1",
        &DeliveryResult {
            success: true,
            pr_url: Some(text.clone()),
            ci_status: Some(text.clone()),
        },
    );
    emitter.emit_run_completed(
        "wo-1",
        "run-1",
        RunResult::Passed,
        &ExecutionMetrics {
            agent_metrics: Some(json!({"env": [text, "PATH=/usr/bin"], "last": text})),
            ..ExecutionMetrics::default()
        },
    );
    emitter.emit_run_canceled("wo-2", "run-2", text);
    emitter.emit_run_failed("wo-3", "run-3", text);
    obs.metrics()
        .counter("tool_calls_total", "Tool calls.", &[("command", text)])
        .expect("a custom counter")
        .increment(1);
    obs.logger("executor").info(
        text.clone(),
        [
            ("command", text.clone().into()),
            ("env", json!([text, "PATH=/usr/bin"]).into()),
        ],
    );
    obs.flush_logs();

    let events = live.events_through(first + 8);
    assert_eq!(events.len(), 8);
    let mut outputs = vec![
        ("/ws events", serde_json::to_string(&events).unwrap()),
        (
            "the hello snapshot",
            Client::connect(addr, "/ws").next_json().to_string(),
        ),
    ];
    for path in ["/api/runs", "/api/summary", "/metrics"] {
        let reply = http_get(addr, path, &[]);
        assert_eq!(reply.status, 200, "{path}");
        outputs.push((path, reply.body));
    }
    assert_eq!(recorder.len(), 8);
    outputs.push(("a listener's events", format!("{:?}", recorder.events())));
    outputs.push(("the JSON log", log.text()));
    obs.shutdown();
    let journal = common::journal_lines(&journal);
    assert_eq!(journal.len(), 8);
    outputs.push(("the journal", journal.join("\n")));

    for (what, output) in &outputs {
        if let Some(at) = output.find(secret.as_str()) {
            let mut from = at.saturating_sub(200);
            while !output.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (at + secret.len() + 200).min(output.len());
            while !output.is_char_boundary(to) {
                to += 1;
            }
            panic!("{what} leaks {secret:?}: …{}…", &output[from..to]);
        }
        // The planted text did reach the output (redacted): `/api/summary`
        // holds counts and percentiles only.
        if *what != "/api/summary" {
            assert!(output.contains(REDACTED), "{what} holds no redaction");
        }
    }
    // What is not secret stays readable, the neighbour of a secret included.
    let journal = &outputs.last().unwrap().1;
    assert!(journal.contains("PATH=/usr/bin"), "{journal}");
    assert!(journal.contains("HOME=/root"), "{journal}");
}

#[test]
fn a_secret_in_the_first_element_of_a_two_element_array_reaches_no_output() {
    assert_redacted_in_every_output(&Shape::new("DB_PASSWORD=Xq7pL2mN9vR4", "Xq7pL2mN9vR4"));
}

#[test]
fn an_openai_project_key_in_the_first_element_of_a_pair_reaches_no_output() {
    let key = format!("sk-proj-{}", "Tb8_Wq3x".repeat(6));
    assert_redacted_in_every_output(&Shape::new(format!("OPENAI_API_KEY={key}"), key));
}

#[test]
fn an_openssh_private_key_in_the_first_element_of_a_pair_reaches_no_output() {
    let body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    let pem = format!(
        "SSH_KEY=-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----"
    );
    assert_redacted_in_every_output(&Shape::new(pem, body));
}

#[test]
fn an_aws_secret_key_in_the_first_element_of_a_pair_reaches_no_output() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert_redacted_in_every_output(&Shape::new(
        format!("AWS_SECRET_ACCESS_KEY={secret}"),
        secret,
    ));
}

#[test]
fn a_slack_webhook_url_reaches_no_output() {
    let secret = "xR9kLm2Qp7Zt4Wv8Ny3Bc6Df";
    assert_redacted_in_every_output(&Shape::new(
        format!(
            "posting to https://hooks.slack.com/services/T024BE7LD/B05K1Q2R3S4/{secret} failed"
        ),
        secret,
    ));
}

#[test]
fn a_stripe_live_secret_key_reaches_no_output() {
    let key = "sk_live_51H8xQ2Kz9LmNpRt4Vw7Yb3Cd6Fg";
    assert_redacted_in_every_output(&Shape::new(format!("stripe key {key} rejected"), key));
}

#[test]
fn a_stripe_restricted_key_reaches_no_output() {
    let key = "rk_live_51H8xQ2Kz9LmNpRt4Vw7Yb3Cd6Fg";
    assert_redacted_in_every_output(&Shape::new(format!("restricted {key} used"), key));
}

#[test]
fn a_google_api_key_reaches_no_output() {
    let key = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";
    assert_redacted_in_every_output(&Shape::new(format!("maps?key={key}&q=x"), key));
}

#[test]
fn an_azure_storage_account_key_in_a_connection_string_reaches_no_output() {
    let secret =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    assert_redacted_in_every_output(&Shape::new(
        format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={secret};EndpointSuffix=core.windows.net"
        ),
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq",
    ));
}

#[test]
fn an_azure_sas_signature_reaches_no_output() {
    let secret = "Zm9vYmFyc2VjcmV0c2lnbmF0dXJl%2Bq8xQ%3D";
    assert_redacted_in_every_output(&Shape::new(
        format!(
            "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&se=2030-01-01&sig={secret} 403"
        ),
        "Zm9vYmFyc2VjcmV0c2lnbmF0dXJl",
    ));
}

#[test]
fn an_npm_token_reaches_no_output() {
    let token = "npm_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7c";
    assert_redacted_in_every_output(&Shape::new(
        format!("//registry.npmjs.org/:_authToken {token}"),
        token,
    ));
}

#[test]
fn a_sendgrid_api_key_reaches_no_output() {
    let key = "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";
    assert_redacted_in_every_output(&Shape::new(format!("mail via {key}"), "TwL2iGABf9DHoTf"));
}

#[test]
fn a_vault_token_reaches_no_output() {
    let token = "hvs.CAESIJlU9JMYEhOPYv4igdhm9PnZDrabYTobQ4Ymnlq1qY-LGh4KHGh2cy5oVzA5MnhP";
    assert_redacted_in_every_output(&Shape::new(format!("VAULT_TOKEN {token}"), token));
}

#[test]
fn a_password_flag_and_its_value_in_a_command_line_reach_no_output() {
    assert_redacted_in_every_output(&Shape::new(
        "mysql --user admin --password Hunt3rPass99 --host db",
        "Hunt3rPass99",
    ));
    assert_redacted_in_every_output(&Shape::new(
        "psql --db-password='Hunt3r Quoted99' -h db",
        "Hunt3r Quoted99",
    ));
}

#[test]
fn a_url_encoded_password_reaches_no_output() {
    assert_redacted_in_every_output(&Shape::new(
        "POST /login body=user%3Dme%26password%3DHuntEnc0ded99%26next%3D%2F",
        "HuntEnc0ded99",
    ));
    assert_redacted_in_every_output(&Shape::new(
        "redirect=https%3A%2F%2Fbot%3AEnc0dedPw99%40git.example.com%2Fx",
        "Enc0dedPw99",
    ));
    assert_redacted_in_every_output(&Shape::new(
        "clone https://bot:p%40ssW0rdEnc99@git.example.com/x",
        "p%40ssW0rdEnc99",
    ));
}
