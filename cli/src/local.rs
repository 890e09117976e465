//! Local mode: a coordinator and N workers in this process, talking gRPC over loopback
//! exactly as a cluster does (same code paths, real sockets), each worker with its own
//! work directory.
//!
//! Each run gets a random cluster token, so another user of the machine cannot reach the
//! loopback ports of a laptop run and submit code to it.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, Result};
use sluice_coordinator::CoordinatorConfig;
use sluice_coordinator::store::Durability;
use sluice_proto::transport::{Security, random_hex};
use sluice_worker::WorkerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Heartbeat interval of local mode. An idle worker's heartbeat waits at the coordinator for
/// work, so a new job or a stage's turn reaches it at once whatever the interval; the
/// interval bounds how late time-based decisions (a backup of a slow task, a task giving up
/// on a worker that holds its input) and an ended job's clean-up reach a worker. Short, as a
/// laptop run's stages are: a heartbeat to a coordinator in the same process 20 times a
/// second per worker costs nothing measurable.
const LOCAL_HEARTBEAT: Duration = Duration::from_millis(50);

/// A running local cluster; [`LocalCluster::shutdown`] stops it.
pub struct LocalCluster {
    /// URL of the coordinator.
    pub url: String,
    /// The run's random token; clients of the cluster need it.
    pub security: Security,
    stop_workers: watch::Sender<bool>,
    stop_coordinator: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    coordinator: JoinHandle<()>,
    _work: tempfile::TempDir,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A fresh token from the kernel's random source.
fn random_token() -> Result<Security> {
    let token = random_hex(24).context("reading /dev/urandom for the local run's token")?;
    Ok(Security::with_token(token.as_bytes())?)
}

impl LocalCluster {
    /// Starts a coordinator and `workers` workers of `slots` slots each on 127.0.0.1; the
    /// job store is kept in `state_dir` when given.
    pub async fn start(workers: usize, slots: usize, state_dir: Option<PathBuf>) -> Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("sluice-local-")
            .tempdir()
            .context("creating the local work directory")?;
        let security = random_token()?;
        let (stop_coordinator, coordinator_rx) = watch::channel(false);
        let (stop_workers, workers_rx) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the coordinator")?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = stopped(&coordinator_rx);
        // A laptop run keeps no history unless asked: the job store lives in the temporary
        // directory. Heartbeats are faster than a cluster's, as stage changes wait for one.
        let durability = match state_dir {
            Some(_) => Durability::Durable,
            None => Durability::Scratch,
        };
        let state_dir = state_dir.unwrap_or_else(|| work.path().join("coordinator"));
        let mut config = CoordinatorConfig::new(state_dir);
        config.durability = durability;
        config.heartbeat = LOCAL_HEARTBEAT;
        config.security = security.clone();
        let coordinator = tokio::spawn(async move {
            if let Err(e) =
                sluice_coordinator::run_coordinator(config, listener, None, shutdown).await
            {
                tracing::error!(error = %e, "coordinator stopped");
            }
        });
        let mut workers_tasks = Vec::new();
        for i in 0..workers {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a worker")?;
            let mut config = WorkerConfig::new(
                url.clone(),
                PathBuf::from(work.path()).join(format!("worker-{i}")),
                slots,
            );
            config.security = security.clone();
            let shutdown = stopped(&workers_rx);
            workers_tasks.push(tokio::spawn(async move {
                if let Err(e) = sluice_worker::run_worker(config, listener, shutdown).await {
                    tracing::error!(error = %e, "worker stopped");
                }
            }));
        }
        Ok(LocalCluster {
            url,
            security,
            stop_workers,
            stop_coordinator,
            workers: workers_tasks,
            coordinator,
            _work: work,
        })
    }

    /// Stops the workers, then the coordinator they say goodbye to, and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop_workers.send(true);
        for t in self.workers {
            let _ = t.await;
        }
        let _ = self.stop_coordinator.send(true);
        let _ = self.coordinator.await;
    }
}
