//! Reading one split as Arrow record batches.
//!
//! Every reader yields batches of at most `batch_rows` rows and never holds more than one
//! batch (plus a read buffer) in memory. Malformed input becomes [`Error::BadRecord`] with
//! the file and the 1-based line of the record in the whole file: readers count lines inside
//! their split and add the lines before the split only on the error path.
//!
//! CSV is read by [`super::csv`].

use std::fs::File;
use std::io::{BufRead, BufReader, Chain, Cursor, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use arrow::array::{RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::csv::CsvReader;
use super::lines::{LineRead, MAX_LINE_BYTES, line_aligned_range, lines_before, read_line_bounded};
use super::remote::{count_lines_before, read_parquet_row_groups, read_split_lines};
use crate::spec::InputFormat;
use crate::split::{Split, SplitRange};
use crate::storage::{Location, ObjectUrl};
use crate::{Error, Result};
use parquet::arrow::ProjectionMask;
use parquet::schema::types::SchemaDescriptor;

/// A stream of record batches read from one split.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// The schema of the `text` format: one `line: Utf8` column.
pub fn text_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

/// Opens `split` for reading in `format`. `schema` is required for CSV and JSON lines.
///
/// `columns` names the columns the job reads (`None`: all): columnar input (Parquet) reads
/// only those; line-based formats parse every field anyway.
pub fn read_split(
    split: &Split,
    format: InputFormat,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    columns: Option<&[String]>,
) -> Result<BatchIter> {
    if let SplitRange::Files(files) = &split.range {
        return Ok(Box::new(Files {
            files: files.clone().into(),
            format,
            schema,
            batch_rows,
            columns: columns.map(<[String]>::to_vec),
            current: None,
        }));
    }
    let location = Location::parse(&split.path)?;
    match (&split.range, format) {
        (SplitRange::RowGroups(groups), InputFormat::Parquet) => {
            let batches: BatchIter = match location {
                Location::Local(path) => read_parquet(&path, groups.clone(), batch_rows, columns)?,
                Location::Object(url) => {
                    let reader =
                        read_parquet_row_groups(&url, groups.clone(), batch_rows, columns)?;
                    Box::new(reader.map(move |r| {
                        r.map_err(|e| Error::arrow(format!("reading parquet {url}"), e))
                    }))
                }
            };
            Ok(Box::new(PanicsAsErrors {
                batches: Some(batches),
                name: split.path.clone(),
            }))
        }
        (SplitRange::Bytes { start, end }, f) if f.is_line_based() => {
            let lines = match location {
                Location::Local(path) => LineSource::open(&path, *start, *end)?,
                Location::Object(url) => LineSource::open_object(url, *start, *end)?,
            };
            let schema = || {
                schema.clone().ok_or_else(|| Error::Internal {
                    what: format!("no input schema for {f} input"),
                })
            };
            Ok(match f {
                InputFormat::Text => Box::new(TextReader { lines, batch_rows }),
                InputFormat::Csv => {
                    Box::new(CsvReader::new(lines, schema()?, batch_rows, columns)?)
                }
                InputFormat::JsonLines => Box::new(JsonReader::new(lines, schema()?, batch_rows)?),
                InputFormat::Parquet => unreachable!("guarded by is_line_based"),
            })
        }
        _ => Err(Error::Mismatch {
            subject: split.to_string(),
            reason: format!("the split does not fit input format {format}"),
        }),
    }
}

/// Batches whose decoder may panic on damaged data: the `parquet` crate asserts on some
/// corrupt pages (found by fuzzing) instead of returning an error. A panic becomes an
/// error naming the file, and the batches end there.
struct PanicsAsErrors {
    batches: Option<BatchIter>,
    name: String,
}

impl Iterator for PanicsAsErrors {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batches = self.batches.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next())) {
            Ok(next) => next,
            Err(payload) => {
                self.batches = None;
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Some(Err(Error::Damaged {
                    file: self.name.clone(),
                    reason: format!("the file is damaged (the Parquet decoder failed: {why})"),
                }))
            }
        }
    }
}

/// The batches of several files, each opened when the one before is done.
struct Files {
    files: std::collections::VecDeque<Split>,
    format: InputFormat,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    columns: Option<Vec<String>>,
    current: Option<BatchIter>,
}

impl Iterator for Files {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batches) = &mut self.current {
                match batches.next() {
                    Some(b) => return Some(b),
                    None => self.current = None,
                }
            }
            let file = self.files.pop_front()?;
            let columns = self.columns.as_deref();
            match read_split(
                &file,
                self.format,
                self.schema.clone(),
                self.batch_rows,
                columns,
            ) {
                Ok(batches) => self.current = Some(batches),
                Err(e) => {
                    self.files.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The projection reading only the root columns named in `columns` of a Parquet file
/// (`None`: every column); a name the file lacks is an error naming both.
pub fn parquet_projection(
    schema: &SchemaDescriptor,
    columns: Option<&[String]>,
    file: &str,
) -> Result<Option<ProjectionMask>> {
    let Some(columns) = columns else {
        return Ok(None);
    };
    let fields = schema.root_schema().get_fields();
    let roots = columns
        .iter()
        .map(|c| {
            fields.iter().position(|f| f.name() == c).ok_or_else(|| {
                let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                Error::Mismatch {
                    subject: file.to_string(),
                    reason: format!(
                        "no column {c:?}, which the job reads (it has {})",
                        names.join(", ")
                    ),
                }
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(Some(ProjectionMask::roots(schema, roots)))
}

fn read_parquet(
    path: &Path,
    groups: Vec<u32>,
    batch_rows: usize,
    columns: Option<&[String]>,
) -> Result<BatchIter> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let ctx = || format!("reading parquet {}", path.display());
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::arrow(ctx(), e))?;
    // The parquet reader indexes its row groups unchecked: a split naming a group the file
    // lacks (a file replaced since planning) would panic.
    let present = builder.metadata().num_row_groups();
    if let Some(g) = groups.iter().find(|&&g| g as usize >= present) {
        return Err(Error::Mismatch {
            subject: path.display().to_string(),
            reason: format!("it has {present} row groups, the split names group {g}"),
        });
    }
    let builder = builder
        .with_row_groups(groups.into_iter().map(|g| g as usize).collect())
        .with_batch_size(batch_rows);
    let projection =
        parquet_projection(builder.parquet_schema(), columns, &path.to_string_lossy())?;
    let builder = match projection {
        Some(p) => builder.with_projection(p),
        None => builder,
    };
    let reader = builder.build().map_err(|e| Error::arrow(ctx(), e))?;
    let path = path.to_path_buf();
    Ok(Box::new(reader.map(move |r| {
        r.map_err(|e| Error::arrow(format!("reading parquet {}", path.display()), e))
    })))
}

/// Where a split's bytes lie in its file: what a bad-record error needs.
pub(super) struct SplitOrigin {
    /// The file as errors name it (a local path or a URL).
    pub(super) path: PathBuf,
    /// The object, when the file is in an object store.
    pub(super) object: Option<ObjectUrl>,
    /// Byte offset of the split's first line in the file.
    pub(super) first: u64,
}

impl SplitOrigin {
    /// A bad-record error for the `nth` (1-based) line of this split.
    pub(super) fn bad_record(&self, nth_in_split: u64, reason: impl Into<String>) -> Error {
        let before = match &self.object {
            None => File::open(&self.path)
                .and_then(|mut f| lines_before(&mut f, self.first))
                .map_err(|e| e.to_string()),
            Some(url) => count_lines_before(url, self.first).map_err(|e| e.to_string()),
        };
        match before {
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
}

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
    fn open(path: &Path, start: u64, end: u64) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (first, last) = line_aligned_range(&mut file, len, start, end).map_err(io)?;
        file.seek(SeekFrom::Start(first)).map_err(io)?;
        Ok(LineSource {
            origin: SplitOrigin {
                path: path.to_path_buf(),
                object: None,
                first,
            },
            reader: LineInput::File(BufReader::with_capacity(1 << 20, file).take(last - first)),
            lines_read: 0,
        })
    }

    /// The split `[start, end)` of an object, fetched into memory.
    fn open_object(url: ObjectUrl, start: u64, end: u64) -> Result<Self> {
        let len = url.size()?.ok_or_else(|| Error::Storage {
            url: url.to_string(),
            message: "no such object".into(),
        })?;
        let lines = read_split_lines(&url, len, start, end)?;
        Ok(LineSource {
            origin: SplitOrigin {
                path: PathBuf::from(url.to_string()),
                first: lines.first,
                object: Some(url),
            },
            reader: LineInput::Memory(lines.into_reader()),
            lines_read: 0,
        })
    }

    /// Reads the next line (terminator included) into `buf`; false at the end of the split.
    pub(super) fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let read = read_line_bounded(&mut self.reader, buf, MAX_LINE_BYTES)
            .map_err(|e| Error::io(&self.origin.path, e))?;
        if read != LineRead::End {
            self.lines_read += 1;
        }
        if read == LineRead::TooLong {
            return Err(self.bad_line(format!("line longer than {} MiB", MAX_LINE_BYTES >> 20)));
        }
        Ok(read == LineRead::Line)
    }

    /// A bad-record error for the line read last.
    pub(super) fn bad_line(&self, reason: impl Into<String>) -> Error {
        self.origin.bad_record(self.lines_read, reason)
    }
}

fn strip_terminator(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `text`: one `line` per input line, terminator removed; invalid UTF-8 is a bad record.
struct TextReader {
    lines: LineSource,
    batch_rows: usize,
}

impl TextReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut builder = StringBuilder::with_capacity(self.batch_rows, self.batch_rows * 64);
        let mut buf = Vec::with_capacity(256);
        let mut rows = 0;
        while rows < self.batch_rows && self.lines.next_line(&mut buf)? {
            let line = std::str::from_utf8(strip_terminator(&buf))
                .map_err(|e| self.lines.bad_line(format!("invalid UTF-8: {e}")))?;
            builder.append_value(line);
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let batch = RecordBatch::try_new(text_schema(), vec![Arc::new(builder.finish())])
            .map_err(|e| Error::arrow("building text batch", e))?;
        Ok(Some(batch))
    }
}

impl Iterator for TextReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// JSON lines into the input schema with arrow-json's decoder, fed one line at a time so a
/// malformed line is named exactly.
struct JsonReader {
    lines: LineSource,
    decoder: arrow::json::reader::Decoder,
    batch_rows: usize,
    done: bool,
}

impl JsonReader {
    fn new(lines: LineSource, schema: SchemaRef, batch_rows: usize) -> Result<Self> {
        let decoder = arrow::json::ReaderBuilder::new(schema)
            .with_batch_size(batch_rows)
            .build_decoder()
            .map_err(|e| Error::arrow("building JSON decoder", e))?;
        Ok(JsonReader {
            lines,
            decoder,
            batch_rows,
            done: false,
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut buf = Vec::with_capacity(512);
        let mut rows = 0;
        let first_line = self.lines.lines_read + 1;
        while !self.done && rows < self.batch_rows {
            if !self.lines.next_line(&mut buf)? {
                self.done = true;
                break;
            }
            let line = strip_terminator(&buf);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let before = self.decoder.len();
            let used = self
                .decoder
                .decode(line)
                .map_err(|e| self.lines.bad_line(e.to_string()))?;
            // One line must be exactly one complete JSON object.
            if used != line.len()
                || self.decoder.has_partial_record()
                || self.decoder.len() != before + 1
            {
                return Err(self
                    .lines
                    .bad_line("not exactly one complete JSON object on the line"));
            }
            rows += 1;
        }
        self.decoder.flush().map_err(|e| {
            self.lines.origin.bad_record(
                first_line,
                format!("in the lines from here to {}: {e}", self.lines.lines_read),
            )
        })
    }
}

impl Iterator for JsonReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_batch();
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    /// Fuzz crash (parquet_split): a split naming row group 2 of a one-group file made the
    /// parquet reader index out of bounds (`arrow_reader/mod.rs:1495`) instead of failing.
    #[test]
    fn a_split_naming_a_missing_row_group_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one-group.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let split = |groups: Vec<u32>| Split {
            path: path.to_string_lossy().into_owned(),
            range: SplitRange::RowGroups(groups),
        };
        let rows = |groups| {
            read_split(&split(groups), InputFormat::Parquet, None, 8, None)
                .map(|b| b.map(|b| b.unwrap().num_rows()).sum::<usize>())
        };
        assert_eq!(rows(vec![0]).unwrap(), 2);
        for groups in [vec![2, 0], vec![0, u32::MAX]] {
            let e = rows(groups).err().unwrap().to_string();
            assert!(
                e.contains("one-group.parquet") && e.contains("has 1 row groups"),
                "{e}"
            );
        }
    }

    /// The `parquet` crate panics on some damaged pages (fuzz: `fuzz/regressions/
    /// remote_ranges/`); such a panic is an error naming the file, and the batches end.
    #[test]
    fn a_decoder_panic_is_an_error_naming_the_file() {
        let mut calls = 0;
        let batches: BatchIter = Box::new(std::iter::from_fn(move || {
            calls += 1;
            if calls == 2 {
                panic!("Decoder for dict should have been set");
            }
            Some(Ok(RecordBatch::new_empty(text_schema())))
        }));
        let mut it = PanicsAsErrors {
            batches: Some(batches),
            name: "s3://b/day.parquet".into(),
        };
        assert!(it.next().unwrap().is_ok());
        let e = it.next().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("s3://b/day.parquet") && e.contains("damaged") && e.contains("dict"),
            "{e}"
        );
        assert!(it.next().is_none(), "nothing after the panic");
    }
}
