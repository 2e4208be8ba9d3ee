//! `/metrics` and the metrics API: the built-in families, the engine's own
//! metrics, promtool, and real Prometheus servers scraping us.

#[path = "../common/mod.rs"]
mod common;

mod custom_metrics;
mod fleet;
mod metrics_collector;
mod metrics_exposition;
mod native_histograms;
mod prometheus_server;
