//! CSV splits into the job's input schema.
//!
//! The header line of each file is skipped by the split that starts at byte 0. Empty
//! fields are nulls except in `Utf8` columns, where they are empty strings. A quoted field
//! holding a line break makes later line numbers of that split count records, not physical
//! lines; like Hadoop's line-based splits, quoted line breaks are not supported across
//! split boundaries.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Decimal128Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, SchemaRef};

use super::decimal::parse_decimal;
use super::read::{LineInput, LineSource, SplitOrigin};
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

    /// Finishes the column; `Err((row, reason))` names the first value the cast rejected.
    fn finish(self, field: &Field) -> std::result::Result<ArrayRef, (usize, String)> {
        Ok(match self {
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal {
                mut builder,
                precision,
                scale,
            } => Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| (0, e.to_string()))?,
            ),
            ColumnBuilder::Cast(mut b) => {
                let text = b.finish();
                let options = CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let cast = cast_with_options(&text, field.data_type(), &options)
                    .map_err(|e| (0, format!("column {}: {e}", field.name())))?;
                if cast.null_count() != text.null_count() {
                    let row = (0..text.len())
                        .find(|&i| text.is_valid(i) && cast.is_null(i))
                        .unwrap_or(0);
                    return Err((
                        row,
                        format!(
                            "column {}: {:?} is not a valid {}",
                            field.name(),
                            text.value(row),
                            field.data_type()
                        ),
                    ));
                }
                cast
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
        if self.done {
            return Ok(None);
        }
        let fields = self.schema.fields();
        let mut columns: Vec<ColumnBuilder> = self
            .wanted
            .iter()
            .map(|&i| ColumnBuilder::new(fields[i].data_type(), self.batch_rows))
            .collect();
        let mut record_lines = Vec::with_capacity(self.batch_rows);
        let mut record = csv::StringRecord::new();
        while record_lines.len() < self.batch_rows {
            let has = self.records.read_record(&mut record).map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(1);
                self.origin.bad_record(line, e.to_string())
            })?;
            if !has {
                self.done = true;
                break;
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if std::mem::take(&mut self.header_pending) {
                if record.len() != fields.len() {
                    return Err(self.origin.bad_record(
                        line,
                        format!(
                            "header has {} columns, the job reads {}",
                            record.len(),
                            fields.len()
                        ),
                    ));
                }
                continue;
            }
            if record.len() != fields.len() {
                return Err(self.origin.bad_record(
                    line,
                    format!("expected {} fields, found {}", fields.len(), record.len()),
                ));
            }
            for (builder, &i) in columns.iter_mut().zip(&self.wanted) {
                builder
                    .append(&fields[i], &record[i])
                    .map_err(|reason| self.origin.bad_record(line, reason))?;
            }
            record_lines.push(line);
        }
        if record_lines.is_empty() {
            return Ok(None);
        }
        let output_fields = self.output.fields();
        let arrays = columns
            .into_iter()
            .zip(output_fields.iter())
            .map(|(b, f)| {
                b.finish(f).map_err(|(row, reason)| {
                    self.origin
                        .bad_record(record_lines.get(row).copied().unwrap_or(0), reason)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.output.clone(), arrays).map_err(|e| {
            Error::arrow(
                format!("building CSV batch of {}", self.origin.path.display()),
                e,
            )
        })?;
        Ok(Some(batch))
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
