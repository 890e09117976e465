//! The worker's plugin cache: `work_dir/plugins/<sha256>.so`, downloaded from the coordinator
//! on first use and verified against the hash before it is renamed into place.
//!
//! A cached file found on disk at startup is verified once per process before it is used,
//! so a file damaged while the worker was down is downloaded again rather than `dlopen`ed.
//! Concurrent tasks of the same job wait for one download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_common::digest::{Sha256Hasher, is_sha256_hex, sha256_file};
use sluice_proto::pb;
use sluice_proto::transport::CoordinatorClient;
use tokio::io::AsyncWriteExt;

use crate::error::{TaskError, TaskResult};

/// Plugins this worker has verified, by hash.
#[derive(Clone)]
pub struct PluginCache {
    dir: PathBuf,
    /// One lock per hash: the first task downloads, the others wait and reuse.
    verified: Arc<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<PathBuf>>>>>,
}

impl PluginCache {
    /// A cache in `dir` (created on first download).
    pub fn new(dir: PathBuf) -> Self {
        PluginCache {
            dir,
            verified: Arc::default(),
        }
    }

    /// The local path of the plugin with hash `sha`, downloading it if needed.
    pub async fn get(&self, coordinator: &CoordinatorClient, sha: &str) -> TaskResult<PathBuf> {
        if !is_sha256_hex(sha) {
            return Err(TaskError::Assignment(format!(
                "plugin hash {sha:?} is not a sha256"
            )));
        }
        let cell = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sha.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.fetch(coordinator.clone(), sha))
            .await
            .cloned()
    }

    async fn fetch(&self, mut coordinator: CoordinatorClient, sha: &str) -> TaskResult<PathBuf> {
        let path = self.dir.join(format!("{sha}.so"));
        if path.is_file() {
            let p = path.clone();
            let on_disk = tokio::task::spawn_blocking(move || sha256_file(&p))
                .await
                .map_err(|e| TaskError::Coordinator(format!("hashing the plugin: {e}")))?;
            if on_disk.is_ok_and(|h| h == sha) {
                return Ok(path);
            }
            tracing::warn!(path = %path.display(), "cached plugin does not match its hash; downloading it again");
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_err(&self.dir, e))?;
        let tmp = self.dir.join(format!(".download-{sha}"));
        let result = download(&mut coordinator, sha, &tmp).await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_err(&path, e))?;
        tracing::info!(sha256 = %sha, "plugin downloaded");
        Ok(path)
    }
}

/// Download and disk errors are worth another attempt (maybe on another worker); only a
/// malformed hash is not.
fn io_err(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::Coordinator(format!("plugin cache {}: {e}", path.display()))
}

async fn download(coordinator: &mut CoordinatorClient, sha: &str, tmp: &Path) -> TaskResult<()> {
    let fail = |m: String| TaskError::Coordinator(format!("downloading plugin {sha}: {m}"));
    let mut stream = coordinator
        .fetch_plugin(pb::FetchPluginRequest {
            sha256: sha.to_string(),
        })
        .await
        .map_err(|s| fail(s.message().to_string()))?
        .into_inner();
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| io_err(tmp, e))?;
    let mut hasher = Sha256Hasher::default();
    let mut size = None;
    let mut received = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| fail(s.message().to_string()))?
    {
        size.get_or_insert(chunk.size);
        received += chunk.data.len() as u64;
        hasher.update(&chunk.data);
        file.write_all(&chunk.data)
            .await
            .map_err(|e| io_err(tmp, e))?;
    }
    file.sync_all().await.map_err(|e| io_err(tmp, e))?;
    if size != Some(received) {
        return Err(fail(format!(
            "received {received} bytes, expected {size:?}"
        )));
    }
    let got = hasher.finish_hex();
    if got != sha {
        return Err(fail(format!("received bytes hash to {got}")));
    }
    Ok(())
}
