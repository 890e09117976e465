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

    /// A rough estimate of the memory held, for spilling decisions.
    pub fn memory_bytes(&self) -> usize {
        let per_group: usize = 8 + 8 + 4 + self.states.bytes_per_group();
        self.keys.memory_bytes() + self.groups() * per_group + self.table.memory_bytes()
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
        let hashes = keys.hashes(batch.num_rows());
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
        if self.groups() == 0 {
            return Ok(None);
        }
        let (order, mut columns) = self.keys.sorted()?;
        let mut built: Vec<_> = self
            .plans
            .iter()
            .map(|p| p.acc.column(order.len()))
            .collect();
        for chunk in order.chunks(GATHER_GROUPS) {
            let rows = self.states.gather(chunk);
            for (p, column) in self.plans.iter().zip(&mut built) {
                p.acc.extend(&rows, column)?;
            }
        }
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
mod tests {
    use super::*;
    use arrow::array::{
        Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Int32Array, LargeStringArray,
        StringArray,
    };
    use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
    use std::collections::BTreeMap;

    /// Keys of several types with nulls, grouped in two batches, against a `BTreeMap`
    /// (whose `Option` order is the promised one: nulls first).
    #[test]
    fn typed_keys_group_and_sort_like_a_btreemap() {
        type Key = (Option<String>, Option<i32>, Option<i128>, Option<bool>);
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::LargeUtf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new("m", DataType::Decimal128(18, 2), true),
            Field::new("b", DataType::Boolean, true),
        ]));
        let mut rng = 12345u64;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut expected: BTreeMap<Key, i64> = BTreeMap::new();
        let keys: Vec<String> = ["s", "d", "m", "b"].map(String::from).to_vec();
        let mut agg =
            HashAggregator::new(&schema, &keys, &[Aggregate::count("c")], AggMode::Partial)
                .unwrap();
        for _ in 0..2 {
            let rows: Vec<Key> = (0..500)
                .map(|_| {
                    let s = (next(5) > 0)
                        .then(|| ["", "a", "ab", "b", "é"][next(5) as usize].to_string());
                    let d = (next(5) > 0).then(|| next(3) as i32 - 1);
                    let m = (next(5) > 0).then(|| next(3) as i128 * 1_000_000_000_000_000_000 - 1);
                    let b = (next(5) > 0).then(|| next(2) == 1);
                    (s, d, m, b)
                })
                .collect();
            for r in &rows {
                *expected.entry(r.clone()).or_default() += 1;
            }
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(
                        rows.iter()
                            .map(|r| r.0.clone())
                            .collect::<LargeStringArray>(),
                    ),
                    Arc::new(rows.iter().map(|r| r.1).collect::<Date32Array>()),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.2)
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(18, 2)
                            .unwrap(),
                    ),
                    Arc::new(rows.iter().map(|r| r.3).collect::<BooleanArray>()),
                ],
            )
            .unwrap();
            agg.update(&batch).unwrap();
        }
        let out = agg.take_sorted().unwrap().unwrap();
        assert_eq!(out.schema().field(0).data_type(), &DataType::LargeUtf8);
        let s = out.column(0).as_string::<i64>();
        let d = out.column(1).as_primitive::<arrow::datatypes::Date32Type>();
        let m = out.column(2).as_primitive::<Decimal128Type>();
        let b = out.column(3).as_boolean();
        let c = out.column(4).as_primitive::<Int64Type>();
        let got: Vec<(Key, i64)> = (0..out.num_rows())
            .map(|i| {
                let key = (
                    s.is_valid(i).then(|| s.value(i).to_string()),
                    d.is_valid(i).then(|| d.value(i)),
                    m.is_valid(i).then(|| m.value(i)),
                    b.is_valid(i).then(|| b.value(i)),
                );
                (key, c.value(i))
            })
            .collect();
        assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }

    fn batch(words: &[&str], amounts: &[i128]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("w", DataType::Utf8, false),
            Field::new("amount", DataType::Decimal128(18, 2), false),
            Field::new("n", DataType::Int32, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(words.to_vec())),
                Arc::new(
                    Decimal128Array::from(amounts.to_vec())
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(Int32Array::from(vec![1; words.len()])),
            ],
        )
        .unwrap()
    }

    fn aggs() -> Vec<Aggregate> {
        vec![
            Aggregate::count("c"),
            Aggregate::sum("total", "amount"),
            Aggregate::min("lo", "amount"),
            Aggregate::max("hi", "w"),
            Aggregate::sum("ns", "n"),
        ]
    }

    #[test]
    fn partial_then_final_equals_one_pass() {
        let keys = vec!["w".to_string()];
        let b1 = batch(&["b", "a", "b"], &[100, 250, 1]);
        let b2 = batch(&["a", "c"], &[5, 7]);
        let mut p1 = HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
        p1.update(&b1).unwrap();
        let part1 = p1.take_sorted().unwrap().unwrap();
        let mut p2 = HashAggregator::new(&b2.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
        p2.update(&b2).unwrap();
        let part2 = p2.take_sorted().unwrap().unwrap();
        let mut fin = HashAggregator::new(&part1.schema(), &keys, &aggs(), AggMode::Final).unwrap();
        fin.update(&part1).unwrap();
        fin.update(&part2).unwrap();
        let out = fin.take_sorted().unwrap().unwrap();
        assert_eq!(
            out.schema().field(2).data_type(),
            &DataType::Decimal128(38, 2)
        );
        let w = out.column(0).as_string::<i32>();
        assert_eq!(w.iter().flatten().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let c = out.column(1).as_primitive::<Int64Type>();
        assert_eq!(c.values().to_vec(), vec![2, 2, 1]);
        let total = out.column(2).as_primitive::<Decimal128Type>();
        assert_eq!(total.values().to_vec(), vec![255, 101, 7]);
        let lo = out.column(3).as_primitive::<Decimal128Type>();
        assert_eq!(lo.values().to_vec(), vec![5, 1, 7]);
        assert_eq!(
            out.column(5).as_primitive::<Int64Type>().values().to_vec(),
            vec![2, 2, 1]
        );
        assert_eq!(fin.groups(), 0, "take_sorted empties the aggregator");
    }

    #[test]
    fn rows_as_their_own_partials_merge_to_the_same_result() {
        let keys = vec!["w".to_string()];
        let b1 = batch(&["b", "a", "b"], &[100, 250, 1]);
        let b2 = batch(&["a", "c"], &[5, 7]);
        let final_of = |parts: &[RecordBatch]| {
            let mut fin =
                HashAggregator::new(&parts[0].schema(), &keys, &aggs(), AggMode::Final).unwrap();
            for p in parts {
                fin.update(p).unwrap();
            }
            fin.take_sorted().unwrap().unwrap()
        };
        let mut grouped =
            HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
        grouped.update(&b1).unwrap();
        grouped.update(&b2).unwrap();
        let via_groups = final_of(&[grouped.take_sorted().unwrap().unwrap()]);
        // One batch grouped, the other passed through row by row: the adaptive combiner's mix.
        let mut mixed =
            HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
        mixed.update(&b1).unwrap();
        let rows = mixed.partial_state(&b2).unwrap();
        assert_eq!(rows.num_rows(), 2);
        assert_eq!(rows.schema(), mixed.output_schema());
        let via_rows = final_of(&[mixed.take_sorted().unwrap().unwrap(), rows]);
        assert_eq!(via_rows, via_groups);
    }

    #[test]
    fn sums_refuse_overflow_and_groups_without_values_are_null() {
        use arrow::array::Int64Array;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let keys = vec!["k".to_string()];
        let aggs = vec![Aggregate::sum("s", "v"), Aggregate::max("m", "v")];
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a"])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(5)])),
            ],
        )
        .unwrap();
        let mut agg = HashAggregator::new(&schema, &keys, &aggs, AggMode::Partial).unwrap();
        agg.update(&b).unwrap();
        let out = agg.take_sorted().unwrap().unwrap();
        let s = out.column(1).as_primitive::<Int64Type>();
        assert_eq!((s.value(0), s.is_null(1)), (6, true), "b saw only a null");
        let m = out.column(2).as_primitive::<Int64Type>();
        assert_eq!((m.value(0), m.is_null(1)), (5, true));
        let big = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a"])),
                Arc::new(Int64Array::from(vec![i64::MAX, 1])),
            ],
        )
        .unwrap();
        let mut agg = HashAggregator::new(&schema, &keys, &aggs, AggMode::Partial).unwrap();
        let err = agg.update(&big).unwrap_err();
        assert!(err.to_string().contains("aggregate s overflows"), "{err}");
    }

    #[test]
    fn decimal_sums_past_38_digits_are_an_error() {
        use super::acc::add_decimal38;
        let max = 10_i128.pow(38) - 1;
        assert_eq!(add_decimal38(max - 1, 1), Some(max));
        assert_eq!(add_decimal38(max, 1), None, "fits an i128, not 38 digits");
        assert_eq!(add_decimal38(-max, -1), None);
        assert_eq!(add_decimal38(i128::MAX, 1), None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Decimal128(38, 2), false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a"])),
                Arc::new(
                    arrow::array::Decimal128Array::from(vec![max, 1])
                        .with_precision_and_scale(38, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let aggs = vec![Aggregate::sum("total", "v")];
        let mut agg =
            HashAggregator::new(&schema, &["k".to_string()], &aggs, AggMode::Partial).unwrap();
        let err = agg.update(&b).unwrap_err().to_string();
        assert!(
            err.contains("total overflows") && err.contains("38 digits"),
            "{err}"
        );
    }

    #[test]
    fn missing_input_column_is_named() {
        let b = batch(&["a"], &[1]);
        let bad = vec![Aggregate::sum("x", "nope")];
        let err = HashAggregator::new(&b.schema(), &["w".into()], &bad, AggMode::Partial)
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }
}
