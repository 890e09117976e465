//! Planning a job: expand the inputs, check them, find the input schema and cut splits.
//!
//! Everything that can be known before a task runs is checked here, so a missing input, an
//! empty input set, an output directory that exists (without `--overwrite`) or a plugin
//! that is not one fails the submission with a clear message instead of a task.

pub mod error;
pub mod inputs;
pub mod output;
pub mod split;

use std::fs::File;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_common::format::remote::read_parquet_footer;
use sluice_common::format::schema::{
    infer_object_schema, infer_schema, read_csv_header, read_object_csv_header,
};
use sluice_common::plugin::Plugin;
use sluice_common::spec::{InputFormat, JobSpec, Limits};
use sluice_common::split::{Split, SplitRange};
use sluice_sdk::JobDescription;

pub use error::PlanError;
use error::Result;
pub use inputs::{InputFile, expand_inputs, expand_named_inputs};
pub use output::overwrite_refusal;

/// A planned job.
pub struct JobPlan {
    /// What the plugin declared.
    pub description: JobDescription,
    /// The schema CSV and JSON-lines splits are read with.
    pub input_schema: Option<SchemaRef>,
    /// One map task per split.
    pub splits: Vec<Split>,
}

/// The row-group sizes of a Parquet input, from its footer (local file or ranged reads of
/// the object's tail); with a `declared` input schema, refuses a file holding a column the
/// job reads (`columns`) in a type that does not convert to the declared one without loss.
fn parquet_row_group_sizes(
    f: &InputFile,
    declared: Option<&SchemaRef>,
    columns: Option<&[String]>,
) -> Result<Vec<u64>> {
    let path = f.name();
    let sizes = |groups: &[parquet::file::metadata::RowGroupMetaData]| -> Vec<u64> {
        groups
            .iter()
            .map(|g| g.compressed_size().max(0) as u64)
            .collect()
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
        InputFile::Object { url, size } => {
            let (metadata, _) = read_parquet_footer(url, *size)?;
            check_types(&path, &metadata, declared, columns)?;
            Ok(sizes(metadata.row_groups()))
        }
    }
}

/// See [`parquet_row_group_sizes`].
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

/// Plans `spec`: loads the plugin, expands and checks inputs, cuts splits, prepares the
/// output directory. Blocking file I/O: call it off the async reactor.
///
/// `parallelism` is the task slots of the workers registered now (0 if unknown): splits are
/// made no bigger than the input's share of one slot, so a small input still keeps every
/// slot busy ([`split::split_size_for`]). Settings and the number of map tasks are checked
/// against `limits` before anything of that size is allocated.
pub fn plan_job(spec: &JobSpec, parallelism: u32, limits: &Limits) -> Result<JobPlan> {
    spec.validate().map_err(PlanError::spec)?;
    spec.check_limits(limits).map_err(PlanError::spec)?;
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let named = expand_named_inputs(&spec.inputs)?;
    let files: Vec<InputFile> = named.iter().map(|(_, f)| f.clone()).collect();
    let declared = plugin.input_schema();
    let read_columns = plugin.description().input_columns.clone();
    // Sizes first: the split size depends on the whole input.
    let mut sized = Vec::with_capacity(named.len());
    for (input, f) in &named {
        sized.push(match spec.format_of(input) {
            InputFormat::Parquet => {
                let groups =
                    parquet_row_group_sizes(f, declared.as_ref(), read_columns.as_deref())?;
                (groups.iter().sum(), groups)
            }
            _ => (f.len()?, Vec::new()),
        });
    }
    let split_size = split::split_size_for(
        spec.split_size,
        sized.iter().map(|(len, _)| *len),
        parallelism,
    );
    // Files at least a split long are cut into this many splits (smaller ones may be packed
    // together): refuse before cutting, or `--split-size 1` would allocate a split per byte.
    let at_least: u64 = named
        .iter()
        .zip(&sized)
        .map(|((input, _), (len, groups))| match spec.format_of(input) {
            InputFormat::Parquet => groups.len() as u64,
            _ if *len >= split_size => len.div_ceil(split_size),
            _ => 0,
        })
        .sum();
    limits
        .check_maps(at_least, split_size)
        .map_err(PlanError::spec)?;
    let mut per_file = Vec::with_capacity(named.len());
    for ((input, f), (len, groups)) in named.iter().zip(sized) {
        let split = |range| Split {
            path: f.name(),
            range,
            input: input.clone(),
        };
        let splits: Vec<Split> = match spec.format_of(input) {
            InputFormat::Parquet => split::row_group_splits(&groups, split_size)
                .into_iter()
                .map(|groups| split(SplitRange::RowGroups(groups)))
                .collect(),
            _ => split::byte_ranges(len, split_size)
                .into_iter()
                .map(|(start, end)| split(SplitRange::Bytes { start, end }))
                .collect(),
        };
        per_file.push((splits, len));
    }
    let splits = pack_small_files(per_file, split_size);
    limits
        .check_maps(splits.len() as u64, split_size)
        .map_err(PlanError::spec)?;
    if splits.is_empty() {
        return Err(PlanError::Empty {
            inputs: spec.inputs.join(" "),
        });
    }
    // One schema for the line-based inputs (CSV, JSON lines): the job's, or the one inferred
    // from the first such file. Parquet batches are cast to the declared types, if any.
    let line_based = named.iter().find(|(input, _)| {
        spec.format_of(input).is_line_based() && spec.format_of(input) != InputFormat::Text
    });
    let input_schema = match line_based {
        Some((input, first)) => {
            let format = spec.format_of(input);
            let schema = match plugin.input_schema() {
                Some(s) => s,
                None => match first {
                    InputFile::Local(p) => infer_schema(p, format)?,
                    InputFile::Object { url, size } => infer_object_schema(url, *size, format)?,
                },
            };
            let csv: Vec<InputFile> = named
                .iter()
                .filter(|(input, _)| spec.format_of(input) == InputFormat::Csv)
                .map(|(_, f)| f.clone())
                .collect();
            check_csv_headers(&csv, &schema)?;
            Some(schema)
        }
        None => declared,
    };
    output::check_output(spec, &files)?;
    Ok(JobPlan {
        description: plugin.description().clone(),
        input_schema,
        splits,
    })
}

/// The splits of every file, in order, with runs of consecutive small files (each one
/// split smaller than the split size) packed into splits of several files
/// ([`split::pack_files`]).
fn pack_small_files(per_file: Vec<(Vec<Split>, u64)>, split_size: u64) -> Vec<Split> {
    let mut out = Vec::new();
    let mut run: Vec<(Split, u64)> = Vec::new();
    let flush = |run: &mut Vec<(Split, u64)>, out: &mut Vec<Split>| {
        let sizes: Vec<u64> = run.iter().map(|(_, s)| *s).collect();
        let mut parts = std::mem::take(run).into_iter().map(|(s, _)| s);
        for group in split::pack_files(&sizes, split_size, split::OPEN_COST_BYTES) {
            let files: Vec<Split> = parts.by_ref().take(group.len()).collect();
            out.push(match <[Split; 1]>::try_from(files) {
                Ok([one]) => one,
                Err(files) => Split {
                    path: String::new(),
                    input: files.first().map(|f| f.input.clone()).unwrap_or_default(),
                    range: SplitRange::Files(files),
                },
            });
        }
    };
    for (mut splits, size) in per_file {
        if splits.is_empty() {
            continue; // an empty file: nothing to read, and no reason to end a run
        }
        // A packed split reads one input: a run ends where the next input starts.
        if run.first().is_some_and(|(r, _)| splits[0].input != r.input) {
            flush(&mut run, &mut out);
        }
        if splits.len() == 1 && size < split_size {
            run.extend(splits.pop().map(|s| (s, size)));
        } else {
            flush(&mut run, &mut out);
            out.extend(splits);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Every CSV file must have a header with the schema's columns, in order.
fn check_csv_headers(files: &[InputFile], schema: &SchemaRef) -> Result<()> {
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
            InputFile::Object { url, size } => read_object_csv_header(url, *size)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, len: u64, split_size: u64) -> (Vec<Split>, u64) {
        let splits = split::byte_ranges(len, split_size)
            .into_iter()
            .map(|(start, end)| Split {
                path: name.into(),
                range: SplitRange::Bytes { start, end },
                input: String::new(),
            })
            .collect();
        (splits, len)
    }

    fn names(s: &Split) -> Vec<String> {
        match &s.range {
            SplitRange::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
            _ => vec![s.path.clone()],
        }
    }

    #[test]
    fn runs_of_small_files_are_packed_and_big_files_split_as_before() {
        let mb = 1 << 20;
        let size = 128 * mb;
        let per_file = vec![
            file("a", 30_000, size),
            file("b", 30_000, size),
            file("big", 300 * mb, size),
            file("c", mb, size),
            file("empty", 0, size),
            file("d", 2 * mb, size),
        ];
        let splits = pack_small_files(per_file, size);
        let got: Vec<Vec<String>> = splits.iter().map(names).collect();
        assert_eq!(
            got,
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["big".into()],
                vec!["big".into()],
                vec!["big".into()],
                vec!["c".into(), "d".into()],
            ]
        );
        assert!(matches!(
            splits[1].range,
            SplitRange::Bytes { start: 0, .. }
        ));
    }

    #[test]
    fn a_small_split_size_leaves_every_file_alone() {
        // Asking for splits smaller than the files: the open cost keeps them apart.
        let per_file = vec![file("a", 30, 97), file("b", 30, 97), file("c", 300, 97)];
        let splits = pack_small_files(per_file, 97);
        assert_eq!(splits.len(), 2 + 4);
        assert!(
            splits
                .iter()
                .all(|s| !matches!(s.range, SplitRange::Files(_)))
        );
    }
}
