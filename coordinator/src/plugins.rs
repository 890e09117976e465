//! Uploaded plugins, stored by sha256 under `state_dir/plugins/<sha256>.so`.
//!
//! An upload streams into a temporary file while it is hashed; only a complete upload whose
//! hash matches the one the client declared is renamed into place, so a stored plugin is
//! always whole and its name is its content. Workers download by hash and verify again.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use sluice_common::digest::{Sha256Hasher, is_sha256_hex};
use sluice_proto::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

/// Bytes per chunk of a plugin download.
const CHUNK: usize = 1 << 20;

/// The plugin directory.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
    max_bytes: u64,
}

fn check_hash(sha: &str) -> Result<(), Status> {
    if is_sha256_hex(sha) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{sha:?} is not a lower-case hex sha256"
        )))
    }
}

fn io_status(what: &str, path: &Path, e: std::io::Error) -> Status {
    Status::internal(format!("{what} {}: {e}", path.display()))
}

/// Deletes a file when dropped (a no-op once it was renamed away).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl PluginStore {
    /// A store in `dir` (created) accepting plugins up to `max_bytes`.
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // Left-overs of uploads cut short by a crash.
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(PluginStore { dir, max_bytes })
    }

    /// Where the plugin with this hash is (or would be) stored.
    pub fn path(&self, sha: &str) -> Result<PathBuf, Status> {
        check_hash(sha)?;
        Ok(self.dir.join(format!("{sha}.so")))
    }

    /// Whether the plugin is stored.
    pub fn contains(&self, sha: &str) -> Result<bool, Status> {
        Ok(self.path(sha)?.is_file())
    }

    /// Receives an upload; returns the stored hash.
    pub async fn receive(&self, mut stream: Streaming<pb::PluginChunk>) -> Result<String, Status> {
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty plugin upload"))??;
        let sha = first.sha256.clone();
        let target = self.path(&sha)?;
        if first.size > self.max_bytes {
            return Err(Status::resource_exhausted(format!(
                "plugin of {} bytes exceeds the coordinator's limit of {} bytes \
                 (max_plugin_bytes)",
                first.size, self.max_bytes
            )));
        }
        // Each upload writes its own file, removed if the upload fails or the client goes
        // away (the handler future is then dropped mid-way).
        static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = RemoveOnDrop(self.dir.join(format!(".upload-{sha}-{n}")));
        let tmp = guard.0.clone();
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_status("creating", &tmp, e))?;
            let mut hasher = Sha256Hasher::default();
            let mut received = 0u64;
            let mut chunk = Some(first.clone());
            while let Some(c) = chunk.take() {
                received += c.data.len() as u64;
                if received > first.size {
                    return Err(Status::invalid_argument(format!(
                        "plugin upload longer than its declared {} bytes",
                        first.size
                    )));
                }
                hasher.update(&c.data);
                file.write_all(&c.data)
                    .await
                    .map_err(|e| io_status("writing", &tmp, e))?;
                chunk = stream.next().await.transpose()?;
            }
            if received != first.size {
                return Err(Status::invalid_argument(format!(
                    "plugin upload cut short: {received} of {} bytes",
                    first.size
                )));
            }
            let got = hasher.finish_hex();
            if got != sha {
                return Err(Status::invalid_argument(format!(
                    "plugin upload has sha256 {got}, not the declared {sha}"
                )));
            }
            file.sync_all()
                .await
                .map_err(|e| io_status("syncing", &tmp, e))?;
            if target.is_file() {
                // A concurrent upload of the same plugin won; the content is the same.
                return Ok(());
            }
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(|e| io_status("storing", &target, e))
        }
        .await;
        drop(guard);
        result?;
        tracing::info!(sha256 = %sha, bytes = first.size, "plugin stored");
        Ok(sha)
    }

    /// Streams a stored plugin; the first chunk carries its hash and size.
    pub async fn send(
        &self,
        sha: &str,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<pb::PluginChunk, Status>> + Send>>, Status> {
        let path = self.path(sha)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Status::not_found(format!("no plugin with sha256 {sha} is stored")))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| io_status("reading", &path, e))?
            .len();
        let (tx, rx) = mpsc::channel(4);
        let sha = sha.to_string();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(io_status("reading", &path, e))).await;
                        return;
                    }
                };
                if n == 0 && !first {
                    return;
                }
                buf.truncate(n);
                let chunk = pb::PluginChunk {
                    sha256: if first { sha.clone() } else { String::new() },
                    size: if first { size } else { 0 },
                    data: buf,
                };
                first = false;
                if tx.send(Ok(chunk)).await.is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}
