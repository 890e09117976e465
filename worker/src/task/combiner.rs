//! What a map task holds before it spills: for declared aggregates, the map-side combiner
//! (partial aggregation that gives up when grouping does not shrink the rows); for a custom
//! reduce, the rows per partition.

use arrow::array::RecordBatch;
use sluice_common::agg::{AggMode, GroupingProbe, HashAggregator, mark_map_rows};
use sluice_common::partition::split_by_partition;
use sluice_common::{Error, Result};
use sluice_sdk::Aggregate;

/// Rows nothing combines (see [`Combiner::take_uncombined`]) are written once this many
/// bytes of them are held, whatever `task_memory` allows: a map's memory is then the
/// grouping table plus this, and its runs still make row groups of thousands of rows.
pub(super) const UNCOMBINED_RUN_BYTES: usize = 64 << 20;

/// Map output rows held per partition until they are spilled.
pub(super) struct PartitionBuffer {
    parts: Vec<Vec<RecordBatch>>,
    bytes: usize,
}

impl PartitionBuffer {
    pub(super) fn new(partitions: u32) -> Self {
        PartitionBuffer {
            parts: vec![Vec::new(); partitions as usize],
            bytes: 0,
        }
    }

    /// Splits `batch` by the partition of its `keys` (column indices) and holds the pieces.
    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        keys: &[usize],
        partitions: u32,
    ) -> Result<()> {
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
pub(super) enum Combiner<'a> {
    /// Declared aggregates: partial aggregation in a hash table, adaptive: once grouping
    /// proves not to shrink the rows, each row is sent on as a partial of its own.
    Aggregate {
        keys: &'a [String],
        aggregates: &'a [Aggregate],
        table: Option<Box<HashAggregator>>,
        /// Whether grouping pays, judged on the table's first batches.
        probe: GroupingProbe,
        /// The rows grouped so far as map output rows (with where their keys are), while
        /// the probe has not decided and nothing was spilled: if grouping does not pay,
        /// they leave as they are.
        probed: Option<Vec<(RecordBatch, Vec<usize>)>>,
        /// Set once grouping stopped: rows, per partition. They are map output rows when
        /// grouping stopped before anything was spilled (the table is then dropped), else
        /// partials of one row each (the table stays, to make them).
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

/// What of `batch` the reducer folds: the key columns, then each aggregate's input column
/// once, marked as map output rows; and where the keys are in it. Columns no aggregate
/// reads stay behind, so a row never crosses the shuffle wider than the map made it useful.
fn as_map_rows(
    batch: &RecordBatch,
    keys: &[String],
    aggregates: &[Aggregate],
) -> Result<(RecordBatch, Vec<usize>)> {
    let mut used = key_indices(batch, keys)?;
    let schema = batch.schema();
    for name in aggregates.iter().filter_map(|a| a.input.as_ref()) {
        let i = schema.index_of(name).map_err(|_| Error::Mismatch {
            subject: format!("aggregate input column {name:?}"),
            reason: "the map output lacks it".into(),
        })?;
        if !used.contains(&i) {
            used.push(i);
        }
    }
    let rows = batch
        .project(&used)
        .map_err(|e| Error::arrow("projecting map output rows", e))?;
    let idx = key_indices(&rows, keys)?;
    Ok((mark_map_rows(&rows)?, idx))
}

impl Combiner<'_> {
    pub(super) fn add(
        &mut self,
        batch: RecordBatch,
        keys: &[String],
        partitions: u32,
    ) -> Result<()> {
        match self {
            Combiner::Aggregate {
                keys,
                aggregates,
                table,
                probe,
                probed,
                passthrough,
            } => {
                if let Some(buffer) = passthrough {
                    let Some(t) = table else {
                        let (rows, idx) = as_map_rows(&batch, keys, aggregates)?;
                        return buffer.add(&rows, &idx, partitions);
                    };
                    // The partial output starts with the key columns.
                    let idx: Vec<usize> = (0..keys.len()).collect();
                    return buffer.add(&t.partial_state(&batch)?, &idx, partitions);
                }
                let t = match table {
                    Some(t) => t,
                    None => table.insert(Box::new(HashAggregator::new(
                        &batch.schema(),
                        keys,
                        aggregates,
                        AggMode::Partial,
                    )?)),
                };
                t.update(&batch)?;
                let groups = t.groups();
                let rows = batch.num_rows() as u64;
                if let Some(held) = probed {
                    held.push(as_map_rows(&batch, keys, aggregates)?);
                }
                match probe.observe(rows, groups as u64) {
                    Some(false) => {
                        let as_rows = probed.is_some();
                        tracing::debug!(
                            groups,
                            as_rows,
                            "grouping does not shrink the map output: rows pass through"
                        );
                        let mut buffer = PartitionBuffer::new(partitions);
                        if let Some(held) = probed.take() {
                            // Nothing was spilled: the rows grouped so far leave as they
                            // came, and their groups are dropped.
                            *table = None;
                            for (rows, idx) in held {
                                buffer.add(&rows, &idx, partitions)?;
                            }
                        }
                        *passthrough = Some(buffer);
                    }
                    Some(true) => *probed = None,
                    None => {}
                }
                Ok(())
            }
            Combiner::Buffer(buffer) => {
                let idx = key_indices(&batch, keys)?;
                buffer.add(&batch, &idx, partitions)
            }
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        match self {
            Combiner::Aggregate {
                table,
                probed,
                passthrough,
                ..
            } => {
                table.as_ref().map_or(0, |t| t.memory_bytes())
                    + probed
                        .iter()
                        .flatten()
                        .map(|(b, _)| b.get_array_memory_size())
                        .sum::<usize>()
                    + passthrough.as_ref().map_or(0, |b| b.bytes)
            }
            Combiner::Buffer(buffer) => buffer.bytes,
        }
    }

    /// Takes the rows held only to be written partition by partition (passed through by
    /// the adaptive combiner, or a custom reduce's rows) once they pass `bytes`, as a run;
    /// the grouping table, if any, stays. Such rows gain nothing from waiting for
    /// `task_memory` to fill: nothing combines them.
    pub(super) fn take_uncombined(&mut self, bytes: usize) -> Option<Vec<(u32, Vec<RecordBatch>)>> {
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
    pub(super) fn take_run(&mut self, partitions: u32) -> Result<Vec<(u32, Vec<RecordBatch>)>> {
        let mut parts = match self {
            Combiner::Aggregate {
                keys,
                table,
                probe,
                probed,
                passthrough,
                ..
            } => {
                let mut parts = passthrough
                    .as_mut()
                    .map_or_else(|| vec![Vec::new(); partitions as usize], |b| b.take());
                probe.reset();
                // Partials are written now: one spill file holds one kind of rows.
                *probed = None;
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
