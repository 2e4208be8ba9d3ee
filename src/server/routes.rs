//! The built-in routes: `/metrics`, `/health`, `/api/runs`, `/api/summary`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{Request, Response};
use super::router::{Handler, Router};
use crate::exposition::Format;
use crate::metrics::Metrics;
use crate::pipeline::Shared;

/// How long `/api/runs` waits for the drain thread before answering 503.
const RUNS_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Metrics,
    pub(crate) started: Instant,
}

/// The router with every built-in route; `/` and `/ws` are left to the
/// dashboard and WebSocket layers (404 until they add themselves).
pub(crate) fn router(state: &AppState, token: Option<String>) -> Router {
    let metrics = state.metrics.clone();
    let health = state.clone();
    let runs = state.shared.clone();
    let summary = state.metrics.clone();
    Router::new(token)
        .route(
            "/metrics",
            false,
            Handler::Respond(Box::new(move |request| scrape(&metrics, request))),
        )
        .route(
            "/health",
            true,
            Handler::Respond(Box::new(move |_| health_check(&health))),
        )
        .route(
            "/api/runs",
            false,
            Handler::Respond(Box::new(move |_| {
                match runs.on_drain(Some(RUNS_TIMEOUT), |drain| drain.tracker.snapshot()) {
                    Some(snapshot) => Response::json(200, &snapshot),
                    None => Response::error(503, "the pipeline did not answer in time")
                        .with_header("Retry-After", "1"),
                }
            })),
        )
        .route(
            "/api/summary",
            false,
            Handler::Respond(Box::new(move |_| Response::json(200, &summary.summary()))),
        )
}

fn scrape(metrics: &Metrics, request: &Request) -> Response {
    let format = Format::negotiate(request.header("accept"));
    Response::new(200, format.content_type(), metrics.render_as(format))
}

fn health_check(state: &AppState) -> Response {
    let counters = &state.shared.counters;
    let body = serde_json::json!({
        "status": if state.shared.is_closed() { "stopping" } else { "ok" },
        "uptimeSeconds": (state.started.elapsed().as_millis() as f64) / 1000.0,
        "queueDepth": state.shared.queue_depth(),
        "queueCapacity": state.shared.capacity,
        "eventsDropped": counters.dropped.load().total(),
        "wsClients": state.metrics.ws_clients(),
    });
    Response::json(200, &body)
}
