//! CSV splits into the job's input schema.
//!
//! The header line of each file is skipped by the split that starts at byte 0. Empty
//! fields are nulls except in `Utf8` columns, where they are empty strings. A quoted field
//! holding a line break makes later line numbers of that split count records, not physical
//! lines; like Hadoop's line-based splits, quoted line breaks are not supported across
//! split boundaries.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder,
};
use arrow::compute::{CastOptions, cast_with_options, filter};
use arrow::datatypes::{DataType, Field, SchemaRef};

use super::decimal::parse_decimal;
use super::source::{LineInput, LineSource, SplitOrigin};
use crate::{Error, Result};

/// Builds one CSV column, parsing as it goes where a parser of our own is exact.
enum ColumnBuilder {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    /// Any other type: collected as text, then cast; a value the cast turns into null is a
    /// bad record.
    Cast(StringBuilder),
}

impl ColumnBuilder {
    fn new(data_type: &DataType, rows: usize) -> Self {
        match data_type {
            DataType::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            DataType::Decimal128(p, s) => ColumnBuilder::Decimal {
                builder: Decimal128Builder::with_capacity(rows),
                precision: *p,
                scale: *s,
            },
            _ => ColumnBuilder::Cast(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    /// Appends one field; `Err` holds the reason it does not fit the column.
    fn append(&mut self, field: &Field, value: &str) -> std::result::Result<(), String> {
        if value.is_empty() && !matches!(self, ColumnBuilder::Utf8(_)) {
            if !field.is_nullable() {
                return Err(format!(
                    "empty value in non-nullable column {}",
                    field.name()
                ));
            }
            match self {
                ColumnBuilder::Utf8(b) | ColumnBuilder::Cast(b) => b.append_null(),
                ColumnBuilder::Int64(b) => b.append_null(),
                ColumnBuilder::Float64(b) => b.append_null(),
                ColumnBuilder::Decimal { builder, .. } => builder.append_null(),
            }
            return Ok(());
        }
        let bad = |e: &dyn std::fmt::Display| {
            format!(
                "column {}: {value:?} is not a valid {}: {e}",
                field.name(),
                field.data_type()
            )
        };
        match self {
            ColumnBuilder::Utf8(b) | ColumnBuilder::Cast(b) => b.append_value(value),
            ColumnBuilder::Int64(b) => b.append_value(value.parse().map_err(|e| bad(&e))?),
            ColumnBuilder::Float64(b) => b.append_value(value.parse().map_err(|e| bad(&e))?),
            ColumnBuilder::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(
                parse_decimal(value, *precision, *scale)
                    .map_err(|e| format!("column {}: {e}", field.name()))?,
            ),
        }
        Ok(())
    }

    /// Appends a null in place of a value: the row is bad and will be filtered out.
    fn pad(&mut self) {
        match self {
            ColumnBuilder::Utf8(b) | ColumnBuilder::Cast(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Decimal { builder, .. } => builder.append_null(),
        }
    }

    /// Finishes the column, with the rows whose value the cast rejected and why.
    fn finish(self, field: &Field) -> Result<(ArrayRef, Vec<(usize, String)>)> {
        let internal = |e: &dyn std::fmt::Display| Error::Internal {
            what: format!("finishing CSV column {}: {e}", field.name()),
        };
        Ok(match self {
            ColumnBuilder::Utf8(mut b) => (Arc::new(b.finish()), Vec::new()),
            ColumnBuilder::Int64(mut b) => (Arc::new(b.finish()), Vec::new()),
            ColumnBuilder::Float64(mut b) => (Arc::new(b.finish()), Vec::new()),
            ColumnBuilder::Decimal {
                mut builder,
                precision,
                scale,
            } => (
                Arc::new(
                    builder
                        .finish()
                        .with_precision_and_scale(precision, scale)
                        .map_err(|e| internal(&e))?,
                ),
                Vec::new(),
            ),
            ColumnBuilder::Cast(mut b) => {
                let text = b.finish();
                let options = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let cast = cast_with_options(&text, field.data_type(), &options)
                    .map_err(|e| internal(&e))?;
                let bad = if cast.null_count() == text.null_count() {
                    Vec::new()
                } else {
                    (0..text.len())
                        .filter(|&i| text.is_valid(i) && cast.is_null(i))
                        .map(|i| {
                            let reason = format!(
                                "column {}: {:?} is not a valid {}",
                                field.name(),
                                text.value(i),
                                field.data_type()
                            );
                            (i, reason)
                        })
                        .collect()
                };
                (cast, bad)
            }
        })
    }
}

/// RFC 4180 CSV into the job's input schema.
pub(super) struct CsvReader {
    origin: SplitOrigin,
    records: csv::Reader<LineInput>,
    /// The file's columns.
    schema: SchemaRef,
    /// The columns built, by index in `schema`: those the job reads.
    wanted: Vec<usize>,
    /// The batches' schema: `wanted`'s fields.
    output: SchemaRef,
    batch_rows: usize,
    header_pending: bool,
    done: bool,
}

impl CsvReader {
    /// A reader of `lines` whose fields are `schema`'s, building only `columns` (all when
    /// `None`): a column the job does not read is split out of the line but never parsed,
    /// so its values are not validated either (as Spark's CSV column pruning).
    pub(super) fn new(
        lines: LineSource,
        schema: SchemaRef,
        batch_rows: usize,
        columns: Option<&[String]>,
    ) -> Result<Self> {
        let wanted: Vec<usize> = match columns {
            None => (0..schema.fields().len()).collect(),
            Some(names) => {
                let mut idx = names
                    .iter()
                    .map(|n| {
                        schema.index_of(n).map_err(|_| Error::Mismatch {
                            subject: format!("column {n:?}"),
                            reason: "the job reads it, and its CSV input schema lacks it".into(),
                        })
                    })
                    .collect::<Result<Vec<usize>>>()?;
                idx.sort_unstable();
                idx.dedup();
                idx
            }
        };
        let output = Arc::new(
            schema
                .project(&wanted)
                .map_err(|e| Error::arrow("projecting the CSV input schema", e))?,
        );
        let LineSource { origin, reader, .. } = lines;
        let header_pending = origin.first == 0;
        let records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(reader);
        Ok(CsvReader {
            origin,
            records,
            schema,
            wanted,
            output,
            batch_rows,
            header_pending,
            done: false,
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        // A batch of only bad records yields nothing: go on to the next records.
        while let Some(batch) = self.read_batch()? {
            if batch.is_some() {
                return Ok(batch);
            }
        }
        Ok(None)
    }

    /// Up to `batch_rows` records: `None` at the end of the split, `Some(None)` when every
    /// record read was bad (and set aside).
    fn read_batch(&mut self) -> Result<Option<Option<RecordBatch>>> {
        if self.done {
            return Ok(None);
        }
        let fields = self.schema.fields();
        let mut columns: Vec<ColumnBuilder> = self
            .wanted
            .iter()
            .map(|&i| ColumnBuilder::new(fields[i].data_type(), self.batch_rows))
            .collect();
        // Per row: its line in the split and its bytes (for a quarantined record's text).
        let mut rows: Vec<(u64, u64, u64)> = Vec::with_capacity(self.batch_rows);
        // Rows with a bad value, padded with nulls: set aside, and filtered out below.
        let mut dead: Vec<usize> = Vec::new();
        let mut record = csv::StringRecord::new();
        while rows.len() < self.batch_rows {
            let start = self.records.position().byte();
            let has = match self.records.read_record(&mut record) {
                Ok(has) => has,
                Err(e) if e.is_io_error() => {
                    return Err(Error::Io {
                        path: self.origin.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(1);
                    let end = self.records.position().byte();
                    self.origin
                        .reject(line, "unreadable CSV record", e.to_string(), || {
                            self.origin.raw(start, end)
                        })?;
                    continue;
                }
            };
            if !has {
                self.done = true;
                break;
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let end = self.records.position().byte();
            if std::mem::take(&mut self.header_pending) {
                if record.len() != fields.len() {
                    // The whole file, not a record, does not fit: never set aside.
                    return Err(Error::Mismatch {
                        subject: self.origin.path.display().to_string(),
                        reason: format!(
                            "line {line}: the header has {} columns, the job reads {}",
                            record.len(),
                            fields.len()
                        ),
                    });
                }
                continue;
            }
            if record.len() != fields.len() {
                let reason = format!("expected {} fields, found {}", fields.len(), record.len());
                self.origin.reject(line, "wrong field count", reason, || {
                    self.origin.raw(start, end)
                })?;
                continue;
            }
            for (k, &i) in self.wanted.iter().enumerate() {
                if let Err(reason) = columns[k].append(&fields[i], &record[i]) {
                    let kind = format!("bad value in column {}", fields[i].name());
                    self.origin
                        .reject(line, kind, reason, || self.origin.raw(start, end))?;
                    columns[k..].iter_mut().for_each(ColumnBuilder::pad);
                    dead.push(rows.len());
                    break;
                }
            }
            rows.push((line, start, end));
        }
        if rows.len() == dead.len() {
            return Ok((!self.done).then_some(None));
        }
        let output_fields = self.output.fields();
        let mut arrays = Vec::with_capacity(columns.len());
        for (b, f) in columns.into_iter().zip(output_fields.iter()) {
            let (array, bad) = b.finish(f)?;
            for (row, reason) in bad {
                if dead.contains(&row) {
                    continue;
                }
                let (line, start, end) = rows[row];
                let kind = format!("bad value in column {}", f.name());
                self.origin
                    .reject(line, kind, reason, || self.origin.raw(start, end))?;
                dead.push(row);
            }
            arrays.push(array);
        }
        if !dead.is_empty() {
            let mut keep = vec![true; rows.len()];
            for &row in &dead {
                keep[row] = false;
            }
            let keep = BooleanArray::from(keep);
            arrays = arrays
                .iter()
                .map(|a| filter(a, &keep))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::arrow("leaving bad CSV records out", e))?;
        }
        let batch = RecordBatch::try_new(self.output.clone(), arrays).map_err(|e| {
            Error::arrow(
                format!("building CSV batch of {}", self.origin.path.display()),
                e,
            )
        })?;
        let batch = if self.origin.has_rules() {
            // The batch's rows are the records not dead, in order.
            let alive = if dead.is_empty() {
                rows
            } else {
                let mut is_dead = vec![false; rows.len()];
                for &d in &dead {
                    is_dead[d] = true;
                }
                rows.into_iter()
                    .zip(is_dead)
                    .filter(|(_, dead)| !*dead)
                    .map(|(r, _)| r)
                    .collect()
            };
            self.origin.apply_rules(
                batch,
                |r| alive[r].0,
                |r| self.origin.raw(alive[r].1, alive[r].2),
            )?
        } else {
            batch
        };
        if batch.num_rows() == 0 {
            return Ok((!self.done).then_some(None));
        }
        Ok(Some(Some(batch)))
    }
}

impl Iterator for CsvReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_batch();
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}
