//! `sluice coordinator` and `sluice worker`: the cluster's long-running processes.
//!
//! Each binds its ports first (0 picks a free one) and logs the bound addresses on its
//! first log line (`grpc=ADDR http=ADDR`, `shuffle=ADDR`) so scripts and tests can read them.
//! SIGTERM or SIGINT stops the coordinator gracefully and drains a worker.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use sluice_common::config::{
    DEFAULT_COORDINATOR_HTTP, DEFAULT_COORDINATOR_LISTEN, DEFAULT_COORDINATOR_URL,
    DEFAULT_DRAIN_TIMEOUT_SECS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PLUGIN_BYTES, DEFAULT_MAX_STORED_PLUGIN_BYTES, DEFAULT_STATE_DIR, DEFAULT_WORK_DIR,
    DEFAULT_WORKER_LISTEN, DEFAULT_WORKER_TIMEOUT_MS,
};
use sluice_coordinator::CoordinatorConfig;
use sluice_worker::WorkerConfig;
use sluice_worker::runner::MIN_SLOT_MEMORY;
use tokio::net::TcpListener;

use crate::settings::{ConfigArg, SecurityArgs, absolute};

/// `sluice coordinator`.
#[derive(Args, Clone, Debug)]
pub struct CoordinatorArgs {
    /// gRPC address [default: 0.0.0.0:7700].
    #[arg(long, env = "SLUICE_COORDINATOR_LISTEN")]
    listen: Option<String>,
    /// HTTP address for /healthz, /readyz, /metrics [default: 0.0.0.0:7780]; `off` disables.
    #[arg(long, env = "SLUICE_HTTP")]
    http: Option<String>,
    /// Job store and stored plugins [default: ./sluice-state].
    #[arg(long, env = "SLUICE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Worker heartbeat interval in milliseconds [default: 1000].
    #[arg(long, env = "SLUICE_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Largest plugin upload in bytes [default: 268435456].
    #[arg(long, env = "SLUICE_MAX_PLUGIN_BYTES")]
    max_plugin_bytes: Option<u64>,
    /// Bytes of stored plugins kept; the least recently used beyond are removed, never one
    /// a running job needs [default: 4294967296].
    #[arg(long, env = "SLUICE_MAX_STORED_PLUGIN_BYTES")]
    max_stored_plugin_bytes: Option<u64>,
    /// Milliseconds without a heartbeat after which a worker is lost [default: 10000].
    #[arg(long, env = "SLUICE_WORKER_TIMEOUT_MS")]
    worker_timeout_ms: Option<u64>,
    /// How long ended jobs stay in the history, with their events and attempts (`90d`,
    /// `12h`; `0`: forever) [default: 90d].
    #[arg(long, env = "SLUICE_RETENTION", value_parser = crate::parse_secs)]
    retention: Option<u64>,
    /// Attempts a task gets before the job fails [default: 4].
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS")]
    max_attempts: Option<u32>,
    /// Backup attempts for stragglers: true or false [default: true].
    #[arg(long, env = "SLUICE_SPECULATION")]
    speculation: Option<bool>,
    /// Most reduce partitions a job may ask for [default: 10000].
    #[arg(long, env = "SLUICE_MAX_REDUCERS")]
    max_reducers: Option<u32>,
    /// Most map tasks a job's input may be cut into [default: 100000].
    #[arg(long, env = "SLUICE_MAX_TASKS_PER_JOB")]
    max_tasks_per_job: Option<u64>,
    /// Most memory a job may ask for per task, e.g. `64GiB` [default: 1TiB].
    #[arg(long, env = "SLUICE_MAX_TASK_MEMORY", value_parser = sluice_common::spec::parse_bytes)]
    max_task_memory: Option<u64>,
    /// Most rows per record batch a job may ask for [default: 1048576].
    #[arg(long, env = "SLUICE_MAX_BATCH_ROWS")]
    max_batch_rows: Option<u32>,
    /// Listen on a non-loopback address without a cluster token: for a network you trust.
    #[arg(long, env = "SLUICE_INSECURE")]
    insecure: bool,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    config: ConfigArg,
}

/// `sluice worker`.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// The coordinator's URL [default: http://127.0.0.1:7700].
    #[arg(long, env = "SLUICE_COORDINATOR")]
    coordinator: Option<String>,
    /// Shuffle service address [default: 0.0.0.0:7701].
    #[arg(long, env = "SLUICE_WORKER_LISTEN")]
    listen: Option<String>,
    /// Shuffle address other workers dial [default: the bound address].
    #[arg(long, env = "SLUICE_ADVERTISE")]
    advertise: Option<String>,
    /// Shuffle files and plugin cache [default: ./sluice-work].
    #[arg(long, env = "SLUICE_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, env = "SLUICE_SLOTS")]
    slots: Option<usize>,
    /// Seconds a stopping worker waits for running tasks [default: 300].
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: Option<u64>,
    /// Memory for all task slots together, e.g. `8GiB`: a task gets `memory / slots`, and
    /// jobs whose --task-memory exceeds that are not run here [default: 3/4 of the RAM].
    #[arg(long, env = "SLUICE_WORKER_MEMORY", value_parser = sluice_common::spec::parse_bytes)]
    memory: Option<u64>,
    /// The machine this worker runs on: workers with the same host id read each other's map
    /// outputs straight from disk instead of over the network [default: the hostname].
    #[arg(long, env = "SLUICE_HOST_ID")]
    host_id: Option<String>,
    /// Listen on a non-loopback address without a cluster token: for a network you trust.
    #[arg(long, env = "SLUICE_INSECURE")]
    insecure: bool,
    /// How long each job's attempt logs are kept in the work dir after their last line
    /// (`7d`, `12h`) [default: 7d].
    #[arg(long, env = "SLUICE_LOG_RETENTION", value_parser = crate::parse_secs)]
    log_retention: Option<u64>,
    /// HTTP address for /healthz, /readyz and /metrics (e.g. `0.0.0.0:7781`) [default:
    /// none, no HTTP port].
    #[arg(long, env = "SLUICE_WORKER_HTTP")]
    http: Option<String>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    config: ConfigArg,
}

/// A duration in seconds from its flag, else from the config file's text (`90d`), else none.
fn secs_setting(flag: Option<u64>, file: &Option<String>, key: &str) -> Result<Option<u64>> {
    match (flag, file) {
        (Some(secs), _) => Ok(Some(secs)),
        (None, Some(text)) => crate::parse_secs(text)
            .map(Some)
            .map_err(|e| anyhow!("{key}: {e}")),
        (None, None) => Ok(None),
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on SIGTERM, just not gracefully.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))
}

/// Runs the coordinator until a stop signal.
pub async fn coordinator(args: CoordinatorArgs) -> Result<()> {
    let file = args.config.load()?;
    let c = &file.coordinator;
    let listen = args
        .listen
        .or_else(|| c.listen.clone())
        .unwrap_or_else(|| DEFAULT_COORDINATOR_LISTEN.into());
    let http = args
        .http
        .or_else(|| c.http.clone())
        .unwrap_or_else(|| DEFAULT_COORDINATOR_HTTP.into());
    let state_dir = absolute(
        &args
            .state_dir
            .or_else(|| c.state_dir.clone())
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
    )?;
    let mut config = CoordinatorConfig::new(state_dir.clone());
    config.heartbeat = Duration::from_millis(
        args.heartbeat_ms
            .or(c.heartbeat_ms)
            .unwrap_or(DEFAULT_HEARTBEAT_MS)
            .max(10),
    );
    config.max_plugin_bytes = args
        .max_plugin_bytes
        .or(c.max_plugin_bytes)
        .unwrap_or(DEFAULT_MAX_PLUGIN_BYTES);
    config.max_stored_plugin_bytes = args
        .max_stored_plugin_bytes
        .or(c.max_stored_plugin_bytes)
        .unwrap_or(DEFAULT_MAX_STORED_PLUGIN_BYTES);
    if let Some(secs) = secs_setting(args.retention, &c.retention, "[coordinator] retention")? {
        config.retention = (secs > 0).then(|| Duration::from_secs(secs));
    }
    config.worker_timeout = Duration::from_millis(
        args.worker_timeout_ms
            .or(c.worker_timeout_ms)
            .unwrap_or(DEFAULT_WORKER_TIMEOUT_MS),
    );
    config.policy.max_attempts = args
        .max_attempts
        .or(c.max_attempts)
        .unwrap_or(DEFAULT_MAX_ATTEMPTS)
        .max(1);
    config.policy.speculation = args.speculation.or(c.speculation).unwrap_or(true);
    let limits = &mut config.limits;
    limits.max_reducers = args
        .max_reducers
        .or(c.max_reducers)
        .unwrap_or(limits.max_reducers);
    limits.max_tasks_per_job = args
        .max_tasks_per_job
        .or(c.max_tasks_per_job)
        .unwrap_or(limits.max_tasks_per_job);
    limits.max_task_memory = args
        .max_task_memory
        .or(c.max_task_memory)
        .unwrap_or(limits.max_task_memory);
    limits.max_batch_rows = args
        .max_batch_rows
        .or(c.max_batch_rows)
        .unwrap_or(limits.max_batch_rows);
    config.security = args.security.resolve(&file)?;
    config.queues = queues(&file)?;
    config.alerts = file
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| alert_target(a).with_context(|| format!("[[alerts]] number {}", i + 1)))
        .collect::<Result<_>>()?;

    let grpc = bind("gRPC", &listen).await?;
    config.security.check_exposure(
        "the coordinator's gRPC service",
        grpc.local_addr()?,
        args.insecure || file.insecure.unwrap_or(false),
    )?;
    let http = if http == "off" {
        None
    } else {
        Some(bind("HTTP", &http).await?)
    };
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http
        .as_ref()
        .map(|h| h.local_addr().map(|a| a.to_string()))
        .transpose()?
        .unwrap_or_else(|| "off".into());
    tracing::info!(
        "coordinator listening grpc={grpc_addr} http={http_addr} state_dir={} token={} tls={}",
        state_dir.display(),
        config.security.has_token(),
        config.security.server_tls().is_some()
    );
    if !config.security.has_token() {
        tracing::warn!("no cluster token configured: any client that can connect is accepted");
    }
    sluice_coordinator::run_coordinator(config, grpc, http, stop_signal())
        .await
        .map_err(|e| anyhow!("coordinator: {e}"))?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Runs a worker until a stop signal, then drains it.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    let file = args.config.load()?;
    let w = &file.worker;
    let coordinator = args
        .coordinator
        .or_else(|| w.coordinator.clone())
        .unwrap_or_else(|| DEFAULT_COORDINATOR_URL.into());
    let listen = args
        .listen
        .or_else(|| w.listen.clone())
        .unwrap_or_else(|| DEFAULT_WORKER_LISTEN.into());
    let work_dir = absolute(
        &args
            .work_dir
            .or_else(|| w.work_dir.clone())
            .unwrap_or_else(|| DEFAULT_WORK_DIR.into()),
    )?;
    let slots = args
        .slots
        .or(w.slots)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let mut config = WorkerConfig::new(coordinator.clone(), work_dir.clone(), slots);
    config.advertise = args.advertise.or_else(|| w.advertise.clone());
    config.drain_timeout = Duration::from_secs(
        args.drain_timeout_secs
            .or(w.drain_timeout_secs)
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS),
    );
    if let Some(secs) = secs_setting(
        args.log_retention,
        &w.log_retention,
        "[worker] log_retention",
    )? {
        config.log_retention = Duration::from_secs(secs);
    }
    if let Some(memory) = args.memory.or(w.memory) {
        config.memory = memory;
    }
    if config.memory / slots as u64 <= MIN_SLOT_MEMORY {
        bail!(
            "worker memory of {} bytes gives each of the {slots} slots less than {} MiB: raise \
             --memory or lower --slots",
            config.memory,
            MIN_SLOT_MEMORY >> 20
        );
    }
    if let Some(host) = args.host_id.or_else(|| w.host_id.clone()) {
        config.host_id = host;
    }
    config.security = args.security.resolve(&file)?;
    if config.security.server_tls().is_some() && !config.security.client_tls() {
        bail!(
            "a worker serving TLS (--tls-cert) needs --tls-ca too: it fetches shuffle data \
             from the other workers over TLS"
        );
    }

    let listener = bind("shuffle", &listen).await?;
    let bound = listener.local_addr()?;
    let http = match args.http.or_else(|| w.http.clone()) {
        Some(addr) => Some(bind("HTTP", &addr).await?),
        None => None,
    };
    let http_addr = http
        .as_ref()
        .map(|h| h.local_addr().map(|a| a.to_string()))
        .transpose()?
        .unwrap_or_else(|| "off".into());
    config.security.check_exposure(
        "the worker's shuffle service",
        bound,
        args.insecure || file.insecure.unwrap_or(false),
    )?;
    tracing::info!(
        "worker listening shuffle={bound} http={http_addr} advertise={} coordinator={coordinator} work_dir={} slots={slots}",
        config.advertise.as_deref().unwrap_or("(bound address)"),
        work_dir.display()
    );
    if config.advertise.is_none() && bound.ip().is_unspecified() {
        tracing::warn!(
            "listening on {bound} without --advertise: other workers will be told to dial {bound}, \
             which only works on one machine"
        );
    }
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let http_task = http.map(|listener| {
        let mut rx = stopped_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(sluice_worker::http::serve(
            listener,
            config.ready.clone(),
            stop,
        ))
    });
    let ran = sluice_worker::run_worker(config, listener, stop_signal()).await;
    let _ = stopped_tx.send(true);
    if let Some(t) = http_task {
        let _ = t.await;
    }
    ran.map_err(|e| anyhow!("worker: {e}"))?;
    tracing::info!("worker stopped");
    Ok(())
}

/// An `[[alerts]]` section as the coordinator's target: a webhook or a command, the ends
/// it wants (known ones only), its signing secret read from its file.
fn alert_target(
    a: &sluice_common::config::AlertSection,
) -> Result<sluice_coordinator::alerts::AlertTarget> {
    use sluice_coordinator::alerts::{AlertTarget, DEFAULT_ON, ENDS};
    let on: Vec<String> =
        a.on.clone()
            .unwrap_or_else(|| DEFAULT_ON.iter().map(|s| s.to_string()).collect());
    if let Some(bad) = on.iter().find(|o| !ENDS.contains(&o.as_str())) {
        anyhow::bail!("on = {bad:?}: use {}", ENDS.join(", "));
    }
    let command = a.command.clone().unwrap_or_default();
    match (&a.url, command.is_empty()) {
        (Some(url), true) if url.starts_with("http://") || url.starts_with("https://") => {}
        (Some(url), true) => anyhow::bail!("url = {url:?}: an http:// or https:// URL"),
        (None, false) => {}
        _ => anyhow::bail!("give either url or command"),
    }
    let secret = match &a.secret_file {
        Some(f) => Some(
            std::fs::read(f)
                .with_context(|| format!("reading the alert secret {}", f.display()))?
                .trim_ascii()
                .to_vec(),
        ),
        None => None,
    };
    Ok(AlertTarget {
        url: a.url.clone(),
        command,
        on: on.into_iter().collect(),
        secret,
    })
}

/// The `[queues.NAME]` sections, checked.
fn queues(
    file: &sluice_common::config::ConfigFile,
) -> Result<sluice_coordinator::cluster::queues::Queues> {
    use sluice_coordinator::cluster::queues::{Queue, Queues};
    let mut out = Queues::default();
    for (name, q) in &file.queues {
        if !sluice_common::spec::is_input_name(name) {
            anyhow::bail!("[queues.{name}]: a queue name is [a-z][a-z0-9_]*");
        }
        let weight = q.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            anyhow::bail!("[queues.{name}] weight = {weight}: use 1 to 1000");
        }
        if q.max_running == Some(0) {
            anyhow::bail!("[queues.{name}] max_running = 0 would run nothing: at least 1");
        }
        out.0.insert(
            name.clone(),
            Queue {
                weight,
                max_running: q.max_running,
            },
        );
    }
    Ok(out)
}
