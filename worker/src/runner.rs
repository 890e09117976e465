//! The worker process's main loop: serve shuffle data, register, heartbeat, run tasks.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_proto::pb::coordinator_client::CoordinatorClient;
use sluice_proto::pb::shuffle_server::ShuffleServer;
use sluice_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pb};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

use crate::cpu::CpuPool;
use crate::shuffle::ShuffleRegistry;
use crate::shuffle::serve::ShuffleService;
use crate::task::{TaskEnv, run_assignment};

/// How long a starting worker keeps trying to reach the coordinator.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's URL, e.g. `http://10.0.0.1:7700`.
    pub coordinator: String,
    /// Address other workers fetch shuffle data from; defaults to the bound address.
    pub advertise: Option<String>,
    /// Root of the worker's local files (shuffle spills).
    pub work_dir: PathBuf,
    /// Tasks run at once.
    pub slots: usize,
}

/// Any error that stops a worker.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

async fn connect(url: &str) -> Result<CoordinatorClient<Channel>, WorkerError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match CoordinatorClient::connect(url.to_string()).await {
            Ok(c) => {
                return Ok(c
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES));
            }
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("cannot reach coordinator {url}: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn register(
    client: &mut CoordinatorClient<Channel>,
    advertise: &str,
    slots: usize,
) -> Result<(String, Duration), WorkerError> {
    let r = client
        .register_worker(pb::RegisterWorkerRequest {
            protocol_version: PROTOCOL_VERSION,
            shuffle_addr: advertise.to_string(),
            slots: slots as u32,
        })
        .await?
        .into_inner();
    Ok((
        r.worker_id,
        Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10))),
    ))
}

/// Runs a worker until `shutdown` resolves: serves shuffle data on `listener`, registers with
/// the coordinator and pulls tasks. Shuffle files of a previous run in `work_dir` are removed
/// first: a restarted worker is a new worker and nobody will ask for them.
pub async fn run_worker(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let bound = listener.local_addr()?;
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| bound.to_string());
    let shuffle_dir = config.work_dir.join("shuffle");
    if shuffle_dir.exists() {
        tokio::fs::remove_dir_all(&shuffle_dir).await?;
    }
    tokio::fs::create_dir_all(&shuffle_dir).await?;

    let registry = ShuffleRegistry::default();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = Server::builder()
        .add_service(
            ShuffleServer::new(ShuffleService::new(registry.clone()))
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = server_stop.wait_for(|s| *s).await;
        });
    let server = tokio::spawn(server);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let mut client = connect(&config.coordinator).await?;
    let (mut worker_id, interval) = register(&mut client, &advertise, config.slots).await?;
    tracing::info!(%worker_id, shuffle = %advertise, slots = config.slots, "worker registered");

    let env = TaskEnv {
        worker_id: worker_id.clone(),
        work_dir: config.work_dir.clone(),
        registry: registry.clone(),
        cpu: CpuPool::new(config.slots)?,
        coordinator: client.clone(),
    };
    let running = Arc::new(AtomicUsize::new(0));
    let wake = Arc::new(Notify::new());
    loop {
        let free = config.slots.saturating_sub(running.load(Ordering::SeqCst));
        let reply = client
            .heartbeat(pb::HeartbeatRequest {
                worker_id: worker_id.clone(),
                free_slots: free as u32,
            })
            .await;
        match reply {
            Ok(r) => {
                let r = r.into_inner();
                if r.reregister {
                    (worker_id, _) = register(&mut client, &advertise, config.slots).await?;
                    tracing::info!(%worker_id, "worker registered again");
                }
                for job in r.finished_jobs {
                    registry.remove_job(&job);
                    let dir = shuffle_dir.join(&job);
                    if dir.exists() {
                        let _ = tokio::fs::remove_dir_all(&dir).await;
                    }
                }
                for a in r.assignments {
                    running.fetch_add(1, Ordering::SeqCst);
                    let (env, running, wake) = (
                        TaskEnv {
                            worker_id: worker_id.clone(),
                            ..env.clone()
                        },
                        running.clone(),
                        wake.clone(),
                    );
                    tokio::spawn(async move {
                        run_assignment(env, a).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
    tracing::info!(%worker_id, "worker stopping");
    let _ = server.await;
    Ok(())
}
