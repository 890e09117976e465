//! The worker process's main loop: serve shuffle data, register, heartbeat, run tasks.
//!
//! Stopping (the `shutdown` future resolving, SIGTERM in the `sluice worker` process) drains
//! the worker, as YARN's graceful decommission does: it tells the coordinator it is draining
//! so it gets no new tasks, lets the running ones finish (up to `drain_timeout`), keeps
//! serving shuffle data meanwhile, then stops.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_common::config::DEFAULT_DRAIN_TIMEOUT_SECS;
use sluice_proto::pb::shuffle_server::ShuffleServer;
use sluice_proto::transport::{CoordinatorClient, Security};
use sluice_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pb};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::cpu::CpuPool;
use crate::logs::files::is_safe_id;
use crate::plugin_cache::PluginCache;
use crate::shuffle::serve::ShuffleService;
use crate::shuffle::{MapOutputId, ShuffleRegistry};
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
    /// Root of the worker's local files (shuffle spills, plugin cache).
    pub work_dir: PathBuf,
    /// Tasks run at once.
    pub slots: usize,
    /// How long a stopping worker waits for its running tasks.
    pub drain_timeout: Duration,
    /// Cluster token and TLS, for the shuffle server and every client call.
    pub security: Security,
    /// The machine this worker runs on: reducers read the map outputs of workers with the
    /// same host id from disk (see `shuffle::read`).
    pub host_id: String,
    /// Memory for all slots together: each task gets `memory / slots` at most, and the
    /// coordinator assigns only jobs whose `task_memory` fits.
    pub memory: u64,
    /// How long attempt logs are kept after a job's last one was written.
    pub log_retention: Duration,
    /// Set while the worker is registered and not draining (its `/readyz`).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// How often the worker looks for attempt logs past their retention.
const LOG_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Attempt logs are kept this long by default (a week: last night's failure is still there
/// on Monday).
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Minimum memory share of a slot: below it no job could run usefully.
pub const MIN_SLOT_MEMORY: u64 = 16 << 20;

/// Default worker memory: three quarters of the machine's (the rest is for the page cache
/// the shuffle reads from, and for the OS), or 4 GiB when it cannot be read.
pub fn default_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t))
        .map_or(4 << 30, |total| total / 4 * 3)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// This machine's hostname, the default host id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl WorkerConfig {
    /// A worker of `slots` slots with no token or TLS and the default drain timeout.
    pub fn new(coordinator: String, work_dir: PathBuf, slots: usize) -> Self {
        WorkerConfig {
            coordinator,
            advertise: None,
            work_dir,
            slots,
            drain_timeout: Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_SECS),
            security: Security::none(),
            host_id: hostname(),
            memory: default_memory(),
            log_retention: DEFAULT_LOG_RETENTION,
            ready: Arc::default(),
        }
    }
}

/// Any error that stops a worker.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// Identifies an attempt running on this worker: job, is-map, index, attempt.
type AttemptKey = (String, bool, u32, u32);

/// The attempts running on this worker, so the coordinator can stop them (a speculation
/// loser, a task of a job that failed or was cancelled).
///
/// Stopping is cooperative: the attempt is flagged, runs to its end (plugin code cannot be
/// interrupted safely, and its slot stays busy meanwhile, so the slot count stays honest),
/// does not report, and removes what it wrote.
#[derive(Clone, Default)]
struct Running {
    tasks: Arc<std::sync::Mutex<HashMap<AttemptKey, Arc<AtomicBool>>>>,
    wake: Arc<Notify>,
}

/// Removes its attempt from the table when the attempt ends, and wakes the heartbeat loop:
/// a slot is free.
struct RunningGuard {
    running: Running,
    key: AttemptKey,
    /// Whether to wake the loop: not when the report's reply already refilled the slot.
    wake: bool,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.lock().remove(&self.key);
        if self.wake {
            self.running.wake.notify_one();
        }
    }
}

/// Who this worker is to the coordinator: the id and secret of its latest registration.
#[derive(Clone, Debug)]
struct Registration {
    id: String,
    secret: String,
}

/// A stop (SIGTERM) came: the worker is no longer ready and drains from now on.
fn stop_asked(
    me: &Registration,
    running: usize,
    ready: &std::sync::atomic::AtomicBool,
) -> tokio::time::Instant {
    tracing::info!(worker_id = %me.id, running, "worker draining");
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::Instant::now()
}

/// Starts attempt `a` on this worker under `me`, unless its job id is unsafe.
fn start(a: pb::TaskAssignment, env: &TaskEnv, me: &Registration, running: &Running) {
    if !is_safe_id(&a.job_id) {
        tracing::error!(job = ?a.job_id, "refusing an assignment whose job id is not a plain name");
        return;
    }
    let key: AttemptKey = match &a.task {
        Some(pb::task_assignment::Task::Map(m)) => (a.job_id.clone(), true, m.index, a.attempt),
        Some(pb::task_assignment::Task::Reduce(t)) => {
            (a.job_id.clone(), false, t.partition, a.attempt)
        }
        None => return,
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    let env = TaskEnv {
        worker_id: me.id.clone(),
        secret: me.secret.clone(),
        cancelled: cancelled.clone(),
        ..env.clone()
    };
    let mut guard = RunningGuard {
        running: running.clone(),
        key: key.clone(),
        wake: true,
    };
    // Hold the table's lock across spawn so the guard cannot remove the key before it is
    // inserted.
    let mut tasks = running.lock();
    tokio::spawn(async move {
        // A reply that refilled the slot already queued the next attempt: no heartbeat is
        // needed to ask for one.
        guard.wake = !run_assignment(env, a).await;
        drop(guard);
    });
    tasks.insert(key, cancelled);
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptKey, Arc<AtomicBool>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The running attempts, for the heartbeat.
    fn refs(&self) -> Vec<pb::AttemptRef> {
        self.lock()
            .keys()
            .map(|(job_id, is_map, index, attempt)| pb::AttemptRef {
                job_id: job_id.clone(),
                is_map: *is_map,
                index: *index,
                attempt: *attempt,
            })
            .collect()
    }

    /// Flags the attempts `matching` selects as cancelled; returns their keys.
    fn cancel(&self, matching: impl Fn(&AttemptKey) -> bool) -> Vec<AttemptKey> {
        let tasks = self.lock();
        tasks
            .iter()
            .filter(|(k, _)| matching(k))
            .map(|(k, flag)| {
                flag.store(true, Ordering::SeqCst);
                k.clone()
            })
            .collect()
    }
}

/// Job ids name directories under the work dir: only plain names (`job-0001`) are used as
/// paths, so even a misbehaving coordinator cannot make a worker touch `..` or `/`.
fn held_outputs(registry: &ShuffleRegistry) -> Vec<pb::AttemptRef> {
    registry
        .ids()
        .into_iter()
        .map(|id| pb::AttemptRef {
            job_id: id.job_id,
            is_map: true,
            index: id.map_index,
            attempt: id.attempt,
        })
        .collect()
}

/// Registers, retrying while the coordinator is unreachable (it may start after us) but not
/// when it answers with a refusal (wrong token, other protocol version): those do not heal.
async fn register(
    client: &mut CoordinatorClient,
    url: &str,
    advertise: &str,
    slots: usize,
    memory: u64,
    held_outputs: Vec<pb::AttemptRef>,
) -> Result<(Registration, Duration), WorkerError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        let reply = client
            .register_worker(pb::RegisterWorkerRequest {
                protocol_version: PROTOCOL_VERSION,
                shuffle_addr: advertise.to_string(),
                slots: slots as u32,
                held_outputs: held_outputs.clone(),
                memory,
            })
            .await;
        match reply {
            Ok(r) => {
                let r = r.into_inner();
                let me = Registration {
                    id: r.worker_id,
                    secret: r.secret,
                };
                return Ok((
                    me,
                    Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10))),
                ));
            }
            Err(s) if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => {
                return Err(format!(
                    "registering with coordinator {url}: {} ({:?})",
                    s.message(),
                    s.code()
                )
                .into());
            }
        }
    }
}

/// Runs a worker until `shutdown` resolves: serves shuffle data on `listener`, registers with
/// the coordinator and pulls tasks, then drains. Shuffle files of a previous run in
/// `work_dir` are removed first: a restarted worker is a new worker and nobody will ask for
/// them.
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
    let security = &config.security;

    let registry = ShuffleRegistry::default();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (server_stop_tx, mut server_stop) = watch::channel(false);
    let mut builder = sluice_proto::transport::server();
    if let Some(tls) = security.server_tls() {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .add_service(InterceptedService::new(
            ShuffleServer::new(ShuffleService::new(
                registry.clone(),
                config.work_dir.join("logs"),
            ))
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
            security.check_token("shuffle"),
        ))
        .serve_with_incoming_shutdown(sluice_proto::transport::incoming(listener), async move {
            let _ = server_stop.wait_for(|s| *s).await;
        });
    let server = tokio::spawn(server);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let channel = security.channel(&config.coordinator)?;
    let mut client = security.coordinator_client(channel);
    let registered = register(
        &mut client,
        &config.coordinator,
        &advertise,
        config.slots,
        config.memory,
        Vec::new(),
    )
    .await;
    let (mut me, interval) = match registered {
        Ok(r) => r,
        Err(e) => {
            let _ = server_stop_tx.send(true);
            let _ = server.await;
            return Err(e);
        }
    };
    tracing::info!(worker_id = %me.id, shuffle = %advertise, slots = config.slots, "worker registered");
    let ready = &config.ready;
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    crate::metrics::METRICS
        .slots
        .inc_by(i64::try_from(config.slots).unwrap_or(i64::MAX));

    // Assignments that came with a report's reply, started by this loop.
    let (next_tasks, mut next_rx) = tokio::sync::mpsc::unbounded_channel();
    let env = TaskEnv {
        worker_id: me.id.clone(),
        secret: me.secret.clone(),
        work_dir: config.work_dir.clone(),
        registry: registry.clone(),
        cpu: CpuPool::new(config.slots)?,
        coordinator: client.clone(),
        security: security.clone(),
        host_id: config.host_id.clone(),
        slot_memory: config.memory / config.slots.max(1) as u64,
        plugins: PluginCache::new(config.work_dir.join("plugins")),
        cancelled: Arc::default(),
        next_tasks,
    };
    let running = Running::default();
    let mut draining: Option<tokio::time::Instant> = None;
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep += LOG_SWEEP_EVERY;
            let (logs, keep) = (config.work_dir.join("logs"), config.log_retention);
            tokio::task::spawn_blocking(move || {
                let removed = crate::logs::files::sweep(&logs, std::time::SystemTime::now(), keep);
                if removed > 0 {
                    tracing::info!(jobs = removed, "attempt logs past their retention removed");
                }
            });
        }
        // Attempts a report's reply handed over are started before the free slots are
        // counted: their slot is taken, and offering it again would run one too many.
        while let Ok(a) = next_rx.try_recv() {
            start(a, &env, &me, &running);
        }
        let busy = running.len();
        let free_slots = config.slots.saturating_sub(busy) as u32;
        // An idle worker's heartbeat may wait at the coordinator for a task, so a new job or
        // a stage's turn reaches it at once; the wait stands for the interval.
        let wait_ms = if free_slots > 0 && draining.is_none() {
            interval.as_millis().try_into().unwrap_or(u32::MAX)
        } else {
            0
        };
        let call = client.heartbeat(pb::HeartbeatRequest {
            worker_id: me.id.clone(),
            secret: me.secret.clone(),
            free_slots,
            running: busy as u32,
            draining: draining.is_some(),
            running_attempts: running.refs(),
            wait_ms,
        });
        let reply = tokio::select! {
            r = call => r,
            // A stop while the coordinator holds the call: it is dropped and the draining
            // heartbeat goes at once, so no task is taken on the way out. (A task handed
            // out just then is found missing from this worker's next heartbeats and runs
            // elsewhere.)
            _ = stop_rx.wait_for(|s| *s), if wait_ms > 0 => {
                draining = Some(stop_asked(&me, running.len(), ready));
                continue;
            }
        };
        let mut held = false;
        match reply {
            Ok(r) => {
                let r = r.into_inner();
                held = r.held;
                if r.drain && draining.is_none() {
                    tracing::info!(worker_id = %me.id, running = running.len(), "the coordinator asked this worker to drain");
                    draining = Some(tokio::time::Instant::now());
                    ready.store(false, std::sync::atomic::Ordering::SeqCst);
                }
                if r.reregister && draining.is_none() {
                    // The coordinator restarted or declared us lost. Attempts started under
                    // the old id will be refused; what we still serve is offered again.
                    (me, _) = register(
                        &mut client,
                        &config.coordinator,
                        &advertise,
                        config.slots,
                        config.memory,
                        held_outputs(&registry),
                    )
                    .await?;
                    tracing::info!(worker_id = %me.id, "worker registered again");
                }
                for job in r.finished_jobs.into_iter().filter(|j| is_safe_id(j)) {
                    let stopped = running.cancel(|k| k.0 == job);
                    if !stopped.is_empty() {
                        tracing::info!(job = %job, attempts = stopped.len(), "job ended: attempts stopped");
                    }
                    registry.remove_job(&job);
                    crate::shuffle::footers::FOOTERS.forget_job(&job);
                    if sluice_common::plugin::forget_job(&job) > 0 {
                        tracing::info!(job = %job, "side inputs released");
                    }
                    let dir = shuffle_dir.join(&job);
                    if dir.exists() {
                        let _ = tokio::fs::remove_dir_all(&dir).await;
                    }
                }
                for c in r.cancel.into_iter().filter(|c| is_safe_id(&c.job_id)) {
                    let key = (c.job_id.clone(), c.is_map, c.index, c.attempt);
                    running.cancel(|k| *k == key);
                    if c.is_map {
                        // A losing map's output is nobody's input: drop it and its files.
                        registry.remove(&MapOutputId {
                            job_id: c.job_id.clone(),
                            map_index: c.index,
                            attempt: c.attempt,
                        });
                        let spill = crate::task::map_task::spill_path(
                            &config.work_dir,
                            &c.job_id,
                            c.index,
                            c.attempt,
                        );
                        let _ = tokio::fs::remove_file(&spill).await;
                    }
                    tracing::info!(job = %c.job_id, map = c.is_map, index = c.index, attempt = c.attempt, "attempt cancelled");
                }
                for a in r.assignments {
                    start(a, &env, &me, &running);
                }
            }
            Err(s) if s.code() == Code::Unauthenticated => {
                return Err(format!("coordinator refused the heartbeat: {}", s.message()).into());
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        if let Some(since) = draining {
            // The coordinator has heard `draining` at least once by now.
            let busy = running.len();
            if busy == 0 {
                break;
            }
            if since.elapsed() > config.drain_timeout {
                tracing::warn!(
                    running = busy,
                    "drain timeout: stopping with tasks still running"
                );
                break;
            }
        }
        if held {
            // The coordinator held the heartbeat in place of the interval: the next one goes
            // at once (a stop meanwhile ended the call above).
            continue;
        }
        // Wait for the next tick, a freed slot or a stop; tasks handed over by report replies
        // start meanwhile without a heartbeat.
        let tick = tokio::time::sleep(interval);
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s), if draining.is_none() => {
                    draining = Some(stop_asked(&me, running.len(), ready));
                    break; // tell the coordinator at once
                }
                _ = &mut tick => break,
                _ = running.wake.notified() => break,
                Some(a) = next_rx.recv() => start(a, &env, &me, &running),
            }
        }
    }
    tracing::info!(worker_id = %me.id, "worker stopping");
    let _ = server_stop_tx.send(true);
    // Reducers still streaming from us get a few seconds; a vanished one is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
