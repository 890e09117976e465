//! The schema each input is read with, and the checks of what the files hold against it:
//! a CSV header, a Parquet file's column types.
//!
//! An input read as CSV or JSON lines is read with the schema the job declares for its name
//! (`Job::named_input_schema`), or else the one inferred from its first file; a Parquet
//! input carries its own, and is cast to the declared one when the job declares one.

use std::collections::BTreeMap;
use std::fs::File;

use arrow::datatypes::SchemaRef;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_common::format::remote::read_parquet_footer;
use sluice_common::format::schema::{
    infer_object_schema, infer_schema, read_csv_header, read_object_csv_header,
};
use sluice_common::plugin::Plugin;
use sluice_common::spec::{InputFormat, JobSpec};

use super::error::{PlanError, Result};
use super::inputs::InputFile;

/// The schema the job declares for each of `names` that it declares one for.
pub(super) fn declared_schemas<'a>(
    plugin: &Plugin,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, SchemaRef>> {
    let mut declared = BTreeMap::new();
    for name in names {
        if declared.contains_key(name) {
            continue;
        }
        if let Some(schema) = plugin.named_input_schema(name)? {
            declared.insert(name.to_string(), schema);
        }
    }
    Ok(declared)
}

/// The schema of each input in `files` (`(input name, file)`, as planning expands them):
/// for CSV and JSON lines the declared one, or the one inferred from the input's first
/// file, every CSV file's header checked against it; for Parquet the declared one, if any.
pub(super) fn input_schemas(
    spec: &JobSpec,
    declared: &BTreeMap<String, SchemaRef>,
    files: &[(String, InputFile)],
) -> Result<BTreeMap<String, SchemaRef>> {
    let mut schemas = BTreeMap::new();
    for (name, first) in files {
        if schemas.contains_key(name) {
            continue;
        }
        let format = spec.format_of(name);
        let schema = match (format, declared.get(name)) {
            (InputFormat::Text, _) => continue,
            (_, Some(s)) => s.clone(),
            (InputFormat::Parquet, None) => continue,
            (_, None) => match first {
                InputFile::Local(p) => infer_schema(p, format)?,
                InputFile::Object { url, size, .. } => infer_object_schema(url, *size, format)?,
            },
        };
        if format == InputFormat::Csv {
            let csv = files.iter().filter(|(n, _)| n == name).map(|(_, f)| f);
            check_csv_headers(csv, &schema)?;
        }
        schemas.insert(name.clone(), schema);
    }
    Ok(schemas)
}

/// What planning needs of a Parquet file's row groups.
pub(super) struct RowGroupSizes {
    /// Each row group's compressed size: splits are cut from these.
    pub compressed: Vec<u64>,
    /// The uncompressed bytes of the columns the job reads, over all row groups: what the
    /// file weighs once decoded, which sizes the reducers.
    pub read_bytes: u64,
}

/// The row-group sizes of a Parquet input, from its footer (local file or ranged reads of
/// the object's tail); with a `declared` input schema, refuses a file holding a column the
/// job reads (`columns`) in a type that does not convert to the declared one without loss.
pub(super) fn parquet_row_group_sizes(
    f: &InputFile,
    declared: Option<&SchemaRef>,
    columns: Option<&[String]>,
) -> Result<RowGroupSizes> {
    let path = f.name();
    let sizes = |groups: &[parquet::file::metadata::RowGroupMetaData]| {
        let read = |c: &&parquet::file::metadata::ColumnChunkMetaData| {
            columns.is_none_or(|names| {
                let top = c.column_path().parts().first();
                names.iter().any(|n| Some(n) == top)
            })
        };
        RowGroupSizes {
            compressed: groups
                .iter()
                .map(|g| g.compressed_size().max(0) as u64)
                .collect(),
            read_bytes: groups
                .iter()
                .flat_map(|g| g.columns().iter().filter(read))
                .map(|c| c.uncompressed_size().max(0) as u64)
                .sum(),
        }
    };
    match f {
        InputFile::Local(p) => {
            let reader = File::open(p)
                .map_err(|e| PlanError::input(&path, e))
                .and_then(|file| {
                    SerializedFileReader::new(file)
                        .map_err(|e| PlanError::input(&path, format!("not a Parquet file: {e}")))
                })?;
            check_types(&path, reader.metadata(), declared, columns)?;
            Ok(sizes(reader.metadata().row_groups()))
        }
        InputFile::Object { url, size, .. } => {
            let (metadata, _) = read_parquet_footer(url, *size)?;
            check_types(&path, &metadata, declared, columns)?;
            Ok(sizes(metadata.row_groups()))
        }
    }
}

fn check_types(
    path: &str,
    metadata: &parquet::file::metadata::ParquetMetaData,
    declared: Option<&SchemaRef>,
    columns: Option<&[String]>,
) -> Result<()> {
    let Some(declared) = declared else {
        return Ok(());
    };
    let file = metadata.file_metadata();
    let found =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| PlanError::input(path, format!("reading its schema: {e}")))?;
    Ok(sluice_common::format::conform::check(
        path, &found, declared, columns,
    )?)
}

/// Every CSV file must have a header with the schema's columns, in order.
fn check_csv_headers<'a>(
    files: impl IntoIterator<Item = &'a InputFile>,
    schema: &SchemaRef,
) -> Result<()> {
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for f in files {
        let header = match f {
            InputFile::Local(p) => {
                if std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) == 0 {
                    continue;
                }
                read_csv_header(p)?
            }
            InputFile::Object { size: 0, .. } => continue,
            InputFile::Object { url, size, .. } => read_object_csv_header(url, *size)?,
        };
        let header = header
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}'))
            .collect::<Vec<_>>();
        if header != expected {
            return Err(PlanError::Header {
                file: f.name(),
                found: header.into_iter().map(String::from).collect(),
                expected: expected.into_iter().map(String::from).collect(),
            });
        }
    }
    Ok(())
}
