//! Storage locations: local paths and object-store URLs.
//!
//! Inputs and outputs are strings the user typed. [`Location::parse`] sorts them:
//!
//! | form | goes through |
//! |---|---|
//! | `/data/in`, `in/*.csv`, `file:///data/in` | `std::fs`, exactly as before: the fast local path |
//! | `s3://bucket/key` (also `s3a://`) | `object_store`'s Amazon S3 client |
//! | `gs://bucket/key` | Google Cloud Storage |
//! | `az://container/key` (also `azure://`) | Azure Blob Storage |
//! | `http://host/key`, `https://host/key` | plain HTTP(S) (WebDAV for writes) |
//!
//! Credentials, region and endpoint come from the standard environment variables, read by the
//! builders' `from_env()` on the machine that touches the data (the coordinator plans and
//! commits, the workers read splits and upload part files, so every machine needs them):
//! - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
//!   (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT` (an S3-compatible server such as MinIO, Ceph
//!   or moto; path-style requests unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`),
//!   `AWS_ALLOW_HTTP=true` for an `http://` endpoint. Instance and web-identity credentials
//!   work as in the AWS SDKs.
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` (path of a key file), `GOOGLE_SERVICE_ACCOUNT_KEY` (the
//!   key itself), or application default credentials.
//! - Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY` (or a SAS / client
//!   secret, see `object_store::azure`), `AZURE_STORAGE_USE_EMULATOR=true` for Azurite.
//!
//! One client is built per scheme and bucket and kept for the life of the process. The
//! object-store calls run on a small tokio runtime of this module's own, so they may be
//! called from anywhere: a rayon thread, `spawn_blocking`, or (briefly) async code.
//!
//! Object stores have no directories: a "directory" `s3://b/out` is every object whose key
//! starts with `out/`. A directory input lists the objects directly under it, and, like local
//! directories and globs, skips names starting with `_` or `.` (`_SUCCESS`, `_temporary/`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// Files up to this size are uploaded with one PUT; larger ones as multipart uploads.
const SINGLE_PUT_MAX: u64 = 16 << 20;
/// Part size of multipart uploads.
const MULTIPART_CHUNK: usize = 16 << 20;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;

/// Which object store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s3://` (Amazon S3 and S3-compatible servers).
    S3,
    /// `gs://` (Google Cloud Storage).
    Gcs,
    /// `az://` (Azure Blob Storage).
    Azure,
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An object (or a prefix of objects) in an object store: `scheme://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    scheme: Scheme,
    bucket: String,
    /// The key, without leading or trailing `/`; empty for the whole bucket.
    key: String,
}

/// Where an input or output lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local (or locally mounted) path, read and written with `std::fs`.
    Local(PathBuf),
    /// An object-store URL.
    Object(ObjectUrl),
}

impl Location {
    /// Parses a path or URL. Strings without `://` are local paths; `file://` URLs become
    /// local paths; `s3`, `s3a`, `gs`, `az`, `azure`, `http` and `https` URLs are object
    /// stores. Any other scheme is refused.
    pub fn parse(s: &str) -> Result<Location> {
        // A URL scheme is a letter then letters, digits, `+`, `-` or `.` (RFC 3986); anything
        // else before `://` is part of a local path.
        let url = s.split_once("://").filter(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        let Some((scheme, rest)) = url else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs/path or file://localhost/abs/path.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(Error::BadLocation {
                        location: s.to_string(),
                        reason: "a file:// URL needs an absolute path (file:///data/in)".into(),
                    });
                }
                return Ok(Location::Local(PathBuf::from(path)));
            }
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" => Scheme::Azure,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(Error::BadLocation {
                    location: s.to_string(),
                    reason: format!(
                        "unsupported storage scheme {other:?} (file, s3, gs, az, http, https)"
                    ),
                });
            }
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::BadLocation {
                location: s.to_string(),
                reason: "the URL names no bucket".into(),
            });
        }
        Ok(Location::Object(ObjectUrl {
            scheme,
            bucket: bucket.to_string(),
            key: key.trim_matches('/').to_string(),
        }))
    }

    /// Whether this is a local path (the `std::fs` fast path).
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object(u) => u.fmt(f),
        }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme.as_str(), self.bucket, self.key)
    }
}

/// Whether a file name is data: names starting with `_` or `.` (`_SUCCESS`, `.crc`,
/// `_temporary`) are not, as in Hadoop.
pub fn is_data_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['.', '_'])
}

/// Whether an input string is a glob pattern.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The prefix a glob key is listed under: the directory part of its literal prefix (the key
/// up to its first `*`, `?` or `[`), `""` for the whole bucket.
pub fn glob_dir(key: &str) -> &str {
    let literal = match key.find(['*', '?', '[']) {
        Some(i) => &key[..i],
        None => key,
    };
    literal.rfind('/').map_or("", |i| &literal[..i])
}

/// Whether listed key `key`, found below `dir` (the pattern's [`glob_dir`]), is kept by a
/// glob: it matches `pattern` (`*` and `?` do not cross `/`) and no segment of it below
/// `dir` starts with `_` or `.`, unless the pattern's segment does too (`day-*/_READY`
/// asks for the markers).
pub fn glob_keeps(pattern: &glob::Pattern, dir: &str, key: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let wanted: Vec<&str> = pattern
        .as_str()
        .get(dir.len()..)
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    pattern.matches_with(key, options)
        && key[dir.len()..]
            .split('/')
            .filter(|s| !s.is_empty())
            .enumerate()
            .all(|(i, seg)| {
                is_data_name(seg) || wanted.get(i).is_some_and(|w| w.starts_with(['_', '.']))
            })
}

/// An object found by listing, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object.
    pub url: ObjectUrl,
    /// Its size in bytes.
    pub size: u64,
    /// Its version: the ETag, or the last-modified time where the store gives none.
    pub version: String,
}

/// The version of an object: what changes when it is written again.
fn object_version(meta: &object_store::ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("etag {tag}"),
        None => format!("modified {}", meta.last_modified.to_rfc3339()),
    }
}

impl ObjectUrl {
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The bucket (or container, or host).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key, without leading or trailing `/`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The object or prefix `name` below this one (`name` may hold `/`).
    pub fn join(&self, name: &str) -> ObjectUrl {
        let name = name.trim_matches('/');
        let key = match (self.key.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.key.clone(),
            (false, false) => format!("{}/{name}", self.key),
        };
        ObjectUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The last segment of the key.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }

    fn with_key(&self, key: &str) -> ObjectUrl {
        ObjectUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    fn path(&self) -> ObjectPath {
        ObjectPath::from(self.key.as_str())
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::Storage {
            url: self.to_string(),
            message: format!("{what}: {e}"),
        }
    }

    /// The size of the object, or `None` when there is no object with exactly this key.
    pub fn size(&self) -> Result<Option<u64>> {
        Ok(self.info()?.map(|i| i.size))
    }

    /// The object with exactly this key, or `None` when there is none.
    pub fn info(&self) -> Result<Option<ObjectInfo>> {
        let (store, path) = (store(self)?, self.path());
        match block_on(async move { store.head(&path).await })? {
            Ok(meta) => Ok(Some(ObjectInfo {
                url: self.clone(),
                size: meta.size,
                version: object_version(&meta),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading object metadata", e)),
        }
    }

    /// Whether an object with this key, or any object below it, exists.
    pub fn exists(&self) -> Result<bool> {
        if !self.key.is_empty() && self.size()?.is_some() {
            return Ok(true);
        }
        let (store, prefix) = (store(self)?, self.prefix());
        let first = block_on(async move { store.list(prefix.as_ref()).next().await })?;
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.error("listing", e)),
        }
    }

    fn prefix(&self) -> Option<ObjectPath> {
        (!self.key.is_empty()).then(|| self.path())
    }

    /// Every object below this prefix, at any depth, sorted by key.
    pub fn list_all(&self) -> Result<Vec<ObjectInfo>> {
        let (store, prefix) = (store(self)?, self.prefix());
        let metas: Vec<object_store::ObjectMeta> =
            block_on(async move { store.list(prefix.as_ref()).try_collect().await })?
                .map_err(|e| self.error("listing", e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                url: self.with_key(m.location.as_ref()),
                size: m.size,
                version: object_version(&m),
            })
            .collect();
        out.sort_by(|a, b| a.url.key.cmp(&b.url.key));
        Ok(out)
    }

    /// The data objects directly below this prefix (a directory's files), sorted by key;
    /// names starting with `_` or `.` are skipped.
    pub fn list_files(&self) -> Result<Vec<ObjectInfo>> {
        let (store, prefix) = (store(self)?, self.prefix());
        let listed = block_on(async move { store.list_with_delimiter(prefix.as_ref()).await })?
            .map_err(|e| self.error("listing", e))?;
        let mut out: Vec<ObjectInfo> = listed
            .objects
            .into_iter()
            .map(|m| ObjectInfo {
                url: self.with_key(m.location.as_ref()),
                size: m.size,
                version: object_version(&m),
            })
            .filter(|o| is_data_name(o.url.file_name()))
            .collect();
        out.sort_by(|a, b| a.url.key.cmp(&b.url.key));
        Ok(out)
    }

    /// The data objects whose key matches this URL's key as a glob (`*` and `?` do not cross
    /// `/`), sorted by key. Names starting with `_` or `.` are skipped, as are objects below
    /// such a segment.
    pub fn glob(&self) -> Result<Vec<ObjectInfo>> {
        let pattern = glob::Pattern::new(&self.key).map_err(|e| Error::BadLocation {
            location: self.to_string(),
            reason: format!("bad glob: {e}"),
        })?;
        let dir = glob_dir(&self.key);
        let found = self.with_key(dir).list_all()?;
        Ok(found
            .into_iter()
            .filter(|o| glob_keeps(&pattern, dir, &o.url.key))
            .collect())
    }

    /// Bytes `range` of the object.
    pub fn get_range(&self, range: Range<u64>) -> Result<Bytes> {
        let (store, path) = (store(self)?, self.path());
        let r = range.clone();
        block_on(async move { store.get_range(&path, r).await })?
            .map_err(|e| self.error(&format!("reading bytes {}..{}", range.start, range.end), e))
    }

    /// Several byte ranges of the object (adjacent ranges are fetched together).
    pub fn get_ranges(&self, ranges: Vec<Range<u64>>) -> Result<Vec<Bytes>> {
        let (store, path) = (store(self)?, self.path());
        let n = ranges.len();
        block_on(async move { store.get_ranges(&path, &ranges).await })?
            .map_err(|e| self.error(&format!("reading {n} byte ranges"), e))
    }

    /// The whole object.
    pub fn read_all(&self) -> Result<Bytes> {
        let (store, path) = (store(self)?, self.path());
        block_on(async move { store.get(&path).await?.bytes().await })?
            .map_err(|e| self.error("reading", e))
    }

    /// Writes `bytes` as the whole object (one PUT: the object appears whole or not at all).
    pub fn put(&self, bytes: Bytes) -> Result<()> {
        let (store, path) = (store(self)?, self.path());
        block_on(async move { store.put(&path, PutPayload::from(bytes)).await })?
            .map(|_| ())
            .map_err(|e| self.error("writing", e))
    }

    /// Uploads local file `local` as this object: one PUT up to 16 MiB, a multipart upload
    /// (16 MiB parts, 4 in flight) above. Either way the object appears only when complete.
    pub fn upload_file(&self, local: &Path) -> Result<()> {
        let size = std::fs::metadata(local)
            .map_err(|e| Error::io(local, e))?
            .len();
        if size <= SINGLE_PUT_MAX {
            let bytes = std::fs::read(local).map_err(|e| Error::io(local, e))?;
            return self.put(Bytes::from(bytes));
        }
        let (store, path) = (store(self)?, self.path());
        let file = local.to_path_buf();
        let r = block_on(async move {
            let mut f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| Error::io(&file, e))?;
            let upload = store
                .put_multipart(&path)
                .await
                .map_err(|e| transient("starting the upload", e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
            let mut buf = vec![0u8; MULTIPART_CHUNK];
            let step = async {
                loop {
                    let n = f.read(&mut buf).await.map_err(|e| Error::io(&file, e))?;
                    if n == 0 {
                        break;
                    }
                    writer
                        .wait_for_capacity(MULTIPART_CONCURRENCY)
                        .await
                        .map_err(|e| transient("uploading a part", e))?;
                    writer.write(&buf[..n]);
                }
                Ok::<_, Error>(())
            }
            .await;
            match step {
                Ok(()) => writer
                    .finish()
                    .await
                    .map(|_| ())
                    .map_err(|e| transient("completing the upload", e)),
                Err(e) => {
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })?;
        r.map_err(|e| match e {
            e @ Error::Io { .. } => e,
            Error::Storage { message, .. } => {
                self.error(&format!("uploading {}", local.display()), message)
            }
            other => self.error(&format!("uploading {}", local.display()), other),
        })
    }

    /// Downloads the object into local file `local` (created or truncated).
    pub fn download_to(&self, local: &Path) -> Result<u64> {
        let (store, path) = (store(self)?, self.path());
        let file = local.to_path_buf();
        let r = block_on(async move {
            let mut stream = store
                .get(&path)
                .await
                .map_err(|e| transient("opening the object", e))?
                .into_stream();
            let mut out = tokio::fs::File::create(&file)
                .await
                .map_err(|e| Error::io(&file, e))?;
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transient("reading the object", e))?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(&file, e))?;
                written += chunk.len() as u64;
            }
            out.flush().await.map_err(|e| Error::io(&file, e))?;
            Ok::<_, Error>(written)
        })?;
        r.map_err(|e| match e {
            e @ Error::Io { .. } => e,
            Error::Storage { message, .. } => self.error("downloading", message),
            other => self.error("downloading", other),
        })
    }

    /// Copies this object to `to`: a server-side copy within one bucket, read and write
    /// across buckets. The copy appears whole or not at all.
    pub fn copy_to(&self, to: &ObjectUrl) -> Result<()> {
        if self.scheme != to.scheme || self.bucket != to.bucket {
            return to.put(self.read_all()?);
        }
        let (store, from, dest) = (store(self)?, self.path(), to.path());
        block_on(async move { store.copy(&from, &dest).await })?
            .map_err(|e| self.error(&format!("copying to {to}"), e))
    }

    /// Moves this object to `to`: copy, then delete the source (object stores have no
    /// atomic rename; readers see the destination whole or not at all).
    pub fn rename_to(&self, to: &ObjectUrl) -> Result<()> {
        self.copy_to(to)?;
        self.delete()
    }

    /// Deletes the object; deleting one that does not exist is not an error.
    pub fn delete(&self) -> Result<()> {
        let (store, path) = (store(self)?, self.path());
        match block_on(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", e)),
        }
    }

    /// Deletes the object with this key and every object below it.
    pub fn delete_prefix(&self) -> Result<()> {
        if !self.key.is_empty() {
            self.delete()?;
        }
        let (store, prefix) = (store(self)?, self.prefix());
        let r: std::result::Result<Vec<ObjectPath>, object_store::Error> = block_on(async move {
            let locations = store.list(prefix.as_ref()).map_ok(|m| m.location).boxed();
            store.delete_stream(locations).try_collect().await
        })?;
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting objects below", e)),
        }
    }
}

type StoreKey = (Scheme, String);

/// The client of `url`'s bucket, built on first use from the environment.
fn store(url: &ObjectUrl) -> Result<Arc<dyn ObjectStore>> {
    static STORES: OnceLock<Mutex<HashMap<StoreKey, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let key = (url.scheme, url.bucket.clone());
    let mut stores = stores.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = stores.get(&key) {
        return Ok(s.clone());
    }
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match url.scheme {
        Scheme::S3 => object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map(|s| Arc::new(s) as _),
        Scheme::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map(|s| Arc::new(s) as _),
        Scheme::Azure => object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_container_name(&url.bucket)
            .build()
            .map(|s| Arc::new(s) as _),
        Scheme::Http | Scheme::Https => object_store::http::HttpBuilder::new()
            .with_url(format!("{}://{}", url.scheme.as_str(), url.bucket))
            .build()
            .map(|s| Arc::new(s) as _),
    };
    let built = built.map_err(|e| url.error("configuring the object store client", e))?;
    stores.insert(key, built.clone());
    Ok(built)
}

/// This module's runtime: object-store clients are tied to the runtime that drives their
/// connections, so every call runs here, whatever thread asks.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sluice-storage")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Internal {
            what: format!("starting the storage runtime: {e}"),
        })
}

/// An object-store call that failed inside a transfer, before the URL is known: the caller
/// names the object ([`ObjectUrl::error`]). Retryable, as every storage error.
fn transient(doing: &str, e: impl fmt::Display) -> Error {
    Error::Storage {
        url: String::new(),
        message: format!("{doing}: {e}"),
    }
}

/// Runs `fut` on the storage runtime and waits for it. Works from any thread, including a
/// thread of another tokio runtime (which it blocks meanwhile).
fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| Error::Internal {
        what: "an object-store call panicked".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_skips_hidden_names_unless_it_names_them() {
        let keeps = |pattern: &str, key: &str| {
            glob_keeps(
                &glob::Pattern::new(pattern).unwrap(),
                glob_dir(pattern),
                key,
            )
        };
        assert!(keeps("in/day-*/*.csv", "in/day-1/a.csv"));
        assert!(!keeps("in/day-*/*", "in/day-1/_READY"));
        assert!(keeps("in/day-*/_READY", "in/day-1/_READY"));
        assert!(!keeps("in/*/_READY", "in/_tmp/_READY"));
    }

    fn object(s: &str) -> ObjectUrl {
        match Location::parse(s).unwrap() {
            Location::Object(u) => u,
            other => panic!("{s} parsed as {other:?}"),
        }
    }

    #[test]
    fn local_paths_and_file_urls_stay_local() {
        assert_eq!(
            Location::parse("/data/in").unwrap(),
            Location::Local("/data/in".into())
        );
        assert_eq!(
            Location::parse("rel/*.csv").unwrap(),
            Location::Local("rel/*.csv".into())
        );
        assert_eq!(
            Location::parse("file:///data/in").unwrap(),
            Location::Local("/data/in".into())
        );
        assert_eq!(
            Location::parse("file://localhost/x").unwrap(),
            Location::Local("/x".into())
        );
        assert!(Location::parse("file://relative").is_err());
        assert_eq!(
            Location::parse("/odd/dir://name").unwrap(),
            Location::Local("/odd/dir://name".into())
        );
    }

    #[test]
    fn object_urls_parse_into_bucket_and_key() {
        let u = object("s3://bank/txns/2026/");
        assert_eq!(
            (u.scheme(), u.bucket(), u.key()),
            (Scheme::S3, "bank", "txns/2026")
        );
        assert_eq!(u.to_string(), "s3://bank/txns/2026");
        assert_eq!(u.join("part-00001.csv").key(), "txns/2026/part-00001.csv");
        assert_eq!(u.join("x").file_name(), "x");
        assert_eq!(object("gs://b").key(), "");
        assert_eq!(object("gs://b").join("k").key(), "k");
        assert_eq!(object("az://c/k").scheme(), Scheme::Azure);
        assert_eq!(object("https://host:8080/a/b").bucket(), "host:8080");
        assert!(Location::parse("s3:///key").is_err());
        let e = Location::parse("ftp://x/y").unwrap_err().to_string();
        assert!(e.contains("unsupported storage scheme"), "{e}");
    }

    #[test]
    fn hidden_names_are_not_data() {
        assert!(is_data_name("part-0.csv"));
        assert!(!is_data_name("_SUCCESS"));
        assert!(!is_data_name(".crc"));
        assert!(!is_data_name(""));
    }
}
