//! Helpers the fuzz targets share: reading control bytes off the front of an input, a
//! per-process temp file to hand the engine's local readers, and deriving splits and schemas.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use sluice_common::format::read::BatchIter;

/// Control bytes read off the front of a fuzz input; past its end every byte is 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// An input over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next 8 bytes as a little-endian u64 (missing bytes are 0).
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// What is left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// A file path private to this process (and thread) that the targets overwrite on each run.
pub fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("creating the fuzz temp dir"));
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("writing the fuzz temp file");
    path
}

/// A byte range `[start, end)` of a file of `len` bytes chosen by one mode byte and two
/// position bytes: the whole file, proportional positions, or absurd values.
pub fn byte_range(input: &mut Input, len: u64) -> (u64, u64) {
    let mode = input.byte();
    let (a, b) = (input.byte() as u64, input.byte() as u64);
    let scaled = |x: u64| len * x / 255;
    match mode % 6 {
        0 => (0, len),
        1 | 2 => {
            let (s, e) = (scaled(a), scaled(b));
            (s.min(e), s.max(e))
        }
        3 => (a % (len + 1), (a % (len + 1)) + b),
        // start past end, huge ends, ranges past the file.
        4 => (scaled(a), u64::MAX - b),
        _ => (u64::MAX - a, u64::MAX - b),
    }
}

/// Rows per batch: small, so batch boundaries are exercised.
pub fn batch_rows(input: &mut Input) -> usize {
    1 + (input.byte() % 8) as usize
}

/// A decimal type whose precision and scale are any bytes (absurd ones included).
fn decimal(input: &mut Input) -> DataType {
    let p = input.byte();
    let s = input.byte() as i8;
    if p & 0x80 == 0 {
        // Mostly valid ones.
        DataType::Decimal128(1 + p % 38, s.rem_euclid((p % 38 + 1) as i8))
    } else {
        DataType::Decimal128(p, s)
    }
}

/// A CSV input schema of 1 to 4 columns `c0`.. chosen by the input.
pub fn csv_schema(input: &mut Input) -> SchemaRef {
    let n = 1 + input.byte() % 4;
    let fields: Vec<Field> = (0..n)
        .map(|i| {
            let t = input.byte();
            let data_type = match t % 8 {
                0 | 7 => DataType::Utf8,
                1 => DataType::Int64,
                2 => DataType::Float64,
                3 => decimal(input),
                4 => DataType::Boolean,
                5 => DataType::Date32,
                _ => DataType::Timestamp(TimeUnit::Millisecond, None),
            };
            Field::new(format!("c{i}"), data_type, t & 0x80 != 0)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A JSON-lines input schema of 1 to 4 columns `c0`.. chosen by the input.
pub fn json_schema(input: &mut Input) -> SchemaRef {
    let n = 1 + input.byte() % 4;
    let fields: Vec<Field> = (0..n)
        .map(|i| {
            let t = input.byte();
            let data_type = match t % 9 {
                0 => DataType::Utf8,
                1 => DataType::Int64,
                2 => DataType::Float64,
                3 => decimal(input),
                4 => DataType::Boolean,
                5 => DataType::Timestamp(TimeUnit::Millisecond, None),
                6 => DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                7 => DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("b", DataType::Utf8, true),
                ])),
                _ => DataType::Date32,
            };
            Field::new(format!("c{i}"), data_type, t & 0x80 != 0)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The columns a job reads: all (`None`), some of `c0`..`c3`, or a name the input lacks.
pub fn columns(input: &mut Input) -> Option<Vec<String>> {
    let b = input.byte();
    match b % 4 {
        0 | 1 => None,
        2 => Some(
            (0..4)
                .filter(|i| b & (0x10 << i) != 0)
                .map(|i| format!("c{i}"))
                .collect(),
        ),
        _ => Some(vec![if b & 0x80 != 0 { "nope" } else { "c0" }.to_string()]),
    }
}

/// Reads every batch (errors end the stream, as the map task does).
pub fn drain(batches: BatchIter) {
    for batch in batches {
        if batch.is_err() {
            break;
        }
    }
}

/// Reads `split` strictly and again tolerating bad records: the tolerant read must never
/// fail on a bad record (it sets it aside), and sets aside at least one exactly when the
/// strict read fails on one.
pub fn read_both_ways(
    split: &sluice_common::split::Split,
    format: sluice_common::spec::InputFormat,
    schema: Option<arrow::datatypes::SchemaRef>,
    rows: usize,
    columns: Option<&[String]>,
) {
    use sluice_common::Error;
    use sluice_common::bad_records::RejectSink;
    use sluice_common::format::read::{ReadChecks, read_split};
    let strict = ReadChecks::default();
    let strict_bad = match read_split(split, format, schema.clone(), rows, columns, strict) {
        Ok(batches) => batches
            .filter_map(Result::err)
            .any(|e| matches!(e, Error::BadRecord { .. })),
        Err(e) => matches!(e, Error::BadRecord { .. }),
    };
    let sink = RejectSink::new(true);
    let tolerant = ReadChecks {
        rejects: Some(sink.clone()),
        rules: None,
    };
    if let Ok(batches) = read_split(split, format, schema, rows, columns, tolerant) {
        for batch in batches {
            match batch {
                Err(Error::BadRecord { .. }) => panic!("a tolerant read failed on a bad record"),
                Err(_) => return,
                Ok(_) => {}
            }
        }
        let set_aside = !sink.take().is_empty();
        assert_eq!(set_aside, strict_bad, "strict and tolerant reads disagree");
    }
}

/// The first `n` bytes of `data` as control bytes, and the rest as the file.
pub fn header(data: &[u8], n: usize) -> (Input<'_>, &[u8]) {
    let (h, rest) = data.split_at(n.min(data.len()));
    (Input::new(h), rest)
}
