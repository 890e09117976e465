//! The fixed-width accumulator states of every group, a row of words per group.
//!
//! A group's count, sums, minimums and maximums sit side by side in one row (EOD's six
//! aggregates take 12 words, two cache lines), with a flag per aggregate saying whether it
//! has a value yet (an aggregate over no non-null value is null). A reducer's groups far
//! outnumber the cache, so each row an update touches is a miss: a vector per aggregate made
//! that eleven misses per EOD row (a value and a flag for five aggregates, and the count),
//! a row of states makes it two. The flags come first in the row, one bit per aggregate.

use arrow::buffer::NullBuffer;

use super::table::prefetch_read;

/// How many groups ahead of a gather in key order a group's row is prefetched.
const PREFETCH_GROUPS: usize = 8;

/// A value kept in a state row, in one or two words.
pub(super) trait Slot: Copy {
    /// Words it takes.
    const WORDS: usize;
    /// Reads it from `row` at word `at`.
    fn get(row: &[u64], at: usize) -> Self;
    /// Writes it to `row` at word `at`.
    fn put(self, row: &mut [u64], at: usize);
}

impl Slot for i64 {
    const WORDS: usize = 1;
    #[inline]
    fn get(row: &[u64], at: usize) -> Self {
        row[at] as i64
    }
    #[inline]
    fn put(self, row: &mut [u64], at: usize) {
        row[at] = self as u64;
    }
}

impl Slot for f64 {
    const WORDS: usize = 1;
    #[inline]
    fn get(row: &[u64], at: usize) -> Self {
        f64::from_bits(row[at])
    }
    #[inline]
    fn put(self, row: &mut [u64], at: usize) {
        row[at] = self.to_bits();
    }
}

impl Slot for i128 {
    const WORDS: usize = 2;
    #[inline]
    fn get(row: &[u64], at: usize) -> Self {
        (u128::from(row[at]) | u128::from(row[at + 1]) << 64) as i128
    }
    #[inline]
    fn put(self, row: &mut [u64], at: usize) {
        row[at] = self as u64;
        row[at + 1] = (self as u128 >> 64) as u64;
    }
}

/// Where one aggregate's state sits in a row: its first word, and its flag's bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Place {
    /// First word of the value.
    pub(super) at: usize,
    /// The flag's word and its bit in it.
    flag: (usize, u64),
}

/// Lays out aggregates needing `words[i]` words each (0 for one kept elsewhere): the flag
/// words first, then the values in order. Returns each one's place and the row's width.
pub(super) fn layout(words: &[usize]) -> (Vec<Place>, usize) {
    let flag_words = words.len().div_ceil(64);
    let mut at = flag_words;
    let places = words
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let place = Place {
                at,
                flag: (i / 64, 1 << (i % 64)),
            };
            at += w;
            place
        })
        .collect();
    (places, at)
}

/// Groups per block of rows. Rows live in fixed blocks rather than one vector, so adding
/// groups never copies the rows already held, nor holds the old and the new vector at once
/// (a vector's doubling did, for 140 MB of EOD states per reducer).
const BLOCK_GROUPS: usize = 1 << 14;

/// Every group's row of states.
#[derive(Debug)]
pub(super) struct States {
    stride: usize,
    blocks: Vec<Vec<u64>>,
}

impl States {
    /// Rows of `stride` words.
    pub(super) fn new(stride: usize) -> Self {
        States {
            stride,
            blocks: Vec::new(),
        }
    }

    /// Adds a group whose aggregates have no value yet (and whose counts are zero).
    pub(super) fn push_group(&mut self) {
        let full = BLOCK_GROUPS * self.stride;
        match self.blocks.last_mut() {
            Some(block) if block.len() < full => block.resize(block.len() + self.stride, 0),
            _ => {
                let mut block = Vec::with_capacity(full);
                block.resize(self.stride, 0);
                self.blocks.push(block);
            }
        }
    }

    /// Bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.capacity() * 8).sum()
    }

    /// Forgets every group and frees their rows.
    pub(super) fn clear(&mut self) {
        self.blocks.clear();
    }

    #[inline]
    fn row(&self, g: u32) -> &[u64] {
        let (block, at) = (
            g as usize / BLOCK_GROUPS,
            g as usize % BLOCK_GROUPS * self.stride,
        );
        &self.blocks[block][at..at + self.stride]
    }

    #[inline]
    fn row_mut(&mut self, g: u32) -> &mut [u64] {
        let (block, at) = (
            g as usize / BLOCK_GROUPS,
            g as usize % BLOCK_GROUPS * self.stride,
        );
        &mut self.blocks[block][at..at + self.stride]
    }

    /// The rows of the groups in `order`, each prefetched a few groups ahead of its turn:
    /// in key order they are scattered over the blocks, each a cache miss.
    fn rows_in<'a>(&'a self, order: &'a [u32]) -> impl Iterator<Item = &'a [u64]> + 'a {
        order.iter().enumerate().map(move |(i, &g)| {
            if let Some(&ahead) = order.get(i + PREFETCH_GROUPS) {
                prefetch_read(&self.row(ahead)[0]);
            }
            self.row(g)
        })
    }

    /// Adds `by(i)` to the count at `place` of group `groups[i]`, for every `i`.
    pub(super) fn add_counts(&mut self, place: Place, groups: &[u32], by: impl Fn(usize) -> i64) {
        for (i, &g) in groups.iter().enumerate() {
            let row = self.row_mut(g);
            row[place.at] = (row[place.at] as i64 + by(i)) as u64;
        }
    }

    /// Folds `values[i]` into group `groups[i]`'s state at `place` with `f`, skipping the
    /// rows `nulls` (offset by `offset`) marks null; a group's first value is taken as it
    /// is. `None` when `f` refused a value (an overflow).
    pub(super) fn fold<T: Slot>(
        &mut self,
        place: Place,
        groups: &[u32],
        values: &[T],
        nulls: Option<(&NullBuffer, usize)>,
        f: impl Fn(T, T) -> Option<T>,
    ) -> Option<()> {
        let (word, bit) = place.flag;
        let one = |row: &mut [u64], v: T| -> Option<()> {
            if row[word] & bit != 0 {
                f(T::get(row, place.at), v)?.put(row, place.at);
            } else {
                v.put(row, place.at);
                row[word] |= bit;
            }
            Some(())
        };
        match nulls {
            None => {
                for (&g, &v) in groups.iter().zip(values) {
                    one(self.row_mut(g), v)?;
                }
            }
            Some((nulls, offset)) => {
                for (i, (&g, &v)) in groups.iter().zip(values).enumerate() {
                    if nulls.is_valid(offset + i) {
                        one(self.row_mut(g), v)?;
                    }
                }
            }
        }
        Some(())
    }

    /// The values at `place` of the groups in `order`, and which are null (`None` when
    /// none is).
    pub(super) fn column<T: Slot>(
        &self,
        place: Place,
        order: &[u32],
    ) -> (Vec<T>, Option<NullBuffer>) {
        let (word, bit) = place.flag;
        let mut values = Vec::with_capacity(order.len());
        let mut set = Vec::with_capacity(order.len());
        for row in self.rows_in(order) {
            values.push(T::get(row, place.at));
            set.push(row[word] & bit != 0);
        }
        let nulls = set.contains(&false).then(|| NullBuffer::from(set));
        (values, nulls)
    }

    /// The counts at `place` of the groups in `order`.
    pub(super) fn counts(&self, place: Place, order: &[u32]) -> Vec<i64> {
        self.rows_in(order)
            .map(|row| row[place.at] as i64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_every_width_round_trip_through_a_row() {
        let mut row = [0u64; 4];
        for v in [
            0i128,
            -1,
            i128::MIN,
            i128::MAX,
            10_i128.pow(38) - 1,
            -(1 << 64),
        ] {
            v.put(&mut row, 1);
            assert_eq!(i128::get(&row, 1), v);
        }
        (-7i64).put(&mut row, 3);
        assert_eq!(i64::get(&row, 3), -7);
        (-0.5f64).put(&mut row, 0);
        assert_eq!(f64::get(&row, 0), -0.5);
    }

    #[test]
    fn layout_puts_flags_first_and_values_side_by_side() {
        let (places, stride) = layout(&[1, 2, 0, 1]);
        assert_eq!(stride, 1 + 1 + 2 + 1);
        assert_eq!(
            places.iter().map(|p| p.at).collect::<Vec<_>>(),
            [1, 2, 4, 4]
        );
        let (places, stride) = layout(&[1; 65]);
        assert_eq!((places[0].at, stride), (2, 67), "65 flags take two words");
        assert_eq!(places[64].flag, (1, 1));
    }

    /// Sums with nulls and a first value per group, and a group that never gets one.
    #[test]
    fn folds_take_the_first_value_then_combine_and_skip_nulls() {
        let (places, stride) = layout(&[2, 1]);
        let mut states = States::new(stride);
        for _ in 0..3 {
            states.push_group();
        }
        let groups = [0, 1, 0, 1];
        let nulls = NullBuffer::from(vec![true, false, true, true]);
        states
            .fold(
                places[0],
                &groups,
                &[5i128, 100, -2, 7],
                Some((&nulls, 0)),
                i128::checked_add,
            )
            .unwrap();
        states.add_counts(places[1], &groups, |_| 1);
        let (sums, sum_nulls) = states.column::<i128>(places[0], &[2, 1, 0]);
        assert_eq!(sums[1..], [7, 3]);
        assert_eq!(sum_nulls.map(|n| n.is_null(0)), Some(true));
        assert_eq!(states.counts(places[1], &[0, 1, 2]), [2, 2, 0]);
        let overflow = states.fold(places[0], &[0], &[i128::MAX], None, i128::checked_add);
        assert_eq!(overflow, None);
    }

    /// Groups in several blocks keep their own states, read back in any order.
    #[test]
    fn rows_across_blocks_keep_their_groups() {
        let (places, stride) = layout(&[1, 2]);
        let mut states = States::new(stride);
        let n = 2 * BLOCK_GROUPS as u32 + 5;
        for _ in 0..n {
            states.push_group();
        }
        assert_eq!(states.blocks.len(), 3);
        let groups: Vec<u32> = (0..n).rev().collect();
        let values: Vec<i128> = groups.iter().map(|&g| i128::from(g) << 70).collect();
        states.add_counts(places[0], &groups, |i| i as i64);
        states
            .fold(places[1], &groups, &values, None, i128::checked_add)
            .unwrap();
        let order: Vec<u32> = (0..n).collect();
        let (got, nulls) = states.column::<i128>(places[1], &order);
        assert!(nulls.is_none());
        assert!(
            got.iter()
                .zip(&order)
                .all(|(&v, &g)| v == i128::from(g) << 70)
        );
        let counts = states.counts(places[0], &order);
        assert!(
            counts
                .iter()
                .zip(&order)
                .all(|(&c, &g)| c == i64::from(n - 1 - g))
        );
        states.clear();
        assert_eq!(states.memory_bytes(), 0, "a spill frees the rows");
    }
}
