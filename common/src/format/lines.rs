//! Line alignment of byte-range splits.
//!
//! A line starts at offset 0 or right after a `\n`. A split `[start, end)` owns every line
//! starting inside it, so its exact bytes are `[first, last)` where `first` is the first line
//! start `>= start` and `last` the first line start `>= end` (or the file length). Every line
//! of a file is thus owned by exactly one split, whatever the split size: a line longer than
//! a split belongs to the split it starts in, and the splits it spans over own nothing.
//! `\r\n` needs no special case: the `\r` stays in the line and readers strip it.
//!
//! A line is at most [`MAX_LINE_BYTES`]: readers hold a line in memory whole, so a file
//! with one 10 GB line is a bad record naming the file and line, not a worker out of memory.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// The longest line (terminator included) a reader accepts: 64 MiB.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// What [`read_line_bounded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A line, terminator included (the last line of a file may have none).
    Line,
    /// The input ended.
    End,
    /// The line is longer than allowed; `buf` holds its first bytes.
    TooLong,
}

/// Reads up to and including the next `\n` into `buf` (cleared first), keeping at most
/// `max` bytes of it in memory.
pub fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::End
            } else {
                LineRead::Line
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            let room = max - buf.len();
            buf.extend_from_slice(&available[..room]);
            r.consume(room);
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(take);
        if done {
            return Ok(LineRead::Line);
        }
    }
}

/// Consumes input up to and including the next `\n` (or the end), keeping none of it: the
/// rest of a line [`read_line_bounded`] found too long.
pub fn skip_rest_of_line(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                r.consume(n);
            }
        }
    }
}

const SCAN_BLOCK: usize = 64 * 1024;

/// Offset just past the first `\n` at or after `pos`, or `len` when there is none.
pub fn next_line_start(file: &mut File, pos: u64, len: u64) -> io::Result<u64> {
    if pos >= len {
        return Ok(len);
    }
    file.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0u8; SCAN_BLOCK];
    let mut offset = pos;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(len);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(offset + i as u64 + 1);
        }
        offset += n as u64;
    }
}

/// The exact byte range `[first, last)` of the lines that start in `[start, end)` of a file
/// of `len` bytes. Empty (`first == last`) when no line starts there.
pub fn line_aligned_range(
    file: &mut File,
    len: u64,
    start: u64,
    end: u64,
) -> io::Result<(u64, u64)> {
    let end = end.min(len);
    let first = if start == 0 {
        0
    } else {
        next_line_start(file, start - 1, len)?
    };
    if first >= end {
        return Ok((first, first));
    }
    let last = next_line_start(file, end - 1, len)?;
    Ok((first, last))
}

/// Number of `\n` bytes before `offset`: the 0-based line number of a line starting there.
/// Only called on the error path, to name the line of a bad record.
pub fn lines_before(file: &mut File, offset: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; SCAN_BLOCK];
    let mut remaining = offset;
    let mut count = 0u64;
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        remaining -= n as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_read_up_to_a_bound() {
        use super::{LineRead, read_line_bounded};
        let mut r = std::io::BufReader::with_capacity(4, &b"ab\ncdefgh\nxy"[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 5).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ab\n");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 5).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(buf, b"cdefg", "at most the bound is held");
        let mut r = std::io::BufReader::with_capacity(4, &b"ab\nxy"[..]);
        read_line_bounded(&mut r, &mut buf, 5).unwrap();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 5).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"xy", "a last line without a terminator");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 5).unwrap(),
            LineRead::End
        );
        let mut r = &b"12345\n"[..];
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 6).unwrap(),
            LineRead::Line
        );
        assert_eq!(
            read_line_bounded(&mut &b"12345\n"[..], &mut buf, 5).unwrap(),
            LineRead::TooLong
        );
    }

    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let h = File::open(f.path()).unwrap();
        (f, h)
    }

    /// Cuts the file into splits of `size` bytes and returns the lines each owns.
    fn lines_by_split(bytes: &[u8], size: u64) -> Vec<Vec<u8>> {
        let (_t, mut f) = file_with(bytes);
        let len = bytes.len() as u64;
        let mut out = Vec::new();
        let mut start = 0;
        while start < len {
            let end = (start + size).min(len);
            let (a, b) = line_aligned_range(&mut f, len, start, end).unwrap();
            out.push(bytes[a as usize..b as usize].to_vec());
            start = end;
        }
        out
    }

    #[test]
    fn every_line_is_owned_by_exactly_one_split_for_every_split_size() {
        let cases: [&[u8]; 6] = [
            b"alpha\nbeta\ngamma\n",
            b"alpha\r\nbeta\r\n\r\ngamma",
            b"a-very-long-line-longer-than-any-split\nx\n",
            b"\n\n\n",
            b"no newline at all",
            b"",
        ];
        for bytes in cases {
            for size in 1..=(bytes.len() as u64 + 2) {
                let joined: Vec<u8> = lines_by_split(bytes, size).concat();
                assert_eq!(
                    joined,
                    bytes,
                    "size {size} on {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn split_starting_mid_line_skips_to_the_next_line() {
        let bytes = b"alpha\nbeta\ngamma\n";
        let (_t, mut f) = file_with(bytes);
        // [2, 8) starts inside "alpha" and owns "beta" (starting at 6) only.
        assert_eq!(line_aligned_range(&mut f, 17, 2, 8).unwrap(), (6, 11));
        // [6, 7) starts exactly at a line start.
        assert_eq!(line_aligned_range(&mut f, 17, 6, 7).unwrap(), (6, 11));
        // [7, 10) lies inside "beta": no line starts there.
        let (a, b) = line_aligned_range(&mut f, 17, 7, 10).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn lines_before_counts_newlines() {
        let (_t, mut f) = file_with(b"a\nb\nc\n");
        assert_eq!(lines_before(&mut f, 0).unwrap(), 0);
        assert_eq!(lines_before(&mut f, 2).unwrap(), 1);
        assert_eq!(lines_before(&mut f, 6).unwrap(), 3);
    }
}
