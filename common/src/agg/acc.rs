//! Accumulators: one aggregate's running state per group, kept in the groups' state rows
//! ([`super::states`]) and updated column-wise.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema};
use sluice_sdk::{AggFunc, Aggregate};

use super::AggMode;
use super::states::{Place, Slot, States, layout};
use crate::{Error, Result};

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

/// Whether values of `t` are integers that fit an `i64` once widened by [`as_i64`]:
/// integers up to 32 bits unsigned and 64 signed, dates and timestamps.
pub(super) fn widens_to_i64(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
    )
}

fn repr_of(t: &DataType) -> Option<Repr> {
    Some(match t {
        t if widens_to_i64(t) => Repr::I64,
        DataType::Decimal128(_, _) => Repr::I128,
        DataType::Float32 | DataType::Float64 => Repr::F64,
        DataType::Utf8 => Repr::Str,
        _ => return None,
    })
}

/// One aggregate's running state: in the groups' state rows ([`States`]), at the plan's
/// [`Place`], except string minimums and maximums, kept in a vector of their own.
pub(super) enum Acc {
    Count,
    SumI64,
    SumI128,
    SumF64,
    MinMaxI64(bool),
    MinMaxI128(bool),
    MinMaxF64(bool),
    MinMaxStr(Vec<Option<Box<str>>>, bool),
}

/// One aggregate's input column of a batch, converted once to the type its state folds.
pub(super) enum Input {
    /// `count(*)`: no column.
    Rows,
    /// A counted column: only its nulls matter.
    Counted(ArrayRef),
    I64(Int64Array),
    I128(Decimal128Array),
    F64(Float64Array),
    Str(StringArray),
}

/// One planned aggregate: what it reads and how it accumulates.
pub(super) struct Plan {
    /// Column index in the input, `None` for `count(*)` in partial mode.
    pub(super) input: Option<usize>,
    /// Type of the input column.
    pub(super) input_type: DataType,
    /// Type of the output column.
    pub(super) output: Field,
    pub(super) acc: Acc,
    /// Where its state sits in a group's row (set by [`place_plans`]).
    pub(super) place: Place,
}

/// Gives each plan its place in the groups' state rows; returns the rows' width in words.
pub(super) fn place_plans(plans: &mut [Plan]) -> usize {
    let words: Vec<usize> = plans.iter().map(|p| p.acc.words()).collect();
    let (places, stride) = layout(&words);
    for (plan, place) in plans.iter_mut().zip(places) {
        plan.place = place;
    }
    stride
}

impl Plan {
    pub(super) fn new(agg: &Aggregate, schema: &Schema, mode: AggMode) -> Result<Self> {
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
            Some(name) => Some(schema.index_of(name).map_err(|_| Error::Mismatch {
                subject: format!("aggregate {}", agg.output),
                reason: format!(
                    "reads column {name:?}, which the map output lacks (columns: {:?})",
                    schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                ),
            })?),
        };
        let input_type = input.map_or(DataType::Null, |i| schema.field(i).data_type().clone());
        let unsupported = || Error::Unsupported {
            what: format!(
                "aggregate {} = {}({})",
                agg.output,
                agg.func,
                column.unwrap_or("*")
            ),
            reason: format!("its input is of type {input_type}"),
        };
        let repr = if input.is_some() {
            repr_of(&input_type).ok_or_else(unsupported)?
        } else {
            Repr::I64
        };
        let is_min = func == AggFunc::Min;
        let (acc, out_type) = match (func, repr) {
            (AggFunc::Count, _) => (Acc::Count, DataType::Int64),
            (AggFunc::Sum, Repr::I64) => (Acc::SumI64, DataType::Int64),
            (AggFunc::Sum, Repr::I128) => {
                let DataType::Decimal128(_, s) = input_type else {
                    return Err(unsupported());
                };
                (Acc::SumI128, DataType::Decimal128(38, s))
            }
            (AggFunc::Sum, Repr::F64) => (Acc::SumF64, DataType::Float64),
            (AggFunc::Sum, Repr::Str) => return Err(unsupported()),
            (AggFunc::Min | AggFunc::Max, Repr::I64) => {
                (Acc::MinMaxI64(is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::I128) => {
                (Acc::MinMaxI128(is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::F64) => (Acc::MinMaxF64(is_min), DataType::Float64),
            (AggFunc::Min | AggFunc::Max, Repr::Str) => {
                (Acc::MinMaxStr(Vec::new(), is_min), DataType::Utf8)
            }
        };
        let nullable = !matches!(acc, Acc::Count);
        Ok(Plan {
            input,
            input_type,
            output: Field::new(&agg.output, out_type, nullable),
            acc,
            place: Place::default(),
        })
    }
}

impl Plan {
    /// Each row of `batch` as a partial of its own (partial mode only): a count of 1 (or of
    /// 0 for a null, when counting a column), the value itself for sum, min and max, in the
    /// partial column's type.
    pub(super) fn partial_of(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let rows = batch.num_rows();
        let col = self.input.map(|i| batch.column(i));
        let err = |e| Error::arrow(format!("partial of {}", self.output.name()), e);
        Ok(match (&self.acc, col) {
            (Acc::Count, None) => Arc::new(Int64Array::from_value(1, rows)),
            (Acc::Count, Some(c)) => Arc::new(
                (0..rows)
                    .map(|i| i64::from(c.is_valid(i)))
                    .collect::<Int64Array>(),
            ),
            (Acc::SumI64, Some(c)) => Arc::new(as_i64(c)?),
            (Acc::SumI128, Some(c)) => {
                let DataType::Decimal128(p, s) = self.output.data_type() else {
                    return Err(Error::Internal {
                        what: "a decimal sum of another type".into(),
                    });
                };
                // Widening the precision keeps every unscaled value: no copy.
                Arc::new(
                    c.as_primitive::<Decimal128Type>()
                        .clone()
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            (Acc::SumF64 | Acc::MinMaxF64(_), Some(c)) => {
                cast(c, &DataType::Float64).map_err(err)?
            }
            (Acc::MinMaxI64(_) | Acc::MinMaxI128(_) | Acc::MinMaxStr(_, _), Some(c)) => {
                Arc::clone(c)
            }
            (_, None) => {
                return Err(Error::Internal {
                    what: format!("aggregate {} has no input column", self.output.name()),
                });
            }
        })
    }
}

impl Plan {
    /// This aggregate's input column of `batch`, converted once for every fold of it.
    pub(super) fn input_of(&self, batch: &RecordBatch) -> Result<Input> {
        let Some(col) = self.input.map(|i| batch.column(i)) else {
            return Ok(Input::Rows);
        };
        let err = |e| Error::arrow(self.output.name().to_string(), e);
        Ok(match &self.acc {
            Acc::Count => Input::Counted(Arc::clone(col)),
            Acc::SumI64 | Acc::MinMaxI64(_) => Input::I64(as_i64(col)?),
            Acc::SumI128 | Acc::MinMaxI128(_) => {
                Input::I128(col.as_primitive::<Decimal128Type>().clone())
            }
            Acc::SumF64 | Acc::MinMaxF64(_) => Input::F64(
                cast(col, &DataType::Float64)
                    .map_err(err)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            Acc::MinMaxStr(_, _) => Input::Str(col.as_string::<i32>().clone()),
        })
    }

    /// Folds rows `rows` of `input` into the groups `groups` (one per row).
    pub(super) fn fold(
        &mut self,
        states: &mut States,
        input: &Input,
        rows: Range<usize>,
        groups: &[u32],
    ) -> Result<()> {
        let place = self.place;
        let output = self.output.name();
        let overflow = |detail| Error::Overflow {
            aggregate: output.to_string(),
            detail,
        };
        let at = rows.start;
        match (&mut self.acc, input) {
            (Acc::Count, Input::Rows) => states.add_counts(place, groups, |_| 1),
            (Acc::Count, Input::Counted(c)) => {
                states.add_counts(place, groups, |i| i64::from(c.is_valid(at + i)))
            }
            (Acc::SumI64, Input::I64(a)) => states
                .fold(
                    place,
                    groups,
                    &a.values()[rows],
                    nulls(a, at),
                    i64::checked_add,
                )
                .ok_or_else(|| overflow(""))?,
            (Acc::SumI128, Input::I128(a)) => states
                .fold(
                    place,
                    groups,
                    &a.values()[rows],
                    nulls(a, at),
                    add_decimal38,
                )
                .ok_or_else(|| overflow(": the sum needs more than the 38 digits of a decimal"))?,
            (Acc::SumF64, Input::F64(a)) => {
                let values = &a.values()[rows];
                states.fold(place, groups, values, nulls(a, at), |x, y| Some(x + y));
            }
            (Acc::MinMaxI64(is_min), Input::I64(a)) => {
                let pick = if *is_min { i64::min } else { i64::max };
                let values = &a.values()[rows];
                states.fold(place, groups, values, nulls(a, at), |x, y| Some(pick(x, y)));
            }
            (Acc::MinMaxI128(is_min), Input::I128(a)) => {
                let pick = if *is_min { i128::min } else { i128::max };
                let values = &a.values()[rows];
                states.fold(place, groups, values, nulls(a, at), |x, y| Some(pick(x, y)));
            }
            (Acc::MinMaxF64(is_min), Input::F64(a)) => {
                let pick = if *is_min { f64::min } else { f64::max };
                let values = &a.values()[rows];
                states.fold(place, groups, values, nulls(a, at), |x, y| Some(pick(x, y)));
            }
            (Acc::MinMaxStr(v, is_min), Input::Str(a)) => {
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(at + i) {
                        let x = a.value(at + i);
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
            _ => {
                return Err(Error::Internal {
                    what: format!("aggregate {output} was given an input of another type"),
                });
            }
        }
        Ok(())
    }

    /// The values of the groups in `order`, as an array of the output's type; forgets the
    /// groups kept outside `states`.
    pub(super) fn finish(&mut self, states: &States, order: &[u32]) -> Result<ArrayRef> {
        let err = |e| Error::arrow("finishing an aggregate", e);
        let place = self.place;
        Ok(match &mut self.acc {
            Acc::Count => Arc::new(Int64Array::from(states.counts(place, order))),
            Acc::SumI64 => {
                let (values, nulls) = states.column::<i64>(place, order);
                Arc::new(Int64Array::new(values.into(), nulls))
            }
            Acc::SumF64 | Acc::MinMaxF64(_) => {
                let (values, nulls) = states.column::<f64>(place, order);
                Arc::new(Float64Array::new(values.into(), nulls))
            }
            Acc::SumI128 | Acc::MinMaxI128(_) => {
                let DataType::Decimal128(p, s) = self.output.data_type() else {
                    return Err(Error::Internal {
                        what: format!("a decimal aggregate typed {}", self.output.data_type()),
                    });
                };
                let (values, nulls) = states.column::<i128>(place, order);
                Arc::new(
                    Decimal128Array::new(values.into(), nulls)
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            Acc::MinMaxI64(_) => {
                let (values, nulls) = states.column::<i64>(place, order);
                let wide: ArrayRef = Arc::new(Int64Array::new(values.into(), nulls));
                from_i64(&wide, &self.input_type)?
            }
            Acc::MinMaxStr(v, _) => {
                let out: StringArray = order.iter().map(|&g| v[g as usize].as_deref()).collect();
                v.clear();
                Arc::new(out)
            }
        })
    }
}

impl Acc {
    /// Words its state takes in a group's row.
    fn words(&self) -> usize {
        match self {
            Acc::Count | Acc::SumI64 | Acc::MinMaxI64(_) => i64::WORDS,
            Acc::SumF64 | Acc::MinMaxF64(_) => f64::WORDS,
            Acc::SumI128 | Acc::MinMaxI128(_) => i128::WORDS,
            Acc::MinMaxStr(_, _) => 0,
        }
    }

    /// A new group, for the state kept outside the rows.
    pub(super) fn push_group(&mut self) {
        if let Acc::MinMaxStr(v, _) = self {
            v.push(None);
        }
    }

    /// Bytes per group held outside the rows.
    pub(super) fn bytes_per_group(&self) -> usize {
        match self {
            Acc::MinMaxStr(_, _) => 40,
            _ => 0,
        }
    }
}

/// The nulls of `a` from row `at` on, when it has any.
fn nulls<P: ArrowPrimitiveType>(a: &PrimitiveArray<P>, at: usize) -> Option<(&NullBuffer, usize)> {
    a.nulls().filter(|n| n.null_count() > 0).map(|n| (n, at))
}

/// The largest unscaled value of a 38-digit decimal.
const DECIMAL38_MAX: i128 = 10_i128.pow(38) - 1;

/// `x + y` when the sum still fits in 38 decimal digits (an `i128` holds a few more, which a
/// `Decimal128(38, s)` column must not).
pub(super) fn add_decimal38(x: i128, y: i128) -> Option<i128> {
    x.checked_add(y)
        .filter(|v| (-DECIMAL38_MAX..=DECIMAL38_MAX).contains(v))
}

/// Integers, dates and timestamps as `Int64`.
pub(super) fn as_i64(col: &ArrayRef) -> Result<Int64Array> {
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
pub(super) fn from_i64(wide: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let err = |e| Error::arrow("narrowing from Int64", e);
    match target {
        DataType::Int64 => Ok(wide.clone()),
        DataType::Date32 => cast(&cast(wide, &DataType::Int32).map_err(err)?, target).map_err(err),
        _ => cast(wide, target).map_err(err),
    }
}
