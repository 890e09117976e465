//! Planning a job: expand the inputs, check them, find the input schema and cut splits.
//!
//! Everything that can be known before a task runs is checked here, so a missing input, an
//! empty input set, an output directory that exists (without `--overwrite`) or a plugin
//! that is not one fails the submission with a clear message instead of a task.

pub mod error;
pub mod inputs;
pub mod output;
pub mod reducers;
mod schemas;
mod sides;
pub mod split;

use std::path::Path;

use std::collections::BTreeMap;

use sluice_common::input_plan::InputPlan;
use sluice_common::plugin::Plugin;
use sluice_common::spec::{AUTO_REDUCERS, InputFormat, JobSpec, Limits};
use sluice_common::split::FileStamp;
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
    /// The schema each input is read with, and the side inputs.
    pub inputs: InputPlan,
    /// One map task per split.
    pub splits: Vec<Split>,
    /// The reducers the job runs: the spec's, or the number picked for
    /// [`AUTO_REDUCERS`] ([`reducers::auto_reducers`]).
    pub reducers: u32,
}

/// Plans `spec`: loads the plugin, expands and checks inputs, cuts splits, prepares the
/// output directory. Blocking file I/O: call it off the async reactor.
///
/// `parallelism` is the task slots of the workers registered now (0 if unknown): splits are
/// made no bigger than the input's share of one slot, so a small input still keeps every
/// slot busy ([`split::split_size_for`]). Settings and the number of map tasks are checked
/// against `limits` before anything of that size is allocated.
/// `already` holds the files earlier successful runs of the spec's incremental name read
/// (empty for a job that is not incremental): those still as they were are left out, and
/// an incremental job with nothing new is planned with no splits (it succeeds with no rows).
pub fn plan_job(
    spec: &JobSpec,
    parallelism: u32,
    limits: &Limits,
    already: &BTreeMap<String, FileStamp>,
) -> Result<JobPlan> {
    spec.validate().map_err(PlanError::spec)?;
    spec.check_limits(limits).map_err(PlanError::spec)?;
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let named = expand_named_inputs(&spec.inputs)?;
    let files: Vec<InputFile> = named.iter().map(|(_, f)| f.clone()).collect();
    let declared =
        schemas::declared_schemas(&plugin, named.iter().map(|(input, _)| input.as_str()))?;
    // The rules' and the control file's columns are read (and type-checked) too, unless a
    // file's footer proves the rules on them: counting them keeps the size estimate on the
    // safe side.
    let desc = plugin.description();
    let read_columns =
        sluice_common::rules::with_rule_columns(desc.input_columns.as_deref(), &desc.rules);
    let controlled = spec.control.iter().flat_map(|c| c.sums.keys());
    let read_columns =
        sluice_common::rules::with_columns(read_columns.as_deref(), controlled.map(String::as_str));
    // Each file as it is now, before anything of it is read: splits are cut from this size,
    // and a map finding the file otherwise fails the job (see `format::snapshot`).
    let stamps = named
        .iter()
        .map(|(_, f)| f.stamp())
        .collect::<Result<Vec<_>>>()?;
    let (named, stamps) = new_files(named, stamps, already);
    // Sizes first: the split size depends on the whole input.
    let mut sized = Vec::with_capacity(named.len());
    let mut read_bytes = 0u64;
    for ((input, f), stamp) in named.iter().zip(&stamps) {
        sized.push(match spec.format_of(input) {
            InputFormat::Parquet => {
                let groups = schemas::parquet_row_group_sizes(
                    f,
                    declared.get(input),
                    read_columns.as_deref(),
                )?;
                read_bytes = read_bytes.saturating_add(groups.read_bytes);
                (groups.compressed.iter().sum(), groups.compressed)
            }
            _ => {
                read_bytes = read_bytes.saturating_add(stamp.size);
                (stamp.size, Vec::new())
            }
        });
    }
    let reducers = match spec.reducers {
        AUTO_REDUCERS => reducers::auto_reducers(read_bytes, spec.task_memory, limits.max_reducers),
        asked => asked,
    };
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
    for (((input, f), (len, groups)), stamp) in named.iter().zip(sized).zip(stamps) {
        let split = |range| Split {
            path: f.name(),
            range,
            input: input.clone(),
            stamp: Some(stamp.clone()),
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
    if splits.is_empty() && spec.incremental.is_empty() {
        return Err(PlanError::Empty {
            inputs: spec.inputs.join(" "),
        });
    }
    let mut schemas = schemas::input_schemas(spec, &declared, &named)?;
    let sides = sides::plan_sides(spec, &plugin, &mut schemas)?;
    output::check_output(spec, &files)?;
    Ok(JobPlan {
        description: plugin.description().clone(),
        inputs: InputPlan { schemas, sides },
        splits,
        reducers,
    })
}

/// The files not read before as they are now (all of them when `already` is empty).
fn new_files(
    named: Vec<(String, InputFile)>,
    stamps: Vec<FileStamp>,
    already: &BTreeMap<String, FileStamp>,
) -> (Vec<(String, InputFile)>, Vec<FileStamp>) {
    if already.is_empty() {
        return (named, stamps);
    }
    let total = named.len();
    let (named, stamps): (Vec<_>, Vec<_>) = named
        .into_iter()
        .zip(stamps)
        .filter(|((_, f), stamp)| already.get(&f.name()) != Some(stamp))
        .unzip();
    tracing::info!(
        new = named.len(),
        already_read = total - named.len(),
        "incremental run: reading only new or changed files"
    );
    (named, stamps)
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
                    stamp: None,
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
                stamp: None,
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
