//! Planning a job: expand the inputs, check them, find the input schema and cut splits.
//!
//! Everything that can be known before a task runs is checked here, so a missing input, an
//! empty input set, an output directory that exists (without `--overwrite`) or a plugin
//! that is not one fails the submission with a clear message instead of a task.

pub mod split;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_common::format::schema::{infer_schema, read_csv_header};
use sluice_common::plugin::Plugin;
use sluice_common::spec::{InputFormat, JobSpec};
use sluice_common::split::{Split, SplitRange};
use sluice_sdk::JobDescription;

use crate::error::{CoordinatorError, Result};

/// A planned job.
pub struct JobPlan {
    /// What the plugin declared.
    pub description: JobDescription,
    /// The schema CSV and JSON-lines splits are read with.
    pub input_schema: Option<SchemaRef>,
    /// One map task per split.
    pub splits: Vec<Split>,
}

/// Hidden and `_`-prefixed files (`_SUCCESS`, `.crc`, ...) are not data, as in Hadoop.
fn is_data_file(p: &Path) -> bool {
    p.is_file()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with(['.', '_']))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands paths and globs into the files to read, in a stable order. A directory stands for
/// the files directly in it; directories and globs skip hidden files and names starting with
/// `_`, as Hadoop does (a path named explicitly is always read). A path or glob that matches nothing is an error naming it.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        if is_glob(input) {
            let paths = glob::glob(input)
                .map_err(|e| CoordinatorError::Input(format!("bad glob {input:?}: {e}")))?;
            for p in paths {
                let p = p.map_err(|e| CoordinatorError::Input(format!("{input}: {e}")))?;
                if is_data_file(&p) {
                    files.push(p);
                }
            }
        } else {
            let p = PathBuf::from(input);
            let meta = std::fs::metadata(&p)
                .map_err(|e| CoordinatorError::Input(format!("input {input}: {e}")))?;
            if meta.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map_err(|e| CoordinatorError::Input(format!("input {input}: {e}")))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|e| is_data_file(e))
                    .collect();
                entries.sort();
                files.extend(entries);
            } else {
                files.push(p);
            }
        }
        if files.len() == before {
            return Err(CoordinatorError::Input(format!(
                "input {input} matches no file"
            )));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn check_output(spec: &JobSpec) -> Result<()> {
    let out = Path::new(&spec.output);
    if out.exists() {
        if !spec.overwrite {
            return Err(CoordinatorError::Input(format!(
                "output directory {} already exists (use --overwrite to replace it)",
                out.display()
            )));
        }
        std::fs::remove_dir_all(out).map_err(|e| {
            CoordinatorError::Input(format!("removing old output {}: {e}", out.display()))
        })?;
    }
    std::fs::create_dir_all(out.join("_temporary"))
        .map_err(|e| CoordinatorError::Input(format!("creating output {}: {e}", out.display())))?;
    Ok(())
}

/// Plans `spec`: loads the plugin, expands and checks inputs, cuts splits, prepares the
/// output directory. Blocking file I/O: call it off the async reactor.
pub fn plan_job(spec: &JobSpec) -> Result<JobPlan> {
    spec.validate().map_err(CoordinatorError::Input)?;
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let files = expand_inputs(&spec.inputs)?;
    let mut splits = Vec::new();
    for f in &files {
        let path = f.to_string_lossy().into_owned();
        match spec.format {
            InputFormat::Parquet => {
                let reader = File::open(f)
                    .map_err(|e| CoordinatorError::Input(format!("{path}: {e}")))
                    .and_then(|file| {
                        SerializedFileReader::new(file).map_err(|e| {
                            CoordinatorError::Input(format!("{path}: not a Parquet file: {e}"))
                        })
                    })?;
                let sizes: Vec<u64> = reader
                    .metadata()
                    .row_groups()
                    .iter()
                    .map(|g| g.compressed_size().max(0) as u64)
                    .collect();
                for groups in split::row_group_splits(&sizes, spec.split_size) {
                    splits.push(Split {
                        path: path.clone(),
                        range: SplitRange::RowGroups(groups),
                    });
                }
            }
            _ => {
                let len = std::fs::metadata(f)
                    .map_err(|e| CoordinatorError::Input(format!("{path}: {e}")))?
                    .len();
                for (start, end) in split::byte_ranges(len, spec.split_size) {
                    splits.push(Split {
                        path: path.clone(),
                        range: SplitRange::Bytes { start, end },
                    });
                }
            }
        }
    }
    if splits.is_empty() {
        return Err(CoordinatorError::Input(format!(
            "the input ({}) holds no data: every file is empty",
            spec.inputs.join(" ")
        )));
    }
    let input_schema = match spec.format {
        InputFormat::Csv | InputFormat::JsonLines => {
            let schema = match plugin.input_schema() {
                Some(s) => s,
                None => infer_schema(&files[0], spec.format)?,
            };
            if spec.format == InputFormat::Csv {
                check_csv_headers(&files, &schema)?;
            }
            Some(schema)
        }
        _ => None,
    };
    check_output(spec)?;
    Ok(JobPlan {
        description: plugin.description().clone(),
        input_schema,
        splits,
    })
}

/// Every CSV file must have a header with the schema's columns, in order.
fn check_csv_headers(files: &[PathBuf], schema: &SchemaRef) -> Result<()> {
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for f in files {
        if std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) == 0 {
            continue;
        }
        let header = read_csv_header(f)?;
        let header = header
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}'))
            .collect::<Vec<_>>();
        if header != expected {
            return Err(CoordinatorError::Input(format!(
                "{} line 1: header {header:?} does not match the job's input columns {expected:?}",
                f.display()
            )));
        }
    }
    Ok(())
}
