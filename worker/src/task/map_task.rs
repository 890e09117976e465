//! A map attempt: read the split as record batches, call the plugin's `map` on each,
//! combine (declared aggregates, map-side), hash-partition by key and spill to one Parquet
//! file, in runs bounded by `task_memory`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use sluice_common::agg::{AggMode, GroupingProbe, HashAggregator};
use sluice_common::bad_records::{Limit, Policy, RejectSink};
use sluice_common::control::ColumnSum;
use sluice_common::format::read::{ReadChecks, read_split};
use sluice_common::input_plan::read_side_input;
use sluice_common::partition::split_by_partition;
use sluice_common::plugin::Plugin;
use sluice_common::rules::{CustomChecks, RuleSet};
use sluice_common::split::Split;
use sluice_common::{Error, Result};
use sluice_proto::pb;
use sluice_sdk::{Aggregate, ReduceKind, TaskContext, TaskKind};

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
        .join(format!("{index}-{attempt}"))
        .join("data.parquet")
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
    let attempt_dir = path.parent().map(Path::to_path_buf);
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
            if let Some(dir) = attempt_dir {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
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

/// Rows nothing combines (see [`Combiner::take_uncombined`]) are written once this many
/// bytes of them are held, whatever `task_memory` allows: a map's memory is then the
/// grouping table plus this, and its runs still make row groups of thousands of rows.
const UNCOMBINED_RUN_BYTES: usize = 64 << 20;

/// Map output rows held per partition until they are spilled.
struct PartitionBuffer {
    parts: Vec<Vec<RecordBatch>>,
    bytes: usize,
}

impl PartitionBuffer {
    fn new(partitions: u32) -> Self {
        PartitionBuffer {
            parts: vec![Vec::new(); partitions as usize],
            bytes: 0,
        }
    }

    /// Splits `batch` by the partition of its `keys` (column indices) and holds the pieces.
    fn add(&mut self, batch: &RecordBatch, keys: &[usize], partitions: u32) -> Result<()> {
        self.bytes += batch.get_array_memory_size();
        for (p, b) in split_by_partition(batch, keys, partitions)? {
            self.parts[p as usize].push(b);
        }
        Ok(())
    }

    /// What is held, by partition, emptying the buffer.
    fn take(&mut self) -> Vec<Vec<RecordBatch>> {
        self.bytes = 0;
        self.parts.iter_mut().map(std::mem::take).collect()
    }
}

/// How map output is held until it is spilled.
enum Combiner<'a> {
    /// Declared aggregates: partial aggregation in a hash table, adaptive: once grouping
    /// proves not to shrink the rows, each row is sent as a partial of its own instead.
    Aggregate {
        keys: &'a [String],
        aggregates: &'a [Aggregate],
        table: Option<Box<HashAggregator>>,
        /// Whether grouping pays, judged on the table's first batches.
        probe: GroupingProbe,
        /// Set once grouping stopped: partials of single rows, per partition.
        passthrough: Option<PartitionBuffer>,
    },
    /// Custom reduce: rows buffered per partition.
    Buffer(PartitionBuffer),
}

fn key_indices(batch: &RecordBatch, keys: &[String]) -> Result<Vec<usize>> {
    keys.iter()
        .map(|k| {
            batch.schema().index_of(k).map_err(|_| Error::Mismatch {
                subject: format!("key column {k:?}"),
                reason: format!(
                    "the map output lacks it (it has {:?})",
                    batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                ),
            })
        })
        .collect()
}

impl Combiner<'_> {
    fn add(&mut self, batch: RecordBatch, keys: &[String], partitions: u32) -> Result<()> {
        match self {
            Combiner::Aggregate {
                keys,
                aggregates,
                table,
                probe,
                passthrough,
            } => {
                let t = match table {
                    Some(t) => t,
                    None => table.insert(Box::new(HashAggregator::new(
                        &batch.schema(),
                        keys,
                        aggregates,
                        AggMode::Partial,
                    )?)),
                };
                if let Some(buffer) = passthrough {
                    // The partial output starts with the key columns.
                    let idx: Vec<usize> = (0..keys.len()).collect();
                    return buffer.add(&t.partial_state(&batch)?, &idx, partitions);
                }
                t.update(&batch)?;
                let groups = t.groups();
                if probe.observe(batch.num_rows() as u64, groups as u64) == Some(false) {
                    tracing::debug!(
                        groups,
                        "grouping does not shrink the map output: rows pass through"
                    );
                    *passthrough = Some(PartitionBuffer::new(partitions));
                }
                Ok(())
            }
            Combiner::Buffer(buffer) => {
                let idx = key_indices(&batch, keys)?;
                buffer.add(&batch, &idx, partitions)
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Combiner::Aggregate {
                table, passthrough, ..
            } => {
                table.as_ref().map_or(0, |t| t.memory_bytes())
                    + passthrough.as_ref().map_or(0, |b| b.bytes)
            }
            Combiner::Buffer(buffer) => buffer.bytes,
        }
    }

    /// Takes the rows held only to be written partition by partition (passed through by
    /// the adaptive combiner, or a custom reduce's rows) once they pass `bytes`, as a run;
    /// the grouping table, if any, stays. Such rows gain nothing from waiting for
    /// `task_memory` to fill: nothing combines them.
    fn take_uncombined(&mut self, bytes: usize) -> Option<Vec<(u32, Vec<RecordBatch>)>> {
        let buffer = match self {
            Combiner::Aggregate {
                passthrough: Some(b),
                ..
            }
            | Combiner::Buffer(b) => b,
            Combiner::Aggregate {
                passthrough: None, ..
            } => return None,
        };
        if buffer.bytes <= bytes {
            return None;
        }
        Some(
            buffer
                .take()
                .into_iter()
                .enumerate()
                .map(|(p, b)| (p as u32, b))
                .filter(|(_, b)| !b.is_empty())
                .collect(),
        )
    }

    /// Takes what is held as one run, partitions in ascending order.
    fn take_run(&mut self, partitions: u32) -> Result<Vec<(u32, Vec<RecordBatch>)>> {
        let mut parts = match self {
            Combiner::Aggregate {
                keys,
                table,
                probe,
                passthrough,
                ..
            } => {
                let mut parts = passthrough
                    .as_mut()
                    .map_or_else(|| vec![Vec::new(); partitions as usize], |b| b.take());
                probe.reset();
                let grouped = table
                    .as_mut()
                    .map(|t| t.take_unsorted())
                    .transpose()?
                    .flatten();
                if let Some(batch) = grouped {
                    // The aggregate output starts with the key columns.
                    let idx: Vec<usize> = (0..keys.len()).collect();
                    for (p, b) in split_by_partition(&batch, &idx, partitions)? {
                        parts[p as usize].push(b);
                    }
                }
                parts
            }
            Combiner::Buffer(buffer) => buffer.take(),
        };
        Ok(parts
            .iter_mut()
            .enumerate()
            .map(|(p, b)| (p as u32, std::mem::take(b)))
            .filter(|(_, b)| !b.is_empty())
            .collect())
    }
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
    let mut combiner = match &desc.reduce {
        ReduceKind::Aggregate(aggregates) => Combiner::Aggregate {
            keys: &desc.key_columns,
            aggregates,
            table: None,
            probe: GroupingProbe::new(u64::from(spec.batch_rows)),
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
    for batch in read_split(
        split,
        spec.format_of(&split.input),
        job.inputs.schema_of(&split.input),
        spec.batch_rows as usize,
        desc.input_columns.as_deref(),
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
