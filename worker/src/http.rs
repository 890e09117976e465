//! A worker's HTTP side (`sluice worker --http ADDR`): probes for orchestrators and its
//! Prometheus metrics ([`crate::metrics`]).
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 while the worker is registered with the coordinator and not
//!   draining, 503 otherwise (readiness).
//! - `GET /metrics`: the OpenMetrics text format.
//!
//! No job data is served here (figures are cluster-wide counts and durations), so no token
//! is asked: scrapers and probes rarely can present one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ready): State<Arc<AtomicBool>>) -> impl IntoResponse {
    if ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not registered\n")
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, sluice_common::metrics::CONTENT_TYPE)],
        crate::metrics::METRICS.render(),
    )
}

/// Serves the endpoints on `listener` until `shutdown` resolves; `ready` is the worker's
/// [`crate::WorkerConfig::ready`].
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
