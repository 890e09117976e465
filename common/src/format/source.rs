//! A line-based split's bytes and where they lie in their file: the exact lines it owns,
//! and what a bad record needs (its file, its line in the whole file, its raw text).
//!
//! Readers count lines inside their split; the lines before the split are counted once, on
//! the first bad record only.

use std::fs::File;
use std::io::{BufRead, BufReader, Chain, Cursor, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::lines::{
    LineRead, MAX_LINE_BYTES, line_aligned_range, lines_before, read_line_bounded,
    skip_rest_of_line,
};
use super::remote::{count_lines_before, read_split_lines};
use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;

use super::read::ReadChecks;
use crate::bad_records::{RejectSink, Rejected};
use crate::rules::RuleSet;
use crate::storage::ObjectUrl;
use crate::{Error, Result};

/// Where a split's bytes lie in its file: what a bad record's file, line and raw text need.
pub(super) struct SplitOrigin {
    /// The file as errors name it (a local path or a URL).
    pub(super) path: PathBuf,
    /// The object, when the file is in an object store.
    pub(super) object: Option<ObjectUrl>,
    /// Byte offset of the split's first line in the file.
    pub(super) first: u64,
    /// The split's bytes when they were fetched into memory (an object's), to cut a bad
    /// record's raw text from.
    pub(super) fetched: Option<(Bytes, Bytes)>,
    /// Lines before the split, counted on the first bad record and kept.
    lines_before: OnceLock<std::result::Result<u64, String>>,
    /// Where bad records go instead of failing the read (`None`: they fail it).
    pub(super) rejects: Option<RejectSink>,
    /// The job's data-quality rules.
    rules: Option<Arc<RuleSet>>,
}

impl SplitOrigin {
    fn new(path: PathBuf, object: Option<ObjectUrl>, first: u64, checks: ReadChecks) -> Self {
        SplitOrigin {
            path,
            object,
            first,
            fetched: None,
            lines_before: OnceLock::new(),
            rejects: checks.rejects,
            rules: checks.rules,
        }
    }

    /// Whether the job has data-quality rules to check.
    pub(super) fn has_rules(&self) -> bool {
        self.rules.is_some()
    }

    /// `batch` without the rows failing a data-quality rule, each a bad record (set aside,
    /// or failing the read): row `r` is the `line(r)`-th line of the split, its raw text
    /// `raw(r)`.
    pub(super) fn apply_rules(
        &self,
        batch: RecordBatch,
        line: impl Fn(usize) -> u64,
        raw: impl Fn(usize) -> Option<String>,
    ) -> Result<RecordBatch> {
        let Some(rules) = &self.rules else {
            return Ok(batch);
        };
        let failures = rules.failures(&batch)?;
        if failures.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for f in failures {
            self.reject(line(f.row), f.rule, f.reason, || raw(f.row))?;
            keep[f.row] = false;
        }
        filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| Error::arrow("leaving records that fail a rule out", e))
    }

    /// Lines of the file before the split (read once, on the first bad record).
    fn lines_before(&self) -> std::result::Result<u64, String> {
        self.lines_before
            .get_or_init(|| match &self.object {
                None => File::open(&self.path)
                    .and_then(|mut f| lines_before(&mut f, self.first))
                    .map_err(|e| e.to_string()),
                Some(url) => count_lines_before(url, self.first).map_err(|e| e.to_string()),
            })
            .clone()
    }

    /// A bad-record error for the `nth` (1-based) line of this split.
    pub(super) fn bad_record(&self, nth_in_split: u64, reason: impl Into<String>) -> Error {
        match self.lines_before() {
            Ok(before) => Error::BadRecord {
                path: self.path.clone(),
                line: before + nth_in_split,
                reason: reason.into(),
            },
            // Without the count of earlier lines, name the split's byte offset instead.
            Err(e) => Error::Damaged {
                file: self.path.display().to_string(),
                reason: format!(
                    "bad record {nth_in_split} of the split starting at byte {} (counting \
                     earlier lines failed: {e}): {}",
                    self.first,
                    reason.into()
                ),
            },
        }
    }

    /// The `nth` (1-based) line of this split is a bad record of `kind` for `reason`: set
    /// aside when the job tolerates bad records (with its raw text from `record` when it
    /// will be quarantined), an error otherwise.
    pub(super) fn reject(
        &self,
        nth_in_split: u64,
        kind: impl Into<String>,
        reason: impl Into<String>,
        record: impl FnOnce() -> Option<String>,
    ) -> Result<()> {
        let Some(sink) = &self.rejects else {
            return Err(self.bad_record(nth_in_split, reason));
        };
        let line = self.lines_before().map_err(|e| Error::Damaged {
            file: self.path.display().to_string(),
            reason: format!("counting the lines before byte {}: {e}", self.first),
        })? + nth_in_split;
        sink.push(Rejected {
            source: self.path.display().to_string(),
            line,
            kind: kind.into(),
            reason: reason.into(),
            record: if sink.keeps_records() { record() } else { None },
        });
        Ok(())
    }

    /// The raw text of bytes `[start, end)` of the split (offsets from its first line), for
    /// a quarantined record: from memory for a fetched object, read again from a local file.
    pub(super) fn raw(&self, start: u64, end: u64) -> Option<String> {
        let len = usize::try_from(end.checked_sub(start)?)
            .ok()?
            .min(MAX_RAW_RECORD_BYTES);
        let bytes = match &self.fetched {
            Some((head, tail)) => {
                let (h, all) = (head.len() as u64, head.len() as u64 + tail.len() as u64);
                let end = (start + len as u64).min(all);
                let mut out = Vec::with_capacity(len);
                if start < h {
                    out.extend_from_slice(&head[start as usize..end.min(h) as usize]);
                }
                if end > h {
                    out.extend_from_slice(&tail[(start.max(h) - h) as usize..(end - h) as usize]);
                }
                out
            }
            None => {
                let mut f = File::open(&self.path).ok()?;
                f.seek(SeekFrom::Start(self.first + start)).ok()?;
                let mut out = vec![0; len];
                f.read_exact(&mut out).ok()?;
                out
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// Most bytes of a bad record's raw text kept in `_rejects` (a record longer than this is
/// cut; the line number still finds it in the file).
pub const MAX_RAW_RECORD_BYTES: usize = 1 << 20;

/// A split's bytes: a window of a local file, or the lines of an object fetched into memory.
pub(super) enum LineInput {
    /// Read from the local file as the parser goes (the fast local path).
    File(Take<BufReader<File>>),
    /// Fetched whole by ranged reads (see [`super::remote`]).
    Memory(Chain<Cursor<Bytes>, Cursor<Bytes>>),
}

impl Read for LineInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            LineInput::File(r) => r.read(buf),
            LineInput::Memory(r) => r.read(buf),
        }
    }
}

impl BufRead for LineInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            LineInput::File(r) => r.fill_buf(),
            LineInput::Memory(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            LineInput::File(r) => r.consume(amount),
            LineInput::Memory(r) => r.consume(amount),
        }
    }

    fn read_until(&mut self, byte: u8, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            LineInput::File(r) => r.read_until(byte, buf),
            LineInput::Memory(r) => r.read_until(byte, buf),
        }
    }
}

/// The exact lines of a byte-range split, read line by line.
pub(super) struct LineSource {
    pub(super) origin: SplitOrigin,
    pub(super) reader: LineInput,
    /// Lines read so far in this split.
    pub(super) lines_read: u64,
}

impl LineSource {
    pub(super) fn open(path: &Path, start: u64, end: u64, checks: ReadChecks) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (first, last) = line_aligned_range(&mut file, len, start, end).map_err(io)?;
        file.seek(SeekFrom::Start(first)).map_err(io)?;
        Ok(LineSource {
            origin: SplitOrigin::new(path.to_path_buf(), None, first, checks),
            reader: LineInput::File(BufReader::with_capacity(1 << 20, file).take(last - first)),
            lines_read: 0,
        })
    }

    /// The split `[start, end)` of an object, fetched into memory.
    pub(super) fn open_object(
        url: ObjectUrl,
        start: u64,
        end: u64,
        checks: ReadChecks,
    ) -> Result<Self> {
        let len = url.size()?.ok_or_else(|| Error::Storage {
            url: url.to_string(),
            message: "no such object".into(),
        })?;
        let lines = read_split_lines(&url, len, start, end)?;
        let mut origin = SplitOrigin::new(
            PathBuf::from(url.to_string()),
            Some(url),
            lines.first,
            checks,
        );
        origin.fetched = Some((lines.head.clone(), lines.tail.clone()));
        Ok(LineSource {
            origin,
            reader: LineInput::Memory(lines.into_reader()),
            lines_read: 0,
        })
    }

    /// Reads the next line (terminator included) into `buf`; false at the end of the split.
    /// A line longer than [`MAX_LINE_BYTES`] is a bad record: set aside (and skipped) when
    /// the job tolerates them, an error otherwise.
    pub(super) fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        loop {
            let read = read_line_bounded(&mut self.reader, buf, MAX_LINE_BYTES)
                .map_err(|e| Error::io(&self.origin.path, e))?;
            if read != LineRead::End {
                self.lines_read += 1;
            }
            if read != LineRead::TooLong {
                return Ok(read == LineRead::Line);
            }
            let reason = format!("line longer than {} MiB", MAX_LINE_BYTES >> 20);
            self.reject_line("line too long", reason, buf)?;
            skip_rest_of_line(&mut self.reader).map_err(|e| Error::io(&self.origin.path, e))?;
        }
    }

    /// The line read last, held in `line`, is a bad record (see [`SplitOrigin::reject`]).
    pub(super) fn reject_line(
        &self,
        kind: &str,
        reason: impl Into<String>,
        line: &[u8],
    ) -> Result<()> {
        self.origin.reject(self.lines_read, kind, reason, || {
            let raw = &line[..line.len().min(MAX_RAW_RECORD_BYTES)];
            Some(
                String::from_utf8_lossy(raw)
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            )
        })
    }

    /// A bad-record error for the line read last.
    pub(super) fn bad_line(&self, reason: impl Into<String>) -> Error {
        self.origin.bad_record(self.lines_read, reason)
    }
}
