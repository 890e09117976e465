//! Hash aggregation for declared aggregates, used twice per job as Spark does: map-side as a
//! combiner over the map output ([`AggMode::Partial`]) and at the reducer over the partials
//! of every map ([`AggMode::Final`]).
//!
//! A batch's key columns are hashed once, column by column, and each row looked up in a
//! table of group ids ([`table`]), comparing typed key values ([`keys`]): no row
//! encoding, no byte-string compare of whole keys. Each group's aggregate states share one
//! row ([`state`]); the rows are probed a few hundred at a time, then each aggregate
//! ([`acc`]) folds those rows' values in one loop of its own, while their groups' state rows
//! are still in the cache.
//!
//! The partial schema is the key columns followed by one column per aggregate, named by its
//! output: a count's partial is an `Int64` that the final step sums; sum, min and max merge
//! with themselves.
//!
//! The combiner is adaptive, as DataFusion's and DuckDB's partial aggregations are: when
//! grouping does not shrink its input (EOD's 10M rows hold 5.8M groups), it stops grouping
//! ([`keep_combining`], [`probe`]) and turns each row into a partial of its own
//! ([`HashAggregator::partial_state`]), which the final step merges like any other.
//!
//! Sums of integers are `Int64` (overflow is an error, never a wrap), sums of
//! `Decimal128(p, s)` are `Decimal128(38, s)`, sums of floats `Float64`.

mod acc;
mod keys;
mod probe;
mod sorted;
mod state;
mod table;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use sluice_sdk::Aggregate;

use crate::{Error, Result};
use acc::Plan;
use keys::GroupKeys;
use state::{Layout, States};
use table::GroupTable;

pub use probe::{GroupingProbe, PROBE_ROWS, SKIP_RATIO, keep_combining, probe_rows};

/// How many rows ahead of its probe the aggregator prefetches a row's table entry: enough
/// for the misses of several rows to overlap, few enough that the entries are still cached.
const PREFETCH_ROWS: usize = 16;

/// Rows probed before their values are folded: the groups' state rows the probes brought
/// into the cache (a few dozen KiB) are still there for every aggregate's fold.
const FOLD_ROWS: usize = 256;

/// Groups whose state rows are gathered at a time to read the output's columns from.
const GATHER_GROUPS: usize = 4096;

/// Which side of the shuffle an aggregator runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggMode {
    /// Over the map output: reads the aggregates' input columns.
    Partial,
    /// Over partials: reads the columns named by each aggregate's output.
    Final,
}

/// Groups rows by key and folds declared aggregates over each group.
pub struct HashAggregator {
    key_indices: Vec<usize>,
    keys: GroupKeys,
    table: GroupTable,
    hashes: Vec<u64>,
    plans: Vec<Plan>,
    states: States,
    output_schema: SchemaRef,
    /// The schema every batch must have (the first batch's): a batch of other types would
    /// be misread, for example decimals of another scale summed as raw integers.
    input_schema: SchemaRef,
    mode: AggMode,
}

impl HashAggregator {
    /// An aggregator over batches of `input` grouping by `key_columns`.
    pub fn new(
        input: &Schema,
        key_columns: &[String],
        aggregates: &[Aggregate],
        mode: AggMode,
    ) -> Result<Self> {
        let key_indices = key_columns
            .iter()
            .map(|k| {
                input.index_of(k).map_err(|_| Error::Mismatch {
                    subject: format!("key column {k:?}"),
                    reason: format!("not in the map output {input:?}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let key_fields: Vec<Field> = key_indices
            .iter()
            .map(|&i| input.field(i).clone())
            .collect();
        let keys = GroupKeys::new(
            &key_fields
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<_>>(),
        )?;
        let mut layout = Layout::default();
        let plans = aggregates
            .iter()
            .map(|a| Plan::new(a, input, mode, &mut layout))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = key_fields
            .into_iter()
            .chain(plans.iter().map(|p| p.output.clone()))
            .collect();
        Ok(HashAggregator {
            key_indices,
            keys,
            table: GroupTable::new(),
            hashes: Vec::new(),
            plans,
            states: layout.states(),
            output_schema: Arc::new(Schema::new(fields)),
            input_schema: Arc::new(input.clone()),
            mode,
        })
    }

    /// Schema of what [`HashAggregator::finish`] returns: keys, then one column per aggregate.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// Number of groups so far.
    pub fn groups(&self) -> usize {
        self.hashes.len()
    }

    /// Makes room for `groups` more groups without growing: a reducer knows how many rows
    /// its partition holds, an upper bound on its groups. Growing by doubling copies every
    /// group's state and key once more and faults in each new page twice over. Memory
    /// reserved and never touched costs no resident memory.
    pub fn reserve_groups(&mut self, groups: usize) {
        self.hashes.reserve_exact(groups);
        self.keys.reserve(groups);
        self.states.reserve(groups);
    }

    /// Memory a group takes, as [`HashAggregator::memory_bytes`] counts it.
    pub fn bytes_per_group(&self) -> usize {
        8 + 8 + 4 + self.states.bytes_per_group()
    }

    /// A rough estimate of the memory held, for spilling decisions.
    pub fn memory_bytes(&self) -> usize {
        self.keys.memory_bytes()
            + self.groups() * self.bytes_per_group()
            + self.table.memory_bytes()
    }

    /// Each row of `batch` as a partial of its own, in the schema of
    /// [`HashAggregator::output_schema`], without grouping: what an adaptive combiner sends
    /// once grouping stopped paying. Partial mode only.
    pub fn partial_state(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.mode != AggMode::Partial {
            return Err(Error::Internal {
                what: "partial_state of an aggregator over partials".into(),
            });
        }
        self.check_schema(batch)?;
        let mut columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        for p in &self.plans {
            columns.push(p.partial_of(batch)?);
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("building partials", e))
    }

    /// Refuses a batch whose used columns differ from the first batch's.
    fn check_schema(&self, batch: &RecordBatch) -> Result<()> {
        let schema = batch.schema();
        let used = self
            .key_indices
            .iter()
            .copied()
            .chain(self.plans.iter().filter_map(|p| p.input));
        for i in used {
            let (want, got) = (self.input_schema.field(i), schema.fields().get(i));
            if got.is_none_or(|g| g.name() != want.name() || g.data_type() != want.data_type()) {
                return Err(Error::Mismatch {
                    subject: format!("column {}", want.name()),
                    reason: format!(
                        "{} in one batch and {} in another: every map output must have one schema",
                        want.data_type(),
                        got.map_or("missing".to_string(), |g| format!(
                            "{} {}",
                            g.name(),
                            g.data_type()
                        ))
                    ),
                });
            }
        }
        Ok(())
    }

    /// Folds one batch in.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_schema(batch)?;
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let keys = self.keys.batch(&keys)?;
        let hashes = keys.hashes();
        self.table.reserve(batch.num_rows(), &self.hashes);
        let inputs = self
            .plans
            .iter()
            .map(|p| p.input_of(batch))
            .collect::<Result<Vec<_>>>()?;
        let mut group_ids = Vec::with_capacity(batch.num_rows());
        for first in (0..batch.num_rows()).step_by(FOLD_ROWS) {
            let end = (first + FOLD_ROWS).min(batch.num_rows());
            for (i, &hash) in hashes.iter().enumerate().take(end).skip(first) {
                // Two stages: a row's table entry PREFETCH_ROWS ahead, then, once that
                // entry is cached, the key and the states of the group it names, half as
                // far ahead.
                if let Some(&ahead) = hashes.get(i + PREFETCH_ROWS) {
                    self.table.prefetch(ahead);
                }
                if let Some(g) = hashes
                    .get(i + PREFETCH_ROWS / 2)
                    .and_then(|&h| self.table.candidate(h))
                {
                    self.keys.prefetch(g);
                    self.states.prefetch(g as usize);
                }
                let next = self.hashes.len() as u32;
                let stored = &self.keys;
                let (group, new) = self
                    .table
                    .find_or_insert(hash, next, |g| stored.equals(g as usize, &keys, i));
                if new {
                    self.keys.push(&keys, i);
                    self.hashes.push(hash);
                    self.states.push();
                }
                group_ids.push(group);
            }
            for (p, input) in self.plans.iter().zip(&inputs) {
                p.acc.update(
                    &mut self.states,
                    &group_ids[first..end],
                    input,
                    first,
                    p.output.name(),
                )?;
            }
        }
        Ok(())
    }

    /// The groups so far as one batch sorted by key, leaving the aggregator empty.
    pub fn take_sorted(&mut self) -> Result<Option<RecordBatch>> {
        self.take(true)
    }

    /// The groups so far as one batch, in the order they were first seen, leaving the
    /// aggregator empty: for partials that a reducer groups again, where an order would be
    /// a sort for nothing.
    pub fn take_unsorted(&mut self) -> Result<Option<RecordBatch>> {
        self.take(false)
    }

    fn take(&mut self, sorted: bool) -> Result<Option<RecordBatch>> {
        if self.groups() == 0 {
            return Ok(None);
        }
        let mut built: Vec<_> = self
            .plans
            .iter()
            .map(|p| p.acc.column(self.groups()))
            .collect();
        let mut columns = if sorted {
            let (order, columns) = self.keys.sorted()?;
            for chunk in order.chunks(GATHER_GROUPS) {
                let rows = self.states.gather(chunk);
                for (p, column) in self.plans.iter().zip(&mut built) {
                    p.acc.extend(&rows, column)?;
                }
            }
            columns
        } else {
            for (p, column) in self.plans.iter().zip(&mut built) {
                p.acc.extend(&self.states, column)?;
            }
            self.keys.columns()?
        };
        // A fresh store, not a cleared one: the groups' memory goes back now, not when
        // the aggregator is dropped after the output is written.
        self.states = self.states.emptied();
        for (p, column) in self.plans.iter().zip(built) {
            columns.push(p.acc.finish(column, p.output.data_type(), &p.input_type)?);
        }
        self.table.clear();
        self.hashes.clear();
        self.keys.clear();
        let batch = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("building aggregate output", e))?;
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests;
