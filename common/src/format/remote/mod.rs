//! Reading object-store files by ranged reads: the lines of a byte-range split, the first
//! lines of a file (CSV header, JSON schema inference) and Parquet footers and row groups.
//!
//! A line-based split of an object is fetched whole into memory: its byte range, from one
//! byte before its start (to see whether a line starts there) to its end, plus further
//! chunks (64 KiB, doubling up to 8 MiB) until the line running over the end is finished.
//! The line-ownership rule is exactly [`super::lines`]'s. Memory per map task is therefore
//! about one split (`split_size`, 128 MiB by default).
//!
//! Parquet footers and row groups are in the `parquet` submodule.

use std::io::{Cursor, Read};
use std::ops::Range;

use bytes::Bytes;

use crate::storage::ObjectUrl;
use crate::{Error, Result};

mod parquet;
pub use parquet::{
    SparseFile, column_chunk_range, fetch_parquet_footer, fetch_parquet_row_groups,
    read_parquet_footer, read_parquet_row_groups,
};

/// First read when scanning past a split's end for the end of its last line.
const SCAN_FIRST: u64 = 64 << 10;
/// Largest read when scanning past a split's end.
const SCAN_MAX: u64 = 8 << 20;
/// Chunk size when counting the lines before a bad record.
const COUNT_CHUNK: u64 = 8 << 20;

/// The exact lines of a byte-range split, in memory: `head` then `tail`.
pub struct SplitBytes {
    /// Offset in the file of the split's first line.
    pub first: u64,
    /// The lines' bytes, in two parts (the split's range and what finished its last line),
    /// so the range is not copied.
    pub head: Bytes,
    /// The rest of the last line.
    pub tail: Bytes,
}

impl SplitBytes {
    /// Total bytes.
    pub fn len(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64
    }

    /// Whether the split owns no line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over the lines.
    pub fn into_reader(self) -> std::io::Chain<Cursor<Bytes>, Cursor<Bytes>> {
        Read::chain(Cursor::new(self.head), Cursor::new(self.tail))
    }
}

/// The lines starting in `[start, end)` of a file of `len` bytes whose byte ranges `fetch`
/// returns: the same lines [`super::lines::line_aligned_range`] gives for a local file.
pub fn fetch_split_lines(
    fetch: &mut dyn FnMut(Range<u64>) -> Result<Bytes>,
    len: u64,
    start: u64,
    end: u64,
) -> Result<SplitBytes> {
    let end = end.min(len);
    let empty = |first| SplitBytes {
        first,
        head: Bytes::new(),
        tail: Bytes::new(),
    };
    if start >= end {
        return Ok(empty(start.min(len)));
    }
    // One byte before the start tells whether a line starts at `start`.
    let from = start.saturating_sub(1);
    let buf = fetch(from..end)?;
    if buf.len() as u64 != end - from {
        return Err(Error::Storage {
            url: String::new(),
            message: format!(
                "short read: asked for bytes {from}..{end}, got {}",
                buf.len()
            ),
        });
    }
    let first = if start == 0 {
        0
    } else {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => from + i as u64 + 1,
            None => return Ok(empty(end)),
        }
    };
    if first >= end {
        return Ok(empty(first));
    }
    let head = buf.slice((first - from) as usize..);
    // The last line ends at the first `\n` at or after `end - 1`.
    if buf.last() == Some(&b'\n') {
        return Ok(SplitBytes {
            first,
            head,
            tail: Bytes::new(),
        });
    }
    let mut tail: Vec<Bytes> = Vec::new();
    let (mut pos, mut step) = (end, SCAN_FIRST);
    while pos < len {
        let next = (pos + step).min(len);
        let chunk = fetch(pos..next)?;
        if chunk.is_empty() {
            break;
        }
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            tail.push(chunk.slice(..=i));
            break;
        }
        pos += chunk.len() as u64;
        tail.push(chunk);
        if pos - end > super::lines::MAX_LINE_BYTES as u64 {
            // The split's last line runs on past what a reader would hold anyway.
            return Err(Error::Damaged {
                file: String::new(),
                reason: format!(
                    "the line starting before offset {end} is longer than {} MiB",
                    super::lines::MAX_LINE_BYTES >> 20
                ),
            });
        }
        step = (step * 2).min(SCAN_MAX);
    }
    let tail = match tail.len() {
        0 => Bytes::new(),
        1 => tail.swap_remove(0),
        _ => Bytes::from(tail.concat()),
    };
    Ok(SplitBytes { first, head, tail })
}

/// The lines of split `[start, end)` of object `url` of `len` bytes.
pub fn read_split_lines(url: &ObjectUrl, len: u64, start: u64, end: u64) -> Result<SplitBytes> {
    fetch_split_lines(&mut |r| url.get_range(r), len, start, end).map_err(|e| match e {
        // Errors of the range logic, which knows no URL: name the object.
        Error::Storage { url: u, message } if u.is_empty() => Error::Storage {
            url: url.to_string(),
            message: format!("reading split [{start}, {end}): {message}"),
        },
        Error::Damaged { file, reason } if file.is_empty() => Error::Damaged {
            file: url.to_string(),
            reason,
        },
        e @ (Error::Storage { .. } | Error::Damaged { .. }) => e,
        other => Error::Storage {
            url: url.to_string(),
            message: format!("reading split [{start}, {end}): {other}"),
        },
    })
}

/// The first `max` bytes of the object (all of it when smaller), cut after the last complete
/// line unless the object ends within them.
pub fn read_head_lines(url: &ObjectUrl, len: u64, max: u64) -> Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let bytes = url.get_range(0..len.min(max))?;
    if len <= max {
        return Ok(bytes);
    }
    Ok(match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => bytes.slice(..=i),
        None => bytes,
    })
}

/// The first line of the object (terminator included), however long.
pub fn read_first_line(url: &ObjectUrl, len: u64) -> Result<Bytes> {
    let lines = read_split_lines(url, len, 0, 1.min(len))?;
    let mut out = Vec::with_capacity(lines.len() as usize);
    lines
        .into_reader()
        .read_to_end(&mut out)
        .map_err(|e| Error::Storage {
            url: url.to_string(),
            message: format!("reading the first line: {e}"),
        })?;
    Ok(Bytes::from(out))
}

/// Number of `\n` bytes before `offset` in the object: the 0-based line number of a line
/// starting there. Only called on the error path, to name the line of a bad record.
pub fn count_lines_before(url: &ObjectUrl, offset: u64) -> Result<u64> {
    let mut count = 0u64;
    let mut pos = 0u64;
    while pos < offset {
        let next = (pos + COUNT_CHUNK).min(offset);
        let chunk = url.get_range(pos..next)?;
        count += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        pos = next;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::lines::line_aligned_range;
    use std::io::Write;

    #[test]
    fn remote_splits_own_the_same_lines_as_local_ones() {
        let cases: [&[u8]; 7] = [
            b"alpha\nbeta\ngamma\n",
            b"alpha\r\nbeta\r\n\r\ngamma",
            b"a-very-long-line-longer-than-any-split\nx\n",
            b"\n\n\n",
            b"no newline at all",
            b"",
            b"x\n",
        ];
        for bytes in cases {
            let mut tmp = tempfile::NamedTempFile::new().unwrap();
            tmp.write_all(bytes).unwrap();
            let mut file = std::fs::File::open(tmp.path()).unwrap();
            let len = bytes.len() as u64;
            let mut fetch = |r: Range<u64>| {
                Ok(Bytes::copy_from_slice(
                    &bytes[r.start as usize..r.end as usize],
                ))
            };
            for size in 1..=len + 2 {
                let mut joined = Vec::new();
                let mut start = 0;
                while start < len {
                    let end = (start + size).min(len);
                    let (a, b) = line_aligned_range(&mut file, len, start, end).unwrap();
                    let got = fetch_split_lines(&mut fetch, len, start, end).unwrap();
                    let mut text = Vec::new();
                    let first = got.first;
                    got.into_reader().read_to_end(&mut text).unwrap();
                    assert_eq!(
                        text,
                        &bytes[a as usize..b as usize],
                        "split [{start}, {end}) of {:?}",
                        String::from_utf8_lossy(bytes)
                    );
                    if a != b {
                        assert_eq!(first, a);
                    }
                    joined.extend(text);
                    start = end;
                }
                assert_eq!(joined, bytes);
            }
        }
    }
}
