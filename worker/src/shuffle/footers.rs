//! Parsed footers of the spill files this worker reads from its own host's disk, shared by
//! its reducers.
//!
//! Every reducer reads partition r of every map output, and a spill file's footer lists
//! the row groups of every partition: parsing it at each read costs maps × reducers parses
//! of footers that grow with the reducers (EOD, 100M rows: 72 maps × 138 reducers, each
//! footer some 1,500 column chunks, parsed twice per read, about 5% of the run's CPU in
//! the profile). Here each file's footer is parsed once and kept while its job runs.
//!
//! A kept footer is used only for the file it was parsed from: the file is opened at each
//! read and its identity (device, inode, length, modification time) must be the one the
//! footer came with, so a file replaced at the same path is parsed again, and a file gone
//! fails to open as it did before.
//!
//! Memory is bounded by [`FOOTER_CACHE_BYTES`] per worker process (local mode's workers
//! share one set). Past it, footers are parsed and not kept, nothing is evicted: the
//! reducers read the maps in the same order, so evicting the least recently used footer
//! would evict the one the next reducer needs first, and every read would miss. Keeping the
//! first ones means the reads of those files hit. A job's footers go when the worker learns
//! the job ended ([`Footers::forget_job`]); a reducer of that job still finishing its reads
//! then parses without keeping, so nothing of an ended job comes back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

/// Most bytes of parsed footers kept (as `ParquetMetaData::memory_size` counts them, plus
/// the key-value metadata the Arrow schema copies and the path).
pub const FOOTER_CACHE_BYTES: usize = 64 << 20;

/// Ended jobs remembered, so that their footers are not kept again.
const ENDED_JOBS: usize = 1024;

/// The footers of this worker process.
pub static FOOTERS: LazyLock<Footers> = LazyLock::new(|| Footers::new(FOOTER_CACHE_BYTES));

/// A spill file opened for reading, with its parsed footer.
pub struct Opened {
    /// The file, positioned nowhere in particular (the reader seeks).
    pub file: File,
    /// Its footer.
    pub meta: ArrowReaderMetadata,
    /// Its length in bytes, when it was opened.
    pub len: u64,
}

/// Which file a footer was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Self {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

struct Kept {
    job_id: String,
    identity: Identity,
    meta: ArrowReaderMetadata,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    kept: HashMap<PathBuf, Kept>,
    bytes: usize,
    parses: u64,
    /// The last [`ENDED_JOBS`] jobs forgotten, oldest first, and as a set.
    ended_order: VecDeque<String>,
    ended: HashSet<String>,
}

/// Parsed footers by path, at most `limit` bytes of them.
pub struct Footers {
    inner: Mutex<Inner>,
    limit: usize,
}

impl Footers {
    /// An empty set keeping at most `limit` bytes of footers.
    pub fn new(limit: usize) -> Self {
        Footers {
            inner: Mutex::new(Inner::default()),
            limit,
        }
    }

    /// Opens the spill file `path` of `job_id` with its footer, parsed now unless this
    /// very file's was kept. An error names what failed, not the path (callers add it).
    pub fn open(&self, job_id: &str, path: &Path) -> Result<Opened, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let identity = Identity::of(&file.metadata().map_err(|e| e.to_string())?);
        if let Some(k) = self.lock().kept.get(path)
            && k.identity == identity
        {
            let meta = k.meta.clone();
            return Ok(Opened {
                file,
                meta,
                len: identity.len,
            });
        }
        // Parsed outside the lock: other reducers' hits do not wait for it.
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| e.to_string())?;
        let copied: usize = meta
            .schema()
            .metadata()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let bytes = meta.metadata().memory_size() + copied + path.as_os_str().len();
        let mut inner = self.lock();
        inner.parses += 1;
        if let Some(stale) = inner.kept.remove(path) {
            inner.bytes -= stale.bytes;
        }
        if inner.bytes + bytes <= self.limit && !inner.ended.contains(job_id) {
            inner.bytes += bytes;
            let kept = Kept {
                job_id: job_id.to_string(),
                identity,
                meta: meta.clone(),
                bytes,
            };
            inner.kept.insert(path.to_path_buf(), kept);
        }
        Ok(Opened {
            file,
            meta,
            len: identity.len,
        })
    }

    /// Drops the footers of `job_id`'s files and keeps none of them again: the job ended
    /// and its files are being removed.
    pub fn forget_job(&self, job_id: &str) {
        let mut inner = self.lock();
        if inner.ended.insert(job_id.to_string()) {
            inner.ended_order.push_back(job_id.to_string());
            if inner.ended_order.len() > ENDED_JOBS
                && let Some(oldest) = inner.ended_order.pop_front()
            {
                inner.ended.remove(&oldest);
            }
        }
        let mut freed = 0;
        inner.kept.retain(|_, k| {
            let keep = k.job_id != job_id;
            if !keep {
                freed += k.bytes;
            }
            keep
        });
        inner.bytes -= freed;
    }

    /// `(footers kept, their bytes, footers parsed so far)`.
    pub fn stats(&self) -> (usize, usize, u64) {
        let inner = self.lock();
        (inner.kept.len(), inner.bytes, inner.parses)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;

    use super::*;

    fn write(path: &Path, rows: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn rows(o: &Opened) -> i64 {
        o.meta.metadata().file_metadata().num_rows()
    }

    #[test]
    fn a_footer_is_parsed_once_per_file_and_again_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        write(&path, 10);
        let footers = Footers::new(1 << 20);
        assert_eq!(rows(&footers.open("j", &path).unwrap()), 10);
        assert_eq!(rows(&footers.open("j", &path).unwrap()), 10);
        assert_eq!(footers.stats().2, 1, "the second read used the kept footer");
        // Another file at the same path (another inode, another length) is parsed anew.
        std::fs::remove_file(&path).unwrap();
        write(&path, 1000);
        assert_eq!(rows(&footers.open("j", &path).unwrap()), 1000);
        assert_eq!(footers.stats().0, 1, "the stale footer was replaced");
        assert_eq!(footers.stats().2, 2);
        // A file gone is an error, kept footer or not.
        std::fs::remove_file(&path).unwrap();
        assert!(footers.open("j", &path).is_err());
    }

    #[test]
    fn past_the_limit_footers_are_read_but_not_kept_and_a_finished_job_frees_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write(&a, 5);
        write(&b, 6);
        let probe = Footers::new(usize::MAX);
        probe.open("j", &a).unwrap();
        let footers = Footers::new(probe.stats().1);
        footers.open("j1", &a).unwrap();
        assert_eq!(
            rows(&footers.open("j2", &b).unwrap()),
            6,
            "read though not kept"
        );
        assert_eq!(footers.stats().0, 1);
        footers.open("j1", &a).unwrap();
        assert_eq!(footers.stats().2, 2, "a kept, b parsed once");
        footers.forget_job("j1");
        assert_eq!(footers.stats().0, 0);
        assert_eq!(footers.stats().1, 0);
        footers.open("j2", &b).unwrap();
        assert_eq!(footers.stats().0, 1, "room again once j1's footers went");
        // A straggling read of the ended job parses without keeping.
        footers.forget_job("j2");
        footers.open("j1", &a).unwrap();
        assert_eq!(
            footers.stats().0,
            0,
            "nothing of an ended job is kept again"
        );
    }
}
