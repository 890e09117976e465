//! Reading the aggregates' states back: each aggregate's output column, built group by group
//! from the state rows ([`super::state`]) and finished as an Arrow array of its type.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array, StringArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowNativeType, DataType};

use super::acc::{Acc, from_i64};
use super::state::{Cell, Slot, States};
use crate::{Error, Result};

/// An aggregate's output column as it is built, group by group.
pub(super) enum Column {
    /// Values and whether each is set (counts are always set).
    I64(Vec<i64>, Vec<bool>),
    I128(Vec<i128>, Vec<bool>),
    F64(Vec<f64>, Vec<bool>),
    Str(Vec<Option<Box<str>>>),
}

/// Appends every group's value at `slot` in `states`, in order, and whether it has one.
fn extend_values<T: Cell>(states: &States, slot: Slot, values: &mut Vec<T>, set: &mut Vec<bool>) {
    let flag = slot.flag(T::WIDTH);
    for g in 0..states.len() {
        let row = states.row(g);
        values.push(T::get(&row[slot.at..]));
        set.push(row[flag] != 0);
    }
}

/// Values and validity as Arrow buffers.
fn parts<T: ArrowNativeType>(
    values: Vec<T>,
    set: Vec<bool>,
) -> (ScalarBuffer<T>, Option<NullBuffer>) {
    let nulls = (!set.iter().all(|s| *s)).then(|| NullBuffer::from(set));
    (ScalarBuffer::from(values), nulls)
}

impl Acc {
    /// An empty output column for `groups` groups.
    pub(super) fn column(&self, groups: usize) -> Column {
        let set = || Vec::with_capacity(groups);
        match self {
            Acc::Count(_) | Acc::AddCounts(_) | Acc::SumI64(_) | Acc::MinMaxI64(_, _) => {
                Column::I64(Vec::with_capacity(groups), set())
            }
            Acc::SumI128(_) | Acc::MinMaxI128(_, _) => {
                Column::I128(Vec::with_capacity(groups), set())
            }
            Acc::SumF64(_) | Acc::MinMaxF64(_, _) => Column::F64(Vec::with_capacity(groups), set()),
            Acc::MinMaxStr(_, _) => Column::Str(Vec::with_capacity(groups)),
        }
    }

    /// Appends the values of every group of `states`, in their order, to `column`.
    pub(super) fn extend(&self, states: &States, column: &mut Column) -> Result<()> {
        match (self, column) {
            (Acc::Count(slot) | Acc::AddCounts(slot), Column::I64(v, _)) => {
                v.extend((0..states.len()).map(|g| i64::get(&states.row(g)[slot.at..])));
            }
            (Acc::SumI64(slot) | Acc::MinMaxI64(slot, _), Column::I64(v, set)) => {
                extend_values(states, *slot, v, set);
            }
            (Acc::SumI128(slot) | Acc::MinMaxI128(slot, _), Column::I128(v, set)) => {
                extend_values(states, *slot, v, set);
            }
            (Acc::SumF64(slot) | Acc::MinMaxF64(slot, _), Column::F64(v, set)) => {
                extend_values(states, *slot, v, set);
            }
            (Acc::MinMaxStr(s, _), Column::Str(v)) => v.extend_from_slice(states.strings(*s)),
            _ => {
                return Err(Error::Internal {
                    what: "an aggregate's output column of another type".into(),
                });
            }
        }
        Ok(())
    }

    /// `column` as an array of `out_type`.
    pub(super) fn finish(
        &self,
        column: Column,
        out_type: &DataType,
        input_type: &DataType,
    ) -> Result<ArrayRef> {
        let err = |e| Error::arrow("finishing an aggregate", e);
        Ok(match (self, column) {
            (Acc::Count(_) | Acc::AddCounts(_), Column::I64(v, _)) => Arc::new(Int64Array::from(v)),
            (Acc::SumI64(_), Column::I64(v, set)) => {
                let (values, nulls) = parts(v, set);
                Arc::new(Int64Array::new(values, nulls))
            }
            (Acc::MinMaxI64(_, _), Column::I64(v, set)) => {
                let (values, nulls) = parts(v, set);
                let wide: ArrayRef = Arc::new(Int64Array::new(values, nulls));
                from_i64(&wide, input_type)?
            }
            (_, Column::F64(v, set)) => {
                let (values, nulls) = parts(v, set);
                Arc::new(Float64Array::new(values, nulls))
            }
            (_, Column::I128(v, set)) => {
                let DataType::Decimal128(p, s) = out_type else {
                    return Err(Error::Internal {
                        what: format!("a decimal aggregate typed {out_type}"),
                    });
                };
                let (values, nulls) = parts(v, set);
                Arc::new(
                    Decimal128Array::new(values, nulls)
                        .with_precision_and_scale(*p, *s)
                        .map_err(err)?,
                )
            }
            (_, Column::Str(v)) => {
                Arc::new(v.iter().map(|s| s.as_deref()).collect::<StringArray>())
            }
            (_, Column::I64(..)) => {
                return Err(Error::Internal {
                    what: "an integer column for an aggregate of another type".into(),
                });
            }
        })
    }
}
