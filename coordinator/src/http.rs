//! The coordinator's HTTP side: probes for orchestrators and Prometheus metrics.
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once the job store is open and gRPC is serving, 503 before (readiness).
//! - `GET /metrics`: Prometheus text format.
//!
//! These endpoints carry no job data, so they need no token: probes and scrapers cannot be
//! given one easily. A later web UI with job details belongs behind the token.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::service::CoordinatorService;

#[derive(Clone)]
struct Http {
    service: CoordinatorService,
    ready: Arc<AtomicBool>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(h): State<Http>) -> impl IntoResponse {
    if h.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(h): State<Http>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, sluice_common::metrics::CONTENT_TYPE)],
        h.service.metrics_text(),
    )
}

/// Serves the HTTP endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: CoordinatorService,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Http { service, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
