//! Command-line and environment settings, merged with the config file.
//!
//! Every setting resolves as: flag, then its `SLUICE_*` environment variable (clap reads
//! both into one `Option`), then the config file (`--config` / `SLUICE_CONFIG`), then the
//! default documented in `sluice_common::config`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use sluice_common::config::{ConfigFile, DEFAULT_COORDINATOR_URL};
use sluice_proto::transport::Security;

/// The config file flag every command that talks to a cluster takes.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArg {
    /// TOML configuration file (see `sluice_common::config` for the keys).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Reads the file, when one is given.
    pub fn load(&self) -> Result<ConfigFile> {
        Ok(ConfigFile::load_optional(self.config.as_deref())?)
    }
}

/// Cluster token and TLS flags.
#[derive(Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    /// File holding the cluster token sent with (and required on) every call.
    #[arg(long, env = "SLUICE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate of this process's gRPC server(s): turns TLS on.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate that servers are verified with: clients connect with TLS.
    #[arg(long, env = "SLUICE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name to check in server certificates instead of the host dialled.
    #[arg(long, env = "SLUICE_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
}

fn pick(flag: &Option<PathBuf>, file: &Option<PathBuf>) -> Option<PathBuf> {
    flag.clone().or_else(|| file.clone())
}

impl SecurityArgs {
    /// The token and TLS material, flags first, then the config file.
    pub fn resolve(&self, file: &ConfigFile) -> Result<Security> {
        let token = pick(&self.token_file, &file.token_file);
        let mut security = Security::from_files(
            token.as_deref(),
            pick(&self.tls_cert, &file.tls.cert).as_deref(),
            pick(&self.tls_key, &file.tls.key).as_deref(),
            pick(&self.tls_ca, &file.tls.ca).as_deref(),
        )?;
        security.tls_domain = self.tls_domain.clone().or_else(|| file.tls.domain.clone());
        Ok(security)
    }
}

/// What client commands need to reach the coordinator.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientArgs {
    /// The coordinator's URL [default: http://127.0.0.1:7700].
    #[arg(long, env = "SLUICE_COORDINATOR")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub config: ConfigArg,
}

impl ClientArgs {
    /// The coordinator URL and the security settings to reach it with.
    pub fn resolve(&self) -> Result<(String, Security)> {
        let file = self.config.load()?;
        let url = self
            .coordinator
            .clone()
            .or_else(|| file.client.coordinator.clone())
            .unwrap_or_else(|| DEFAULT_COORDINATOR_URL.to_string());
        Ok((url, self.security.resolve(&file)?))
    }
}

/// Makes `p` absolute against the working directory.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the working directory")?
            .join(p))
    }
}
