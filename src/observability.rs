//! [`Observability`], the running pipeline, and its [`Builder`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::emitter::Emitter;
use crate::error::Error;
use crate::export::pushgateway::PushGateway;
use crate::export::{Exporter, Schedule};
use crate::journal::JournalConfig;
use crate::journal::writer::Journal;
use crate::log::{LogConfig, LogFilter, LogStats, LogWriter, Logger, ProgressLog};
use crate::metrics::{Metrics, MetricsConfig, PushGatewayConfig, RemoteWriteConfig};
use crate::pipeline::drain::Drain;
use crate::pipeline::{Overflow, Shared};
use crate::redact::{RedactConfig, RedactPattern};
use crate::server::router::Handler;
use crate::server::{self, Server};
use crate::stats::PipelineStats;
use crate::tracker::{RunSnapshot, RunTracker};
use crate::ws::{self, WsConfig, hub::Hub};

/// Runs the tracker keeps by default ([`Builder::max_runs`]): ten times the
/// default of finished runs, so a fleet of thousands of concurrent runs fits,
/// while the state stays a few megabytes and a full `/api/runs` or `hello`
/// a few megabytes of JSON.
pub(crate) const DEFAULT_MAX_RUNS: usize = 10_000;

/// Configures and starts an [`Observability`] pipeline.
#[derive(Debug, Clone)]
pub struct Builder {
    namespace: String,
    queue_capacity: usize,
    overflow: Overflow,
    finished_runs: usize,
    max_runs: usize,
    log: LogConfig,
    metrics: MetricsConfig,
    serve: Option<String>,
    token: Option<String>,
    allowed_hosts: Vec<String>,
    websocket: WsConfig,
    redaction: RedactConfig,
    journal: Option<JournalConfig>,
    push_gateway: Option<PushGatewayConfig>,
    remote_write: Option<RemoteWriteConfig>,
    otlp: Option<crate::metrics::OtlpConfig>,
    /// Why the `OTEL_*` variables could not be read, reported by `start`.
    otlp_env_error: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            namespace: "agentgate".to_owned(),
            queue_capacity: 65_536,
            overflow: Overflow::DropNewest,
            finished_runs: 1_000,
            max_runs: DEFAULT_MAX_RUNS,
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            serve: None,
            token: None,
            allowed_hosts: Vec::new(),
            websocket: WsConfig::default(),
            redaction: RedactConfig::default(),
            journal: None,
            push_gateway: None,
            remote_write: None,
            otlp: None,
            otlp_env_error: None,
        }
    }
}

impl Builder {
    /// The metric name prefix (default `agentgate`): letters, digits, `_`
    /// and `:`, not starting with a digit.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The ring's capacity in events (default 65,536).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// What an emit does when the ring is full (default [`Overflow::DropNewest`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many finished runs the tracker keeps (default 1,000); older ones
    /// are forgotten, oldest first. At most [`max_runs`](Self::max_runs).
    pub fn finished_runs(mut self, finished_runs: usize) -> Self {
        self.finished_runs = finished_runs;
        self
    }

    /// How many runs the tracker keeps, active and finished together
    /// (default 10,000; at least 1). A new run that finds it full evicts
    /// the active run updated least recently (an engine that lost a run
    /// without a terminal event would otherwise grow the state forever),
    /// or the oldest finished run when none is active. An evicted active
    /// run is no longer active (`active_runs` goes down), is counted in
    /// `runs_evicted_total`, and its later events are ignored. The bound
    /// also caps `/api/runs` and the WebSocket `hello` snapshot.
    pub fn max_runs(mut self, max_runs: usize) -> Self {
        self.max_runs = max_runs;
        self
    }

    /// Writes the JSON log lines to `writer` instead of stderr (the
    /// default), from the log writer thread.
    pub fn log_to(mut self, writer: impl std::io::Write + Send + 'static) -> Self {
        self.log.set_writer(writer);
        self
    }

    /// Appends the JSON log lines to the file at `path` (created if
    /// missing, with mode 0600: see [`log_file_mode`](Self::log_file_mode));
    /// [`start`](Self::start) fails if it cannot be opened, and with
    /// [`Error::NotARegularFile`] if the path names a FIFO, a device, a
    /// socket or a directory.
    pub fn log_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.log.set_file(path.into());
        self
    }

    /// The permissions a new log file is created with (default
    /// [`DEFAULT_FILE_MODE`](crate::journal::DEFAULT_FILE_MODE), 0600; the umask
    /// still applies). An existing file keeps its own.
    pub fn log_file_mode(mut self, mode: u32) -> Self {
        self.log.file_mode(mode);
        self
    }

    /// No log writer: nothing is logged, no thread is started.
    pub fn no_log(mut self) -> Self {
        self.log.off();
        self
    }

    /// The log level filter (default `info`): a [`Level`](crate::logging::Level) or
    /// a parsed [`LogFilter`](crate::logging::LogFilter) with per-module directives.
    /// The `AGENTGATE_LOG` environment variable, when set, overrides it.
    pub fn log_level(mut self, filter: impl Into<LogFilter>) -> Self {
        self.log.filter(filter.into());
        self
    }

    /// How many log records may wait for the writer (default 16,384);
    /// beyond that, trace/debug/info records are dropped and counted.
    pub fn log_capacity(mut self, capacity: usize) -> Self {
        self.log.capacity(capacity);
        self
    }

    /// Bucket boundaries and label limits of the metrics.
    pub fn metrics(mut self, config: MetricsConfig) -> Self {
        self.metrics = config;
        self
    }

    /// Serves `/metrics`, `/health`, `/api/runs` and `/api/summary` over
    /// HTTP on `addr` (e.g. `127.0.0.1:3000`; port 0 picks a free port,
    /// see [`Observability::local_addr`]). Bind to loopback unless the
    /// network in between is trusted, and set a [`token`](Self::token).
    /// Requests are answered only when their `Host` header names this
    /// address (see [`allowed_hosts`](Self::allowed_hosts)).
    ///
    /// At start the server raises the process's soft limit on open files
    /// (`RLIMIT_NOFILE`) to its hard limit or 65,536, whichever is lower,
    /// never lowering it, and sizes how many connections it holds to fit
    /// in what it got; it logs both at info level.
    pub fn serve(mut self, addr: impl Into<String>) -> Self {
        self.serve = Some(addr.into());
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on every HTTP route but
    /// `/health` (and the dashboard's static assets). The dashboard page
    /// `/` and the WebSocket `/ws` also take it as `?token=TOKEN`, since a
    /// browser cannot add a header there; other routes refuse it in the URL.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Host names (or IP addresses) the server also answers to, besides
    /// the address it is bound to and, for loopback and `0.0.0.0`/`[::]`
    /// binds, `localhost` (an unspecified bind also answers to any IP
    /// address). A request whose `Host` header names anything else gets
    /// `421 Misdirected Request`: this defeats DNS rebinding, where a web
    /// page makes its own DNS name point at this server to read it from a
    /// browser. Add the names the dashboard is opened under (a reverse
    /// proxy's name, a machine name); no scheme, port or path. Calls add up.
    ///
    /// ```
    /// use agentgate_obs::Observability;
    ///
    /// let obs = Observability::builder()
    ///     .no_log()
    ///     .serve("127.0.0.1:0")
    ///     .allowed_hosts(["agent-box.lan", "dashboard.example.com"])
    ///     .start()?;
    /// // `Host: agent-box.lan:PORT` and `Host: 127.0.0.1:PORT` are answered;
    /// // `Host: evil.example` gets 421.
    /// # drop(obs);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// WebSocket clients served at once (default 256; fewer when the limit
    /// on open files is too low for them, see [`serve`](Self::serve)); the
    /// next upgrade gets `503`. With a [`token`](Self::token), an upgrade
    /// without it never takes a slot.
    pub fn websocket_max_clients(mut self, clients: usize) -> Self {
        self.websocket.max_clients = clients;
        self
    }

    /// Marks the events this pipeline serves as a journal's, replayed
    /// ([`Observability::replay`](crate::Observability::replay)) rather than live: every
    /// `hello` on `/ws` carries `"source":"replay"` and the dashboard shows
    /// "replay" where it would show "live".
    pub fn serving_replay(mut self) -> Self {
        self.websocket.from_journal = true;
        self
    }

    /// Events kept for WebSocket clients that fall behind or reconnect
    /// with `?since=SEQ` (default 10,000).
    pub fn websocket_replay(mut self, events: usize) -> Self {
        self.websocket.replay = events;
        self
    }

    /// How long a WebSocket client may refuse data before it is closed
    /// (default 10 s).
    pub fn websocket_stall_timeout(mut self, timeout: Duration) -> Self {
        self.websocket.limits.stall = timeout;
        self
    }

    /// How often the server pings WebSocket clients, and how long a client
    /// has to answer a ping (a pong or any other frame of its own; the
    /// server writing to it does not count) before it is closed (defaults
    /// 15 s and 45 s). Time during which the client's socket refuses data
    /// does not count against it: that is the stall timeout's to judge.
    pub fn websocket_keepalive(mut self, ping_every: Duration, dead_after: Duration) -> Self {
        self.websocket.limits.ping_every = ping_every;
        self.websocket.limits.dead_after = dead_after;
        self
    }

    /// More field keys whose values are secrets, on top of the built-in
    /// ones (`password`, `secret`, `apiKey`, `…token`, … see
    /// `docs/REDACTION.md`). A key matches a field whose key *contains* it,
    /// ignoring case and `_ - . space`: `"tenant_pin"` also redacts
    /// `tenantPin` and `X-Tenant-Pin-Hash`. Applies everywhere: progress
    /// events (metadata and nested data, hence `/ws`, `/api/runs`, the
    /// dashboard and listeners) and log fields. [`start`](Self::start)
    /// fails on a key that is empty once normalized.
    ///
    /// ```
    /// let obs = agentgate_obs::Observability::builder()
    ///     .no_log()
    ///     .redact_keys(["tenant_pin", "x-internal-sig"])
    ///     .start()?;
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn redact_keys<I>(mut self, keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        for key in keys {
            self.redaction.add_key(key.into());
        }
        self
    }

    /// One more credential shape to redact inside every string (goals,
    /// feedback, errors, URLs, metadata values, log messages and fields):
    /// a prefix followed by a minimum number of characters of a charset.
    /// [`start`](Self::start) fails on an empty prefix.
    ///
    /// ```
    /// use agentgate_obs::redact::{RedactPattern, TokenCharset};
    /// let obs = agentgate_obs::Observability::builder()
    ///     .no_log()
    ///     // `acme_live_` + 24 or more letters and digits
    ///     .redact_pattern(RedactPattern::prefix("acme_live_").min_len(24).charset(TokenCharset::Alphanumeric))
    ///     .start()?;
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn redact_pattern(mut self, pattern: RedactPattern) -> Self {
        self.redaction.add_pattern(pattern);
        self
    }

    /// Appends every processed event to the file at `path` (created if
    /// missing), one JSON line each, exactly as `/ws` sends it (same bytes,
    /// same `seq`), from a writer thread of its own, with the defaults of
    /// [`JournalConfig::new`] (a new file is created with mode 0600);
    /// [`start`](Self::start) fails if the file cannot be opened, and with
    /// [`Error::NotARegularFile`], without waiting, if the path names a
    /// FIFO, a device, a socket or a directory. The drain thread never waits for it: when the
    /// writer is behind, events are dropped and counted (lifecycle events
    /// last). See [`journal`](crate::journal) and `docs/PROTOCOL.md`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("doc-builder-journal-{}.ndjson", std::process::id()));
    /// let obs = agentgate_obs::Observability::builder().no_log().journal(&path).start()?;
    /// # drop(obs); let _ = std::fs::remove_file(&path);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn journal(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.journal_config(JournalConfig::new(path))
    }

    /// [`journal`](Self::journal) with rotation, fsync and capacity set.
    pub fn journal_config(mut self, config: JournalConfig) -> Self {
        self.journal = Some(config);
        self
    }

    /// Pushes the metrics to the Prometheus Pushgateway at `url` (its
    /// base URL, `http://host:9091`) with the defaults of
    /// [`PushGatewayConfig::new`]: job `agentgate`, instance the host
    /// name, every 15 s, and once more at shutdown after the last event is
    /// processed, waited for up to 5 s. For an engine that exits before a
    /// scrape would come, or that no Prometheus can reach. [`start`](Self::start)
    /// fails with [`Error::InvalidUrl`] on a URL it cannot send to.
    ///
    /// The pushes run on a thread of their own: the engine and the drain
    /// thread never wait for them, and a Pushgateway that is down or slow
    /// costs only that thread's time. Every push is counted
    /// (`pushgateway_pushes_total`, `pushgateway_push_failures_total`,
    /// [`Metrics::push_gateway_stats`]) and failures are logged. See
    /// `docs/OPERATIONS.md`, "Pushing instead of being scraped".
    ///
    /// ```no_run
    /// let obs = agentgate_obs::Observability::builder()
    ///     .push_gateway("http://127.0.0.1:9091")
    ///     .start()?;
    /// // … the engine runs …
    /// obs.shutdown(); // the final figures are pushed before it returns
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn push_gateway(self, url: impl Into<String>) -> Self {
        self.push_gateway_config(PushGatewayConfig::new(url))
    }

    /// [`push_gateway`](Self::push_gateway) with the job, the grouping
    /// key, the interval, the final wait, delete on shutdown and a bearer
    /// token set. One Pushgateway per pipeline: a second call replaces
    /// the first.
    pub fn push_gateway_config(mut self, config: PushGatewayConfig) -> Self {
        self.push_gateway = Some(config);
        self
    }

    /// Sends the metrics to a Prometheus remote write receiver at `url`
    /// (e.g. `http://127.0.0.1:9090/api/v1/write`, a Prometheus started
    /// with `--web.enable-remote-write-receiver`) every 15 s and once more
    /// at shutdown, after the last event is processed: a process that
    /// lives 200 ms still delivers its final figures. The defaults of
    /// [`RemoteWriteConfig::new`]; see there for the labels every series
    /// gets (`job`, `instance`), the retries and the bounded queue.
    ///
    /// The sending runs on a thread of its own: the engine and the drain
    /// thread never wait for the receiver, and shutdown waits for the final
    /// send at most [`RemoteWriteConfig::final_wait`] (5 s). What was sent,
    /// retried, failed or dropped is counted on `/metrics`
    /// (`remote_write_*`). [`start`](Self::start) fails with
    /// [`Error::InvalidUrl`] when `url` is not an `http://` URL.
    pub fn remote_write(self, url: impl Into<String>) -> Self {
        self.remote_write_config(RemoteWriteConfig::new(url))
    }

    /// [`remote_write`](Self::remote_write) with the interval, waits,
    /// queue, retries, token and labels set.
    pub fn remote_write_config(mut self, config: RemoteWriteConfig) -> Self {
        self.remote_write = Some(config);
        self
    }

    /// Exports every run as an OTLP trace to `endpoint`, a collector's
    /// `http://` base URL (`/v1/traces` is added) or its traces URL; see
    /// [`OtlpConfig::new`](crate::metrics::OtlpConfig::new). The drain
    /// thread hands each run's events to a thread of their own, which
    /// builds the spans and sends them over OTLP/HTTP (protobuf by
    /// default): the engine and the drain thread
    /// never wait for the receiver; shutdown waits for the last spans at
    /// most [`OtlpConfig::final_wait`](crate::metrics::OtlpConfig::final_wait)
    /// (5 s). What was exported, dropped or failed is counted on
    /// `/metrics` (`otlp_*`).
    ///
    /// The standard variables set the rest, as OpenTelemetry's SDKs read
    /// them ([`OtlpConfig::from_env_with_endpoint`](crate::metrics::OtlpConfig::from_env_with_endpoint)):
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, `…_HEADERS`, `OTEL_SERVICE_NAME`,
    /// `OTEL_RESOURCE_ATTRIBUTES`; `endpoint` wins over the endpoint
    /// variables. One that cannot be read makes [`start`](Self::start)
    /// fail with [`Error::Config`]. The last of the `otlp…` calls counts.
    pub fn otlp(mut self, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        match crate::metrics::OtlpConfig::from_env_with_endpoint(&endpoint) {
            Ok(config) => return self.otlp_config(config),
            Err(error) => self.otlp_env_error = Some(error.to_string()),
        }
        self
    }

    /// [`otlp`](Self::otlp) with every setting given: no variable is read.
    pub fn otlp_config(mut self, config: crate::metrics::OtlpConfig) -> Self {
        self.otlp = Some(config);
        self.otlp_env_error = None;
        self
    }

    /// [`otlp_config`](Self::otlp_config) from the standard variables
    /// ([`OtlpConfig::from_env`](crate::metrics::OtlpConfig::from_env)):
    /// nothing changes when no `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is
    /// set; a variable that cannot be read makes [`start`](Self::start)
    /// fail with [`Error::Config`].
    pub fn otlp_from_env(mut self) -> Self {
        match crate::metrics::OtlpConfig::from_env() {
            Ok(Some(config)) => return self.otlp_config(config),
            Ok(None) => {}
            Err(error) => self.otlp_env_error = Some(error.to_string()),
        }
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if let Some(error) = &self.otlp_env_error {
            return Err(Error::Config(error.clone()));
        }
        if let Some(otlp) = &self.otlp {
            otlp.validate()?;
        }
        if let Some(remote_write) = &self.remote_write {
            remote_write.validate()?;
        }
        if let Some(journal) = &self.journal {
            journal.validate()?;
        }
        if self.queue_capacity == 0 {
            return Err(Error::Config("queue_capacity must be at least 1".into()));
        }
        if self.max_runs == 0 {
            return Err(Error::Config("max_runs must be at least 1".into()));
        }
        crate::metrics::custom::validate_namespace(&self.namespace)?;
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Config("the token must not be empty".into()));
        }
        for host in &self.allowed_hosts {
            server::host::normalize_allowed(host).map_err(Error::Config)?;
        }
        self.metrics.validate()
    }

    /// Starts the drain thread.
    pub fn start(self) -> Result<Observability, Error> {
        self.validate()?;
        let redactor = Arc::new(self.redaction.build().map_err(Error::Config)?);
        let push_plan = match &self.push_gateway {
            Some(config) => Some(config.plan(&redactor)?),
            None => None,
        };
        let log = self.log.start(redactor.clone())?;
        let (shared, rx) = Shared::new(self.queue_capacity, self.overflow);
        let mut drain = Drain::new(
            shared.clone(),
            rx,
            self.finished_runs,
            self.max_runs,
            redactor.clone(),
        );
        if let Some(log) = &log {
            drain.log = Some(log.dispatch().clone());
            drain
                .sinks
                .push(Box::new(ProgressLog::new(log.dispatch().clone())));
        }
        let metrics = Metrics::for_pipeline(
            &self.namespace,
            &self.metrics,
            shared.clone(),
            log.as_ref().map(|l| l.dispatch().clone()),
            redactor,
        );
        drain
            .sinks
            .push(Box::new(crate::metrics::sink::MetricsSink::new(
                metrics.clone(),
                shared.clock.clone(),
            )));
        let journal = match &self.journal {
            Some(config) => {
                let started = crate::journal::writer::start(
                    config,
                    metrics.journal_counters(),
                    log.as_ref().map(|l| l.dispatch().clone()),
                );
                match started {
                    Ok((journal, sink)) => {
                        drain.journal = Some(sink);
                        Some(journal)
                    }
                    Err(error) => {
                        if let Some(log) = &log {
                            log.shutdown();
                        }
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        let started = Instant::now();
        let hub = self.serve.as_ref().map(|_| {
            let hub = Hub::new(self.websocket.replay, metrics.clone());
            drain.sinks.push(Box::new(hub.sink()));
            hub
        });
        let server = match (&self.serve, &hub) {
            (Some(addr), Some(hub)) => {
                let state = crate::routes::AppState {
                    shared: shared.clone(),
                    metrics: metrics.clone(),
                    started,
                };
                let workers = server::DEFAULT_WORKERS;
                let files = server::fds::raise_file_limit();
                let capacity = server::fds::Capacity::for_files(
                    files.after,
                    workers,
                    self.websocket.max_clients,
                );
                log_file_limit(&files, capacity, workers, log.as_ref());
                let websocket_config = WsConfig {
                    max_clients: capacity.ws_clients,
                    ..self.websocket
                };
                let websocket = ws::upgrade_handler(shared.clone(), hub.clone(), websocket_config);
                let ws_full = ws::full_check(hub.clone(), websocket_config);
                let router = crate::routes::router(&state, self.token.clone())
                    .route("/ws", false, Handler::Upgrade(websocket))
                    .refuse_when_full("/ws", ws_full)
                    .allowed_hosts(&self.allowed_hosts);
                let router = crate::dashboard::mount(router);
                let limits = server::http::Limits::default();
                let server = Server::start(
                    addr.as_str(),
                    router,
                    limits,
                    workers,
                    capacity,
                    metrics.http_shed(),
                )
                .map_err(|source| {
                    if let Some(log) = &log {
                        log.shutdown();
                    }
                    Error::Bind {
                        addr: addr.clone(),
                        source,
                    }
                })?;
                Some(server)
            }
            _ => None,
        };
        crate::diagnostics::warn_if_public_without_token(
            server.as_ref().map(Server::local_addr),
            self.token.is_some(),
            log.as_ref().map(|l| l.dispatch()),
        );
        let mut exporters = Vec::new();
        if let Some(config) = &self.remote_write {
            let dispatch = log.as_ref().map(|l| l.dispatch().clone());
            let schedule = crate::export::Schedule {
                interval: config.interval,
                timeout: config.timeout,
                final_wait: config.final_wait,
            };
            let started = crate::export::remote_write::RemoteWrite::new(
                config.clone(),
                &metrics,
                dispatch.clone(),
                None,
            )
            .and_then(|target| {
                crate::export::Exporter::start(
                    Box::new(target),
                    metrics.clone(),
                    schedule,
                    dispatch,
                )
                .map_err(|source| Error::Spawn {
                    name: "remote_write",
                    source,
                })
            });
            match started {
                Ok(exporter) => exporters.push(exporter),
                Err(error) => {
                    if let Some(log) = &log {
                        log.shutdown();
                    }
                    return Err(error);
                }
            }
        }
        if let Some(config) = &self.otlp {
            let dispatch = log.as_ref().map(|l| l.dispatch().clone());
            let schedule = crate::export::Schedule {
                interval: config.interval,
                timeout: config.timeout,
                final_wait: config.final_wait,
            };
            let started = crate::export::otlp::start(config.clone(), &metrics, dispatch.clone())
                .and_then(|(sink, target)| {
                    crate::export::Exporter::start(
                        Box::new(target),
                        metrics.clone(),
                        schedule,
                        dispatch,
                    )
                    .map(|exporter| (sink, exporter))
                    .map_err(|source| Error::Spawn {
                        name: "otlp",
                        source,
                    })
                });
            match started {
                Ok((sink, exporter)) => {
                    drain.sinks.push(Box::new(sink));
                    exporters.push(exporter);
                }
                Err(error) => {
                    if let Some(log) = &log {
                        log.shutdown();
                    }
                    return Err(error);
                }
            }
        }
        let thread = std::thread::Builder::new()
            .name("agentgate-obs-drain".into())
            .spawn(move || drain.run())
            .map_err(|source| {
                if let Some(log) = &log {
                    log.shutdown();
                }
                Error::Spawn {
                    name: "drain",
                    source,
                }
            })?;
        let log_dispatch = log.as_ref().map(|l| l.dispatch().clone());
        let obs = Observability {
            emitter: Emitter::new(shared.clone()),
            shared,
            drain: Mutex::new(DrainState::Running(thread)),
            started,
            namespace: self.namespace,
            log,
            metrics,
            local_addr: server.as_ref().map(Server::local_addr),
            server: Mutex::new(server),
            hub,
            journal,
            exporters: Mutex::new(exporters),
        };
        if let Some(plan) = push_plan {
            let schedule = Schedule {
                interval: plan.interval,
                timeout: plan.timeout,
                final_wait: plan.final_wait,
            };
            let target = PushGateway::new(plan, &obs.metrics, log_dispatch.clone());
            target.announce();
            let exporter = Exporter::start(
                Box::new(target),
                obs.metrics.clone(),
                schedule,
                log_dispatch.clone(),
            )
            .map_err(|source| Error::Spawn {
                name: "pushgateway",
                source,
            })?;
            obs.exporters.lock().push(exporter);
        }
        Ok(obs)
    }
}

/// Says, once at start, what became of the limit on open files and the
/// connection bounds sized from it.
fn log_file_limit(
    files: &server::fds::FileLimit,
    capacity: server::fds::Capacity,
    workers: usize,
    log: Option<&LogWriter>,
) {
    let Some(log) = log else {
        return;
    };
    let logger = crate::log::Logger::bound("agentgate_obs::server", log.dispatch().clone());
    let number = |n: Option<u64>| {
        n.map_or(
            crate::log::FieldValue::Json(serde_json::Value::Null),
            Into::into,
        )
    };
    let mut fields = vec![
        ("softBefore", number(files.before)),
        ("softAfter", number(files.after)),
        ("hard", number(files.hard)),
        (
            "maxConnections",
            (capacity.max_connections(workers) as u64).into(),
        ),
        ("maxPending", (capacity.pending as u64).into()),
        ("maxLingering", (capacity.lingering as u64).into()),
        ("wsMaxClients", (capacity.ws_clients as u64).into()),
    ];
    if let Some(error) = &files.error {
        fields.push(("error", error.clone().into()));
    }
    let message = if files.after > files.before {
        "raised the soft limit on open files; connection limits sized to it"
    } else {
        "kept the limit on open files; connection limits sized to it"
    };
    logger.info(message, fields);
}

enum DrainState {
    Running(JoinHandle<RunTracker>),
    Stopped(Box<RunTracker>),
    /// The drain thread panicked; nothing is tracked any more.
    Lost,
}

/// A running pipeline: the drain thread and everything attached to it.
///
/// Dropping it shuts the pipeline down (see [`Observability::shutdown`]).
///
/// ```
/// use agentgate_obs::{Observability, Phase, ProgressEmitter};
/// use std::time::Duration;
///
/// let obs = Observability::builder().queue_capacity(1024).start()?;
/// let emitter = obs.emitter();
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let counter = seen.clone();
/// let _sub = emitter.subscribe(move |_event| {
///     counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
/// });
/// emitter.emit_phase_completed("wo-1", "run-1", 1, Phase::Build, true, Duration::from_millis(1234));
/// obs.flush();
/// assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
/// obs.shutdown();
/// # Ok::<(), agentgate_obs::Error>(())
/// ```
pub struct Observability {
    shared: Arc<Shared>,
    emitter: Emitter,
    drain: Mutex<DrainState>,
    started: Instant,
    namespace: String,
    log: Option<LogWriter>,
    metrics: Metrics,
    local_addr: Option<SocketAddr>,
    server: Mutex<Option<Server>>,
    hub: Option<Arc<Hub>>,
    journal: Option<Journal>,
    /// The exporter threads delivering the metrics (a Pushgateway, remote
    /// write), finished at shutdown.
    /// Shutdown waits for their final deliveries side by side, each within
    /// its own final wait: the longest of them, not their sum.
    exporters: Mutex<Vec<crate::export::Exporter>>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability")
            .field("pipeline", &self.shared)
            .field("namespace", &self.namespace)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// How long shutdown waits for WebSocket clients to say goodbye.
const WS_GOODBYE: Duration = Duration::from_secs(2);

/// How long a query waits for the drain thread before giving up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl Observability {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A new handle for emitting events.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// The metric name prefix.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The metrics the drain thread feeds, as `/metrics` serves them:
    /// [`render`](Metrics::render), [`render_as`](Metrics::render_as),
    /// [`summary`](Metrics::summary).
    ///
    /// Not a [`MetricsCollector`](crate::metrics::MetricsCollector): the
    /// drain thread is the only writer of these series and derives them
    /// from the progress events (`active_runs` from the run tracker), so
    /// nothing can count a run twice or contradict the tracker. Report
    /// through the events; for a collector of your own, see
    /// [`StandaloneMetrics`](crate::metrics::StandaloneMetrics) (a
    /// separate registry).
    ///
    /// ```compile_fail,E0599
    /// # use agentgate_obs::{metrics::MetricsCollector, Observability};
    /// let obs = Observability::builder().no_log().start()?;
    /// obs.metrics().increment_runs_started(); // no such method: by design
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Makes this pipeline's [`Metrics`] the `metrics` crate's recorder for
    /// the whole process (feature `metrics`): `metrics::counter!`,
    /// `gauge!` and `histogram!` from any library land on this `/metrics`.
    /// Once per process: a second call, or one after another recorder was
    /// installed, is [`Error::MetricsRecorderAlreadyInstalled`]. The
    /// recorder outlives the pipeline (the `metrics` crate never drops it);
    /// after shutdown what it records is no longer served.
    ///
    /// ```no_run
    /// let obs = agentgate_obs::Observability::builder().no_log().start()?;
    /// obs.install_metrics_recorder()?;
    /// metrics::counter!("tool_calls_total", "tool" => "grep").increment(1);
    /// # Ok::<(), agentgate_obs::Error>(())
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn install_metrics_recorder(&self) -> Result<(), Error> {
        ::metrics::set_global_recorder(self.metrics.recorder())
            .map_err(|_| Error::MetricsRecorderAlreadyInstalled)
    }

    /// The HTTP server's bound address, when [`Builder::serve`] was used
    /// (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// How long the pipeline has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Returns once every event emitted before the call (on this thread, or
    /// on threads that synchronized with it) has been processed: applied to
    /// the tracker, the metrics and every sink, and passed to every listener.
    ///
    /// Returns at once after shutdown, and when called from a listener.
    ///
    /// With a [journal](Builder::journal), it also returns only once the
    /// journal's writer has handed every line of those events to the
    /// kernel (or counted it dropped), or after 10 s if the disk is stuck.
    pub fn flush(&self) {
        let drained = self.shared.on_drain(None, |_| ());
        if let (Some(()), Some(journal)) = (drained, &self.journal) {
            journal.flush(QUERY_TIMEOUT);
        }
    }

    /// The journal's accounting, when a [journal](Builder::journal) is
    /// written. Exact after [`flush`](Self::flush): every processed event
    /// is written or dropped.
    pub fn journal_stats(&self) -> Option<crate::journal::JournalStats> {
        self.journal.as_ref().map(Journal::stats)
    }

    /// The pipeline's accounting. Exact after [`flush`](Self::flush):
    /// `emitted == processed + dropped` for every event type.
    pub fn stats(&self) -> PipelineStats {
        if !matches!(*self.drain.lock(), DrainState::Running(_)) {
            // Nothing drains the ring any more: what is left was dropped.
            self.shared.collect_leftovers();
        }
        let counters = &self.shared.counters;
        // Emitted first: anything processed or dropped after this read was
        // emitted before it, so `processed + dropped <= emitted + in flight`.
        let emitted = counters.emitted();
        PipelineStats {
            emitted,
            processed: counters.processed.load(),
            dropped: counters.dropped.load(),
            queue_depth: self.shared.queue_depth(),
            queue_capacity: self.shared.capacity,
            listener_panics: counters
                .listener_panics
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Every tracked run, oldest first, as of the events processed so far.
    pub fn runs(&self) -> Vec<RunSnapshot> {
        if let DrainState::Stopped(tracker) = &*self.drain.lock() {
            return tracker.snapshot();
        }
        // Only `Arc`s are cloned on the drain thread; sorted and copied here.
        let mut runs = self
            .shared
            .on_drain(Some(QUERY_TIMEOUT), |drain| drain.tracker.shared_snapshot())
            .unwrap_or_default();
        crate::tracker::sort_runs(&mut runs);
        runs.iter().map(|r| RunSnapshot::clone(r)).collect()
    }

    /// Runs started and not yet terminal, as of the events processed so far.
    pub fn active_runs(&self) -> u64 {
        self.shared.counters.active_runs()
    }

    /// A logger for `module` bound to this pipeline's log writer (records
    /// are not written when logging is off). [`Logger::new`] writes to the
    /// most recently started pipeline instead.
    pub fn logger(&self, module: impl Into<std::borrow::Cow<'static, str>>) -> Logger {
        match &self.log {
            Some(log) => Logger::bound(module, log.dispatch().clone()),
            None => Logger::disabled(module),
        }
    }

    /// The log writer's accounting (all zero when logging is off). Exact
    /// after [`flush_logs`](Self::flush_logs) or shutdown.
    pub fn log_stats(&self) -> LogStats {
        self.log.as_ref().map(LogWriter::stats).unwrap_or_default()
    }

    /// Like [`flush`](Self::flush), then returns once every log record
    /// sent before the call (the progress lines included) is written.
    pub fn flush_logs(&self) {
        self.flush();
        if let Some(log) = &self.log {
            log.flush();
        }
    }

    /// Sends the metrics to a remote write receiver once, now, and says
    /// whether every sample arrived: for a process that rebuilt its
    /// figures (from a journal, say) and must know they were delivered.
    /// Every event emitted before the call is included (as after
    /// [`flush`](Self::flush)). `config`'s labels, retries and
    /// [`final_wait`](RemoteWriteConfig::final_wait) apply; its interval
    /// does not. Counted on `/metrics` as any other send.
    ///
    /// `timestamp_ms` (milliseconds since the Unix epoch) stamps every
    /// sample instead of the time of the send. The same cumulative figures
    /// delivered again count nothing twice: at the same time Prometheus
    /// takes them as duplicates, at a later one as a point with no change.
    /// A time older than points the series already have (the engine's own
    /// sends before it died) is refused as out of order with a `400`, as is
    /// another value at a time already written, counted as dropped; so
    /// `agentgate-obs push` stamps the time of the push. Such a delivery carries the series
    /// the events determine (runs, iterations, phases, gates, deliveries,
    /// events, durations, the engine's own families) and leaves out those
    /// of this process's pipeline (queue, renders, logs, journal writer,
    /// HTTP, WebSocket, remote write): they describe the sender, not the
    /// journal, and change between two sends.
    ///
    /// Returns the number of samples sent; [`Error::InvalidUrl`] or
    /// [`Error::Config`] for a `config` that [`Builder::remote_write_config`]
    /// would refuse, [`Error::Delivery`] when samples were refused, or
    /// failed within the wait.
    pub fn remote_write_once(
        &self,
        config: &RemoteWriteConfig,
        timestamp_ms: Option<i64>,
    ) -> Result<u64, Error> {
        let log = self.log.as_ref().map(|l| l.dispatch().clone());
        let mut target = crate::export::remote_write::RemoteWrite::new(
            config.clone(),
            &self.metrics,
            log,
            timestamp_ms,
        )?;
        self.flush();
        let deadline = Instant::now() + config.final_wait;
        let outcome = target.deliver_now(
            &self.metrics,
            deadline,
            true,
            &crate::export::Pause::plain(),
        );
        if outcome.failed == 0 && outcome.dropped == 0 {
            return Ok(outcome.sent);
        }
        Err(Error::Delivery {
            url: crate::metrics::remote_write::url_for_message(config.url()),
            refused: outcome.dropped > 0,
            // It may quote the receiver's answer, which may quote the request.
            reason: self.metrics.redact(&outcome.error.unwrap_or_else(|| {
                format!(
                    "{} samples failed and {} were dropped",
                    outcome.failed, outcome.dropped
                )
            })),
        })
    }

    /// Stops the pipeline: later emits are counted as dropped, every event
    /// already accepted is processed, then the drain thread is joined.
    /// With [remote write](Builder::remote_write), the metrics are then
    /// sent once more, with every accepted event in them, waiting at most
    /// [`RemoteWriteConfig::final_wait`] (a failure is counted and logged).
    /// With a [journal](Builder::journal), its writer then writes (and,
    /// unless its policy is `Fsync::Never`, syncs) every line it was
    /// handed, within 10 s (a stuck disk is left behind, not waited for).
    /// Idempotent; also runs on drop.
    pub fn shutdown(&self) {
        // The server first: a scrape during shutdown gets an answer or a refused connection.
        if let Some(mut server) = self.server.lock().take() {
            server.stop();
        }
        let mut state = self.drain.lock();
        let DrainState::Running(_) = &*state else {
            return;
        };
        self.shared.close();
        let DrainState::Running(thread) = std::mem::replace(&mut *state, DrainState::Lost) else {
            return;
        };
        self.shared.send_stop(|| !thread.is_finished());
        if let Ok(tracker) = thread.join() {
            *state = DrainState::Stopped(Box::new(tracker));
        }
        drop(state);
        self.shared.collect_leftovers();
        // After the drain thread: the final deliveries carry every accepted event.
        crate::export::finish_all(std::mem::take(&mut *self.exporters.lock()));
        // Last: every accepted event has reached the hub; clients get it, then 1001.
        if let Some(hub) = &self.hub {
            hub.close_and_wait(WS_GOODBYE);
        }
        // After the drain thread: it handed over its last batch.
        if let Some(journal) = &self.journal {
            journal.shutdown(QUERY_TIMEOUT);
        }
        // After the drain thread: its last progress lines are accepted.
        if let Some(log) = &self.log {
            log.shutdown();
        }
    }
}

impl Drop for Observability {
    fn drop(&mut self) {
        self.shutdown();
    }
}
