//! The CPU side of a reduce attempt: fetched rows in, the part file out, in memory bounded
//! by `task_memory` whatever the partition's size.
//!
//! - Declared aggregates: a hash table of partial groups. Past `task_memory` its groups go to
//!   disk as a sorted run and the table starts empty; at the end the runs are merged in key
//!   order ([`Runs::merge`]) and each merged chunk, which holds whole key groups in key
//!   order, is aggregated by its runs of equal keys and written.
//! - Custom `reduce`: fetched rows are buffered; past `task_memory` they are sorted and go to
//!   disk as a run; at the end the runs are merged and each chunk of whole key groups goes to
//!   the plugin's `reduce`.
//!
//! A partition that fits in `task_memory` never touches the disk; its groups are written in
//! key order a batch at a time, as they are built. Output is written as it is
//! produced; a partition that receives no rows writes no part file.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use sluice_common::agg::{AggMode, HashAggregator};
use sluice_common::format::write::{PartWriter, part_file_name};
use sluice_common::plugin::Plugin;
use sluice_common::spec::JobSpec;
use sluice_common::{Error, Result};
use sluice_proto::pb;
use sluice_sdk::{ReduceKind, TaskContext};
use tokio::sync::mpsc;

use crate::error::TaskResult;
use crate::shuffle::merge::sorted_groups;
use crate::shuffle::read::{Fetched, fetch_failed};
use crate::shuffle::runs::Runs;

/// Where a reduce attempt works: its part file's staging dir and its spill dir.
pub struct ReduceDirs {
    /// The part file's directory, which must not exist yet when `strict`.
    pub temp_dir: PathBuf,
    /// Whether `temp_dir` is in the job's output (local output), so it must be created fresh.
    pub strict: bool,
    /// Sorted runs, on this worker's local disk.
    pub spill_dir: PathBuf,
}

/// The part file (or, with `--partition-by`, files), created on the first row.
///
/// Rows are written in batches of exactly `batch_rows` (the last one shorter), whatever
/// the chunks the reduce produced: a Parquet writer cuts pages at batch boundaries, so
/// the part file's bytes, not only its rows, are the same whether the reducer spilled and
/// merged runs (chunks of whole key groups) or not.
struct Output<'a> {
    dirs: &'a ReduceDirs,
    spec: &'a JobSpec,
    partition: u32,
    writer: Option<(PathBuf, PartWriter)>,
    hive: Option<super::hive::HiveOutput>,
    /// Rows short of a whole batch, waiting for more.
    held: Vec<RecordBatch>,
}

impl Output<'_> {
    /// Creates the attempt's staging directory. Not create_dir_all in a local output: once
    /// a failed job removed `_temporary`, a straggler must not re-create it. The staging dir
    /// of an object-store output is local to this worker and created as needed.
    fn create_dir(&self) -> Result<()> {
        let dir = &self.dirs.temp_dir;
        if self.dirs.strict {
            std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))
        } else {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = (self.spec.batch_rows as usize).max(1);
        if self.held.is_empty() && batch.num_rows() == rows {
            return self.write_batch(batch);
        }
        if batch.num_rows() > 0 {
            self.held.push(batch.clone());
        }
        while self.held.iter().map(RecordBatch::num_rows).sum::<usize>() >= rows {
            let all = self.take_held()?;
            self.write_batch(&all.slice(0, rows))?;
            if all.num_rows() > rows {
                self.held.push(all.slice(rows, all.num_rows() - rows));
            }
        }
        Ok(())
    }

    /// The held rows as one batch, leaving none held.
    fn take_held(&mut self) -> Result<RecordBatch> {
        let held = std::mem::take(&mut self.held);
        match held.as_slice() {
            [one] => Ok(one.clone()),
            _ => {
                let schema = held.first().map(|b| b.schema()).ok_or(Error::Internal {
                    what: "no rows held".into(),
                })?;
                arrow::compute::concat_batches(&schema, &held)
                    .map_err(|e| Error::arrow("joining output rows into a batch", e))
            }
        }
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !self.spec.partition_by.is_empty() {
            if self.hive.is_none() {
                self.create_dir()?;
                self.hive = Some(super::hive::HiveOutput::new(
                    &self.dirs.temp_dir,
                    &self.spec.partition_by,
                    self.spec.output_format,
                    self.partition,
                ));
            }
            return match &mut self.hive {
                Some(h) => h.write(batch),
                None => Err(Error::Internal {
                    what: "partition writer vanished".into(),
                }),
            };
        }
        if self.writer.is_none() {
            self.create_dir()?;
            let dir = &self.dirs.temp_dir;
            let path = dir.join(part_file_name(self.partition, self.spec.output_format));
            let w = PartWriter::create(&path, batch.schema(), self.spec.output_format)?;
            self.writer = Some((path, w));
        }
        match &mut self.writer {
            Some((_, w)) => w.write(batch),
            None => Err(Error::Internal {
                what: "part writer vanished".into(),
            }),
        }
    }

    /// The files written: `(path relative to the staging directory, rows, bytes)`.
    fn finish(mut self) -> Result<Vec<(String, u64, u64)>> {
        if !self.held.is_empty() {
            let rest = self.take_held()?;
            self.write_batch(&rest)?;
        }
        if let Some(h) = self.hive {
            return h.finish();
        }
        let Some((_, w)) = self.writer else {
            return Ok(Vec::new());
        };
        let (rows, bytes) = w.finish()?;
        let name = part_file_name(self.partition, self.spec.output_format);
        Ok(vec![(name, rows, bytes)])
    }
}

/// Consumes the shuffled input of `rx` and writes the part file; returns
/// `(file relative to the staging directory, rows, bytes)` of each file (none when the
/// partition is empty).
///
/// `rows` is how many rows the map outputs hold for the partition.
pub fn reduce_body(
    mut rx: mpsc::Receiver<Fetched>,
    spec: &JobSpec,
    ctx: &TaskContext,
    partition: u32,
    rows: u64,
    dirs: &ReduceDirs,
) -> TaskResult<Vec<(String, u64, u64)>> {
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let desc = plugin.description();
    let batch_rows = spec.batch_rows as usize;
    // Shuffled row groups are decoded here, on the CPU pool, not on the fetching reactor
    // thread.
    let mut pending: Option<(ParquetRecordBatchReader, pb::MapOutputLocation)> = None;
    let mut next_batch = || -> TaskResult<Option<RecordBatch>> {
        loop {
            if let Some((reader, loc)) = &mut pending {
                match reader.next() {
                    Some(Ok(b)) => return Ok(Some(crate::shuffle::codec::decode(b)?)),
                    // Rows that do not decode are a damaged map output: that map re-runs.
                    Some(Err(e)) => return Err(fetch_failed(loc, format!("decoding: {e}"), false)),
                    None => pending = None,
                }
            }
            let Some(fetched) = rx.blocking_recv() else {
                return Ok(None);
            };
            let loc = fetched.loc().clone();
            pending = Some((fetched.batches(batch_rows)?, loc));
        }
    };
    let mut out = Output {
        dirs,
        spec,
        partition,
        writer: None,
        hive: None,
        held: Vec::new(),
    };
    let mut runs = Runs::new(dirs.spill_dir.clone());
    match &desc.reduce {
        ReduceKind::Aggregate(aggregates) => {
            let mut table: Option<HashAggregator> = None;
            while let Some(batch) = next_batch()? {
                let t = match &mut table {
                    Some(t) => t,
                    None => {
                        let mut t = HashAggregator::new(
                            &batch.schema(),
                            &desc.key_columns,
                            aggregates,
                            AggMode::Final,
                        )?;
                        // No more groups than rows, nor than task memory holds.
                        let fit = spec.task_memory / t.bytes_per_group().max(1) as u64;
                        t.reserve_groups(rows.min(fit) as usize);
                        table.insert(t)
                    }
                };
                t.update(&batch)?;
                if t.memory_bytes() as u64 > spec.task_memory {
                    tracing::debug!(partition, run = runs.len(), "reduce task spills a run");
                    spill_groups(t, &mut runs, batch_rows)?;
                }
            }
            let Some(mut t) = table else {
                return Ok(out.finish()?);
            };
            if runs.is_empty() {
                t.drain_sorted(batch_rows, |b| out.write(&b))?;
            } else {
                spill_groups(&mut t, &mut runs, batch_rows)?;
                // The aggregate output starts with the key columns; a merged chunk holds
                // whole key groups in key order, so aggregating its runs of equal keys
                // finishes them, in order.
                let keys: Vec<usize> = (0..desc.key_columns.len()).collect();
                runs.merge(&keys, keys.len(), batch_rows, |chunk| {
                    match t.aggregate_sorted(&chunk)? {
                        Some(done) => out.write(&done),
                        None => Ok(()),
                    }
                })?;
            }
        }
        ReduceKind::Custom => {
            let mut held: Vec<RecordBatch> = Vec::new();
            let mut bytes = 0usize;
            let mut keys: Option<Vec<usize>> = None;
            let groups = desc.key_columns.len();
            while let Some(b) = next_batch()? {
                if keys.is_none() {
                    // The key columns, then the secondary sort's: groups are cut on the first.
                    let sort: Vec<String> = desc
                        .key_columns
                        .iter()
                        .chain(&desc.sort_columns)
                        .cloned()
                        .collect();
                    keys = Some(key_indices(&b, &sort)?);
                }
                bytes += b.get_array_memory_size();
                held.push(b);
                if bytes as u64 > spec.task_memory
                    && let (Some(k), Some(first)) = (&keys, held.first())
                {
                    tracing::debug!(partition, run = runs.len(), "reduce task spills a run");
                    runs.write(&sorted_groups(
                        &first.schema(),
                        &held,
                        k,
                        groups,
                        batch_rows,
                    )?)?;
                    held.clear();
                    bytes = 0;
                }
            }
            let Some(keys) = keys else {
                return Ok(out.finish()?);
            };
            if runs.is_empty() {
                if let Some(first) = held.first() {
                    for chunk in sorted_groups(&first.schema(), &held, &keys, groups, batch_rows)? {
                        out.write(&plugin.reduce(chunk, ctx)?)?;
                    }
                }
            } else {
                if let Some(first) = held.first() {
                    runs.write(&sorted_groups(
                        &first.schema(),
                        &held,
                        &keys,
                        groups,
                        batch_rows,
                    )?)?;
                }
                drop(held);
                runs.merge(&keys, groups, batch_rows, |chunk| {
                    out.write(&plugin.reduce(chunk, ctx)?)
                })?;
            }
        }
    }
    Ok(out.finish()?)
}

/// Writes the groups `t` holds as the next sorted run, `rows` groups a batch, leaving `t`
/// empty.
fn spill_groups(t: &mut HashAggregator, runs: &mut Runs, rows: usize) -> Result<()> {
    let mut run = runs.start();
    t.drain_sorted(rows, |b| run.write(&b))?;
    run.finish()
}

/// The positions of the key columns in the shuffled rows.
fn key_indices(batch: &RecordBatch, keys: &[String]) -> Result<Vec<usize>> {
    let schema = batch.schema();
    keys.iter()
        .map(|k| {
            schema.index_of(k).map_err(|_| Error::Mismatch {
                subject: format!("key column {k:?}"),
                reason: "the shuffled rows lack it".into(),
            })
        })
        .collect()
}
