//! The keys of an aggregator's groups.
//!
//! Each row's key is packed into 24 bytes ([`packed`]) when it fits, and hashed from its
//! packed words ([`BatchKeys::hashes`]). A group keeps only its packed key,
//! so a probe compares one cache line instead of the validity, offsets and bytes of every
//! key column, each a cache miss in a table of millions of groups; and since packed keys
//! order as their bytes, the groups sort by comparing them, then their key columns are
//! decoded from the sorted keys in one sequential pass. Keys that do not fit (long strings,
//! several decimals) are kept column by column in an overflow store and compared by typed
//! values; their packed slot holds their place there.
//!
//! Strings (`Utf8`, `LargeUtf8`, `Utf8View`) and `Binary` are kept as bytes; integers, dates,
//! timestamps and booleans as `i64`; `UInt64` as `u64`; `Decimal128` as `i128`. Groups sort
//! as the output promises: by the key columns in order, nulls first, strings by their bytes,
//! numbers by value.

mod compact;
mod overflow;
mod packed;

use std::cmp::Ordering;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Decimal128Array, Int64Array, StringArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, UInt64Type};
use xxhash_rust::xxh3::xxh3_64;

use super::acc::{as_i64, widens_to_i64};
use crate::{Error, Result};
use compact::Compact;
use overflow::{KeyColumn, Overflow};
use packed::{
    Kind, PACKED, UNPACKED, Value, cmp_packed, nth, pack, packed_words, same_packed, unpack,
    words_packed,
};

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

fn kind_of(t: &DataType) -> Option<Kind> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary => Kind::Bytes,
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::Date32 => Kind::I32,
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
            (Kind::I32, DataType::Boolean) => BatchColumn::I64(
                cast(col, &DataType::Int64)
                    .map_err(err)?
                    .as_primitive()
                    .clone(),
            ),
            (Kind::I32 | Kind::I64, _) => BatchColumn::I64(as_i64(col)?),
            (Kind::U64, _) => BatchColumn::U64(col.as_primitive::<UInt64Type>().clone()),
            (Kind::I128, _) => BatchColumn::I128(col.as_primitive::<Decimal128Type>().clone()),
        })
    }

    fn len(&self) -> usize {
        match self {
            BatchColumn::Str(a) => a.len(),
            BatchColumn::Bin(a) => a.len(),
            BatchColumn::I64(a) => a.len(),
            BatchColumn::U64(a) => a.len(),
            BatchColumn::I128(a) => a.len(),
        }
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

    fn value(&self, i: usize) -> Value<'_> {
        if self.is_null(i) {
            return Value::Null;
        }
        match self {
            BatchColumn::Str(a) => Value::Bytes(a.value(i).as_bytes()),
            BatchColumn::Bin(a) => Value::Bytes(a.value(i)),
            BatchColumn::I64(a) => Value::I64(a.value(i)),
            BatchColumn::U64(a) => Value::U64(a.value(i)),
            BatchColumn::I128(a) => Value::I128(a.value(i)),
        }
    }

    /// Row `i`'s value, as a word to fold into its key's hash.
    fn hash_of(&self, i: usize) -> u64 {
        match self.value(i) {
            Value::Null => NULL_HASH,
            Value::Bytes(b) => xxh3_64(b),
            Value::I64(v) => v as u64,
            Value::U64(v) => v,
            Value::I128(v) => combine(v as u64, (v >> 64) as u64),
        }
    }
}

/// One batch's key columns, ready to hash and probe.
pub(super) struct BatchKeys {
    columns: Vec<BatchColumn>,
    /// Each row's packed key.
    packed: Vec<[u8; PACKED]>,
}

impl BatchKeys {
    /// The hash of each row's key: of its three packed words when it packed (packing is
    /// canonical, so equal keys pack alike and hash alike, and the words are already
    /// there), else of its columns' values.
    pub(super) fn hashes(&self) -> Vec<u64> {
        self.packed
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let h = if key[0] == UNPACKED {
                    self.columns.iter().fold(0, |h, c| combine(h, c.hash_of(i)))
                } else {
                    let [a, b, c] = packed_words(key);
                    combine(combine(combine(0, a), b), c)
                };
                finish(h)
            })
            .collect()
    }
}

/// The keys of every group: packed, or in the overflow store.
pub(super) struct GroupKeys {
    types: Vec<DataType>,
    kinds: Vec<Kind>,
    /// Each group's packed key, or [`UNPACKED`] followed by its place in `overflow`
    /// (little-endian `u32`).
    packed: Vec<[u8; PACKED]>,
    /// One column per key column, a row per group whose key does not pack.
    overflow: Vec<Overflow>,
    overflow_rows: u32,
}

impl GroupKeys {
    /// Storage for keys of these types; refuses a type it cannot group by.
    pub(super) fn new(types: &[DataType]) -> Result<Self> {
        let kinds = types
            .iter()
            .map(|t| {
                kind_of(t).ok_or_else(|| Error::Unsupported {
                    what: format!("a key column of type {t}"),
                    reason: "it cannot be grouped by".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupKeys {
            types: types.to_vec(),
            overflow: kinds.iter().map(|&k| Overflow::new(k)).collect(),
            kinds,
            packed: Vec::new(),
            overflow_rows: 0,
        })
    }

    /// A batch's key columns (of the types given to [`GroupKeys::new`]) ready to probe.
    pub(super) fn batch(&self, columns: &[ArrayRef]) -> Result<BatchKeys> {
        let columns = self
            .kinds
            .iter()
            .zip(columns)
            .map(|(&kind, c)| BatchColumn::of(c, kind))
            .collect::<Result<Vec<_>>>()?;
        let rows = columns.first().map_or(0, BatchColumn::len);
        let packed = (0..rows)
            .map(|i| pack(&self.kinds, columns.iter().map(|c| c.value(i))))
            .collect();
        Ok(BatchKeys { columns, packed })
    }

    /// The place in the overflow store of a key that does not pack.
    fn overflow_row(key: &[u8; PACKED]) -> Option<usize> {
        (key[0] == UNPACKED).then(|| u32::from_le_bytes([key[1], key[2], key[3], key[4]]) as usize)
    }

    /// Value `column` of a group's key, `key` being its packed slot.
    fn value<'a>(&'a self, key: &'a [u8; PACKED], column: usize) -> Value<'a> {
        match Self::overflow_row(key) {
            Some(k) => self.overflow[column].value(k),
            None => nth(key, &self.kinds, column),
        }
    }

    /// How two groups' keys order, given their packed slots.
    fn cmp(&self, a: &[u8; PACKED], b: &[u8; PACKED]) -> Ordering {
        if a[0] != UNPACKED && b[0] != UNPACKED {
            return cmp_packed(a, b);
        }
        (0..self.kinds.len())
            .map(|c| self.value(a, c).cmp(&self.value(b, c)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Whether row `i` of `batch` has group `g`'s key.
    pub(super) fn equals(&self, g: usize, batch: &BatchKeys, i: usize) -> bool {
        let (stored, row) = (&self.packed[g], &batch.packed[i]);
        match (stored[0] == UNPACKED, row[0] == UNPACKED) {
            (false, false) => same_packed(stored, row),
            (true, true) => {
                let k = Self::overflow_row(stored).unwrap_or_default();
                self.overflow
                    .iter()
                    .zip(&batch.columns)
                    .all(|(s, c)| s.value(k) == c.value(i))
            }
            // Packing is a function of the key: one that fits differs from one that does not.
            _ => false,
        }
    }

    /// A hint that group `g`'s key will be compared soon.
    #[inline]
    pub(super) fn prefetch(&self, g: u32) {
        if let Some(key) = self.packed.get(g as usize) {
            super::table::prefetch_read(key);
        }
    }

    /// Appends row `i` of `batch` as a new group's key. Overflow rows count in `u32`, as
    /// group ids do: a task's memory bound keeps both far below it.
    pub(super) fn push(&mut self, batch: &BatchKeys, i: usize) {
        let row = batch.packed[i];
        if row[0] != UNPACKED {
            self.packed.push(row);
            return;
        }
        let mut marker = [0u8; PACKED];
        marker[0] = UNPACKED;
        marker[1..5].copy_from_slice(&self.overflow_rows.to_le_bytes());
        self.overflow_rows += 1;
        self.packed.push(marker);
        for (s, c) in self.overflow.iter_mut().zip(&batch.columns) {
            s.push(c.value(i));
        }
    }

    /// The groups in key order, to be decoded a range at a time ([`GroupKeys::decode`]).
    pub(super) fn sorted(&self) -> SortedGroups {
        // Sorting copies of the packed keys reads them in one pass and keeps every
        // comparison in the vector being sorted, not scattered over the groups. When every
        // key packed, each is sorted as its varying bytes in one integer (see `compact`) or
        // else as its three big-endian words: integer comparisons, no decoding per
        // comparison.
        if self.overflow_rows == 0 {
            if let Some(compact) = Compact::sort(&self.packed) {
                return SortedGroups::Compact(compact);
            }
            let mut words: Vec<([u64; 3], u32)> = self
                .packed
                .iter()
                .enumerate()
                .map(|(g, k)| (packed_words(k), g as u32))
                .collect();
            words.sort_unstable();
            SortedGroups::Words(words)
        } else {
            let mut rows: Vec<([u8; PACKED], u32)> = self
                .packed
                .iter()
                .enumerate()
                .map(|(g, k)| (*k, g as u32))
                .collect();
            rows.sort_unstable_by(|a, b| self.cmp(&a.0, &b.0));
            SortedGroups::Rows(rows)
        }
    }

    /// Groups `range` of `sorted`: their numbers, and their key columns in that order.
    pub(super) fn decode(
        &self,
        sorted: &SortedGroups,
        range: std::ops::Range<usize>,
    ) -> Result<(Vec<u32>, Vec<ArrayRef>)> {
        let outside = || Error::Internal {
            what: format!("groups {range:?} of {} sorted", sorted.len()),
        };
        let mut out = Decoder::new(self, range.len());
        match sorted {
            SortedGroups::Compact(c) => {
                for rank in range.clone() {
                    let (k, g) = c.get(rank).ok_or_else(outside)?;
                    out.push(&k, g);
                }
            }
            SortedGroups::Words(words) => {
                for (w, g) in words.get(range.clone()).ok_or_else(outside)? {
                    out.push(&words_packed(w), *g);
                }
            }
            SortedGroups::Rows(rows) => {
                for (k, g) in rows.get(range.clone()).ok_or_else(outside)? {
                    out.push(k, *g);
                }
            }
        }
        out.finish()
    }

    /// The key columns of the groups in the order they were created.
    pub(super) fn columns(&self) -> Result<Vec<ArrayRef>> {
        let mut out = Decoder::new(self, self.packed.len());
        for (g, k) in self.packed.iter().enumerate() {
            out.push(k, g as u32);
        }
        Ok(out.finish()?.1)
    }

    /// Makes room for `groups` more groups' packed keys.
    pub(super) fn reserve(&mut self, groups: usize) {
        self.packed.reserve_exact(groups);
    }

    /// Bytes the groups' keys take (capacity reserved ahead and not yet used is not
    /// resident, so it does not count).
    pub(super) fn memory_bytes(&self) -> usize {
        self.packed.len() * PACKED
            + self
                .overflow
                .iter()
                .map(Overflow::memory_bytes)
                .sum::<usize>()
    }

    /// Forgets every group.
    pub(super) fn clear(&mut self) {
        self.packed.clear();
        self.overflow.iter_mut().for_each(Overflow::clear);
        self.overflow_rows = 0;
    }
}

/// Groups in key order, each with its key as it was sorted.
pub(super) enum SortedGroups {
    /// Every key packed, varying in a few bytes: those bytes.
    Compact(Compact),
    /// Every key packed: its three big-endian words.
    Words(Vec<([u64; 3], u32)>),
    /// Some keys overflowed: the packed slots, compared through the overflow rows.
    Rows(Vec<([u8; PACKED], u32)>),
}

impl SortedGroups {
    /// How many groups.
    pub(super) fn len(&self) -> usize {
        match self {
            SortedGroups::Compact(c) => c.len(),
            SortedGroups::Words(w) => w.len(),
            SortedGroups::Rows(r) => r.len(),
        }
    }
}

/// Groups' key columns built group by group, in the order given.
struct Decoder<'a> {
    keys: &'a GroupKeys,
    builders: Vec<KeyColumn>,
    order: Vec<u32>,
}

impl<'a> Decoder<'a> {
    fn new(keys: &'a GroupKeys, groups: usize) -> Self {
        Decoder {
            keys,
            builders: keys
                .kinds
                .iter()
                .map(|&kind| KeyColumn::with_capacity(kind, groups))
                .collect(),
            order: Vec::with_capacity(groups),
        }
    }

    /// Appends group `g`, whose packed slot is `key`.
    fn push(&mut self, key: &[u8; PACKED], g: u32) {
        self.order.push(g);
        match GroupKeys::overflow_row(key) {
            Some(r) => {
                for (b, o) in self.builders.iter_mut().zip(&self.keys.overflow) {
                    b.append(o.value(r));
                }
            }
            None => {
                let builders = &mut self.builders;
                unpack(key, &self.keys.kinds, |c, v| builders[c].append(v));
            }
        }
    }

    /// The groups in the order pushed, and their key columns.
    fn finish(self) -> Result<(Vec<u32>, Vec<ArrayRef>)> {
        let columns = self
            .builders
            .into_iter()
            .zip(&self.keys.types)
            .map(|(b, t)| b.finish(t))
            .collect::<Result<Vec<_>>>()?;
        Ok((self.order, columns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Row `i` equals row `j` of the same batch, through a group holding row `j`.
    fn same(types: &[DataType], columns: &[ArrayRef], i: usize, j: usize) -> bool {
        let mut keys = GroupKeys::new(types).unwrap();
        let batch = keys.batch(columns).unwrap();
        keys.push(&batch, j);
        keys.equals(0, &batch, i)
    }

    #[test]
    fn packed_and_unpacked_keys_compare_as_their_values() {
        let long = "x".repeat(40);
        let words: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("a"),
            Some(long.as_str()),
            Some(long.as_str()),
            Some(""),
            Some("ab"),
        ]));
        let nums: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(1),
            Some(1),
            Some(2),
            Some(2),
            None,
            Some(1),
        ]));
        let types = [DataType::Utf8, DataType::Int64];
        let cols = [words, nums];
        let batch = GroupKeys::new(&types).unwrap().batch(&cols).unwrap();
        assert_ne!(batch.packed[0][0], UNPACKED, "a short key is packed");
        assert_eq!(
            batch.packed[3][0], UNPACKED,
            "a 40-byte string does not fit"
        );
        for i in 0..7 {
            for j in 0..7 {
                let expected = matches!((i, j), (0, 2) | (2, 0) | (3, 4) | (4, 3)) || i == j;
                assert_eq!(same(&types, &cols, i, j), expected, "rows {i} and {j}");
            }
        }
        // A null string and an empty one differ, as do "a" + 1 and "ab" + 1.
        assert!(!same(&types, &cols, 1, 5));
        assert!(!same(&types, &cols, 0, 6));
    }

    #[test]
    fn decimal_and_unsigned_keys_pack_their_full_width() {
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![i128::MAX, i128::MAX - 1, i128::MAX])
                .with_precision_and_scale(38, 0)
                .unwrap(),
        );
        let u: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, u64::MAX, u64::MAX]));
        let types = [DataType::Decimal128(38, 0), DataType::UInt64];
        let cols = [d, u];
        assert!(same(&types, &cols, 0, 2));
        assert!(!same(&types, &cols, 0, 1));
    }

    /// Groups whose keys pack and groups whose keys overflow come back as they went in,
    /// and sort together by value.
    #[test]
    fn packed_and_overflowing_groups_rebuild_and_sort_together() {
        let long = |c: char| c.to_string().repeat(30);
        let (la, lb) = (long('a'), long('b'));
        let words: Vec<Option<&str>> = vec![
            Some(lb.as_str()),
            Some("b"),
            None,
            Some(la.as_str()),
            Some("a"),
            Some(""),
            Some("a\0b"),
            Some("a"),
        ];
        let dates: Vec<Option<i32>> = vec![
            Some(3),
            Some(-2),
            Some(1),
            None,
            Some(7),
            Some(0),
            Some(5),
            Some(i32::MIN),
        ];
        let cols: [ArrayRef; 2] = [
            Arc::new(StringArray::from(words.clone())),
            Arc::new(arrow::array::Date32Array::from(dates.clone())),
        ];
        let types = [DataType::Utf8, DataType::Date32];
        let mut keys = GroupKeys::new(&types).unwrap();
        let batch = keys.batch(&cols).unwrap();
        for i in 0..words.len() {
            keys.push(&batch, i);
        }
        assert_eq!(
            keys.overflow_rows, 3,
            "the long strings and the zero byte overflow"
        );
        // Decoded in two ranges, as a reducer writes its groups a batch at a time.
        let sorted = keys.sorted();
        let (mut order, first) = keys.decode(&sorted, 0..3).unwrap();
        let (rest, second) = keys.decode(&sorted, 3..sorted.len()).unwrap();
        order.extend(rest);
        let arrays: Vec<ArrayRef> = first
            .iter()
            .zip(&second)
            .map(|(a, b)| arrow::compute::concat(&[a.as_ref(), b.as_ref()]).unwrap())
            .collect();
        let mut expected: Vec<(Option<&str>, Option<i32>)> =
            words.iter().copied().zip(dates.iter().copied()).collect();
        expected.sort();
        let got_words = arrays[0].as_string::<i32>();
        let got_dates = arrays[1].as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(arrays[1].data_type(), &DataType::Date32);
        let got: Vec<(Option<&str>, Option<i32>)> = (0..order.len())
            .map(|i| {
                (
                    got_words.is_valid(i).then(|| got_words.value(i)),
                    got_dates.is_valid(i).then(|| got_dates.value(i)),
                )
            })
            .collect();
        assert_eq!(got, expected);
        let by_order: Vec<_> = order
            .iter()
            .map(|&g| (words[g as usize], dates[g as usize]))
            .collect();
        assert_eq!(by_order, expected, "the order names each row's group");
        keys.clear();
        assert_eq!((keys.packed.len(), keys.overflow_rows), (0, 0));
    }
}
