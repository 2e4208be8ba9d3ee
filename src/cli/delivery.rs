//! The flags that send the metrics somewhere (`demo`, `push`): a
//! Pushgateway and a Prometheus remote write receiver, the job, instance
//! and labels the figures go under, the wait at exit, and the
//! Pushgateway's token; and the one that sends runs as traces (`demo`).

use std::path::PathBuf;
use std::time::Duration;

use agentgate_obs::Builder;
use agentgate_obs::metrics::{DEFAULT_PUSH_JOB, OtlpConfig, PushGatewayConfig, RemoteWriteConfig};
use clap::{ArgGroup, Args};

use super::Usage;
use super::token;

/// The environment variable holding the Pushgateway's bearer token.
pub(crate) const PUSH_TOKEN_ENV: &str = "AGENTGATE_PUSH_TOKEN";

/// Every receiver the metrics may be sent to, and how.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("receiver").multiple(true).args(["push_gateway", "remote_write"])))]
pub(crate) struct Targets {
    /// Push the metrics to the Prometheus Pushgateway at URL (its base
    /// URL, e.g. http://127.0.0.1:9091; http only): every interval and
    /// once more at exit. Token: --push-token-file or AGENTGATE_PUSH_TOKEN.
    #[arg(long, value_name = "URL")]
    pub(crate) push_gateway: Option<String>,
    /// Send the metrics to a Prometheus remote write receiver at URL
    /// (http://HOST:9090/api/v1/write, a Prometheus started with
    /// --web.enable-remote-write-receiver; http only): every 15 s and once
    /// more at exit.
    #[arg(long, value_name = "URL")]
    pub(crate) remote_write: Option<String>,
    /// The job the figures go under: the Pushgateway group's, and the
    /// `job` label of every remote write series.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PUSH_JOB, requires = "receiver")]
    push_job: String,
    /// The instance the figures go under (the group's, the series'
    /// `instance` label) [default: the host name].
    #[arg(long, value_name = "NAME", requires = "receiver")]
    push_instance: Option<String>,
    /// One more label of the Pushgateway group and of every remote write
    /// series, e.g. work_order=wo-7 (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_label, requires = "receiver")]
    push_label: Vec<(String, String)>,
    /// How long the delivery at exit may take before it is given up (tried
    /// again within it after a refused connection, a 5xx or a 429).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration, requires = "receiver")]
    push_wait: Duration,
    /// Send `Authorization: Bearer TOKEN` to the Pushgateway (behind an
    /// authenticating proxy), the token read from the first line of PATH;
    /// AGENTGATE_PUSH_TOKEN gives it otherwise.
    #[arg(long, value_name = "PATH", requires = "push_gateway")]
    push_token_file: Option<PathBuf>,
}

impl Targets {
    /// `builder` with every receiver given on the command line, each
    /// delivered to by an exporter thread every `interval` and at exit
    /// (where `delete_on_shutdown` deletes the Pushgateway group instead).
    pub(crate) fn apply(
        &self,
        mut builder: Builder,
        interval: Duration,
        delete_on_shutdown: bool,
    ) -> Result<Builder, Usage> {
        if let Some(config) = self.push_gateway_config()? {
            builder = builder.push_gateway_config(
                config
                    .interval(interval)
                    .delete_on_shutdown(delete_on_shutdown),
            );
        }
        if let Some(config) = self.remote_write_config() {
            builder = builder.remote_write_config(config.interval(interval));
        }
        Ok(builder)
    }

    /// The Pushgateway's configuration, when `--push-gateway` is given.
    pub(crate) fn push_gateway_config(&self) -> Result<Option<PushGatewayConfig>, Usage> {
        let Some(url) = &self.push_gateway else {
            return Ok(None);
        };
        let mut config = PushGatewayConfig::new(url.as_str())
            .job(self.push_job.as_str())
            .final_wait(self.push_wait);
        if let Some(instance) = &self.push_instance {
            config = config.instance(instance.as_str());
        }
        for (name, value) in &self.push_label {
            config = config.label(name.as_str(), value.as_str());
        }
        let (token, note) = token::file_or_env(
            self.push_token_file.as_deref(),
            "--push-token-file",
            PUSH_TOKEN_ENV,
        )?;
        if let Some(note) = note {
            eprintln!("agentgate-obs: note: {note}");
        }
        if let Some(token) = token {
            config = config.bearer_token(token.value);
        }
        Ok(Some(config))
    }

    /// Remote write's configuration, when `--remote-write` is given.
    pub(crate) fn remote_write_config(&self) -> Option<RemoteWriteConfig> {
        let url = self.remote_write.as_deref()?;
        let mut config = RemoteWriteConfig::new(url)
            .job(self.push_job.as_str())
            .final_wait(self.push_wait);
        if let Some(instance) = &self.push_instance {
            config = config.instance(instance.as_str());
        }
        for (name, value) in &self.push_label {
            config = config.label(name.as_str(), value.as_str());
        }
        Some(config)
    }
}

/// Where runs go as traces.
#[derive(Debug, Args)]
pub(crate) struct Traces {
    /// Export every run as an OpenTelemetry trace over OTLP/HTTP to URL: a
    /// collector's base URL (http://HOST:4318, /v1/traces is added) or its
    /// traces URL. The OTEL_EXPORTER_OTLP_* variables, OTEL_SERVICE_NAME
    /// and OTEL_RESOURCE_ATTRIBUTES apply (protocol, headers, resource);
    /// with OTEL_EXPORTER_OTLP_ENDPOINT set, traces are exported without
    /// this flag. http:// only.
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
}

impl Traces {
    /// `builder` exporting traces to `--otlp`, or where the standard
    /// variables say.
    pub(crate) fn apply(&self, builder: Builder) -> Result<Builder, Usage> {
        let builder = builder.otlp_from_env();
        let Some(url) = &self.otlp else {
            return Ok(builder);
        };
        let config = OtlpConfig::from_env_with_endpoint(url).map_err(|e| Usage(e.to_string()))?;
        Ok(builder.otlp_config(config))
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("NAME=VALUE, not {text:?}")),
    }
}
