//! A map attempt: read the split as record batches, call the plugin's `map` on each,
//! combine (declared aggregates, map-side), hash-partition by key and spill to one Parquet
//! file, in runs bounded by `task_memory`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use sluice_common::agg::GroupingProbe;
use sluice_common::bad_records::{Limit, Policy, RejectSink};
use sluice_common::control::ColumnSum;
use sluice_common::format::read::{ReadChecks, read_split};
use sluice_common::input_plan::read_side_input;
use sluice_common::plugin::Plugin;
use sluice_common::rules::{CustomChecks, RuleSet};
use sluice_common::split::Split;
use sluice_common::{Error, Result};
use sluice_proto::pb;
use sluice_sdk::{ReduceKind, TaskContext, TaskKind};

use super::combiner::{Combiner, PartitionBuffer, UNCOMBINED_RUN_BYTES};
use super::input_checks::{BadRecords, add_control_sums, settle_bad_records};
use super::{JobInfo, TaskEnv};
use crate::error::{TaskError, TaskResult};
use crate::shuffle::spill::SpillWriter;
use crate::shuffle::{MapOutputFile, MapOutputId};

/// Where map attempt `(index, attempt)` of `job_id` spills.
pub fn spill_path(work_dir: &Path, job_id: &str, index: u32, attempt: u32) -> PathBuf {
    work_dir
        .join("shuffle")
        .join(job_id)
        .join(spill_file_name(index, attempt))
}

/// The name of map attempt `(index, attempt)`'s spill file in its job's directory.
pub fn spill_file_name(index: u32, attempt: u32) -> String {
    format!("{index}-{attempt}.parquet")
}

/// Runs the attempt on the CPU pool, registers its output and returns the report.
pub async fn run(
    env: &TaskEnv,
    job: &JobInfo,
    index: u32,
    attempt: u32,
    split: Split,
) -> TaskResult<pb::MapDone> {
    let path = spill_path(&env.work_dir, &job.job_id, index, attempt);
    let spill = path.clone();
    let job2 = job.clone();
    let rejects_dir = env.work_dir.join("rejects").join(&job.job_id);
    let body = env
        .cpu
        .run(move || map_body(&job2, index, attempt, &split, path, &rejects_dir))
        .await
        .map_err(|panic| {
            TaskError::from(Error::Internal {
                what: format!("map task panicked: {panic}"),
            })
        })
        .and_then(|r| r);
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            // A failed attempt leaves no partial spill behind.
            let _ = tokio::fs::remove_file(spill).await;
            return Err(e);
        }
    };
    let MapBody {
        output,
        partitions,
        rows_in,
        rows_out,
        bad,
        sums,
        counters,
    } = body;
    // Reducers on this host read the file at this path directly (see `shuffle::read`).
    let spill_path = match &output.path {
        Some(p) => std::fs::canonicalize(p)
            .map_err(|e| Error::io(p, e))?
            .to_string_lossy()
            .into_owned(),
        None => String::new(),
    };
    let output_token = output.token;
    env.registry.insert(
        MapOutputId {
            job_id: job.job_id.clone(),
            map_index: index,
            attempt,
        },
        output,
    );
    Ok(pb::MapDone {
        partitions,
        rows_in,
        rows_out,
        spill_path,
        output_token,
        host_id: env.host_id.clone(),
        bad_records: bad.count,
        bad_by_kind: bad.by_kind.into_iter().collect(),
        rejects_file: bad.file.unwrap_or_default(),
        input_sums: sums.into_iter().map(|(c, s)| (c, s.to_text())).collect(),
        counters: counters.into_iter().collect(),
    })
}

struct MapBody {
    output: MapOutputFile,
    partitions: Vec<pb::PartitionStat>,
    rows_in: u64,
    rows_out: u64,
    bad: BadRecords,
    /// Sums of the control file's columns over the records read.
    sums: BTreeMap<String, ColumnSum>,
    /// What the job's map counted.
    counters: BTreeMap<String, i64>,
}

/// The job's own checks, calling its plugin with the attempt's context (so what they
/// count is the attempt's), when it names any.
fn custom_checks(plugin: &Arc<Plugin>, ctx: &Arc<TaskContext>) -> Option<CustomChecks> {
    let names = plugin.description().checks.clone();
    if names.is_empty() {
        return None;
    }
    let (plugin, ctx) = (Arc::clone(plugin), Arc::clone(ctx));
    Some((
        names,
        Arc::new(move |b: &RecordBatch| plugin.check(b.clone(), &ctx)),
    ))
}

/// Every side input of `job`, read whole (once per job and worker process: see
/// [`Plugin::ensure_side_inputs`]).
fn read_side_inputs(job: &JobInfo) -> Result<Vec<(String, RecordBatch)>> {
    let spec = &job.spec;
    job.inputs
        .sides
        .iter()
        .map(|side| {
            let table = read_side_input(
                side,
                spec.format_of(&side.name),
                job.inputs.schema_of(&side.name),
                spec.batch_rows as usize,
                spec.side_max_bytes,
            )?;
            tracing::info!(job = %job.job_id, side = %side.name, rows = table.num_rows(), bytes = table.get_array_memory_size(), "side input loaded");
            Ok((side.name.clone(), table))
        })
        .collect()
}

fn map_body(
    job: &JobInfo,
    index: u32,
    attempt: u32,
    split: &Split,
    path: PathBuf,
    rejects_dir: &Path,
) -> TaskResult<MapBody> {
    let spec = &job.spec;
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    if !job.inputs.sides.is_empty() {
        plugin.ensure_side_inputs(&job.job_id, || read_side_inputs(job))?;
    }
    let desc = plugin.description();
    let mut ctx = job.context(TaskKind::Map, index, attempt);
    ctx.input = split.input.clone();
    let ctx = Arc::new(ctx);
    let partitions = spec.reducers;
    if partitions == sluice_common::spec::AUTO_REDUCERS {
        // The coordinator picks the number when it plans the job: a task never sees `auto`.
        return Err(sluice_common::Error::Internal {
            what: "a map task of a job whose reducers were never picked".into(),
        }
        .into());
    }
    let mut combiner = match &desc.reduce {
        ReduceKind::Aggregate(aggregates) => Combiner::Aggregate {
            keys: &desc.key_columns,
            aggregates,
            table: None,
            probe: GroupingProbe::new(u64::from(spec.batch_rows)),
            probed: Some(Vec::new()),
            passthrough: None,
        },
        ReduceKind::Custom => Combiner::Buffer(PartitionBuffer::new(partitions)),
    };
    let mut spill = SpillWriter::new(path);
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    let sink = Limit::tolerates(spec.on_bad_record, spec.max_bad_records)
        .then(|| RejectSink::new(spec.on_bad_record == Policy::Quarantine));
    let mut sums: BTreeMap<String, ColumnSum> = spec
        .control
        .iter()
        .flat_map(|c| c.sums.keys())
        .map(|c| (c.clone(), ColumnSum::zero(0)))
        .collect();
    // The control file's columns are summed from every batch: read even where the job does
    // not list them, so that no footer's statistics leave them out.
    let columns = sluice_common::rules::with_columns(
        desc.input_columns.as_deref(),
        sums.keys().map(String::as_str),
    );
    for batch in read_split(
        split,
        spec.format_of(&split.input),
        job.inputs.schema_of(&split.input),
        spec.batch_rows as usize,
        columns.as_deref(),
        ReadChecks {
            rejects: sink.clone(),
            rules: RuleSet::new(&desc.rules, custom_checks(&plugin, &ctx))?,
        },
    )? {
        let batch = batch?;
        rows_in += batch.num_rows() as u64;
        add_control_sums(&batch, &mut sums)?;
        let out = plugin.map(batch, &ctx).map_err(|e| match e {
            Error::Plugin {
                job,
                message,
                invalid_input,
            } => Error::Plugin {
                job,
                message: format!("{message} (map task {index} over {split})"),
                invalid_input,
            },
            other => other,
        })?;
        rows_out += out.num_rows() as u64;
        if out.num_rows() == 0 {
            continue;
        }
        combiner.add(out, &desc.key_columns, partitions)?;
        if combiner.memory_bytes() as u64 > spec.task_memory {
            tracing::debug!(
                index,
                bytes = combiner.memory_bytes(),
                "map task spills a run"
            );
            spill.write_run(combiner.take_run(partitions)?)?;
        } else if let Some(run) = combiner.take_uncombined(UNCOMBINED_RUN_BYTES) {
            spill.write_run(run)?;
        }
    }
    spill.write_run(combiner.take_run(partitions)?)?;
    let bad = settle_bad_records(spec, sink, rejects_dir, index, attempt)?;
    let (output, stats) = spill.finish()?;
    let mut partitions: Vec<pb::PartitionStat> = stats
        .into_iter()
        .map(|(p, s)| pb::PartitionStat {
            partition: p,
            rows: s.rows,
            bytes: s.bytes,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(MapBody {
        output,
        partitions,
        rows_in,
        rows_out,
        bad,
        sums,
        counters: ctx.counters.take(),
    })
}
