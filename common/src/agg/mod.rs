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
//! ([`keep_combining`], [`probe`]). If it has spilled nothing yet, it sends its rows on as
//! map output rows, marked ([`MAP_ROWS_KEY`]), which the final step folds as the partial
//! step would have; otherwise each further row becomes a partial of its own
//! ([`HashAggregator::partial_state`]), because one spill file holds one kind of rows.
//!
//! Sums of integers are `Int64` (overflow is an error, never a wrap), sums of
//! `Decimal128(p, s)` are `Decimal128(38, s)`, sums of floats `Float64`.

mod acc;
mod column;
mod keys;
mod map_rows;
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

use map_rows::MapRows;
pub use map_rows::{MAP_ROWS_KEY, is_map_rows, mark_map_rows};
pub use probe::{GroupingProbe, PROBE_ROWS, SKIP_RATIO, keep_combining, probe_rows};

/// How many rows ahead of its probe the aggregator prefetches a row's table entry: enough
/// for the misses of several rows to overlap, few enough that the entries are still cached.
const PREFETCH_ROWS: usize = 16;

/// Rows probed before their values are folded: the groups' state rows the probes brought
/// into the cache (a few dozen KiB) are still there for every aggregate's fold.
const FOLD_ROWS: usize = 256;

/// Groups whose state rows are gathered at a time to read the output's columns from.
const GATHER_GROUPS: usize = 4096;

/// Where `key_columns` are in `input`.
fn key_indices(input: &Schema, key_columns: &[String]) -> Result<Vec<usize>> {
    key_columns
        .iter()
        .map(|k| {
            input.index_of(k).map_err(|_| Error::Mismatch {
                subject: format!("key column {k:?}"),
                reason: format!("not in the map output {input:?}"),
            })
        })
        .collect()
}

/// Refuses a batch whose used columns differ from `expected`'s.
fn check_used(
    expected: &Schema,
    batch: &Schema,
    key_indices: &[usize],
    plans: &[Plan],
) -> Result<()> {
    let used = key_indices
        .iter()
        .copied()
        .chain(plans.iter().filter_map(|p| p.input));
    for i in used {
        let (want, got) = (expected.field(i), batch.fields().get(i));
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
    key_columns: Vec<String>,
    aggregates: Vec<Aggregate>,
    /// Final mode: plans over map output rows, made on the first such batch.
    map_rows: Option<MapRows>,
}

impl HashAggregator {
    /// An aggregator over batches of `input` grouping by `key_columns`. In final mode,
    /// `input` may be the partials' schema or that of map output rows (see
    /// [`MAP_ROWS_KEY`]): the aggregator takes batches of both.
    pub fn new(
        input: &Schema,
        key_columns: &[String],
        aggregates: &[Aggregate],
        mode: AggMode,
    ) -> Result<Self> {
        if mode == AggMode::Final && is_map_rows(input) {
            let partial = Self::new(input, key_columns, aggregates, AggMode::Partial)?;
            return Self::new(&partial.output_schema, key_columns, aggregates, mode);
        }
        let key_indices = key_indices(input, key_columns)?;
        // The output's keys are not map output rows, whatever marked the input's.
        let key_fields: Vec<Field> = key_indices
            .iter()
            .map(|&i| {
                let mut f = input.field(i).clone();
                f.metadata_mut().remove(MAP_ROWS_KEY);
                f
            })
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
            key_columns: key_columns.to_vec(),
            aggregates: aggregates.to_vec(),
            map_rows: None,
        })
    }

    /// Schema of what [`HashAggregator::drain_sorted`] emits: keys, then one column per
    /// aggregate.
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
        check_used(
            &self.input_schema,
            &batch.schema(),
            &self.key_indices,
            &self.plans,
        )
    }

    /// Folds one batch in: in final mode, partials or map output rows.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = self.mode == AggMode::Final && is_map_rows(&batch.schema());
        if rows {
            self.plan_map_rows(&batch.schema())?;
        } else {
            self.check_schema(batch)?;
        }
        let HashAggregator {
            key_indices,
            keys,
            table,
            hashes,
            plans,
            states,
            map_rows,
            ..
        } = self;
        let (key_indices, plans) = match map_rows.as_ref().filter(|_| rows) {
            Some(r) => (&r.key_indices, &r.plans),
            None => (&*key_indices, &*plans),
        };
        let keys_in: Vec<ArrayRef> = key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let batch_keys = keys.batch(&keys_in)?;
        let batch_hashes = batch_keys.hashes();
        table.reserve(batch.num_rows(), hashes);
        let inputs = plans
            .iter()
            .map(|p| p.input_of(batch))
            .collect::<Result<Vec<_>>>()?;
        let mut group_ids = Vec::with_capacity(batch.num_rows());
        for first in (0..batch.num_rows()).step_by(FOLD_ROWS) {
            let end = (first + FOLD_ROWS).min(batch.num_rows());
            for (i, &hash) in batch_hashes.iter().enumerate().take(end).skip(first) {
                // Two stages: a row's table entry PREFETCH_ROWS ahead, then, once that
                // entry is cached, the key and the states of the group it names, half as
                // far ahead.
                if let Some(&ahead) = batch_hashes.get(i + PREFETCH_ROWS) {
                    table.prefetch(ahead);
                }
                if let Some(g) = batch_hashes
                    .get(i + PREFETCH_ROWS / 2)
                    .and_then(|&h| table.candidate(h))
                {
                    keys.prefetch(g);
                    states.prefetch(g as usize);
                }
                let next = hashes.len() as u32;
                let stored = &*keys;
                let (group, new) =
                    table.find_or_insert(hash, next, |g| stored.equals(g as usize, &batch_keys, i));
                if new {
                    keys.push(&batch_keys, i);
                    hashes.push(hash);
                    states.push();
                }
                group_ids.push(group);
            }
            for (p, input) in plans.iter().zip(&inputs) {
                p.acc.update(
                    states,
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
        let mut out = None;
        self.drain_sorted(usize::MAX, |b| {
            out = Some(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// The groups so far in key order, handed to `emit` in batches of `rows` groups (the
    /// last one possibly shorter), leaving the aggregator empty. If `emit` fails, the
    /// aggregator keeps every group, those emitted included.
    ///
    /// Each batch's columns are built as it is emitted, so the output is never held whole:
    /// columns as long as a reducer's hundreds of thousands of groups would be fresh memory
    /// whose page faults cost more than filling it, while a batch's buffers come back from
    /// the allocator warm for the next.
    pub fn drain_sorted(
        &mut self,
        rows: usize,
        mut emit: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let sorted = self.keys.sorted();
        let rows = rows.max(1);
        for start in (0..sorted.len()).step_by(rows) {
            let end = start.saturating_add(rows).min(sorted.len());
            let (order, mut columns) = self.keys.decode(&sorted, start..end)?;
            let mut built: Vec<_> = self
                .plans
                .iter()
                .map(|p| p.acc.column(order.len()))
                .collect();
            for chunk in order.chunks(GATHER_GROUPS) {
                let gathered = self.states.gather(chunk);
                for (p, column) in self.plans.iter().zip(&mut built) {
                    p.acc.extend(&gathered, column)?;
                }
            }
            for (p, column) in self.plans.iter().zip(built) {
                columns.push(p.acc.finish(column, p.output.data_type(), &p.input_type)?);
            }
            emit(self.output(columns)?)?;
        }
        self.clear();
        Ok(())
    }

    /// The groups so far as one batch, in the order they were first seen, leaving the
    /// aggregator empty: for partials that a reducer groups again, where an order would be
    /// a sort for nothing.
    pub fn take_unsorted(&mut self) -> Result<Option<RecordBatch>> {
        if self.groups() == 0 {
            return Ok(None);
        }
        let mut columns = self.keys.columns()?;
        for p in &self.plans {
            let mut column = p.acc.column(self.groups());
            p.acc.extend(&self.states, &mut column)?;
            columns.push(p.acc.finish(column, p.output.data_type(), &p.input_type)?);
        }
        self.clear();
        Ok(Some(self.output(columns)?))
    }

    /// Forgets every group. A fresh store, not a cleared one: the groups' memory goes back
    /// now, not when the aggregator is dropped after the output is written.
    fn clear(&mut self) {
        self.states = self.states.emptied();
        self.table.clear();
        self.hashes.clear();
        self.keys.clear();
    }

    fn output(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("building aggregate output", e))
    }
}

#[cfg(test)]
mod tests;
