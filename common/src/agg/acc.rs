//! Accumulators: one aggregate's running state, a slot per group, updated column-wise.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::ArrowNativeType;
use arrow::datatypes::{DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema};
use sluice_sdk::{AggFunc, Aggregate};

use super::AggMode;
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

/// One value per group, and whether the group has one yet (an aggregate over no non-null
/// value is null). Values and flags in separate vectors: an `Option<i128>` takes 32 bytes,
/// these 17, and the update loops touch only what they need.
pub(super) struct Slots<T> {
    values: Vec<T>,
    set: Vec<bool>,
}

impl<T: ArrowNativeType> Slots<T> {
    fn new() -> Self {
        Slots {
            values: Vec::new(),
            set: Vec::new(),
        }
    }

    fn push(&mut self) {
        self.values.push(T::default());
        self.set.push(false);
    }

    /// Folds `v` into group `g` with `f`; the group's first value is taken as it is.
    #[inline]
    fn fold(&mut self, g: usize, v: T, f: impl Fn(T, T) -> Option<T>) -> Option<()> {
        if self.set[g] {
            self.values[g] = f(self.values[g], v)?;
        } else {
            self.values[g] = v;
            self.set[g] = true;
        }
        Some(())
    }

    /// Folds the non-null values of `a` into `groups` (one group per row).
    fn fold_column<P>(
        &mut self,
        a: &PrimitiveArray<P>,
        groups: &[u32],
        f: impl Fn(T, T) -> Option<T>,
    ) -> Option<()>
    where
        P: ArrowPrimitiveType<Native = T>,
    {
        if a.null_count() == 0 {
            for (&g, &v) in groups.iter().zip(a.values().iter()) {
                self.fold(g as usize, v, &f)?;
            }
        } else {
            for (i, &g) in groups.iter().enumerate() {
                if a.is_valid(i) {
                    self.fold(g as usize, a.value(i), &f)?;
                }
            }
        }
        Some(())
    }

    /// The values and, unless every group has one, which are null.
    fn into_parts(self) -> (ScalarBuffer<T>, Option<NullBuffer>) {
        let nulls = (!self.set.iter().all(|s| *s)).then(|| NullBuffer::from(self.set));
        (ScalarBuffer::from(self.values), nulls)
    }
}

/// One aggregate's running state, one slot per group.
pub(super) enum Acc {
    Count(Vec<i64>),
    SumI64(Slots<i64>),
    SumI128(Slots<i128>),
    SumF64(Slots<f64>),
    MinMaxI64(Slots<i64>, bool),
    MinMaxI128(Slots<i128>, bool),
    MinMaxF64(Slots<f64>, bool),
    MinMaxStr(Vec<Option<Box<str>>>, bool),
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
            (AggFunc::Count, _) => (Acc::Count(Vec::new()), DataType::Int64),
            (AggFunc::Sum, Repr::I64) => (Acc::SumI64(Slots::new()), DataType::Int64),
            (AggFunc::Sum, Repr::I128) => {
                let DataType::Decimal128(_, s) = input_type else {
                    return Err(unsupported());
                };
                (Acc::SumI128(Slots::new()), DataType::Decimal128(38, s))
            }
            (AggFunc::Sum, Repr::F64) => (Acc::SumF64(Slots::new()), DataType::Float64),
            (AggFunc::Sum, Repr::Str) => return Err(unsupported()),
            (AggFunc::Min | AggFunc::Max, Repr::I64) => {
                (Acc::MinMaxI64(Slots::new(), is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::I128) => {
                (Acc::MinMaxI128(Slots::new(), is_min), input_type.clone())
            }
            (AggFunc::Min | AggFunc::Max, Repr::F64) => {
                (Acc::MinMaxF64(Slots::new(), is_min), DataType::Float64)
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
            (_, None) => {
                return Err(Error::Internal {
                    what: format!("aggregate {} has no input column", self.output.name()),
                });
            }
        })
    }
}

impl Acc {
    pub(super) fn push_group(&mut self) {
        match self {
            Acc::Count(v) => v.push(0),
            Acc::SumI64(v) | Acc::MinMaxI64(v, _) => v.push(),
            Acc::SumI128(v) | Acc::MinMaxI128(v, _) => v.push(),
            Acc::SumF64(v) | Acc::MinMaxF64(v, _) => v.push(),
            Acc::MinMaxStr(v, _) => v.push(None),
        }
    }

    /// The same accumulator with no groups.
    pub(super) fn emptied(&self) -> Acc {
        match self {
            Acc::Count(_) => Acc::Count(Vec::new()),
            Acc::SumI64(_) => Acc::SumI64(Slots::new()),
            Acc::SumI128(_) => Acc::SumI128(Slots::new()),
            Acc::SumF64(_) => Acc::SumF64(Slots::new()),
            Acc::MinMaxI64(_, m) => Acc::MinMaxI64(Slots::new(), *m),
            Acc::MinMaxI128(_, m) => Acc::MinMaxI128(Slots::new(), *m),
            Acc::MinMaxF64(_, m) => Acc::MinMaxF64(Slots::new(), *m),
            Acc::MinMaxStr(_, m) => Acc::MinMaxStr(Vec::new(), *m),
        }
    }

    pub(super) fn bytes_per_group(&self) -> usize {
        match self {
            Acc::Count(_) => 8,
            Acc::SumI64(_) | Acc::MinMaxI64(_, _) | Acc::SumF64(_) | Acc::MinMaxF64(_, _) => 9,
            Acc::SumI128(_) | Acc::MinMaxI128(_, _) => 17,
            Acc::MinMaxStr(_, _) => 40,
        }
    }

    /// Folds `column` (or, for `count(*)`, just the rows) into the groups in `groups`.
    pub(super) fn update(
        &mut self,
        groups: &[u32],
        column: Option<&ArrayRef>,
        output: &str,
    ) -> Result<()> {
        let Some(col) = column else {
            if let Acc::Count(v) = self {
                for &g in groups {
                    v[g as usize] += 1;
                }
            }
            return Ok(());
        };
        let overflow = || Error::Overflow {
            aggregate: output.to_string(),
            detail: "",
        };
        match self {
            Acc::Count(v) => {
                for (i, &g) in groups.iter().enumerate() {
                    v[g as usize] += i64::from(col.is_valid(i));
                }
            }
            Acc::SumI64(v) => {
                let a = as_i64(col)?;
                v.fold_column(&a, groups, i64::checked_add)
                    .ok_or_else(overflow)?;
            }
            Acc::SumI128(v) => {
                let a = col.as_primitive::<Decimal128Type>();
                v.fold_column(a, groups, add_decimal38)
                    .ok_or_else(|| Error::Overflow {
                        aggregate: output.to_string(),
                        detail: ": the sum needs more than the 38 digits of a decimal",
                    })?;
            }
            Acc::SumF64(v) => {
                let a = cast(col, &DataType::Float64)
                    .map_err(|e| Error::arrow(output.to_string(), e))?;
                v.fold_column(a.as_primitive::<Float64Type>(), groups, |x, y| Some(x + y));
            }
            Acc::MinMaxI64(v, is_min) => {
                let a = as_i64(col)?;
                let pick = if *is_min { i64::min } else { i64::max };
                v.fold_column(&a, groups, |x, y| Some(pick(x, y)));
            }
            Acc::MinMaxI128(v, is_min) => {
                let a = col.as_primitive::<Decimal128Type>();
                let pick = if *is_min { i128::min } else { i128::max };
                v.fold_column(a, groups, |x, y| Some(pick(x, y)));
            }
            Acc::MinMaxF64(v, is_min) => {
                let a = cast(col, &DataType::Float64)
                    .map_err(|e| Error::arrow(output.to_string(), e))?;
                let pick = if *is_min { f64::min } else { f64::max };
                v.fold_column(a.as_primitive::<Float64Type>(), groups, |x, y| {
                    Some(pick(x, y))
                });
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
    pub(super) fn finish(self, out_type: &DataType, input_type: &DataType) -> Result<ArrayRef> {
        let err = |e| Error::arrow("finishing an aggregate", e);
        Ok(match self {
            Acc::Count(v) => Arc::new(Int64Array::from(v)),
            Acc::SumI64(v) => {
                let (values, nulls) = v.into_parts();
                Arc::new(Int64Array::new(values, nulls))
            }
            Acc::SumF64(v) | Acc::MinMaxF64(v, _) => {
                let (values, nulls) = v.into_parts();
                Arc::new(Float64Array::new(values, nulls))
            }
            Acc::SumI128(v) | Acc::MinMaxI128(v, _) => {
                let DataType::Decimal128(p, s) = out_type else {
                    return Err(Error::Internal {
                        what: format!("a decimal aggregate typed {out_type}"),
                    });
                };
                let (values, nulls) = v.into_parts();
                Arc::new(
                    Decimal128Array::new(values, nulls)
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            Acc::MinMaxI64(v, _) => {
                let (values, nulls) = v.into_parts();
                let wide: ArrayRef = Arc::new(Int64Array::new(values, nulls));
                from_i64(&wide, input_type)?
            }
            Acc::MinMaxStr(v, _) => {
                Arc::new(v.iter().map(|s| s.as_deref()).collect::<StringArray>())
            }
        })
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
