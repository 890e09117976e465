//! Attempt log files: where they are, writing with a cap and one rotation, reading a piece
//! for the coordinator, and removing those past the retention.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A log file's size at most before it is rotated (one older file is kept).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Bytes one read returns at most.
pub const MAX_READ_BYTES: u64 = 1 << 20;

/// Why an attempt log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The job id or task name cannot name a file.
    #[error("not an attempt: job {job:?}, task {task:?} (a task is map-N or reduce-N)")]
    BadName {
        /// The job id asked for.
        job: String,
        /// The task asked for.
        task: String,
    },
    /// No log for that attempt here.
    #[error(
        "no log for {task} attempt {attempt} of {job} on this worker (removed after its retention, or the attempt logged nothing)"
    )]
    NotFound {
        /// The job.
        job: String,
        /// The task.
        task: String,
        /// The attempt.
        attempt: u32,
    },
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Whether `id` is safe as a path component (a job id from the coordinator).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The task a name like `map-3` or `reduce-0` names: (is map, index).
pub fn parse_task(task: &str) -> Option<(bool, u32)> {
    let (kind, index) = task.split_once('-')?;
    let is_map = match kind {
        "map" => true,
        "reduce" => false,
        _ => return None,
    };
    // Digits only: `u32::from_str` would also take a sign.
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((is_map, index.parse().ok()?))
}

/// The log file of an attempt: `LOGS/JOB/map-3.0.log`.
pub fn attempt_path(logs: &Path, job: &str, is_map: bool, index: u32, attempt: u32) -> PathBuf {
    let kind = if is_map { "map" } else { "reduce" };
    logs.join(job).join(format!("{kind}-{index}.{attempt}.log"))
}

/// The file an attempt log is rotated to.
fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// An attempt's open log file.
pub struct AttemptFile {
    file: File,
    path: PathBuf,
    written: u64,
}

impl AttemptFile {
    /// Opens (creating it and its directory) the log at `path` to append to.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(AttemptFile {
            file,
            path: path.to_path_buf(),
            written,
        })
    }

    /// Appends one line, rotating first when it would pass [`MAX_FILE_BYTES`]. A line that
    /// cannot be written (the disk full) is dropped: the attempt's work goes on.
    pub fn write_line(&mut self, line: &[u8]) {
        if self.written > 0 && self.written + line.len() as u64 > MAX_FILE_BYTES {
            let reopened = std::fs::rename(&self.path, rotated(&self.path)).and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
            if let Ok(f) = reopened {
                self.file = f;
                self.written = 0;
            }
        }
        if self.file.write_all(line).is_ok() {
            self.written += line.len() as u64;
        }
    }
}

/// A piece of an attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPiece {
    /// The bytes from the offset asked for.
    pub data: Vec<u8>,
    /// The offset after them: where the next read starts.
    pub next_offset: u64,
    /// The log's size now (the rotated file and the current one, in that order).
    pub size: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// At most `max` bytes (capped at [`MAX_READ_BYTES`]) of an attempt's log from `offset`:
/// the rotated file, if any, then the current one, read as one text.
pub fn read(
    logs: &Path,
    job: &str,
    task: &str,
    attempt: u32,
    offset: u64,
    max: u64,
) -> Result<LogPiece, LogError> {
    let bad = || LogError::BadName {
        job: job.to_string(),
        task: task.to_string(),
    };
    if !is_safe_id(job) {
        return Err(bad());
    }
    let (is_map, index) = parse_task(task).ok_or_else(bad)?;
    let current = attempt_path(logs, job, is_map, index, attempt);
    let parts = [rotated(&current), current.clone()];
    let mut sizes = [0u64; 2];
    for (size, path) in sizes.iter_mut().zip(&parts) {
        match std::fs::metadata(path) {
            Ok(m) => *size = m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    if !current.exists() {
        return Err(LogError::NotFound {
            job: job.to_string(),
            task: task.to_string(),
            attempt,
        });
    }
    let size = sizes[0] + sizes[1];
    let mut want = max
        .clamp(1, MAX_READ_BYTES)
        .min(size.saturating_sub(offset));
    let mut data = Vec::with_capacity(want as usize);
    let mut at = offset;
    let mut start = 0;
    for (path, len) in parts.iter().zip(sizes) {
        if want == 0 {
            break;
        }
        if at >= start + len {
            start += len;
            continue;
        }
        let mut f = File::open(path).map_err(io_err(path))?;
        f.seek(SeekFrom::Start(at - start)).map_err(io_err(path))?;
        let n = want.min(start + len - at);
        let got = f.take(n).read_to_end(&mut data).map_err(io_err(path))? as u64;
        at += got;
        want -= got;
        start += len;
    }
    Ok(LogPiece {
        data,
        next_offset: at,
        size,
    })
}

/// Whether logs last written at `newest` are past a retention of `keep` at `now`.
pub fn expired(newest: SystemTime, now: SystemTime, keep: Duration) -> bool {
    now.duration_since(newest).is_ok_and(|age| age > keep)
}

/// Removes the log directories of jobs whose newest file is older than `keep`; returns how
/// many.
pub fn sweep(logs: &Path, now: SystemTime, keep: Duration) -> usize {
    let Ok(jobs) = std::fs::read_dir(logs) else {
        return 0;
    };
    let mut removed = 0;
    for dir in jobs.flatten() {
        let newest = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| f.metadata().and_then(|m| m.modified()).ok())
            .max()
            .or_else(|| dir.metadata().and_then(|m| m.modified()).ok());
        if newest.is_some_and(|t| expired(t, now, keep))
            && std::fs::remove_dir_all(dir.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_are_map_or_reduce_and_digits() {
        assert_eq!(parse_task("map-3"), Some((true, 3)));
        assert_eq!(parse_task("reduce-0"), Some((false, 0)));
        for bad in [
            "map-",
            "map-+3",
            "shuffle-1",
            "map3",
            "map-1/..",
            "reduce--1",
        ] {
            assert_eq!(parse_task(bad), None, "{bad}");
        }
        assert!(!is_safe_id("../etc"));
        assert!(is_safe_id("job-0003"));
    }

    #[test]
    fn a_log_rotates_at_its_cap_and_reads_as_one_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = attempt_path(dir.path(), "job-0001", true, 2, 0);
        let mut f = AttemptFile::open(&path).unwrap();
        let line = vec![b'x'; 1000];
        let lines = (MAX_FILE_BYTES / 1000) as usize + 10;
        for _ in 0..lines {
            f.write_line(&line);
        }
        f.write_line(b"last\n");
        assert!(rotated(&path).exists());
        let all = read(dir.path(), "job-0001", "map-2", 0, 0, u64::MAX).unwrap();
        assert_eq!(all.size, lines as u64 * 1000 + 5);
        assert_eq!(all.data.len() as u64, all.size.min(MAX_READ_BYTES));
        // Reading across the two files from an offset gives the tail.
        let tail = read(dir.path(), "job-0001", "map-2", 0, all.size - 1005, 4096).unwrap();
        assert_eq!(tail.data.len(), 1005);
        assert!(tail.data.ends_with(b"xlast\n"));
        assert_eq!(tail.next_offset, all.size);
        let past = read(dir.path(), "job-0001", "map-2", 0, all.size, 10).unwrap();
        assert!(past.data.is_empty());
    }

    #[test]
    fn a_missing_log_and_a_bad_name_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), "job-0001", "map-1", 0, 0, 10).unwrap_err();
        assert!(
            e.to_string()
                .contains("no log for map-1 attempt 0 of job-0001"),
            "{e}"
        );
        let e = read(dir.path(), "..", "map-1", 0, 0, 10).unwrap_err();
        assert!(matches!(e, LogError::BadName { .. }), "{e}");
    }

    #[test]
    fn retention_counts_from_the_newest_write() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert!(!expired(t0, t0 + day, day));
        assert!(expired(t0, t0 + day + Duration::from_secs(1), day));
        // A clock that went back keeps the logs.
        assert!(!expired(t0 + day, t0, day));
    }
}
