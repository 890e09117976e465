//! Uploaded plugins, stored by sha256 under `state_dir/plugins/<sha256>.so`.
//!
//! An upload streams into a temporary file while it is hashed; only a complete upload whose
//! hash matches the one the client declared is renamed into place, so a stored plugin is
//! always whole and its name is its content. Workers download by hash and verify again.
//!
//! Bounded: an upload that sends nothing for [`UPLOAD_IDLE_TIMEOUT`] fails, and the store
//! keeps at most its quota of bytes: after each upload the plugins used least recently (a
//! client's check before submitting and a worker's download count as use) are removed,
//! never one a job still being scheduled needs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use sluice_common::digest::{Sha256Hasher, is_sha256_hex};
use sluice_proto::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

/// Bytes per chunk of a plugin download.
const CHUNK: usize = 1 << 20;

/// How long an upload may send nothing before it fails.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a plugin could not be stored or served.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A name that is not a plugin hash.
    #[error("{sha:?} is not a lower-case hex sha256")]
    BadHash {
        /// The name given.
        sha: String,
    },
    /// No plugin with this hash is stored.
    #[error("no plugin with sha256 {sha} is stored")]
    NotStored {
        /// The hash.
        sha: String,
    },
    /// The upload sent no chunk at all.
    #[error("empty plugin upload")]
    EmptyUpload,
    /// The upload sent nothing for [`UPLOAD_IDLE_TIMEOUT`].
    #[error("plugin upload sent nothing for {} s", UPLOAD_IDLE_TIMEOUT.as_secs())]
    UploadIdle,
    /// The plugin is larger than the coordinator accepts.
    #[error(
        "plugin of {size} bytes exceeds the coordinator's limit of {limit} bytes (max_plugin_bytes)"
    )]
    TooLarge {
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The upload sent more bytes than it declared.
    #[error("plugin upload longer than its declared {declared} bytes")]
    TooLong {
        /// The declared size.
        declared: u64,
    },
    /// The upload ended early.
    #[error("plugin upload cut short: {received} of {declared} bytes")]
    CutShort {
        /// Bytes received.
        received: u64,
        /// The declared size.
        declared: u64,
    },
    /// The bytes do not hash to the declared sha256.
    #[error("plugin upload has sha256 {got}, not the declared {declared}")]
    HashMismatch {
        /// Their hash.
        got: String,
        /// The declared one.
        declared: String,
    },
    /// The store's disk failed.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The client's stream failed.
    #[error(transparent)]
    Stream(#[from] Status),
}

/// The plugin directory.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
    max_bytes: u64,
    quota: u64,
}

/// One stored plugin, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its hash.
    pub sha: String,
    /// When it was last used.
    pub used: SystemTime,
    /// Its size.
    pub bytes: u64,
}

/// Which plugins to remove so `stored` fits in `quota` bytes: the least recently used
/// first, never one in `keep`. (When the kept ones alone exceed the quota, all others go.)
pub fn to_evict(stored: &[Stored], keep: &HashSet<String>, quota: u64) -> Vec<String> {
    let mut total: u64 = stored.iter().map(|s| s.bytes).sum();
    let mut candidates: Vec<&Stored> = stored.iter().filter(|s| !keep.contains(&s.sha)).collect();
    candidates.sort_by_key(|s| (s.used, s.sha.clone()));
    let mut evict = Vec::new();
    for s in candidates {
        if total <= quota {
            break;
        }
        total -= s.bytes;
        evict.push(s.sha.clone());
    }
    evict
}

fn check_hash(sha: &str) -> Result<(), PluginError> {
    if is_sha256_hex(sha) {
        Ok(())
    } else {
        Err(PluginError::BadHash {
            sha: sha.to_string(),
        })
    }
}

fn io_error(doing: &'static str, path: &Path, source: std::io::Error) -> PluginError {
    PluginError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// Marks a stored plugin used now (its modification time), for the eviction order.
fn touch(path: &Path) {
    if let Err(e) = std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
    {
        // Only the eviction order suffers.
        tracing::debug!(path = %path.display(), error = %e, "cannot mark a plugin used");
    }
}

/// Deletes a file when dropped (a no-op once it was renamed away).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl PluginStore {
    /// A store in `dir` (created) accepting plugins up to `max_bytes` each and keeping
    /// about `quota` bytes of them.
    pub fn open(dir: PathBuf, max_bytes: u64, quota: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // Left-overs of uploads cut short by a crash.
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(PluginStore {
            dir,
            max_bytes,
            quota,
        })
    }

    /// Where the plugin with this hash is (or would be) stored.
    pub fn path(&self, sha: &str) -> Result<PathBuf, PluginError> {
        check_hash(sha)?;
        Ok(self.dir.join(format!("{sha}.so")))
    }

    /// Whether the plugin is stored; a stored one counts as used now.
    pub fn contains(&self, sha: &str) -> Result<bool, PluginError> {
        let path = self.path(sha)?;
        let stored = path.is_file();
        if stored {
            touch(&path);
        }
        Ok(stored)
    }

    /// Removes least recently used plugins until the store fits its quota, keeping those in
    /// `keep`; returns the hashes removed.
    pub fn evict(&self, keep: &HashSet<String>) -> std::io::Result<Vec<String>> {
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(sha) = name.strip_suffix(".so").filter(|s| is_sha256_hex(s)) else {
                continue;
            };
            let meta = entry.metadata()?;
            stored.push(Stored {
                sha: sha.to_string(),
                used: meta.modified()?,
                bytes: meta.len(),
            });
        }
        let evict = to_evict(&stored, keep, self.quota);
        for sha in &evict {
            std::fs::remove_file(self.dir.join(format!("{sha}.so")))?;
            tracing::info!(sha256 = %sha, "plugin removed: the store is over its quota and it is the least recently used");
        }
        Ok(evict)
    }

    /// Receives an upload; returns the stored hash.
    pub async fn receive(
        &self,
        mut stream: Streaming<pb::PluginChunk>,
    ) -> Result<String, PluginError> {
        let first = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.next())
            .await
            .map_err(|_| PluginError::UploadIdle)?
            .ok_or(PluginError::EmptyUpload)??;
        let sha = first.sha256.clone();
        let target = self.path(&sha)?;
        if first.size > self.max_bytes {
            return Err(PluginError::TooLarge {
                size: first.size,
                limit: self.max_bytes,
            });
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
                .map_err(|e| io_error("creating", &tmp, e))?;
            let mut hasher = Sha256Hasher::default();
            let mut received = 0u64;
            let mut chunk = Some(first.clone());
            while let Some(c) = chunk.take() {
                received += c.data.len() as u64;
                if received > first.size {
                    return Err(PluginError::TooLong {
                        declared: first.size,
                    });
                }
                hasher.update(&c.data);
                file.write_all(&c.data)
                    .await
                    .map_err(|e| io_error("writing", &tmp, e))?;
                chunk = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.next())
                    .await
                    .map_err(|_| PluginError::UploadIdle)?
                    .transpose()?;
            }
            if received != first.size {
                return Err(PluginError::CutShort {
                    received,
                    declared: first.size,
                });
            }
            let got = hasher.finish_hex();
            if got != sha {
                return Err(PluginError::HashMismatch {
                    got,
                    declared: sha.clone(),
                });
            }
            file.sync_all()
                .await
                .map_err(|e| io_error("syncing", &tmp, e))?;
            if target.is_file() {
                // A concurrent upload of the same plugin won; the content is the same.
                return Ok(());
            }
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(|e| io_error("storing", &target, e))
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
    ) -> Result<Pin<Box<dyn Stream<Item = Result<pb::PluginChunk, Status>> + Send>>, PluginError>
    {
        let path = self.path(sha)?;
        touch(&path);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| PluginError::NotStored {
                sha: sha.to_string(),
            })?;
        let size = file
            .metadata()
            .await
            .map_err(|e| io_error("reading", &path, e))?
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
                        let _ = tx.send(Err(io_error("reading", &path, e).into())).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(sha: &str, used_secs: u64, bytes: u64) -> Stored {
        Stored {
            sha: sha.into(),
            used: SystemTime::UNIX_EPOCH + Duration::from_secs(used_secs),
            bytes,
        }
    }

    #[test]
    fn the_least_recently_used_plugins_go_first_and_kept_ones_never() {
        let all = [
            stored("a", 30, 10),
            stored("b", 10, 10),
            stored("c", 20, 10),
        ];
        let none = HashSet::new();
        assert!(to_evict(&all, &none, 30).is_empty(), "fits");
        assert_eq!(to_evict(&all, &none, 25), ["b"]);
        assert_eq!(to_evict(&all, &none, 5), ["b", "c", "a"]);
        let keep: HashSet<String> = ["b".to_string()].into();
        assert_eq!(to_evict(&all, &keep, 15), ["c", "a"]);
        assert_eq!(
            to_evict(&all, &keep, 0),
            ["c", "a"],
            "a kept one stays over quota"
        );
    }

    #[test]
    fn eviction_removes_files_beyond_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::open(dir.path().to_path_buf(), 1 << 20, 200).unwrap();
        let sha = |c: char| c.to_string().repeat(64);
        for (i, c) in ['a', 'b', 'c'].into_iter().enumerate() {
            let path = dir.path().join(format!("{}.so", sha(c)));
            std::fs::write(&path, [0u8; 100]).unwrap();
            let when = SystemTime::now() - Duration::from_secs(100 - i as u64 * 10);
            std::fs::File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        // `a` is the oldest but just used.
        assert!(store.contains(&sha('a')).unwrap());
        let keep: HashSet<String> = [sha('c')].into();
        assert_eq!(store.evict(&keep).unwrap(), [sha('b')]);
        assert!(!store.contains(&sha('b')).unwrap());
        assert!(store.contains(&sha('a')).unwrap() && store.contains(&sha('c')).unwrap());
    }
}
