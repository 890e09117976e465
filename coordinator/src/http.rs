//! The coordinator's HTTP side: probes for orchestrators and Prometheus metrics.
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once the job store is open and gRPC is serving, 503 before (readiness).
//! - `GET /metrics`: Prometheus text format.
//!
//! - `/ui`: the web UI ([`crate::ui`]), behind the cluster token.
//!
//! The probes and metrics carry no job data, so they need no token: probes and scrapers
//! cannot be given one easily. The UI's pages all need it.

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
use crate::ui::auth::UiAuth;

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

/// Serves the HTTP endpoints and the web UI (behind `security`'s token) on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: CoordinatorService,
    ready: Arc<AtomicBool>,
    security: &sluice_proto::transport::Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let loopback = listener.local_addr()?.ip().is_loopback();
    let random = sluice_proto::transport::random_hex(32)?;
    let auth = UiAuth::new(security.token_bytes(), loopback, random.as_bytes());
    let ui = crate::ui::routes(crate::ui::Ui {
        service: service.clone(),
        auth: Arc::new(auth),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Http { service, ready })
        .merge(ui);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
