//! The built-in routes: `/metrics`, `/health`, `/api/runs`, `/api/summary`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exposition::Exposition;
use crate::metrics::Metrics;
use crate::pipeline::Shared;
use crate::server::http::{Request, Response};
use crate::server::router::{Handler, Router};
use crate::tracker::{RunSnapshot, sort_runs};

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
            Handler::Respond(Box::new(move |request| list_runs(&runs, request))),
        )
        .route(
            "/api/summary",
            false,
            Handler::Respond(Box::new(move |_| Response::json(200, &summary.summary()))),
        )
}

/// Runs in one `/api/runs` answer unless `?limit=` says otherwise.
pub(crate) const RUNS_DEFAULT_LIMIT: usize = 500;

/// Which runs `/api/runs` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusFilter {
    All,
    Active,
    Finished,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::All => "all",
            StatusFilter::Active => "active",
            StatusFilter::Finished => "finished",
        }
    }

    fn keeps(self, run: &RunSnapshot) -> bool {
        match self {
            StatusFilter::All => true,
            StatusFilter::Active => !run.is_terminal(),
            StatusFilter::Finished => run.is_terminal(),
        }
    }
}

/// `/api/runs?limit=N&offset=N&status=active|finished|all`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunsQuery {
    limit: Option<usize>,
    offset: usize,
    status: StatusFilter,
}

impl RunsQuery {
    fn parse(request: &Request) -> Result<RunsQuery, String> {
        let number = |key: &str| -> Result<Option<usize>, String> {
            match request.query_param(key) {
                None => Ok(None),
                // Digits only: `usize::from_str` also takes a leading `+`.
                Some(v) => v
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<usize>().ok())
                    .flatten()
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be a whole number, not {:?}", clip(&v))),
            }
        };
        let limit = number("limit")?;
        if limit == Some(0) {
            return Err("limit must be at least 1".into());
        }
        let status = match request.query_param("status").as_deref() {
            None | Some("all") => StatusFilter::All,
            Some("active") => StatusFilter::Active,
            Some("finished") => StatusFilter::Finished,
            Some(other) => {
                return Err(format!(
                    "status must be active, finished or all, not {:?}",
                    clip(other)
                ));
            }
        };
        Ok(RunsQuery {
            limit,
            offset: number("offset")?.unwrap_or(0),
            status,
        })
    }
}

/// A bad value quoted back, not too long.
fn clip(value: &str) -> String {
    value.chars().take(40).collect()
}

/// `GET /api/runs`: a JSON array of tracked runs, oldest first, at most
/// `limit` (default [`RUNS_DEFAULT_LIMIT`], at most the tracker's bound)
/// from `offset`. `X-Total-Count` says how many match; `Link: <…>;
/// rel="next"` points at the next page while there is one. The drain
/// thread only clones `Arc`s; filtering, sorting and serializing happen
/// here, on the worker.
fn list_runs(shared: &Arc<Shared>, request: &Request) -> Response {
    let query = match RunsQuery::parse(request) {
        Ok(query) => query,
        Err(message) => return Response::error(400, &message),
    };
    let answer = shared.on_drain(Some(RUNS_TIMEOUT), |drain| {
        (drain.tracker.shared_snapshot(), drain.tracker.max_runs())
    });
    let Some((mut runs, max_runs)) = answer else {
        return Response::error(503, "the pipeline did not answer in time")
            .with_header("Retry-After", "1");
    };
    let limit = query.limit.unwrap_or(RUNS_DEFAULT_LIMIT.min(max_runs));
    if limit > max_runs {
        return Response::error(
            400,
            &format!("limit must be at most {max_runs} (the runs tracked at most)"),
        );
    }
    runs.retain(|r| query.status.keeps(r));
    sort_runs(&mut runs);
    let total = runs.len();
    let start = query.offset.min(total);
    let end = start.saturating_add(limit).min(total);
    let mut response =
        Response::json(200, &&runs[start..end]).with_header("X-Total-Count", total.to_string());
    if end < total {
        response = response.with_header(
            "Link",
            format!(
                "</api/runs?limit={limit}&offset={end}&status={}>; rel=\"next\"",
                query.status.as_str()
            ),
        );
    }
    response
}

fn scrape(metrics: &Metrics, request: &Request) -> Response {
    let exposition = Exposition::negotiate(request.header("accept"));
    Response::new(
        200,
        exposition.content_type(),
        metrics.render_exposition(exposition),
    )
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
