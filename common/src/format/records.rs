//! The records of a CSV split, split into fields as the `csv` crate does (RFC 4180, `,`
//! delimiter, `"` quotes doubled inside quoted fields, `\n`, `\r\n` or `\r` ending a record,
//! empty lines skipped), but fast on the lines that need no state machine.
//!
//! A byte-at-a-time parser took about 13% of an EOD CSV run's CPU. Most lines of a bank's
//! extract hold no quote and no stray carriage return: such a line is found with `memchr`
//! and cut at its commas, also with `memchr`, and its fields are read where they lie in the
//! buffer. A line with a `"` or a `\r` before its end goes to `csv_core`, the `csv` crate's
//! own parser, which also reads a quoted field's line breaks into the next lines.
//!
//! Every record is checked to be UTF-8 as a whole, as the `csv` crate's string records are:
//! a record with invalid bytes in any field, read by the job or not, is unreadable.

use std::io::{self, BufRead};
use std::ops::Range;

/// Bytes read from the input at a time.
const READ_BYTES: usize = 1 << 20;

/// Where a record lies in its split, and how to read its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The physical line it starts on, from 1 at the split's first byte.
    pub(super) line: u64,
    /// Its bytes in the split: its first byte, and the first byte after it.
    pub(super) start: u64,
    pub(super) end: u64,
    /// `Err` with the reason when its bytes are not UTF-8.
    pub(super) utf8: Result<(), String>,
}

/// Reads records from a split's bytes.
pub(super) struct Records<R> {
    input: R,
    /// Bytes read and not yet consumed start at `pos`; `buf[..pos]` is consumed.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The split offset of `buf[0]`.
    offset: u64,
    /// The line of `buf[pos]`.
    line: u64,
    /// The current record's fields: ranges of `buf`, or of `unquoted` when `quoted`.
    fields: Vec<Range<usize>>,
    quoted: bool,
    unquoted: Vec<u8>,
    ends: Vec<usize>,
    core: csv_core::Reader,
}

impl<R: BufRead> Records<R> {
    /// Records of `input`, whose first byte is the split's.
    pub(super) fn new(input: R) -> Self {
        Records {
            input,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            offset: 0,
            line: 1,
            fields: Vec::new(),
            quoted: false,
            unquoted: Vec::new(),
            ends: vec![0; 64],
            core: csv_core::Reader::new(),
        }
    }

    /// Number of fields of the record read last.
    pub(super) fn len(&self) -> usize {
        self.fields.len()
    }

    /// Field `i` of the record read last.
    pub(super) fn field(&self, i: usize) -> &[u8] {
        let r = self.fields[i].clone();
        if self.quoted {
            &self.unquoted[r]
        } else {
            &self.buf[r]
        }
    }

    /// Reads more of the input after what is held; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            // Drop what is consumed, so the buffer holds about one read's worth.
            self.buf.drain(..self.pos);
            self.offset += self.pos as u64;
            self.pos = 0;
        }
        let chunk = self.input.fill_buf()?;
        if chunk.is_empty() {
            self.eof = true;
            return Ok(false);
        }
        let n = chunk.len().min(READ_BYTES);
        self.buf.extend_from_slice(&chunk[..n]);
        self.input.consume(n);
        Ok(true)
    }

    /// The next record, `None` at the end of the input.
    pub(super) fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.buf[self.pos..]) else {
                if self.fill()? {
                    continue;
                }
                if self.pos == self.buf.len() {
                    return Ok(None);
                }
                // The last line, with no terminator.
                return self.line_record(self.buf.len(), self.buf.len());
            };
            let end = self.pos + nl;
            if let Some(record) = self.line_record(end, end + 1)? {
                return Ok(Some(record));
            }
        }
    }

    /// The record of the line `buf[pos..end]`, `next` being the first byte after its
    /// terminator; `None` for an empty line, which is skipped.
    fn line_record(&mut self, end: usize, next: usize) -> io::Result<Option<Record>> {
        let body = &self.buf[self.pos..end];
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if memchr::memchr2(b'"', b'\r', body).is_some() {
            return self.core_record();
        }
        let line = self.line;
        let start = self.pos;
        self.pos = next;
        self.line += u64::from(next > end);
        if body.is_empty() {
            return Ok(None);
        }
        let body_end = start + body.len();
        self.quoted = false;
        self.fields.clear();
        let mut from = start;
        for comma in memchr::memchr_iter(b',', &self.buf[start..body_end]) {
            self.fields.push(from..start + comma);
            from = start + comma + 1;
        }
        self.fields.push(from..body_end);
        let utf8 = std::str::from_utf8(&self.buf[start..body_end])
            .map(|_| ())
            .map_err(|e| invalid_utf8(line, &e));
        Ok(Some(Record {
            line,
            start: self.offset + start as u64,
            end: self.offset + next as u64,
            utf8,
        }))
    }

    /// The record starting at `pos`, read by `csv_core`: it may hold quoted line breaks,
    /// so it may need more of the input than the line at hand.
    fn core_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            self.core.reset();
            self.unquoted.clear();
            let mut nin_total = 0;
            let mut nout_total = 0;
            let mut nend = 0;
            let outcome = loop {
                let input = &self.buf[self.pos + nin_total..];
                if self.unquoted.len() < nout_total + input.len() + 1 {
                    self.unquoted.resize(nout_total + input.len() + 1, 0);
                }
                let (res, nin, nout, ne) = self.core.read_record(
                    input,
                    &mut self.unquoted[nout_total..],
                    &mut self.ends[nend..],
                );
                nin_total += nin;
                nout_total += nout;
                nend += ne;
                match res {
                    csv_core::ReadRecordResult::OutputFull => {
                        let n = self.unquoted.len();
                        self.unquoted.resize(n * 2 + 64, 0);
                    }
                    csv_core::ReadRecordResult::OutputEndsFull => {
                        let n = self.ends.len();
                        self.ends.resize(n * 2, 0);
                    }
                    csv_core::ReadRecordResult::InputEmpty if !self.eof => break None,
                    csv_core::ReadRecordResult::InputEmpty => {
                        // The end of the input ends the record: say so with no input.
                        let (res, _, nout, ne) = self.core.read_record(
                            &[],
                            &mut self.unquoted[nout_total..],
                            &mut self.ends[nend..],
                        );
                        nout_total += nout;
                        nend += ne;
                        break Some(res);
                    }
                    res => break Some(res),
                }
            };
            let Some(res) = outcome else {
                // The record goes on past what is held: read more and parse it again.
                self.fill()?;
                continue;
            };
            let start = self.pos;
            let consumed = &self.buf[start..start + nin_total];
            let line = self.line;
            self.line += memchr::memchr_iter(b'\n', consumed).count() as u64;
            self.pos += nin_total;
            if !matches!(res, csv_core::ReadRecordResult::Record) || nend == 0 {
                return Ok(None);
            }
            self.quoted = true;
            self.fields.clear();
            let mut from = 0;
            for &e in &self.ends[..nend] {
                self.fields.push(from..e);
                from = e;
            }
            self.unquoted.truncate(nout_total);
            let utf8 = std::str::from_utf8(&self.unquoted)
                .map(|_| ())
                .map_err(|e| invalid_utf8(line, &e));
            return Ok(Some(Record {
                line,
                start: self.offset + start as u64,
                end: self.offset + self.pos as u64,
                utf8,
            }));
        }
    }
}

fn invalid_utf8(line: u64, e: &std::str::Utf8Error) -> String {
    format!(
        "line {line}: invalid UTF-8 at byte {} of the record",
        e.valid_up_to()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, start, end, fields) of each record, by this reader.
    fn ours(input: &[u8], read_size: usize) -> Vec<(u64, u64, u64, Vec<Vec<u8>>)> {
        let reader = io::BufReader::with_capacity(read_size, input);
        let mut records = Records::new(reader);
        let mut out = Vec::new();
        while let Some(r) = records.next_record().unwrap() {
            let fields = (0..records.len())
                .map(|i| records.field(i).to_vec())
                .collect();
            out.push((r.line, r.start, r.end, fields));
        }
        out
    }

    /// The fields of each record, by the `csv` crate as the reader used it before.
    fn theirs(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            out.push(record.iter().map(<[u8]>::to_vec).collect());
        }
        out
    }

    /// Fields as the `csv` crate splits them, whatever the size of the reads; each record's
    /// line is the physical line its first byte is on (the `csv` crate does not count the
    /// empty lines it skips), and its bytes hold exactly that record.
    #[test]
    fn records_and_fields_are_the_csv_crates_and_lines_are_physical() {
        let cases: &[&[u8]] = &[
            b"a,b,c\n1,2,3\n",
            b"a,b,c\n1,2,3",
            b"a,,\n,\n\n\n x , y \n",
            b"a,b\r\nc,d\r\n\r\ne,f",
            b"a\rb,c\n",
            b"\"q,1\",2\n\"multi\nline\",3\nlast,\"x\"\"y\"\n",
            b"x,\"open\nstill\nopen",
            b"a\"b,c\n\"\",\"\"\n",
            b"\n\n\n",
            b"",
            b"\r",
            b"caf\xc3\xa9,\xff\n",
        ];
        for input in cases {
            let expected = theirs(input);
            for read_size in [1, 3, 7, 1 << 16] {
                let got = ours(input, read_size);
                let what = format!(
                    "{:?} read {read_size} at a time",
                    String::from_utf8_lossy(input)
                );
                let fields: Vec<_> = got.iter().map(|r| r.3.clone()).collect();
                assert_eq!(fields, expected, "{what}");
                for (line, start, end, fields) in &got {
                    let (start, end) = (*start as usize, *end as usize);
                    let before = input[..start].iter().filter(|&&b| b == b'\n').count();
                    assert_eq!(*line, before as u64 + 1, "{what}");
                    assert_eq!(&theirs(&input[start..end]), &[fields.clone()], "{what}");
                }
            }
        }
    }

    #[test]
    fn a_record_of_invalid_utf8_says_so() {
        let mut records = Records::new(io::BufReader::new(&b"ok,1\nbad,\xff\n\"q\xff\",2\n"[..]));
        assert_eq!(records.next_record().unwrap().unwrap().utf8, Ok(()));
        let bad = records.next_record().unwrap().unwrap();
        assert_eq!(bad.line, 2);
        assert!(bad.utf8.unwrap_err().contains("invalid UTF-8"));
        assert!(records.next_record().unwrap().unwrap().utf8.is_err());
        assert_eq!(records.next_record().unwrap(), None);
    }
}
