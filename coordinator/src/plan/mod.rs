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
use sluice_common::format::remote::read_parquet_footer;
use sluice_common::format::schema::{
    infer_object_schema, infer_schema, read_csv_header, read_object_csv_header,
};
use sluice_common::plugin::Plugin;
use sluice_common::spec::{InputFormat, JobSpec, Limits};
use sluice_common::split::{Split, SplitRange};
use sluice_common::storage::{Location, ObjectInfo, ObjectUrl, is_data_name, is_glob};
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

/// One input file, local or in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFile {
    /// A local file, read with `std::fs`.
    Local(PathBuf),
    /// An object, with the size its listing gave.
    Object {
        /// The object.
        url: ObjectUrl,
        /// Its size in bytes.
        size: u64,
    },
}

impl InputFile {
    /// The path or URL as splits carry it and errors name it.
    pub fn name(&self) -> String {
        match self {
            InputFile::Local(p) => p.to_string_lossy().into_owned(),
            InputFile::Object { url, .. } => url.to_string(),
        }
    }

    fn len(&self) -> Result<u64> {
        match self {
            InputFile::Local(p) => Ok(std::fs::metadata(p)
                .map_err(|e| CoordinatorError::Input(format!("{}: {e}", p.display())))?
                .len()),
            InputFile::Object { size, .. } => Ok(*size),
        }
    }

    /// Local files by path (as before URLs existed), then objects by URL.
    fn order(a: &InputFile, b: &InputFile) -> std::cmp::Ordering {
        match (a, b) {
            (InputFile::Local(x), InputFile::Local(y)) => x.cmp(y),
            (InputFile::Local(_), InputFile::Object { .. }) => std::cmp::Ordering::Less,
            (InputFile::Object { .. }, InputFile::Local(_)) => std::cmp::Ordering::Greater,
            (InputFile::Object { url: x, .. }, InputFile::Object { url: y, .. }) => {
                x.to_string().cmp(&y.to_string())
            }
        }
    }
}

/// Hidden and `_`-prefixed files (`_SUCCESS`, `.crc`, ...) are not data, as in Hadoop.
fn is_data_file(p: &Path) -> bool {
    p.is_file()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_data_name)
}

/// Expands paths, URLs and globs into the files to read, in a stable order. A directory (or
/// an object-store prefix) stands for the files directly in it; directories and globs skip
/// hidden files and names starting with `_`, as Hadoop does (a path named explicitly is always
/// read). A path, URL or glob that matches nothing is an error naming it.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        match Location::parse(input)? {
            Location::Local(path) => expand_local(input, &path, &mut files)?,
            Location::Object(url) => expand_object(input, &url, &mut files)?,
        }
        if files.len() == before {
            return Err(CoordinatorError::Input(format!(
                "input {input} matches no file"
            )));
        }
    }
    files.sort_by(InputFile::order);
    files.dedup();
    Ok(files)
}

fn expand_local(input: &str, path: &Path, files: &mut Vec<InputFile>) -> Result<()> {
    let text = path.to_string_lossy();
    if is_glob(&text) {
        let paths = glob::glob(&text)
            .map_err(|e| CoordinatorError::Input(format!("bad glob {input:?}: {e}")))?;
        for p in paths {
            let p = p.map_err(|e| CoordinatorError::Input(format!("{input}: {e}")))?;
            if is_data_file(&p) {
                files.push(InputFile::Local(p));
            }
        }
        return Ok(());
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| CoordinatorError::Input(format!("input {input}: {e}")))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| CoordinatorError::Input(format!("input {input}: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| is_data_file(e))
            .collect();
        entries.sort();
        files.extend(entries.into_iter().map(InputFile::Local));
    } else {
        files.push(InputFile::Local(path.to_path_buf()));
    }
    Ok(())
}

/// An object URL names one object, a prefix ("directory": the objects directly below it) or
/// a glob over keys.
fn expand_object(input: &str, url: &ObjectUrl, files: &mut Vec<InputFile>) -> Result<()> {
    let context = |e: sluice_common::Error| CoordinatorError::Input(format!("input {input}: {e}"));
    let found = if is_glob(url.key()) {
        url.glob().map_err(context)?
    } else {
        let exact = if url.key().is_empty() || input.ends_with('/') {
            None
        } else {
            url.size().map_err(context)?
        };
        match exact {
            Some(size) => vec![ObjectInfo {
                url: url.clone(),
                size,
            }],
            None => url.list_files().map_err(context)?,
        }
    };
    files.extend(found.into_iter().map(|o| InputFile::Object {
        url: o.url,
        size: o.size,
    }));
    Ok(())
}

/// Refuses an existing output unless `--overwrite` (then removes it, if [`overwrite_refusal`]
/// allows), and prepares the output: a local directory with `_temporary/` in it; nothing
/// for an object store, which has no directories.
fn check_output(spec: &JobSpec, files: &[InputFile]) -> Result<()> {
    match Location::parse(&spec.output)? {
        Location::Local(out) => check_local_output(&out, spec.overwrite, files),
        Location::Object(url) => {
            let fail = |e: sluice_common::Error| CoordinatorError::Input(format!("output {e}"));
            if url.key().is_empty() {
                return Err(CoordinatorError::Input(format!(
                    "output {}: name a prefix inside the bucket, not the bucket itself",
                    spec.output
                )));
            }
            if url.exists().map_err(fail)? {
                if !spec.overwrite {
                    return Err(CoordinatorError::Input(format!(
                        "output directory {url} already exists (use --overwrite to replace it)"
                    )));
                }
                let prefix = format!("{}/", url.to_string().trim_end_matches('/'));
                let input = files.iter().find_map(|f| match f {
                    InputFile::Object { url: i, .. } if i.to_string().starts_with(&prefix) => {
                        Some(i.to_string())
                    }
                    _ => None,
                });
                if let Some(input) = input {
                    return Err(CoordinatorError::Input(format!(
                        "--overwrite would delete {url}, which holds {input}, an input of this job"
                    )));
                }
                url.delete_prefix()
                    .map_err(|e| CoordinatorError::Input(format!("removing old output: {e}")))?;
            }
            Ok(())
        }
    }
}

/// Whether the names in an output directory are what a Sluice job writes there: part
/// files, `_SUCCESS` (and its temporary) and `_temporary`.
fn is_sluice_output_entry(name: &str) -> bool {
    let part = name
        .strip_prefix("part-")
        .and_then(|rest| rest.split_once('.'));
    matches!(name, "_SUCCESS" | "._SUCCESS.tmp" | "_temporary")
        || part.is_some_and(|(n, ext)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !ext.is_empty()
        })
}

/// Why `--overwrite` must not delete `out`, holding `entries`, for a job reading `inputs`:
/// it holds an input of the job, or something other than an earlier Sluice output (a state
/// or work directory, a home directory, a typo'd path). `None` when deleting it loses only
/// an earlier output.
pub fn overwrite_refusal(out: &Path, entries: &[String], inputs: &[&Path]) -> Option<String> {
    if let Some(input) = inputs.iter().find(|i| i.starts_with(out)) {
        return Some(format!(
            "--overwrite would delete {}, which holds {}, an input of this job",
            out.display(),
            input.display()
        ));
    }
    let foreign = entries.iter().find(|e| !is_sluice_output_entry(e))?;
    Some(format!(
        "--overwrite refuses to delete {}: it holds {foreign:?}, which is not Sluice output \
         (remove it yourself, or choose another output directory)",
        out.display()
    ))
}

fn check_local_output(out: &Path, overwrite: bool, files: &[InputFile]) -> Result<()> {
    if out.exists() {
        if !overwrite {
            return Err(CoordinatorError::Input(format!(
                "output directory {} already exists (use --overwrite to replace it)",
                out.display()
            )));
        }
        let entries: Vec<String> = std::fs::read_dir(out)
            .map_err(|e| CoordinatorError::Input(format!("reading {}: {e}", out.display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let out_real = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
        let inputs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| match f {
                InputFile::Local(p) => Some(p.canonicalize().unwrap_or_else(|_| p.clone())),
                InputFile::Object { .. } => None,
            })
            .collect();
        let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        if let Some(why) = overwrite_refusal(&out_real, &entries, &inputs) {
            return Err(CoordinatorError::Input(why));
        }
        std::fs::remove_dir_all(out).map_err(|e| {
            CoordinatorError::Input(format!("removing old output {}: {e}", out.display()))
        })?;
    }
    std::fs::create_dir_all(out.join("_temporary"))
        .map_err(|e| CoordinatorError::Input(format!("creating output {}: {e}", out.display())))?;
    Ok(())
}

/// The row-group sizes of a Parquet input, from its footer (local file or ranged reads of
/// the object's tail).
fn parquet_row_group_sizes(f: &InputFile) -> Result<Vec<u64>> {
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
                .map_err(|e| CoordinatorError::Input(format!("{path}: {e}")))
                .and_then(|file| {
                    SerializedFileReader::new(file).map_err(|e| {
                        CoordinatorError::Input(format!("{path}: not a Parquet file: {e}"))
                    })
                })?;
            Ok(sizes(reader.metadata().row_groups()))
        }
        InputFile::Object { url, size } => {
            let (metadata, _) = read_parquet_footer(url, *size)
                .map_err(|e| CoordinatorError::Input(e.to_string()))?;
            Ok(sizes(metadata.row_groups()))
        }
    }
}

/// Plans `spec`: loads the plugin, expands and checks inputs, cuts splits, prepares the
/// output directory. Blocking file I/O: call it off the async reactor.
///
/// `parallelism` is the task slots of the workers registered now (0 if unknown): splits are
/// made no bigger than the input's share of one slot, so a small input still keeps every
/// slot busy ([`split::split_size_for`]). Settings and the number of map tasks are checked
/// against `limits` before anything of that size is allocated.
pub fn plan_job(spec: &JobSpec, parallelism: u32, limits: &Limits) -> Result<JobPlan> {
    spec.validate().map_err(CoordinatorError::Input)?;
    spec.check_limits(limits).map_err(CoordinatorError::Input)?;
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let files = expand_inputs(&spec.inputs)?;
    // Sizes first: the split size depends on the whole input.
    let mut sized = Vec::with_capacity(files.len());
    for f in &files {
        sized.push(match spec.format {
            InputFormat::Parquet => {
                let groups = parquet_row_group_sizes(f)?;
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
    let at_least: u64 = sized
        .iter()
        .map(|(len, groups)| match spec.format {
            InputFormat::Parquet => groups.len() as u64,
            _ if *len >= split_size => len.div_ceil(split_size),
            _ => 0,
        })
        .sum();
    limits
        .check_maps(at_least, split_size)
        .map_err(CoordinatorError::Input)?;
    let mut per_file = Vec::with_capacity(files.len());
    for (f, (len, groups)) in files.iter().zip(sized) {
        let path = f.name();
        per_file.push(match spec.format {
            InputFormat::Parquet => {
                let splits = split::row_group_splits(&groups, split_size)
                    .into_iter()
                    .map(|groups| Split {
                        path: path.clone(),
                        range: SplitRange::RowGroups(groups),
                    })
                    .collect();
                (splits, len)
            }
            _ => {
                let splits = split::byte_ranges(len, split_size)
                    .into_iter()
                    .map(|(start, end)| Split {
                        path: path.clone(),
                        range: SplitRange::Bytes { start, end },
                    })
                    .collect();
                (splits, len)
            }
        });
    }
    let splits = pack_small_files(per_file, split_size);
    limits
        .check_maps(splits.len() as u64, split_size)
        .map_err(CoordinatorError::Input)?;
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
                None => match &files[0] {
                    InputFile::Local(p) => infer_schema(p, spec.format)?,
                    InputFile::Object { url, size } => {
                        infer_object_schema(url, *size, spec.format)?
                    }
                },
            };
            if spec.format == InputFormat::Csv {
                check_csv_headers(&files, &schema)?;
            }
            Some(schema)
        }
        _ => None,
    };
    check_output(spec, &files)?;
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
                    range: SplitRange::Files(files),
                },
            });
        }
    };
    for (mut splits, size) in per_file {
        if splits.is_empty() {
            continue; // an empty file: nothing to read, and no reason to end a run
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
            return Err(CoordinatorError::Input(format!(
                "{} line 1: header {header:?} does not match the job's input columns {expected:?}",
                f.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{is_sluice_output_entry, overwrite_refusal};
    use std::path::Path;

    #[test]
    fn overwrite_deletes_only_an_earlier_sluice_output_that_holds_no_input() {
        let out = Path::new("/data/out");
        let ours: Vec<String> = [
            "_SUCCESS",
            "_temporary",
            "part-00000.parquet",
            "part-10000.csv",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(overwrite_refusal(out, &ours, &[]), None);
        assert_eq!(overwrite_refusal(out, &[], &[]), None, "an empty directory");
        let input = Path::new("/data/out/in.txt");
        let why = overwrite_refusal(out, &ours, &[Path::new("/data/in.txt"), input]).unwrap();
        assert!(
            why.contains("/data/out/in.txt") && why.contains("input"),
            "{why}"
        );
        assert_eq!(
            overwrite_refusal(out, &ours, &[Path::new("/data/outside/in.txt")]),
            None,
            "a sibling whose name starts the same is not inside"
        );
        let mut state = ours.clone();
        state.push("sluice.db".into());
        let why = overwrite_refusal(out, &state, &[]).unwrap();
        assert!(
            why.contains("\"sluice.db\"") && why.contains("not Sluice output"),
            "{why}"
        );
        for bad in ["part-.csv", "part-12", "part-1a.csv", "keep.txt", ".ssh"] {
            assert!(!is_sluice_output_entry(bad), "{bad}");
        }
    }

    use super::*;

    fn file(name: &str, len: u64, split_size: u64) -> (Vec<Split>, u64) {
        let splits = split::byte_ranges(len, split_size)
            .into_iter()
            .map(|(start, end)| Split {
                path: name.into(),
                range: SplitRange::Bytes { start, end },
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
