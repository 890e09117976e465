//! Accumulators: one aggregate's running state, a slot per group, updated column-wise.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
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
pub(super) enum Acc {
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
    pub(super) fn push_group(&mut self) {
        match self {
            Acc::Count(v) => v.push(0),
            Acc::SumI64(v) | Acc::MinMaxI64(v, _) => v.push(None),
            Acc::SumI128(v) | Acc::MinMaxI128(v, _) => v.push(None),
            Acc::SumF64(v) | Acc::MinMaxF64(v, _) => v.push(None),
            Acc::MinMaxStr(v, _) => v.push(None),
        }
    }

    /// The same accumulator with no groups.
    pub(super) fn emptied(&self) -> Acc {
        match self {
            Acc::Count(_) => Acc::Count(Vec::new()),
            Acc::SumI64(_) => Acc::SumI64(Vec::new()),
            Acc::SumI128(_) => Acc::SumI128(Vec::new()),
            Acc::SumF64(_) => Acc::SumF64(Vec::new()),
            Acc::MinMaxI64(_, m) => Acc::MinMaxI64(Vec::new(), *m),
            Acc::MinMaxI128(_, m) => Acc::MinMaxI128(Vec::new(), *m),
            Acc::MinMaxF64(_, m) => Acc::MinMaxF64(Vec::new(), *m),
            Acc::MinMaxStr(_, m) => Acc::MinMaxStr(Vec::new(), *m),
        }
    }

    pub(super) fn bytes_per_group(&self) -> usize {
        match self {
            Acc::Count(_) => 8,
            Acc::SumI64(_) | Acc::MinMaxI64(_, _) | Acc::SumF64(_) | Acc::MinMaxF64(_, _) => 16,
            Acc::SumI128(_) | Acc::MinMaxI128(_, _) => 32,
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
    pub(super) fn finish(self, out_type: &DataType, input_type: &DataType) -> Result<ArrayRef> {
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
