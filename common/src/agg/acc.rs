//! Accumulators: how each aggregate folds a batch's values into its groups' states
//! ([`super::state`]); [`super::column`] reads them back.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema};
use sluice_sdk::{AggFunc, Aggregate};

use super::AggMode;
use super::state::{Cell, Layout, Slot, States};
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

/// One aggregate: how it folds values into its groups' states, and where they are held.
pub(super) enum Acc {
    Count(Slot),
    /// A count over partial counts: adds them up. Its state is a count's, so map output
    /// rows and partials fold into one layout.
    AddCounts(Slot),
    SumI64(Slot),
    SumI128(Slot),
    SumF64(Slot),
    MinMaxI64(Slot, bool),
    MinMaxI128(Slot, bool),
    MinMaxF64(Slot, bool),
    /// A string aggregate's index beside the rows, and whether it is a min.
    MinMaxStr(usize, bool),
}

/// One batch's input to an aggregate, in the type its state folds.
pub(super) enum Input {
    /// `count(*)`: only the rows.
    Rows,
    /// The column a count counts the non-null values of.
    Any(ArrayRef),
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
}

impl Plan {
    /// Plans `agg` over batches of `schema`, its state placed by `layout`.
    pub(super) fn new(
        agg: &Aggregate,
        schema: &Schema,
        mode: AggMode,
        layout: &mut Layout,
    ) -> Result<Self> {
        // In final mode everything reads its own output column, and a count adds up its
        // partial counts.
        let (func, column) = match mode {
            AggMode::Partial => (agg.func, agg.input.as_deref()),
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
            (AggFunc::Count, _) if mode == AggMode::Final => {
                (Acc::AddCounts(layout.slot(8, false)), DataType::Int64)
            }
            (AggFunc::Count, _) => (Acc::Count(layout.slot(8, false)), DataType::Int64),
            (AggFunc::Sum, Repr::I64) => (Acc::SumI64(layout.slot(8, true)), DataType::Int64),
            (AggFunc::Sum, Repr::I128) => {
                let DataType::Decimal128(_, s) = input_type else {
                    return Err(unsupported());
                };
                let slot = layout.slot(16, true);
                (Acc::SumI128(slot), DataType::Decimal128(38, s))
            }
            (AggFunc::Sum, Repr::F64) => (Acc::SumF64(layout.slot(8, true)), DataType::Float64),
            (AggFunc::Sum, Repr::Str) => return Err(unsupported()),
            (AggFunc::Min | AggFunc::Max, Repr::I64) => (
                Acc::MinMaxI64(layout.slot(8, true), is_min),
                input_type.clone(),
            ),
            (AggFunc::Min | AggFunc::Max, Repr::I128) => (
                Acc::MinMaxI128(layout.slot(16, true), is_min),
                input_type.clone(),
            ),
            (AggFunc::Min | AggFunc::Max, Repr::F64) => (
                Acc::MinMaxF64(layout.slot(8, true), is_min),
                DataType::Float64,
            ),
            (AggFunc::Min | AggFunc::Max, Repr::Str) => {
                (Acc::MinMaxStr(layout.string(), is_min), DataType::Utf8)
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

    /// This aggregate's input in `batch`, in the type its state folds.
    pub(super) fn input_of(&self, batch: &RecordBatch) -> Result<Input> {
        let Some(col) = self.input.map(|i| batch.column(i)) else {
            return Ok(Input::Rows);
        };
        let err = |e| Error::arrow(self.output.name().to_string(), e);
        Ok(match &self.acc {
            Acc::Count(_) => Input::Any(Arc::clone(col)),
            Acc::AddCounts(_) | Acc::SumI64(_) | Acc::MinMaxI64(_, _) => Input::I64(as_i64(col)?),
            Acc::SumI128(_) | Acc::MinMaxI128(_, _) => {
                Input::I128(col.as_primitive::<Decimal128Type>().clone())
            }
            Acc::SumF64(_) | Acc::MinMaxF64(_, _) => Input::F64(
                cast(col, &DataType::Float64)
                    .map_err(err)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            Acc::MinMaxStr(_, _) => Input::Str(col.as_string::<i32>().clone()),
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
            (Acc::Count(_), None) => Arc::new(Int64Array::from_value(1, rows)),
            (Acc::Count(_), Some(c)) => Arc::new(
                (0..rows)
                    .map(|i| i64::from(c.is_valid(i)))
                    .collect::<Int64Array>(),
            ),
            (Acc::SumI64(_), Some(c)) => Arc::new(as_i64(c)?),
            (Acc::SumI128(_), Some(c)) => {
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
            (Acc::SumF64(_) | Acc::MinMaxF64(_, _), Some(c)) => {
                cast(c, &DataType::Float64).map_err(err)?
            }
            (Acc::MinMaxI64(_, _) | Acc::MinMaxI128(_, _) | Acc::MinMaxStr(_, _), Some(c)) => {
                Arc::clone(c)
            }
            (Acc::AddCounts(_), _) => {
                return Err(Error::Internal {
                    what: format!("a partial of final aggregate {}", self.output.name()),
                });
            }
            (_, None) => {
                return Err(Error::Internal {
                    what: format!("aggregate {} has no input column", self.output.name()),
                });
            }
        })
    }
}

/// Folds `v` into a row's value at `slot`; a group's first value is taken as it is.
#[inline(always)]
fn fold_one<T: Cell>(
    row: &mut [u8],
    slot: Slot,
    v: T,
    f: &impl Fn(T, T) -> Option<T>,
) -> Option<()> {
    let flag = slot.flag(T::WIDTH);
    if row[flag] != 0 {
        f(T::get(&row[slot.at..]), v)?.put(&mut row[slot.at..]);
    } else {
        v.put(&mut row[slot.at..]);
        row[flag] = 1;
    }
    Some(())
}

/// Folds rows `first..` of `a` (one per entry of `groups`) into their groups' `slot`,
/// skipping nulls.
fn fold<P>(
    states: &mut States,
    slot: Slot,
    groups: &[u32],
    a: &PrimitiveArray<P>,
    first: usize,
    f: impl Fn(P::Native, P::Native) -> Option<P::Native>,
) -> Option<()>
where
    P: ArrowPrimitiveType,
    P::Native: Cell,
{
    let values = a.values().get(first..first + groups.len())?;
    match a.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for (&g, &v) in groups.iter().zip(values) {
                fold_one(states.row_mut(g as usize), slot, v, &f)?;
            }
        }
        Some(nulls) => {
            for (i, (&g, &v)) in groups.iter().zip(values).enumerate() {
                if nulls.is_valid(first + i) {
                    fold_one(states.row_mut(g as usize), slot, v, &f)?;
                }
            }
        }
    }
    Some(())
}

impl Acc {
    /// What state the aggregate holds and where: its kind (a count, a flagged `i64`,
    /// `i128` or `f64`, a string) and the slot's offset in the row, or the string vector's
    /// index.
    pub(super) fn place(&self) -> (u8, usize) {
        match self {
            Acc::Count(s) | Acc::AddCounts(s) => (0, s.at),
            Acc::SumI64(s) | Acc::MinMaxI64(s, _) => (1, s.at),
            Acc::SumI128(s) | Acc::MinMaxI128(s, _) => (2, s.at),
            Acc::SumF64(s) | Acc::MinMaxF64(s, _) => (3, s.at),
            Acc::MinMaxStr(i, _) => (4, *i),
        }
    }

    /// Folds rows `first..first + groups.len()` of `input` into their groups (one group per
    /// row in `groups`).
    pub(super) fn update(
        &self,
        states: &mut States,
        groups: &[u32],
        input: &Input,
        first: usize,
        output: &str,
    ) -> Result<()> {
        let overflow = || Error::Overflow {
            aggregate: output.to_string(),
            detail: "",
        };
        let mismatch = || Error::Internal {
            what: format!("aggregate {output} was given an input of another type"),
        };
        match (self, input) {
            (Acc::Count(slot), Input::Rows) => {
                for &g in groups {
                    let row = states.row_mut(g as usize);
                    (i64::get(&row[slot.at..]) + 1).put(&mut row[slot.at..]);
                }
            }
            (Acc::Count(slot), Input::Any(col)) => {
                for (i, &g) in groups.iter().enumerate() {
                    let row = states.row_mut(g as usize);
                    let n = i64::get(&row[slot.at..]) + i64::from(col.is_valid(first + i));
                    n.put(&mut row[slot.at..]);
                }
            }
            (Acc::AddCounts(slot), Input::I64(a)) => {
                let values = a
                    .values()
                    .get(first..first + groups.len())
                    .ok_or_else(mismatch)?;
                for (i, (&g, &v)) in groups.iter().zip(values).enumerate() {
                    if a.is_valid(first + i) {
                        let row = states.row_mut(g as usize);
                        let n = i64::get(&row[slot.at..])
                            .checked_add(v)
                            .ok_or_else(overflow)?;
                        n.put(&mut row[slot.at..]);
                    }
                }
            }
            (Acc::SumI64(slot), Input::I64(a)) => {
                fold(states, *slot, groups, a, first, i64::checked_add).ok_or_else(overflow)?;
            }
            (Acc::SumI128(slot), Input::I128(a)) => {
                fold(states, *slot, groups, a, first, add_decimal38).ok_or_else(|| {
                    Error::Overflow {
                        aggregate: output.to_string(),
                        detail: ": the sum needs more than the 38 digits of a decimal",
                    }
                })?;
            }
            (Acc::SumF64(slot), Input::F64(a)) => {
                fold(states, *slot, groups, a, first, |x, y| Some(x + y)).ok_or_else(mismatch)?;
            }
            (Acc::MinMaxI64(slot, is_min), Input::I64(a)) => {
                let pick = if *is_min { i64::min } else { i64::max };
                fold(states, *slot, groups, a, first, |x, y| Some(pick(x, y)))
                    .ok_or_else(mismatch)?;
            }
            (Acc::MinMaxI128(slot, is_min), Input::I128(a)) => {
                let pick = if *is_min { i128::min } else { i128::max };
                fold(states, *slot, groups, a, first, |x, y| Some(pick(x, y)))
                    .ok_or_else(mismatch)?;
            }
            (Acc::MinMaxF64(slot, is_min), Input::F64(a)) => {
                let pick = if *is_min { f64::min } else { f64::max };
                fold(states, *slot, groups, a, first, |x, y| Some(pick(x, y)))
                    .ok_or_else(mismatch)?;
            }
            (Acc::MinMaxStr(s, is_min), Input::Str(a)) => {
                let values = states.strings_mut(*s);
                for (i, &g) in groups.iter().enumerate() {
                    if a.is_valid(first + i) {
                        let x = a.value(first + i);
                        let slot = &mut values[g as usize];
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
            _ => return Err(mismatch()),
        }
        Ok(())
    }
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
