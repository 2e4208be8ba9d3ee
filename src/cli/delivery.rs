//! The flags that send the metrics somewhere (`demo`, `push`): a
//! Pushgateway (its grouping key, its final wait and its token) and a
//! Prometheus remote write receiver. Each kind
//! of receiver has a struct of flags of its own, flattened side by side
//! into [`Targets`].

use std::path::PathBuf;
use std::time::Duration;

use agentgate_obs::Builder;
use agentgate_obs::metrics::{OtlpConfig, PushGatewayConfig};
use clap::Args;

use super::Usage;
use super::token;

/// The environment variable holding the Pushgateway's bearer token.
pub(crate) const PUSH_TOKEN_ENV: &str = "AGENTGATE_PUSH_TOKEN";

/// Every receiver the metrics may be sent to.
#[derive(Debug, Args)]
pub(crate) struct Targets {
    #[command(flatten)]
    pub(crate) push_gateway: PushGatewayArgs,
    /// Send the metrics to a Prometheus remote write receiver at URL
    /// (`http://HOST:9090/api/v1/write`, a Prometheus started with
    /// --web.enable-remote-write-receiver): every 15 s and once more at
    /// exit. Every series gets job="agentgate" and instance=<host name>.
    /// http:// only: reach an https receiver through a local proxy.
    #[arg(long, value_name = "URL")]
    pub(crate) remote_write: Option<String>,
    /// Export every run as an OpenTelemetry trace over OTLP/HTTP to URL: a
    /// collector's base URL (http://HOST:4318, /v1/traces is added) or its
    /// traces URL. The OTEL_EXPORTER_OTLP_* variables, OTEL_SERVICE_NAME
    /// and OTEL_RESOURCE_ATTRIBUTES apply (protocol, headers, resource);
    /// with OTEL_EXPORTER_OTLP_ENDPOINT set, traces are exported without
    /// this flag. http:// only.
    #[arg(long, value_name = "URL")]
    pub(crate) otlp: Option<String>,
}

impl Targets {
    /// `builder` with every receiver given on the command line, the
    /// Pushgateway's configuration passed through `push_gateway` for the
    /// settings only one command has.
    pub(crate) fn apply(
        &self,
        mut builder: Builder,
        push_gateway: impl FnOnce(PushGatewayConfig) -> PushGatewayConfig,
    ) -> Result<Builder, Usage> {
        if let Some(config) = self.push_gateway.config()? {
            builder = builder.push_gateway_config(push_gateway(config));
        }
        if let Some(url) = &self.remote_write {
            builder = builder.remote_write(url);
        }
        builder = builder.otlp_from_env();
        if let Some(url) = &self.otlp {
            let config =
                OtlpConfig::from_env_with_endpoint(url).map_err(|e| Usage(e.to_string()))?;
            builder = builder.otlp_config(config);
        }
        Ok(builder)
    }
}

#[derive(Debug, Args)]
pub(crate) struct PushGatewayArgs {
    /// Push the metrics to the Prometheus Pushgateway at URL (its base
    /// URL, e.g. http://127.0.0.1:9091; http only): every interval and
    /// once more at exit. Token: --push-token-file or AGENTGATE_PUSH_TOKEN.
    #[arg(long, value_name = "URL")]
    pub(crate) push_gateway: Option<String>,
    /// The job of the Pushgateway group.
    #[arg(long, value_name = "NAME", default_value = agentgate_obs::metrics::DEFAULT_PUSH_JOB, requires = "push_gateway")]
    push_job: String,
    /// The instance of the Pushgateway group [default: the host name].
    #[arg(long, value_name = "NAME", requires = "push_gateway")]
    push_instance: Option<String>,
    /// One more label of the Pushgateway group, e.g. work_order=wo-7
    /// (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_label, requires = "push_gateway")]
    push_label: Vec<(String, String)>,
    /// How long the push at exit may take before it is given up (tried
    /// again within it after a refused connection, a 5xx or a 429).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration, requires = "push_gateway")]
    push_wait: Duration,
    /// Send `Authorization: Bearer TOKEN` to the Pushgateway (behind an
    /// authenticating proxy), the token read from the first line of PATH;
    /// AGENTGATE_PUSH_TOKEN gives it otherwise.
    #[arg(long, value_name = "PATH", requires = "push_gateway")]
    push_token_file: Option<PathBuf>,
}

impl PushGatewayArgs {
    /// The Pushgateway's configuration, when `--push-gateway` is given.
    pub(crate) fn config(&self) -> Result<Option<PushGatewayConfig>, Usage> {
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
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("NAME=VALUE, not {text:?}")),
    }
}
