//! A group's key packed into [`PACKED`] bytes, so that a probe compares one cache line, the
//! table of millions of groups holds 24 bytes per key instead of the validity, offsets and
//! bytes of every key column, and sorting the groups compares packed bytes.
//!
//! The packing is canonical and keeps order: two keys pack to the same bytes exactly when
//! their values are equal, and packed keys compare as bytes in the order the output
//! promises (nulls first, strings by their bytes, numbers by value). A key that does not fit
//! is marked [`UNPACKED`], which no packed key starts with. Per column:
//! - null: 0;
//! - a string or binary value: 1, its bytes, 0 (a value holding a zero byte does not pack);
//! - a number: 1, then its value big-endian with the sign bit flipped, in 4 bytes for
//!   columns of up to 32 bits (`Int32`, `Date32`, ...), 8 for 64-bit ones, 16 for decimals.
//!
//! Zeros fill the rest. EOD's account, date and currency take 23 bytes.

use std::cmp::Ordering;

/// Bytes of a packed key.
pub(super) const PACKED: usize = 24;

/// First byte of a key that does not fit in [`PACKED`] bytes: no column's first byte is 255.
pub(super) const UNPACKED: u8 = 0xFF;

/// How a key column is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bytes,
    /// Values held as `i64` that fit 32 bits by their type.
    I32,
    I64,
    U64,
    I128,
}

/// One key value. Its derived order is the one the output promises: nulls first, strings
/// by their bytes, numbers by value (values of one column are all of one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Value<'a> {
    Null,
    Bytes(&'a [u8]),
    I64(i64),
    U64(u64),
    I128(i128),
}

impl<'a> Value<'a> {
    /// The bytes of a string or binary value; `None` for a null or another kind.
    pub(super) fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// An integer held as `i64`; `None` for a null or another kind.
    pub(super) fn i64(self) -> Option<i64> {
        match self {
            Value::I64(x) => Some(x),
            _ => None,
        }
    }

    /// A `u64`; `None` for a null or another kind.
    pub(super) fn u64(self) -> Option<u64> {
        match self {
            Value::U64(x) => Some(x),
            _ => None,
        }
    }

    /// A decimal's `i128`; `None` for a null or another kind.
    pub(super) fn i128(self) -> Option<i128> {
        match self {
            Value::I128(x) => Some(x),
            _ => None,
        }
    }
}

/// The key made of `values` (of `kinds`), packed; `[UNPACKED, 0, ...]` when it does not fit.
pub(super) fn pack<'a>(
    kinds: &[Kind],
    values: impl IntoIterator<Item = Value<'a>>,
) -> [u8; PACKED] {
    let mut out = [0u8; PACKED];
    let mut at = 0usize;
    for (&kind, v) in kinds.iter().zip(values) {
        if !put(&mut out, &mut at, kind, v) {
            let mut unpacked = [0u8; PACKED];
            unpacked[0] = UNPACKED;
            return unpacked;
        }
    }
    out
}

/// Writes `v` at `*at`; false when it does not fit.
fn put(out: &mut [u8; PACKED], at: &mut usize, kind: Kind, v: Value) -> bool {
    let mut write = |bytes: &[u8]| -> bool {
        let Some(dst) = out.get_mut(*at..*at + bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        *at += bytes.len();
        true
    };
    match (kind, v) {
        (_, Value::Null) => write(&[0]),
        (Kind::Bytes, Value::Bytes(b)) => !b.contains(&0) && write(&[1]) && write(b) && write(&[0]),
        (Kind::I32, Value::I64(v)) => match i32::try_from(v) {
            Ok(v) => write(&[1]) && write(&((v as u32) ^ (1 << 31)).to_be_bytes()),
            Err(_) => false,
        },
        (Kind::I64, Value::I64(v)) => write(&[1]) && write(&((v as u64) ^ (1 << 63)).to_be_bytes()),
        (Kind::U64, Value::U64(v)) => write(&[1]) && write(&v.to_be_bytes()),
        (Kind::I128, Value::I128(v)) => {
            write(&[1]) && write(&((v as u128) ^ (1 << 127)).to_be_bytes())
        }
        // A value of another kind than its column's cannot be packed faithfully.
        _ => false,
    }
}

/// Value `column` of a packed key whose columns are of `kinds`. `key` must be packed (not
/// [`UNPACKED`]) by [`pack`] with these kinds.
pub(super) fn nth<'a>(key: &'a [u8; PACKED], kinds: &[Kind], column: usize) -> Value<'a> {
    let mut at = 0usize;
    let mut value = Value::Null;
    for &kind in kinds.iter().take(column + 1) {
        value = read(key, &mut at, kind);
    }
    value
}

/// Every value of a packed key, in column order, read in one pass over its bytes (reading
/// each column with [`nth`] starts over from the first and costs quadratically in columns).
pub(super) fn unpack<'a>(
    key: &'a [u8; PACKED],
    kinds: &[Kind],
    mut each: impl FnMut(usize, Value<'a>),
) {
    let mut at = 0usize;
    for (c, &kind) in kinds.iter().enumerate() {
        each(c, read(key, &mut at, kind));
    }
}

/// Reads the value at `*at` and moves past it. Malformed bytes (impossible in what [`pack`]
/// wrote) read as short values rather than panicking.
fn read<'a>(key: &'a [u8; PACKED], at: &mut usize, kind: Kind) -> Value<'a> {
    let Some(&header) = key.get(*at) else {
        return Value::Null;
    };
    *at += 1;
    if header == 0 {
        return Value::Null;
    }
    let rest = key.get(*at..).unwrap_or_default();
    if kind == Kind::Bytes {
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        *at += len + 1;
        return Value::Bytes(&rest[..len]);
    }
    let len = match kind {
        Kind::I32 => 4,
        Kind::I64 | Kind::U64 => 8,
        _ => 16,
    };
    let mut wide = [0u8; 16];
    let n = len.min(rest.len());
    wide[16 - len..16 - len + n].copy_from_slice(&rest[..n]);
    *at += len;
    let v = u128::from_be_bytes(wide);
    match kind {
        Kind::I32 => Value::I64(i64::from((v as u32 ^ (1 << 31)) as i32)),
        Kind::I64 => Value::I64((v as u64 ^ (1 << 63)) as i64),
        Kind::U64 => Value::U64(v as u64),
        _ => Value::I128((v ^ (1 << 127)) as i128),
    }
}

/// A packed key as three big-endian words: they order as its bytes do.
pub(super) fn packed_words(k: &[u8; PACKED]) -> [u64; 3] {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&k[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    [word(0), word(1), word(2)]
}

/// The packed key of [`packed_words`]' words.
pub(super) fn words_packed(w: &[u64; 3]) -> [u8; PACKED] {
    let mut k = [0u8; PACKED];
    for (i, word) in w.iter().enumerate() {
        k[i * 8..i * 8 + 8].copy_from_slice(&word.to_be_bytes());
    }
    k
}

/// Whether two packed keys are the same, compared a word at a time (an array comparison
/// of 24 bytes is a call to `memcmp` on the probe's hot path).
#[inline]
pub(super) fn same_packed(a: &[u8; PACKED], b: &[u8; PACKED]) -> bool {
    let word = |k: &[u8; PACKED], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&k[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    };
    (word(a, 0) ^ word(b, 0)) | (word(a, 1) ^ word(b, 1)) | (word(a, 2) ^ word(b, 2)) == 0
}

pub(super) fn cmp_packed(a: &[u8; PACKED], b: &[u8; PACKED]) -> Ordering {
    let word = |k: &[u8; PACKED], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&k[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    (0..PACKED / 8)
        .map(|i| word(a, i).cmp(&word(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    use Kind::*;

    #[test]
    fn packed_words_order_and_compare_as_the_bytes_do() {
        let kinds = [Bytes, I32, I64];
        let keys = [
            pack(&kinds, [Value::Null, Value::I64(-5), Value::I64(1)]),
            pack(
                &kinds,
                [Value::Bytes(b"ab"), Value::I64(-5), Value::I64(-1)],
            ),
            pack(&kinds, [Value::Bytes(b"ab"), Value::I64(7), Value::Null]),
            pack(&kinds, [Value::Bytes(b"b"), Value::Null, Value::I64(0)]),
        ];
        for a in &keys {
            assert_ne!(a[0], UNPACKED);
            assert_eq!(&words_packed(&packed_words(a)), a);
            for b in &keys {
                assert_eq!(packed_words(a).cmp(&packed_words(b)), a.cmp(b));
                assert_eq!(packed_words(a).cmp(&packed_words(b)), cmp_packed(a, b));
                assert_eq!(same_packed(a, b), a == b);
            }
        }
    }

    fn roundtrip(kinds: &[Kind], values: &[Value]) {
        let key = pack(kinds, values.iter().copied());
        assert_ne!(key[0], UNPACKED, "{values:?} fits");
        for (c, v) in values.iter().enumerate() {
            assert_eq!(nth(&key, kinds, c), *v, "column {c} of {values:?}");
        }
        let mut all = Vec::new();
        unpack(&key, kinds, |c, v| all.push((c, v)));
        let expected: Vec<_> = values.iter().copied().enumerate().collect();
        assert_eq!(all, expected, "unpacking {values:?}");
    }

    #[test]
    fn packed_values_read_back_as_they_were() {
        for v in [i64::MIN, -256, -1, 0, 1, 255, 256, i64::MAX] {
            roundtrip(&[I64, Bytes], &[Value::I64(v), Value::Bytes(b"EUR")]);
        }
        for v in [i64::from(i32::MIN), -1, 0, i64::from(i32::MAX)] {
            roundtrip(&[I32, I32], &[Value::I64(v), Value::Null]);
        }
        for v in [0, 1, 1 << 40, u64::MAX] {
            roundtrip(&[U64, I64], &[Value::U64(v), Value::Null]);
        }
        roundtrip(&[I128, Bytes], &[Value::I128(i128::MIN), Value::Bytes(b"")]);
        roundtrip(&[I128, I32], &[Value::I128(-12345), Value::I64(7)]);
        roundtrip(
            &[Bytes, I32, Bytes],
            &[
                Value::Bytes(b"ACC01510695"),
                Value::I64(20_420),
                Value::Bytes(b"EUR"),
            ],
        );
    }

    /// Every pair of keys packs to equal bytes exactly when the keys are equal, and the
    /// bytes order as the keys do.
    #[test]
    fn packed_keys_are_canonical_and_order_as_their_values() {
        let strings: [Option<&[u8]>; 6] = [
            None,
            Some(b""),
            Some(b"a"),
            Some(b"ab"),
            Some(b"b"),
            Some(b"\x01"),
        ];
        let ints = [
            None,
            Some(i64::MIN),
            Some(-256),
            Some(-1),
            Some(0),
            Some(1),
            Some(i64::MAX),
        ];
        let mut keys = Vec::new();
        for s in strings {
            for i in ints {
                for j in [None, Some(-1i64), Some(2)] {
                    keys.push((s, i, j));
                }
            }
        }
        let kinds = [Bytes, I64, I32];
        let packed = |k: &(Option<&'static [u8]>, Option<i64>, Option<i64>)| {
            let v = [
                k.0.map_or(Value::Null, Value::Bytes),
                k.1.map_or(Value::Null, Value::I64),
                k.2.map_or(Value::Null, Value::I64),
            ];
            pack(&kinds, v)
        };
        for a in &keys {
            for b in &keys {
                let (pa, pb) = (packed(a), packed(b));
                assert_eq!(cmp_packed(&pa, &pb), a.cmp(b), "{a:?} and {b:?}");
                assert_eq!(pa == pb, a == b, "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn keys_that_do_not_fit_are_marked() {
        let long = [b'x'; 23];
        assert_ne!(pack(&[Bytes], [Value::Bytes(&long[..22])])[0], UNPACKED);
        assert_eq!(pack(&[Bytes], [Value::Bytes(&long)])[0], UNPACKED);
        assert_eq!(pack(&[Bytes], [Value::Bytes(&[b'x'; 300])])[0], UNPACKED);
        assert_eq!(pack(&[Bytes], [Value::Bytes(b"a\0b")])[0], UNPACKED);
        assert_eq!(
            pack(&[I128, I64], [Value::I128(1), Value::I64(i64::MAX)])[0],
            UNPACKED,
            "17 + 9 bytes"
        );
        assert_eq!(
            pack(&[I32], [Value::I64(1 << 40)])[0],
            UNPACKED,
            "a value wider than its column"
        );
    }
}
