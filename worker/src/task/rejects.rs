//! A map attempt's quarantined records: one Parquet file per attempt under
//! `<output>/_temporary/rejects/`, with the columns `source`, `line`, `reason` and
//! `record`. The coordinator commits the file of the attempt that won each map (renamed into
//! `<output>/_rejects/`) when it writes `_SUCCESS`, so each bad record appears once however
//! often its map ran; the files of other attempts go with `_temporary`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_common::bad_records::Rejected;
use sluice_common::format::write::{PartWriter, sync_dir};
use sluice_common::spec::OutputFormat;
use sluice_common::storage::Location;
use sluice_common::{Error, Result};

/// The columns of a rejects file.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, true),
    ]))
}

/// Where map attempt `(index, attempt)` puts its rejects, relative to the output.
pub fn file_name(index: u32, attempt: u32) -> String {
    format!("_temporary/rejects/m{index:05}-a{attempt}.parquet")
}

fn to_batch(rejected: &[Rejected]) -> Result<RecordBatch> {
    let column = |f: fn(&Rejected) -> &str| -> ArrayRef {
        Arc::new(rejected.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let lines: Int64Array = rejected
        .iter()
        .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX))
        .collect();
    let records: StringArray = rejected.iter().map(|r| r.record.as_deref()).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            column(|r| &r.source),
            Arc::new(lines),
            column(|r| &r.reason),
            Arc::new(records),
        ],
    )
    .map_err(|e| Error::arrow("building the rejects batch", e))
}

/// Writes `rejected` for map attempt `(index, attempt)` of a job writing to `output`
/// (through `work_dir` when the output is in an object store); returns the file's name
/// relative to the output.
pub fn write(
    output: &str,
    work_dir: &Path,
    index: u32,
    attempt: u32,
    rejected: &[Rejected],
) -> Result<String> {
    let name = file_name(index, attempt);
    let batch = to_batch(rejected)?;
    let write_at = |path: &Path| -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut writer = PartWriter::create(path, schema(), OutputFormat::Parquet)?;
        writer.write(&batch)?;
        writer.finish()?;
        Ok(())
    };
    match Location::parse(output)? {
        Location::Local(out) => {
            let path = out.join(&name);
            write_at(&path)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(|e| Error::io(dir, e))?;
            }
        }
        Location::Object(url) => {
            let local = work_dir.join(name.replace('/', "_"));
            let uploaded = write_at(&local).and_then(|()| url.join(&name).upload_file(&local));
            let _ = std::fs::remove_file(&local);
            uploaded?;
        }
    }
    Ok(name)
}
