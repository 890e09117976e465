//! The keys that do not pack, kept column by column, and key columns rebuilt as arrays.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Decimal128Builder, Int64Builder, StringArray, UInt64Builder,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use super::packed::{Kind, Value};
use crate::agg::acc::from_i64;
use crate::{Error, Result};

/// One key column of the groups whose keys do not pack.
pub(super) enum Overflow {
    Bytes {
        valid: Vec<bool>,
        offsets: Vec<usize>,
        bytes: Vec<u8>,
    },
    I64(Vec<Option<i64>>),
    U64(Vec<Option<u64>>),
    I128(Vec<Option<i128>>),
}

impl Overflow {
    pub(super) fn new(kind: Kind) -> Self {
        match kind {
            Kind::Bytes => Overflow::Bytes {
                valid: Vec::new(),
                offsets: vec![0],
                bytes: Vec::new(),
            },
            Kind::I32 | Kind::I64 => Overflow::I64(Vec::new()),
            Kind::U64 => Overflow::U64(Vec::new()),
            Kind::I128 => Overflow::I128(Vec::new()),
        }
    }

    pub(super) fn value(&self, k: usize) -> Value<'_> {
        let known = |v: Option<Value<'static>>| v.unwrap_or(Value::Null);
        match self {
            Overflow::Bytes {
                valid,
                offsets,
                bytes,
            } => match valid[k] {
                true => Value::Bytes(&bytes[offsets[k]..offsets[k + 1]]),
                false => Value::Null,
            },
            Overflow::I64(v) => known(v[k].map(Value::I64)),
            Overflow::U64(v) => known(v[k].map(Value::U64)),
            Overflow::I128(v) => known(v[k].map(Value::I128)),
        }
    }

    /// Appends `v` (of this column's kind; another kind is kept as a null, which
    /// [`GroupKeys::batch`] rules out).
    pub(super) fn push(&mut self, v: Value) {
        match self {
            Overflow::Bytes {
                valid,
                offsets,
                bytes,
            } => {
                let b = v.bytes();
                bytes.extend_from_slice(b.unwrap_or_default());
                valid.push(b.is_some());
                offsets.push(bytes.len());
            }
            Overflow::I64(col) => col.push(v.i64()),
            Overflow::U64(col) => col.push(v.u64()),
            Overflow::I128(col) => col.push(v.i128()),
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        match self {
            Overflow::Bytes {
                valid,
                offsets,
                bytes,
            } => valid.capacity() + offsets.capacity() * 8 + bytes.capacity(),
            Overflow::I64(v) => v.capacity() * 16,
            Overflow::U64(v) => v.capacity() * 16,
            Overflow::I128(v) => v.capacity() * 32,
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Overflow::Bytes {
                valid,
                offsets,
                bytes,
            } => {
                valid.clear();
                offsets.truncate(1);
                bytes.clear();
            }
            Overflow::I64(v) => v.clear(),
            Overflow::U64(v) => v.clear(),
            Overflow::I128(v) => v.clear(),
        }
    }
}

/// One key column rebuilt as an array, a value at a time in group order.
pub(super) enum KeyColumn {
    Bytes(BinaryBuilder),
    I64(Int64Builder),
    U64(UInt64Builder),
    I128(Decimal128Builder),
}

impl KeyColumn {
    /// A column of `kind` with room for `rows` values.
    pub(super) fn with_capacity(kind: Kind, rows: usize) -> Self {
        match kind {
            // Keys that pack hold at most a packed key's bytes; a guess, not a bound.
            Kind::Bytes => KeyColumn::Bytes(BinaryBuilder::with_capacity(rows, rows * 8)),
            Kind::I32 | Kind::I64 => KeyColumn::I64(Int64Builder::with_capacity(rows)),
            Kind::U64 => KeyColumn::U64(UInt64Builder::with_capacity(rows)),
            Kind::I128 => KeyColumn::I128(Decimal128Builder::with_capacity(rows)),
        }
    }

    /// Appends `v`; a value of another kind (impossible in keys of one column) is a null.
    pub(super) fn append(&mut self, v: Value) {
        match self {
            KeyColumn::Bytes(b) => b.append_option(v.bytes()),
            KeyColumn::I64(b) => b.append_option(v.i64()),
            KeyColumn::U64(b) => b.append_option(v.u64()),
            KeyColumn::I128(b) => b.append_option(v.i128()),
        }
    }

    /// The array of type `data_type` the column was held for.
    pub(super) fn finish(self, data_type: &DataType) -> Result<ArrayRef> {
        let err = |e| Error::arrow("building key column", e);
        let wide: ArrayRef = match self {
            KeyColumn::Bytes(mut b) => {
                let values = b.finish();
                if *data_type == DataType::Binary {
                    return Ok(Arc::new(values));
                }
                // The bytes were UTF-8 when stored: one check over the whole buffer, not one
                // per value.
                let (offsets, bytes, nulls) = values.into_parts();
                Arc::new(StringArray::try_new(offsets, bytes, nulls).map_err(err)?)
            }
            KeyColumn::I64(mut b) => Arc::new(b.finish()),
            KeyColumn::U64(mut b) => return Ok(Arc::new(b.finish())),
            KeyColumn::I128(mut b) => {
                let DataType::Decimal128(p, s) = *data_type else {
                    return Err(Error::Internal {
                        what: "a decimal key of another type".into(),
                    });
                };
                return Ok(Arc::new(
                    b.finish().with_precision_and_scale(p, s).map_err(err)?,
                ));
            }
        };
        match data_type {
            DataType::Utf8 | DataType::Int64 => Ok(wide),
            DataType::Boolean => cast(&wide, &DataType::Boolean).map_err(err),
            DataType::LargeUtf8 | DataType::Utf8View => cast(&wide, data_type).map_err(err),
            _ => from_i64(&wide, data_type),
        }
    }
}
