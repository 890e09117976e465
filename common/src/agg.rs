//! Hash aggregation for declared aggregates, used twice per job as Spark does: map-side as a
//! combiner over the map output ([`AggMode::Partial`]) and at the reducer over the partials
//! of every map ([`AggMode::Final`]).
//!
//! Keys are encoded once per batch with arrow's row format (byte-comparable, so sorting the
//! encoded keys sorts the groups) and looked up in a `hashbrown::HashTable` of group ids;
//! the key bytes of all groups live in one arena. Accumulators are columnar vectors indexed
//! by group id, updated in one loop per aggregate per batch.
//!
//! The partial schema is the key columns followed by one column per aggregate, named by its
//! output: a count's partial is an `Int64` that the final step sums; sum, min and max merge
//! with themselves.
//!
//! The combiner is adaptive, as DataFusion's and DuckDB's partial aggregations are: when
//! grouping does not shrink its input (EOD's 10M rows hold 5.8M groups), it stops grouping
//! ([`keep_combining`]) and turns each row into a partial of its own
//! ([`HashAggregator::partial_state`]), which the final step merges like any other. Sums of integers are `Int64` (overflow is an error, never a wrap),
//! sums of `Decimal128(p, s)` are `Decimal128(38, s)`, sums of floats `Float64`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema, SchemaRef,
};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;
use sluice_sdk::{AggFunc, Aggregate};
use xxhash_rust::xxh3::xxh3_64;

use crate::{Error, Result};

/// Rows a combiner folds before it decides whether grouping pays (DataFusion's
/// `skip_partial_aggregation_probe_rows_threshold`); smaller when batches are small, see
/// [`probe_rows`].
pub const PROBE_ROWS: u64 = 100_000;
/// Groups per row at or above which grouping does not pay (DataFusion's probe ratio).
pub const SKIP_RATIO: f64 = 0.8;

/// The rows to probe for input batches of `batch_rows`: [`PROBE_ROWS`], or two batches when
/// that is less, so a job run with small batches decides as early in its input.
pub fn probe_rows(batch_rows: u64) -> u64 {
    PROBE_ROWS.min(batch_rows.saturating_mul(2)).max(1)
}

/// Whether a combiner that folded `rows` rows into `groups` groups should keep grouping;
/// `None` until it has seen `probe` rows.
pub fn keep_combining(rows: u64, groups: u64, probe: u64) -> Option<bool> {
    (rows >= probe && rows > 0).then_some((groups as f64) < SKIP_RATIO * rows as f64)
}

/// Which side of the shuffle an aggregator runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggMode {
    /// Over the map output: reads the aggregates' input columns.
    Partial,
    /// Over partials: reads the columns named by each aggregate's output.
    Final,
}

/// How values of an aggregate are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    /// Integers, dates and timestamps, widened to `i64`.
    I64,
    /// `Decimal128` unscaled values.
    I128,
    F64,
    Str,
}

fn repr_of(t: &DataType) -> Option<Repr> {
    Some(match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(_, _) => Repr::I64,
        DataType::Decimal128(_, _) => Repr::I128,
        DataType::Float32 | DataType::Float64 => Repr::F64,
        DataType::Utf8 => Repr::Str,
        _ => return None,
    })
}

/// One aggregate's running state, one slot per group.
enum Acc {
    Count(Vec<i64>),
    SumI64(Vec<Option<i64>>),
    SumI128(Vec<Option<i128>>),
    SumF64(Vec<Option<f64>>),
    MinMaxI64(Vec<Option<i64>>, bool),
    MinMaxI128(Vec<Option<i128>>, bool),
    MinMaxF64(Vec<Option<f64>>, bool),
    MinMaxStr(Vec<Option<Box<str>>>, bool),
}

/// One planned aggregate: what it reads and how it accumulates.
struct Plan {
    /// Column index in the input, `None` for `count(*)` in partial mode.
    input: Option<usize>,
    /// Type of the input column.
    input_type: DataType,
    /// Type of the output column.
    output: Field,
    acc: Acc,
}

impl Plan {
    fn new(agg: &Aggregate, schema: &Schema, mode: AggMode) -> Result<Self> {
        // In final mode a count's partial is summed; everything reads its own output column.
        let (func, column) = match mode {
            AggMode::Partial => (agg.func, agg.input.as_deref()),
            AggMode::Final if agg.func == AggFunc::Count => {
                (AggFunc::Sum, Some(agg.output.as_str()))
            }
            AggMode::Final => (agg.func, Some(agg.output.as_str())),
        };
        let input = match column {
            None => None,
            Some(name) => Some(schema.index_of(name).map_err(|_| {
                Error::Invalid(format!(
                    "aggregate {} reads column {name:?}, which the map output lacks (columns: {:?})",
                    agg.output,
                    schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                ))
            })?),
        };
        let input_type = input.map_or(DataType::Null, |i| schema.field(i).data_type().clone());
        let unsupported = || {
            Error::Invalid(format!(
                "aggregate {} = {}({}) does not support type {input_type}",
                agg.output,
                agg.func,
                column.unwrap_or("*")
            ))
        };
        let repr = if input.is_some() {
            repr_of(&input_type).ok_or_else(unsupported)?
        } else {
            Repr::I64
        };
        let is_min = func == AggFunc::Min;
        let (acc, out_type) = match (func, repr) {
            (AggFunc::Count, _) => (Acc::Count(Vec::new()), DataType::Int64),
            (AggFunc::Sum, Repr::I64) => (Acc::SumI64(Vec::new()), DataType::Int64),
            (AggFunc::Sum, Repr::I128) => {
                let DataType::Decimal128(_, s) = input_type else {
                    return Err(unsupported());
                };
                (Acc::SumI128(Vec::new()), DataType::Decimal128(38, s))
            }
            (AggFunc::Sum, Repr::F64) => (Acc::SumF64(Vec::new()), DataType::Float64),
            (AggFunc::Sum, Repr::Str) => return Err(unsupported()),
            (AggFunc::Min | AggFunc::Max, Repr::I64) => {
                (Acc::MinMaxI64(Vec::new(), is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::I128) => {
                (Acc::MinMaxI128(Vec::new(), is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::F64) => {
                (Acc::MinMaxF64(Vec::new(), is_min), DataType::Float64)
            }
            (AggFunc::Min | AggFunc::Max, Repr::Str) => {
                (Acc::MinMaxStr(Vec::new(), is_min), DataType::Utf8)
            }
        };
        let nullable = !matches!(acc, Acc::Count(_));
        Ok(Plan {
            input,
            input_type,
            output: Field::new(&agg.output, out_type, nullable),
            acc,
        })
    }
}

impl Plan {
    /// Each row of `batch` as a partial of its own (partial mode only): a count of 1 (or of
    /// 0 for a null, when counting a column), the value itself for sum, min and max, in the
    /// partial column's type.
    fn partial_of(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let rows = batch.num_rows();
        let col = self.input.map(|i| batch.column(i));
        let err = |e| Error::arrow(format!("partial of {}", self.output.name()), e);
        Ok(match (&self.acc, col) {
            (Acc::Count(_), None) => Arc::new(Int64Array::from_value(1, rows)),
            (Acc::Count(_), Some(c)) => Arc::new(
                (0..rows)
                    .map(|i| i64::from(c.is_valid(i)))
                    .collect::<Int64Array>(),
            ),
            (Acc::SumI64(_), Some(c)) => Arc::new(as_i64(c)?),
            (Acc::SumI128(_), Some(c)) => {
                let DataType::Decimal128(p, s) = self.output.data_type() else {
                    return Err(Error::Invalid("decimal sum of another type".into()));
                };
                // Widening the precision keeps every unscaled value: no copy.
                Arc::new(
                    c.as_primitive::<Decimal128Type>()
                        .clone()
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            (Acc::SumF64(_) | Acc::MinMaxF64(_, _), Some(c)) => {
                cast(c, &DataType::Float64).map_err(err)?
            }
            (Acc::MinMaxI64(_, _) | Acc::MinMaxI128(_, _) | Acc::MinMaxStr(_, _), Some(c)) => {
                Arc::clone(c)
            }
            (_, None) => {
                return Err(Error::Invalid(format!(
                    "aggregate {} has no input column",
                    self.output.name()
                )));
            }
        })
    }
}

fn fold<T: Copy>(slot: &mut Option<T>, v: T, f: impl Fn(T, T) -> T) {
    *slot = Some(match *slot {
        None => v,
        Some(old) => f(old, v),
    });
}

impl Acc {
    fn push_group(&mut self) {
        match self {
            Acc::Count(v) => v.push(0),
            Acc::SumI64(v) | Acc::MinMaxI64(v, _) => v.push(None),
            Acc::SumI128(v) | Acc::MinMaxI128(v, _) => v.push(None),
            Acc::SumF64(v) | Acc::MinMaxF64(v, _) => v.push(None),
            Acc::MinMaxStr(v, _) => v.push(None),
        }
    }

    fn bytes_per_group(&self) -> usize {
        match self {
            Acc::Count(_) => 8,
            Acc::SumI64(_) | Acc::MinMaxI64(_, _) | Acc::SumF64(_) | Acc::MinMaxF64(_, _) => 16,
            Acc::SumI128(_) | Acc::MinMaxI128(_, _) => 32,
            Acc::MinMaxStr(_, _) => 40,
        }
    }

    /// Folds `column` (or, for `count(*)`, just the rows) into the groups in `groups`.
    fn update(&mut self, groups: &[u32], column: Option<&ArrayRef>, output: &str) -> Result<()> {
        let Some(col) = column else {
            if let Acc::Count(v) = self {
                for &g in groups {
                    v[g as usize] += 1;
                }
            }
            return Ok(());
        };
        let overflow = || Error::Invalid(format!("aggregate {output} overflows"));
        match self {
            Acc::Count(v) => {
                for (i, &g) in groups.iter().enumerate() {
                    v[g as usize] += i64::from(col.is_valid(i));
                }
            }
            Acc::SumI64(v) => {
                let a = as_i64(col)?;
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        let slot = &mut v[g as usize];
                        *slot = Some(
                            slot.unwrap_or(0)
                                .checked_add(a.value(i))
                                .ok_or_else(overflow)?,
                        );
                    }
                }
            }
            Acc::SumI128(v) => {
                let a = col.as_primitive::<Decimal128Type>();
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        let slot = &mut v[g as usize];
                        *slot = Some(
                            slot.unwrap_or(0)
                                .checked_add(a.value(i))
                                .ok_or_else(overflow)?,
                        );
                    }
                }
            }
            Acc::SumF64(v) => {
                let a = cast(col, &DataType::Float64)
                    .map_err(|e| Error::arrow(output.to_string(), e))?;
                let a = a.as_primitive::<Float64Type>();
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        fold(&mut v[g as usize], a.value(i), |x, y| x + y);
                    }
                }
            }
            Acc::MinMaxI64(v, is_min) => {
                let a = as_i64(col)?;
                let pick = if *is_min { i64::min } else { i64::max };
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        fold(&mut v[g as usize], a.value(i), pick);
                    }
                }
            }
            Acc::MinMaxI128(v, is_min) => {
                let a = col.as_primitive::<Decimal128Type>();
                let pick = if *is_min { i128::min } else { i128::max };
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        fold(&mut v[g as usize], a.value(i), pick);
                    }
                }
            }
            Acc::MinMaxF64(v, is_min) => {
                let a = cast(col, &DataType::Float64)
                    .map_err(|e| Error::arrow(output.to_string(), e))?;
                let a = a.as_primitive::<Float64Type>();
                let pick = if *is_min { f64::min } else { f64::max };
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        fold(&mut v[g as usize], a.value(i), pick);
                    }
                }
            }
            Acc::MinMaxStr(v, is_min) => {
                let a = col.as_string::<i32>();
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(i) {
                        let x = a.value(i);
                        let slot = &mut v[g as usize];
                        let replace = match slot {
                            None => true,
                            Some(old) => (x < &**old) == *is_min && x != &**old,
                        };
                        if replace {
                            *slot = Some(x.into());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The accumulated values, in group order, as an array of `out_type`.
    fn finish(self, out_type: &DataType, input_type: &DataType) -> Result<ArrayRef> {
        let err = |e| Error::arrow("finishing an aggregate", e);
        Ok(match self {
            Acc::Count(v) => Arc::new(Int64Array::from(v)),
            Acc::SumI64(v) => Arc::new(Int64Array::from(v)),
            Acc::SumF64(v) | Acc::MinMaxF64(v, _) => Arc::new(Float64Array::from(v)),
            Acc::SumI128(v) | Acc::MinMaxI128(v, _) => {
                let DataType::Decimal128(p, s) = out_type else {
                    return Err(Error::Invalid(format!(
                        "decimal aggregate typed {out_type}"
                    )));
                };
                Arc::new(
                    Decimal128Array::from(v)
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            Acc::MinMaxI64(v, _) => {
                let wide: ArrayRef = Arc::new(Int64Array::from(v));
                from_i64(&wide, input_type)?
            }
            Acc::MinMaxStr(v, _) => {
                Arc::new(v.iter().map(|s| s.as_deref()).collect::<StringArray>())
            }
        })
    }
}

/// Integers, dates and timestamps as `Int64`.
fn as_i64(col: &ArrayRef) -> Result<Int64Array> {
    let err = |e| Error::arrow("widening to Int64", e);
    let wide = match col.data_type() {
        DataType::Int64 => col.clone(),
        DataType::Date32 => {
            cast(&cast(col, &DataType::Int32).map_err(err)?, &DataType::Int64).map_err(err)?
        }
        _ => cast(col, &DataType::Int64).map_err(err)?,
    };
    Ok(wide.as_primitive::<Int64Type>().clone())
}

/// Back from `Int64` to an integer, date or timestamp type.
fn from_i64(wide: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let err = |e| Error::arrow("narrowing from Int64", e);
    match target {
        DataType::Int64 => Ok(wide.clone()),
        DataType::Date32 => cast(&cast(wide, &DataType::Int32).map_err(err)?, target).map_err(err),
        _ => cast(wide, target).map_err(err),
    }
}

/// Groups rows by key and folds declared aggregates over each group.
pub struct HashAggregator {
    key_indices: Vec<usize>,
    converter: RowConverter,
    table: HashTable<u32>,
    hashes: Vec<u64>,
    key_bytes: Vec<u8>,
    key_offsets: Vec<usize>,
    plans: Vec<Plan>,
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
                input.index_of(k).map_err(|_| {
                    Error::Invalid(format!(
                        "key column {k:?} is not in the map output {input:?}"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let key_fields: Vec<Field> = key_indices
            .iter()
            .map(|&i| input.field(i).clone())
            .collect();
        let converter = RowConverter::new(
            key_fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| Error::arrow("key columns", e))?;
        let plans = aggregates
            .iter()
            .map(|a| Plan::new(a, input, mode))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = key_fields
            .into_iter()
            .chain(plans.iter().map(|p| p.output.clone()))
            .collect();
        Ok(HashAggregator {
            key_indices,
            converter,
            table: HashTable::new(),
            hashes: Vec::new(),
            key_bytes: Vec::new(),
            key_offsets: vec![0],
            plans,
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
        let per_group: usize = 8
            + 8
            + 4
            + self
                .plans
                .iter()
                .map(|p| p.acc.bytes_per_group())
                .sum::<usize>();
        self.key_bytes.capacity() + self.groups() * per_group + self.table.capacity() * 8
    }

    /// Each row of `batch` as a partial of its own, in the schema of
    /// [`HashAggregator::output_schema`], without grouping: what an adaptive combiner sends
    /// once grouping stopped paying. Partial mode only.
    pub fn partial_state(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.mode != AggMode::Partial {
            return Err(Error::Invalid(
                "partial_state of an aggregator over partials".into(),
            ));
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
                return Err(Error::Invalid(format!(
                    "column {} is {} in one batch and {} in another: every map output must have one schema",
                    want.name(),
                    want.data_type(),
                    got.map_or("missing".to_string(), |g| format!(
                        "{} {}",
                        g.name(),
                        g.data_type()
                    ))
                )));
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
        let rows = self
            .converter
            .convert_columns(&keys)
            .map_err(|e| Error::arrow("encoding keys", e))?;
        let mut group_ids = Vec::with_capacity(batch.num_rows());
        for row in rows.iter() {
            let bytes = row.as_ref();
            let hash = xxh3_64(bytes);
            let (key_bytes, key_offsets, hashes) =
                (&self.key_bytes, &self.key_offsets, &self.hashes);
            let found = self.table.find(hash, |&g| {
                let g = g as usize;
                &key_bytes[key_offsets[g]..key_offsets[g + 1]] == bytes
            });
            let group = match found {
                Some(&g) => g,
                None => {
                    let g = hashes.len() as u32;
                    self.key_bytes.extend_from_slice(bytes);
                    self.key_offsets.push(self.key_bytes.len());
                    self.hashes.push(hash);
                    let hashes = &self.hashes;
                    self.table.insert_unique(hash, g, |&g| hashes[g as usize]);
                    for p in &mut self.plans {
                        p.acc.push_group();
                    }
                    g
                }
            };
            group_ids.push(group);
        }
        for p in &mut self.plans {
            let col = p.input.map(|i| batch.column(i));
            p.acc.update(&group_ids, col, p.output.name())?;
        }
        Ok(())
    }

    /// The groups so far as one batch sorted by key, leaving the aggregator empty.
    pub fn take_sorted(&mut self) -> Result<Option<RecordBatch>> {
        if self.groups() == 0 {
            return Ok(None);
        }
        let key = |g: u32| {
            &self.key_bytes[self.key_offsets[g as usize]..self.key_offsets[g as usize + 1]]
        };
        let mut order: Vec<u32> = (0..self.groups() as u32).collect();
        order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
        let parser = self.converter.parser();
        let mut columns = self
            .converter
            .convert_rows(order.iter().map(|&g| parser.parse(key(g))))
            .map_err(|e| Error::arrow("decoding keys", e))?;
        let order = UInt32Array::from(order);
        for plan in &mut self.plans {
            let acc = std::mem::replace(&mut plan.acc, Acc::Count(Vec::new()));
            let fresh = match &acc {
                Acc::Count(_) => Acc::Count(Vec::new()),
                Acc::SumI64(_) => Acc::SumI64(Vec::new()),
                Acc::SumI128(_) => Acc::SumI128(Vec::new()),
                Acc::SumF64(_) => Acc::SumF64(Vec::new()),
                Acc::MinMaxI64(_, m) => Acc::MinMaxI64(Vec::new(), *m),
                Acc::MinMaxI128(_, m) => Acc::MinMaxI128(Vec::new(), *m),
                Acc::MinMaxF64(_, m) => Acc::MinMaxF64(Vec::new(), *m),
                Acc::MinMaxStr(_, m) => Acc::MinMaxStr(Vec::new(), *m),
            };
            let values = acc.finish(plan.output.data_type(), &plan.input_type)?;
            plan.acc = fresh;
            columns
                .push(take(&values, &order, None).map_err(|e| Error::arrow("ordering groups", e))?);
        }
        self.table.clear();
        self.hashes.clear();
        self.key_bytes.clear();
        self.key_offsets.truncate(1);
        let batch = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("building aggregate output", e))?;
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;

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
    fn grouping_stops_when_it_does_not_shrink_the_input() {
        assert_eq!(
            keep_combining(99_999, 10, PROBE_ROWS),
            None,
            "still probing"
        );
        assert_eq!(keep_combining(100_000, 10_000, PROBE_ROWS), Some(true));
        assert_eq!(keep_combining(100_000, 80_000, PROBE_ROWS), Some(false));
        assert_eq!(probe_rows(65_536), PROBE_ROWS);
        assert_eq!(probe_rows(100), 200, "two small batches");
        assert_eq!(keep_combining(0, 0, probe_rows(0)), None);
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
