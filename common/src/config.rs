//! The configuration file: one TOML file for every process of a cluster.
//!
//! Each setting is resolved in this order, first found wins: command-line flag, `SLUICE_*`
//! environment variable (the CLI binds both with clap), this file, the documented default.
//! An unknown key is an error naming it, so a typo never silently falls back to a default.
//!
//! ```toml
//! token_file = "/etc/sluice/token"      # every process and client
//! insecure = false                      # true: serve a non-loopback address without a token
//! [tls]                                 # TLS on every gRPC endpoint
//! cert = "/etc/sluice/tls/node.crt"     # servers: coordinator, worker shuffle service
//! key = "/etc/sluice/tls/node.key"
//! ca = "/etc/sluice/tls/ca.crt"         # clients (workers are clients too)
//! domain = "sluice.internal"            # optional: name checked in server certificates
//! [coordinator]
//! listen = "0.0.0.0:7700"               # gRPC
//! http = "0.0.0.0:7780"                 # /healthz, /readyz, /metrics
//! state_dir = "/var/lib/sluice/coordinator"
//! heartbeat_ms = 1000
//! worker_timeout_ms = 10000             # a silent worker is lost after this
//! max_attempts = 4                      # per task, before the job fails
//! speculation = true                    # backup attempts for stragglers
//! max_plugin_bytes = 268435456
//! max_stored_plugin_bytes = 4294967296  # least recently used plugins beyond are removed
//! max_reducers = 10000                  # limits on job settings, checked at submission
//! max_tasks_per_job = 100000            # map tasks an input may be cut into
//! max_task_memory = 1099511627776       # bytes a job may ask per task
//! max_batch_rows = 1048576
//! retention = "90d"                     # ended jobs' history, events, attempts; "0": forever
//! [worker]
//! coordinator = "http://coordinator:7700"
//! listen = "0.0.0.0:7701"               # shuffle service
//! http = "0.0.0.0:7781"                 # /healthz, /readyz, /metrics (off when not set)
//! log_retention = "7d"                  # attempt logs kept after a job's last line
//! advertise = "worker-1:7701"           # what other workers dial
//! work_dir = "/var/lib/sluice/worker"
//! slots = 2
//! drain_timeout_secs = 300
//! host_id = "rack1-node7"               # workers with the same host id share a disk
//! memory = 8589934592                   # bytes for all slots; a task gets memory / slots
//! [client]
//! coordinator = "http://coordinator:7700"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default gRPC address of the coordinator.
pub const DEFAULT_COORDINATOR_LISTEN: &str = "0.0.0.0:7700";
/// Default HTTP address of the coordinator (health, readiness, metrics).
pub const DEFAULT_COORDINATOR_HTTP: &str = "0.0.0.0:7780";
/// Default shuffle address of a worker.
pub const DEFAULT_WORKER_LISTEN: &str = "0.0.0.0:7701";
/// Default coordinator state directory (job store, plugins), relative to the working dir.
pub const DEFAULT_STATE_DIR: &str = "sluice-state";
/// Default worker work directory (shuffle files, plugin cache), relative to the working dir.
pub const DEFAULT_WORK_DIR: &str = "sluice-work";
/// Default heartbeat interval, as DESIGN.md gives it.
pub const DEFAULT_HEARTBEAT_MS: u64 = 1000;
/// Default largest plugin a client may upload (256 MiB).
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 256 << 20;
/// Default bytes of plugins the coordinator keeps (4 GiB); the least recently used go.
pub const DEFAULT_MAX_STORED_PLUGIN_BYTES: u64 = 4 << 30;
/// Default time a stopping worker waits for its running tasks.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 300;
/// Default time without heartbeat after which a worker is lost, as DESIGN.md gives it.
pub const DEFAULT_WORKER_TIMEOUT_MS: u64 = 10_000;
/// Default attempts a task gets before the job fails.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// Default coordinator URL of clients and workers.
pub const DEFAULT_COORDINATOR_URL: &str = "http://127.0.0.1:7700";

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The cluster token file.
    pub token_file: Option<PathBuf>,
    /// Serve on addresses other machines can reach without a token (a trusted network).
    pub insecure: Option<bool>,
    /// TLS material.
    #[serde(default)]
    pub tls: TlsSection,
    /// Coordinator settings.
    #[serde(default)]
    pub coordinator: CoordinatorSection,
    /// Worker settings.
    #[serde(default)]
    pub worker: WorkerSection,
    /// Client command settings.
    #[serde(default)]
    pub client: ClientSection,
    /// Where the coordinator sends alerts (`[[alerts]]`).
    #[serde(default)]
    pub alerts: Vec<AlertSection>,
    /// The coordinator's queues (`[queues.NAME]`).
    #[serde(default)]
    pub queues: std::collections::BTreeMap<String, QueueSection>,
}

/// One `[queues.NAME]`: its share of the slots and how many jobs it runs at once.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// Its share of the slots relative to the other queues' (default 1).
    pub weight: Option<u32>,
    /// Jobs it runs at once (default: no limit); the others wait.
    pub max_running: Option<u32>,
}

/// One `[[alerts]]` target: a webhook `url` or a `command`, for the job and pipeline ends
/// named in `on` (`failed`, `cancelled`, `succeeded`; default `["failed"]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// A webhook URL, POSTed the alert as JSON.
    pub url: Option<String>,
    /// A command and its arguments, given the alert's JSON on stdin.
    pub command: Option<Vec<String>>,
    /// The ends to alert on.
    pub on: Option<Vec<String>>,
    /// A file holding the secret webhook bodies are signed with (HMAC-SHA256).
    pub secret_file: Option<PathBuf>,
}

/// `[tls]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain of this process's servers.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificate clients verify servers with.
    pub ca: Option<PathBuf>,
    /// Name to check in server certificates instead of the host dialled.
    pub domain: Option<String>,
}

/// `[coordinator]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorSection {
    /// gRPC listen address.
    pub listen: Option<String>,
    /// HTTP listen address.
    pub http: Option<String>,
    /// Job store and plugin directory.
    pub state_dir: Option<PathBuf>,
    /// Worker heartbeat interval in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// Largest plugin upload in bytes.
    pub max_plugin_bytes: Option<u64>,
    /// Bytes of stored plugins kept; the least recently used beyond are removed.
    pub max_stored_plugin_bytes: Option<u64>,
    /// Milliseconds without a heartbeat after which a worker is lost.
    pub worker_timeout_ms: Option<u64>,
    /// Attempts a task gets before the job fails.
    pub max_attempts: Option<u32>,
    /// Backup attempts for stragglers.
    pub speculation: Option<bool>,
    /// Most reduce partitions a job may ask for.
    pub max_reducers: Option<u32>,
    /// Most map tasks a job's input may be cut into.
    pub max_tasks_per_job: Option<u64>,
    /// Most memory a job may ask for per task, in bytes.
    pub max_task_memory: Option<u64>,
    /// Most rows per record batch.
    pub max_batch_rows: Option<u32>,
    /// How long ended jobs are kept (`90d`; `0`: forever).
    pub retention: Option<String>,
}

/// `[worker]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The coordinator's URL.
    pub coordinator: Option<String>,
    /// Shuffle service listen address.
    pub listen: Option<String>,
    /// Shuffle address other workers dial.
    pub advertise: Option<String>,
    /// Local files: shuffle spills, plugin cache.
    pub work_dir: Option<PathBuf>,
    /// Tasks run at once.
    pub slots: Option<usize>,
    /// Seconds a stopping worker waits for its running tasks.
    pub drain_timeout_secs: Option<u64>,
    /// The machine this worker runs on, as far as shuffle reads go.
    pub host_id: Option<String>,
    /// Memory for all task slots together, in bytes.
    pub memory: Option<u64>,
    /// HTTP address for /healthz, /readyz, /metrics; none: no HTTP port.
    pub http: Option<String>,
    /// How long attempt logs are kept (`7d`, `12h`).
    pub log_retention: Option<String>,
}

/// `[client]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The coordinator's URL.
    pub coordinator: Option<String>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (for an unknown key, the toml message names it and its line).
    pub reason: String,
}

impl ConfigFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ConfigError {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The file at `path`, or an empty configuration when no file is given.
    pub fn load_optional(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(ConfigFile::default()), ConfigFile::load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let c = ConfigFile::parse(&example).unwrap();
        assert_eq!(c.worker.slots, Some(2));
        assert_eq!(c.coordinator.heartbeat_ms, Some(1000));
        assert_eq!(c.tls.domain.as_deref(), Some("sluice.internal"));
    }

    #[test]
    fn the_deployment_example_parses() {
        let c = ConfigFile::parse(include_str!("../../deploy/sluice.toml")).unwrap();
        assert_eq!(c.coordinator.max_attempts, Some(4));
        assert_eq!(c.coordinator.speculation, Some(true));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = ConfigFile::parse("[worker]\nslotz = 3\n").unwrap_err();
        assert!(e.contains("slotz"), "{e}");
        let e = ConfigFile::parse("tokenfile = \"x\"\n").unwrap_err();
        assert!(e.contains("tokenfile"), "{e}");
        let e = ConfigFile::parse("[worker]\nslots = \"many\"\n").unwrap_err();
        assert!(e.contains("slots"), "{e}");
    }
}
