//! Input schemas: inference when the job declares none, and schemas as Arrow IPC bytes so
//! they travel in task assignments.

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::lines::{LineRead, MAX_LINE_BYTES, read_line_bounded};
use super::read::text_schema;
use super::remote::{read_first_line, read_head_lines, read_parquet_footer};
use crate::spec::InputFormat;
use crate::storage::ObjectUrl;
use crate::{Error, Result};

/// Rows of a JSON-lines file looked at to infer its schema.
const JSON_INFER_LINES: usize = 1000;
/// Bytes of a remote JSON-lines file fetched for schema inference.
const JSON_INFER_BYTES: u64 = 4 << 20;

/// The schema of a file in `format` when the job declares none: `text` has one `line`
/// column; CSV reads every header column as nullable `Utf8` (declare an input schema for
/// typed columns); JSON lines is inferred from the first 1000 lines; Parquet is the file's.
pub fn infer_schema(path: &Path, format: InputFormat) -> Result<SchemaRef> {
    let io = |e| Error::io(path, e);
    match format {
        InputFormat::Text => Ok(text_schema()),
        InputFormat::Csv => Ok(csv_schema(&read_csv_header(path)?)),
        InputFormat::JsonLines => {
            let mut reader = BufReader::new(File::open(path).map_err(io)?);
            let (schema, _) =
                arrow::json::reader::infer_json_schema(&mut reader, Some(JSON_INFER_LINES))
                    .map_err(|e| {
                        Error::arrow(format!("inferring schema of {}", path.display()), e)
                    })?;
            reader.rewind().map_err(io)?;
            Ok(Arc::new(schema))
        }
        InputFormat::Parquet => {
            let file = File::open(path).map_err(io)?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
                Error::arrow(format!("reading parquet footer of {}", path.display()), e)
            })?;
            Ok(builder.schema().clone())
        }
    }
}

/// The schema of object `url` (of `len` bytes) in `format` when the job declares none, as
/// [`infer_schema`] does for local files: CSV from the header line, JSON lines from the first
/// 1000 lines (of at most the first 4 MiB), Parquet from the footer; all by ranged reads.
pub fn infer_object_schema(url: &ObjectUrl, len: u64, format: InputFormat) -> Result<SchemaRef> {
    match format {
        InputFormat::Text => Ok(text_schema()),
        InputFormat::Csv => Ok(csv_schema(&read_object_csv_header(url, len)?)),
        InputFormat::JsonLines => {
            let head = read_head_lines(url, len, JSON_INFER_BYTES)?;
            let (schema, _) =
                arrow::json::reader::infer_json_schema(&mut &head[..], Some(JSON_INFER_LINES))
                    .map_err(|e| Error::arrow(format!("inferring schema of {url}"), e))?;
            Ok(Arc::new(schema))
        }
        InputFormat::Parquet => {
            let (metadata, _) = read_parquet_footer(url, len)?;
            let schema = parquet::arrow::parquet_to_arrow_schema(
                metadata.file_metadata().schema_descr(),
                metadata.file_metadata().key_value_metadata(),
            )
            .map_err(|e| Error::arrow(format!("reading parquet footer of {url}"), e))?;
            Ok(Arc::new(schema))
        }
    }
}

fn csv_schema(header: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        header
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// The column names in the first line of CSV object `url` (of `len` bytes), by ranged reads.
pub fn read_object_csv_header(url: &ObjectUrl, len: u64) -> Result<Vec<String>> {
    let line = read_first_line(url, len)?;
    parse_csv_header(&line, Path::new(&url.to_string()))
}

/// The column names in the first line of a CSV file.
pub fn read_csv_header(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut line = Vec::new();
    let read = read_line_bounded(&mut BufReader::new(file), &mut line, MAX_LINE_BYTES)
        .map_err(|e| Error::io(path, e))?;
    if read == LineRead::TooLong {
        return Err(Error::BadRecord {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("header line longer than {} MiB", MAX_LINE_BYTES >> 20),
        });
    }
    parse_csv_header(&line, path)
}

/// Parses a header line (terminator included or not) of the file `path`.
fn parse_csv_header(line: &[u8], path: &Path) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    let has = reader
        .read_record(&mut record)
        .map_err(|e| Error::BadRecord {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("header: {e}"),
        })?;
    if !has {
        return Err(Error::BadRecord {
            path: path.to_path_buf(),
            line: 1,
            reason: "the file has no header line".into(),
        });
    }
    Ok(record.iter().map(str::to_string).collect())
}

/// A schema as an Arrow IPC stream without batches.
pub fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut writer =
        StreamWriter::try_new(&mut buf, schema).map_err(|e| Error::arrow("encoding schema", e))?;
    writer
        .finish()
        .map_err(|e| Error::arrow("encoding schema", e))?;
    drop(writer);
    Ok(buf)
}

/// Reads what [`schema_to_bytes`] wrote.
pub fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    let reader =
        StreamReader::try_new(bytes, None).map_err(|e| Error::arrow("decoding schema", e))?;
    Ok(reader.schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_round_trips_through_ipc_bytes() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Decimal128(18, 2), true),
        ]);
        let back = schema_from_bytes(&schema_to_bytes(&schema).unwrap()).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }
}
