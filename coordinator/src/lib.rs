//! # sluice-coordinator: plans jobs, schedules tasks, decides commits
//!
//! # Layout, in the order a job meets it
//! - [`plugins`]: uploaded plugin libraries, stored by sha256.
//! - [`plan`][plan]: expand inputs, check them, cut splits ([`plan::split`]).
//! - [`service`][service]: the gRPC service; workers pull tasks with their heartbeats.
//! - [`job`][job]: one job's state machine, its [`job::lineage`] (where each map output lives)
//!   and [`job::commit`] (one committer per partition, `_SUCCESS`).
//! - [`cluster::workers`][cluster::workers]: membership.
//! - [`store`]: the SQLite job store (history of jobs, tasks, attempts, counters).
//! - [`wire`]: the job core's types to and from protobuf, at the service and store edges.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.

#![warn(missing_docs)]

pub mod alerts;
pub mod clock;
pub mod cluster;
pub mod error;
pub mod http;
pub mod job;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod plugins;
pub mod schedule;
pub mod service;
pub mod store;
pub mod ui;
pub mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_common::config::{
    DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_PLUGIN_BYTES, DEFAULT_MAX_STORED_PLUGIN_BYTES,
    DEFAULT_WORKER_TIMEOUT_MS,
};
use sluice_proto::pb::coordinator_server::CoordinatorServer;
use sluice_proto::transport::Security;
use sluice_proto::{MAX_MESSAGE_BYTES, pb};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;

pub use service::CoordinatorService;

/// How long a stopping coordinator waits for in-flight calls.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request the coordinator decodes.
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// A coordinator's settings (after the config file, environment and flags are merged).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Job store (`sluice.db`) and stored plugins (`plugins/`).
    pub state_dir: PathBuf,
    /// How often workers heartbeat.
    pub heartbeat: Duration,
    /// Largest plugin a client may upload.
    pub max_plugin_bytes: u64,
    /// Bytes of plugins kept; the least recently used beyond are removed.
    pub max_stored_plugin_bytes: u64,
    /// A worker silent this long is lost.
    pub worker_timeout: Duration,
    /// Attempts and speculation.
    pub policy: job::Policy,
    /// Cluster token and TLS.
    pub security: Security,
    /// Upper bounds on job settings, checked at submission.
    pub limits: sluice_common::spec::Limits,
    /// Where alerts go.
    pub alerts: Vec<alerts::AlertTarget>,
    /// The queues jobs share the slots in.
    pub queues: cluster::queues::Queues,
    /// Ended jobs are kept this long (history, events, attempts); `None`: forever.
    pub retention: Option<Duration>,
    /// Whether the job store survives power loss (see [`store::Durability`]).
    pub durability: store::Durability,
}

/// Ended jobs are kept 90 days by default: a quarter of nightly runs to look back on.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

impl CoordinatorConfig {
    /// The defaults, with state in `state_dir` and no token or TLS.
    pub fn new(state_dir: PathBuf) -> Self {
        CoordinatorConfig {
            state_dir,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_BYTES,
            max_stored_plugin_bytes: DEFAULT_MAX_STORED_PLUGIN_BYTES,
            worker_timeout: Duration::from_millis(DEFAULT_WORKER_TIMEOUT_MS),
            policy: job::Policy::default(),
            security: Security::none(),
            limits: sluice_common::spec::Limits::default(),
            alerts: Vec::new(),
            queues: Default::default(),
            retention: Some(DEFAULT_RETENTION),
            durability: store::Durability::Durable,
        }
    }
}

/// Any error that stops the coordinator.
pub type CoordinatorRunError = Box<dyn std::error::Error + Send + Sync>;

/// Serves the coordinator's gRPC on `grpc` (and HTTP on `http`, when given) until `shutdown`
/// resolves; then flushes the job store.
pub async fn run_coordinator(
    config: CoordinatorConfig,
    grpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorRunError> {
    let (history, journal) = {
        let dir = config.state_dir.clone();
        let durability = config.durability;
        tokio::task::spawn_blocking(move || store::open(&dir, durability)).await??
    };
    let plugins = plugins::PluginStore::open(
        config.state_dir.join("plugins"),
        config.max_plugin_bytes,
        config.max_stored_plugin_bytes,
    )
    .map_err(|e| format!("plugin store in {}: {e}", config.state_dir.display()))?;
    let service = CoordinatorService::new(
        plugins,
        history,
        journal.clone(),
        config.heartbeat,
        config.policy,
    )
    .with_reader(store::Reader::new(&config.state_dir))
    .with_security(config.security.clone())
    .with_limits(config.limits)
    .with_alerts(config.alerts)
    .with_queues(config.queues);
    service.spawn_worker_expiry(config.worker_timeout);
    if let Some(keep) = config.retention {
        service.spawn_retention(keep);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // Pipeline runs go on from where the store left them, and start steps as jobs end.
    let driver = service.clone();
    let driver_stop = stopped();
    let heartbeat = config.heartbeat;
    tokio::spawn(async move {
        tokio::select! {
            _ = driver.drive_pipelines_every(heartbeat) => {}
            _ = driver_stop => {}
        }
    });

    let ready = Arc::new(AtomicBool::new(false));
    let http_task = http.map(|listener| {
        let (service, ready, security) = (service.clone(), ready.clone(), config.security.clone());
        let stop = stopped();
        tokio::spawn(async move { http::serve(listener, service, ready, &security, stop).await })
    });

    // Requests are small (plugin uploads come in 1 MiB chunks); replies carry assignments.
    let server = CoordinatorServer::new(service)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = sluice_proto::transport::server();
    if let Some(tls) = config.security.server_tls() {
        builder = builder.tls_config(tls)?;
    }
    let router = builder.add_service(InterceptedService::new(
        server,
        config.security.check_token("coordinator"),
    ));
    ready.store(true, Ordering::SeqCst);
    let serve =
        router.serve_with_incoming_shutdown(sluice_proto::transport::incoming(grpc), stopped());
    let give_up = stopped();
    let served = tokio::select! {
        r = serve => r,
        _ = async { give_up.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("clients still connected {SHUTDOWN_GRACE:?} after the stop: closing");
            Ok(())
        }
    };
    ready.store(false, Ordering::SeqCst);
    if let Err(e) = tokio::task::spawn_blocking(move || journal.sync()).await? {
        tracing::error!(error = %e, "stopping with changes the job store did not record");
    }
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, t).await;
    }
    served?;
    Ok(())
}

/// The job states clients see, as words.
pub fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        Ok(pb::JobState::CommitFailed) => "commit-failed",
        _ => "unknown",
    }
}
