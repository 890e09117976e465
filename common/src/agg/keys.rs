//! The key columns of an aggregator's groups, kept column by column in their own types.
//!
//! A batch's keys are hashed once, column by column ([`BatchKeys::hashes`]); a probe then
//! compares a row with a group by typed values (string bytes, integers), never by encoding
//! the row first. The groups' keys are rebuilt into arrays directly, in any order.
//!
//! Strings (`Utf8`, `LargeUtf8`, `Utf8View`) and `Binary` are kept as bytes; integers, dates,
//! timestamps and booleans as `i64`; `UInt64` as `u64`; `Decimal128` as `i128`. Groups sort
//! as the output promises: by the key columns in order, nulls first, strings by their bytes,
//! numbers by value.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Decimal128Array, Int64Array, StringArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, UInt64Type};
use xxhash_rust::xxh3::xxh3_64;

use super::acc::{as_i64, from_i64, widens_to_i64};
use crate::{Error, Result};

/// Hash of a null key value.
const NULL_HASH: u64 = 0x6E75_6C6C_6E75_6C6C;

/// Folds `v` into the running hash of a row (a multiply-rotate step; the bits are mixed
/// again at the end by [`finish`]).
fn combine(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// The final avalanche (MurmurHash3's fmix64): every input bit reaches the low bits the hash
/// table uses to pick a bucket.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// How a key column is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bytes,
    I64,
    U64,
    I128,
}

fn kind_of(t: &DataType) -> Option<Kind> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary => Kind::Bytes,
        DataType::Boolean => Kind::I64,
        t if widens_to_i64(t) => Kind::I64,
        DataType::UInt64 => Kind::U64,
        DataType::Decimal128(_, _) => Kind::I128,
        _ => return None,
    })
}

/// One batch's key column, in the form probes read.
enum BatchColumn {
    Str(StringArray),
    Bin(BinaryArray),
    I64(Int64Array),
    U64(UInt64Array),
    I128(Decimal128Array),
}

impl BatchColumn {
    fn of(col: &ArrayRef, kind: Kind) -> Result<Self> {
        let err = |e| Error::arrow("reading a key column", e);
        Ok(match (kind, col.data_type()) {
            (Kind::Bytes, DataType::Binary) => BatchColumn::Bin(col.as_binary::<i32>().clone()),
            (Kind::Bytes, DataType::Utf8) => BatchColumn::Str(col.as_string::<i32>().clone()),
            (Kind::Bytes, _) => {
                let utf8 = cast(col, &DataType::Utf8).map_err(err)?;
                BatchColumn::Str(utf8.as_string::<i32>().clone())
            }
            (Kind::I64, DataType::Boolean) => BatchColumn::I64(
                cast(col, &DataType::Int64)
                    .map_err(err)?
                    .as_primitive()
                    .clone(),
            ),
            (Kind::I64, _) => BatchColumn::I64(as_i64(col)?),
            (Kind::U64, _) => BatchColumn::U64(col.as_primitive::<UInt64Type>().clone()),
            (Kind::I128, _) => BatchColumn::I128(col.as_primitive::<Decimal128Type>().clone()),
        })
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            BatchColumn::Str(a) => a.is_null(i),
            BatchColumn::Bin(a) => a.is_null(i),
            BatchColumn::I64(a) => a.is_null(i),
            BatchColumn::U64(a) => a.is_null(i),
            BatchColumn::I128(a) => a.is_null(i),
        }
    }

    fn bytes(&self, i: usize) -> &[u8] {
        match self {
            BatchColumn::Str(a) => a.value(i).as_bytes(),
            BatchColumn::Bin(a) => a.value(i),
            _ => &[],
        }
    }

    /// Folds this column's values into the rows' hashes.
    fn hash_into(&self, hashes: &mut [u64]) {
        for (i, h) in hashes.iter_mut().enumerate() {
            let v = if self.is_null(i) {
                NULL_HASH
            } else {
                match self {
                    BatchColumn::Str(_) | BatchColumn::Bin(_) => xxh3_64(self.bytes(i)),
                    BatchColumn::I64(a) => a.value(i) as u64,
                    BatchColumn::U64(a) => a.value(i),
                    BatchColumn::I128(a) => {
                        let v = a.value(i);
                        combine(v as u64, (v >> 64) as u64)
                    }
                }
            };
            *h = combine(*h, v);
        }
    }
}

/// One batch's key columns, ready to hash and probe.
pub(super) struct BatchKeys {
    columns: Vec<BatchColumn>,
}

impl BatchKeys {
    /// The hash of each row's key.
    pub(super) fn hashes(&self, rows: usize) -> Vec<u64> {
        let mut hashes = vec![0u64; rows];
        for c in &self.columns {
            c.hash_into(&mut hashes);
        }
        for h in &mut hashes {
            *h = finish(*h);
        }
        hashes
    }
}

/// One key column of every group.
struct Stored {
    data_type: DataType,
    valid: Vec<bool>,
    values: Values,
}

enum Values {
    Bytes { offsets: Vec<usize>, bytes: Vec<u8> },
    I64(Vec<i64>),
    U64(Vec<u64>),
    I128(Vec<i128>),
}

impl Stored {
    fn bytes(&self, g: usize) -> &[u8] {
        match &self.values {
            Values::Bytes { offsets, bytes } => &bytes[offsets[g]..offsets[g + 1]],
            _ => &[],
        }
    }

    fn cmp(&self, a: usize, b: usize) -> Ordering {
        match (self.valid[a], self.valid[b]) {
            (false, false) => return Ordering::Equal,
            (false, true) => return Ordering::Less,
            (true, false) => return Ordering::Greater,
            (true, true) => {}
        }
        match &self.values {
            Values::Bytes { .. } => self.bytes(a).cmp(self.bytes(b)),
            Values::I64(v) => v[a].cmp(&v[b]),
            Values::U64(v) => v[a].cmp(&v[b]),
            Values::I128(v) => v[a].cmp(&v[b]),
        }
    }

    /// This column's values of `order`'s groups, as an array of the column's type.
    fn array(&self, order: &[u32]) -> Result<ArrayRef> {
        let valid = |g: u32| self.valid[g as usize];
        let err = |e| Error::arrow("building key column", e);
        let wide: ArrayRef = match &self.values {
            Values::Bytes { .. } => {
                let values = order
                    .iter()
                    .map(|&g| valid(g).then(|| self.bytes(g as usize)));
                if self.data_type == DataType::Binary {
                    return Ok(Arc::new(values.collect::<BinaryArray>()));
                }
                // The bytes were UTF-8 when stored: one check over the whole buffer, not one
                // per value.
                let (offsets, bytes, nulls) = values.collect::<BinaryArray>().into_parts();
                Arc::new(StringArray::try_new(offsets, bytes, nulls).map_err(err)?)
            }
            Values::I64(v) => Arc::new(
                order
                    .iter()
                    .map(|&g| valid(g).then(|| v[g as usize]))
                    .collect::<Int64Array>(),
            ),
            Values::U64(v) => {
                return Ok(Arc::new(
                    order
                        .iter()
                        .map(|&g| valid(g).then(|| v[g as usize]))
                        .collect::<UInt64Array>(),
                ));
            }
            Values::I128(v) => {
                let DataType::Decimal128(p, s) = self.data_type else {
                    return Err(Error::Invalid("decimal key of another type".into()));
                };
                return Ok(Arc::new(
                    order
                        .iter()
                        .map(|&g| valid(g).then(|| v[g as usize]))
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(p, s)
                        .map_err(err)?,
                ));
            }
        };
        match self.data_type {
            DataType::Utf8 | DataType::Int64 => Ok(wide),
            DataType::Boolean => cast(&wide, &DataType::Boolean).map_err(err),
            DataType::LargeUtf8 | DataType::Utf8View => cast(&wide, &self.data_type).map_err(err),
            _ => from_i64(&wide, &self.data_type),
        }
    }
}

/// The keys of every group, column by column.
pub(super) struct GroupKeys {
    columns: Vec<Stored>,
}

impl GroupKeys {
    /// Storage for keys of these types; refuses a type it cannot group by.
    pub(super) fn new(types: &[DataType]) -> Result<Self> {
        let columns = types
            .iter()
            .map(|t| {
                let values = match kind_of(t) {
                    Some(Kind::Bytes) => Values::Bytes {
                        offsets: vec![0],
                        bytes: Vec::new(),
                    },
                    Some(Kind::I64) => Values::I64(Vec::new()),
                    Some(Kind::U64) => Values::U64(Vec::new()),
                    Some(Kind::I128) => Values::I128(Vec::new()),
                    None => {
                        return Err(Error::Invalid(format!(
                            "cannot group by a key column of type {t}"
                        )));
                    }
                };
                Ok(Stored {
                    data_type: t.clone(),
                    valid: Vec::new(),
                    values,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupKeys { columns })
    }

    /// A batch's key columns (of the types given to [`GroupKeys::new`]) ready to probe.
    pub(super) fn batch(&self, columns: &[ArrayRef]) -> Result<BatchKeys> {
        let columns = self
            .columns
            .iter()
            .zip(columns)
            .map(|(s, c)| {
                let kind = kind_of(&s.data_type).unwrap_or(Kind::Bytes);
                BatchColumn::of(c, kind)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchKeys { columns })
    }

    /// Whether row `i` of `batch` has group `g`'s key.
    pub(super) fn equals(&self, g: usize, batch: &BatchKeys, i: usize) -> bool {
        self.columns.iter().zip(&batch.columns).all(|(s, c)| {
            let null = c.is_null(i);
            if null || !s.valid[g] {
                return null && !s.valid[g];
            }
            match (&s.values, c) {
                (Values::Bytes { .. }, _) => s.bytes(g) == c.bytes(i),
                (Values::I64(v), BatchColumn::I64(a)) => v[g] == a.value(i),
                (Values::U64(v), BatchColumn::U64(a)) => v[g] == a.value(i),
                (Values::I128(v), BatchColumn::I128(a)) => v[g] == a.value(i),
                _ => false,
            }
        })
    }

    /// Appends row `i` of `batch` as a new group's key.
    pub(super) fn push(&mut self, batch: &BatchKeys, i: usize) {
        for (s, c) in self.columns.iter_mut().zip(&batch.columns) {
            let null = c.is_null(i);
            s.valid.push(!null);
            match (&mut s.values, c) {
                (Values::Bytes { offsets, bytes }, _) => {
                    if !null {
                        bytes.extend_from_slice(c.bytes(i));
                    }
                    offsets.push(bytes.len());
                }
                (Values::I64(v), BatchColumn::I64(a)) => v.push(a.values()[i]),
                (Values::U64(v), BatchColumn::U64(a)) => v.push(a.values()[i]),
                (Values::I128(v), BatchColumn::I128(a)) => v.push(a.values()[i]),
                // `batch` came from `self.batch`, so kinds match; keep lengths aligned anyway.
                (Values::I64(v), _) => v.push(0),
                (Values::U64(v), _) => v.push(0),
                (Values::I128(v), _) => v.push(0),
            }
        }
    }

    /// A number whose order agrees with [`GroupKeys::cmp`] wherever two numbers differ:
    /// the first key column's validity and its first 15 bytes (big-endian, zero-padded) or
    /// its value. Sorting by it first settles most comparisons without touching the keys.
    pub(super) fn sort_prefix(&self, g: usize) -> u128 {
        let Some(s) = self.columns.first() else {
            return 0;
        };
        if !s.valid[g] {
            return 0;
        }
        let valid = 1u128 << 120;
        match &s.values {
            Values::Bytes { .. } => {
                let mut buf = [0u8; 16];
                let b = s.bytes(g);
                let n = b.len().min(15);
                buf[1..=n].copy_from_slice(&b[..n]);
                valid | u128::from_be_bytes(buf)
            }
            // Flipping the sign bit orders signed values as unsigned ones.
            Values::I64(v) => valid | u128::from((v[g] as u64) ^ (1 << 63)),
            Values::U64(v) => valid | u128::from(v[g]),
            // An i128 does not fit beside the flag: no prefix, compare the keys.
            Values::I128(_) => valid,
        }
    }

    /// How groups `a` and `b` order by key.
    pub(super) fn cmp(&self, a: usize, b: usize) -> Ordering {
        self.columns
            .iter()
            .map(|s| s.cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// The key columns of `order`'s groups.
    pub(super) fn arrays(&self, order: &[u32]) -> Result<Vec<ArrayRef>> {
        self.columns.iter().map(|s| s.array(order)).collect()
    }

    /// Bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|s| {
                s.valid.capacity()
                    + match &s.values {
                        Values::Bytes { offsets, bytes } => {
                            offsets.capacity() * 8 + bytes.capacity()
                        }
                        Values::I64(v) => v.capacity() * 8,
                        Values::U64(v) => v.capacity() * 8,
                        Values::I128(v) => v.capacity() * 16,
                    }
            })
            .sum()
    }

    /// Forgets every group.
    pub(super) fn clear(&mut self) {
        for s in &mut self.columns {
            s.valid.clear();
            match &mut s.values {
                Values::Bytes { offsets, bytes } => {
                    offsets.truncate(1);
                    bytes.clear();
                }
                Values::I64(v) => v.clear(),
                Values::U64(v) => v.clear(),
                Values::I128(v) => v.clear(),
            }
        }
    }
}
