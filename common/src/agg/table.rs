//! The table that maps a key's hash to its group: open addressing with linear probing over
//! 8-byte entries, each a group id and 32 bits of its hash.
//!
//! A reducer's table holds millions of groups, far more than the caches, so nearly every
//! probe of a row is a cache miss, and a probe loop that waits for each one in turn spends
//! most of its time waiting (a profile of the EOD reduce put two thirds of the probe loop on
//! the load of the bucket's control bytes). The rows' hashes are all known before the
//! probes start, so the aggregator asks the table to prefetch the entry of a row a few rows
//! ahead ([`GroupTable::prefetch`]) while it probes the current one, and the misses of
//! several rows overlap. `hashbrown`'s table keeps its buckets private, hence this one, as
//! DuckDB keeps its own (salted 8-byte entries, linear probing) for the same reason.
//!
//! The table is kept at most half full, so a probe reads one or two neighbouring entries,
//! and the 32-bit tag spares the key comparison of nearly every entry that is not the row's
//! group. It grows only in [`GroupTable::reserve`], before a batch, so the entries a
//! prefetch named are still the ones probed.

/// An entry that holds no group.
const EMPTY: u64 = u64::MAX;

/// Fewest entries a table has once it holds anything.
const MIN_ENTRIES: usize = 1024;

/// The hash bits an entry keeps beside its group (the low bits pick its place).
fn tag(hash: u64) -> u64 {
    hash & 0xFFFF_FFFF_0000_0000
}

/// The place `hash` starts its probe at, in a table of `mask + 1` entries.
fn home(hash: u64, mask: usize) -> usize {
    hash as usize & mask
}

/// Group ids by hash.
#[derive(Debug, Default)]
pub(super) struct GroupTable {
    entries: Vec<u64>,
    len: usize,
}

impl GroupTable {
    /// An empty table; it allocates on the first [`GroupTable::reserve`].
    pub(super) fn new() -> Self {
        GroupTable::default()
    }

    /// Bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.entries.capacity() * 8
    }

    /// Forgets every group, keeping the entries' memory for the next ones.
    pub(super) fn clear(&mut self) {
        self.entries.fill(EMPTY);
        self.len = 0;
    }

    /// Makes room for `more` groups beyond those held, so no insert of the next batch grows
    /// the table. `group_hashes[g]` is group `g`'s hash, for re-placing the groups.
    pub(super) fn reserve(&mut self, more: usize, group_hashes: &[u64]) {
        let want = (self.len + more).saturating_mul(2).max(MIN_ENTRIES);
        if want <= self.entries.len() {
            return;
        }
        let size = want.next_power_of_two();
        self.entries = vec![EMPTY; size];
        let mask = size - 1;
        for (g, &hash) in group_hashes.iter().enumerate() {
            let mut at = home(hash, mask);
            while self.entries[at] != EMPTY {
                at = (at + 1) & mask;
            }
            self.entries[at] = tag(hash) | g as u64;
        }
    }

    /// Asks the CPU to bring the entry `hash` starts at into the cache: a probe for it soon
    /// after finds it there.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if self.entries.is_empty() {
            return;
        }
        let at = home(hash, self.entries.len() - 1);
        prefetch_read(&self.entries[at]);
    }

    /// The group at the entry `hash` starts at, when its tag is the hash's: most likely
    /// the row's own group, whose key the caller may prefetch before it probes.
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<u32> {
        let entry = *self
            .entries
            .get(home(hash, self.entries.len().wrapping_sub(1)))?;
        (entry != EMPTY && tag(entry) == tag(hash)).then_some(entry as u32)
    }

    /// The group of `hash` for which `same(group)` holds, or the new group `next` after
    /// recording it; `true` with a new group. [`GroupTable::reserve`] must have made room.
    #[inline]
    pub(super) fn find_or_insert(
        &mut self,
        hash: u64,
        next: u32,
        mut same: impl FnMut(u32) -> bool,
    ) -> (u32, bool) {
        let mask = self.entries.len().wrapping_sub(1);
        let row_tag = tag(hash);
        let mut at = home(hash, mask);
        loop {
            let entry = self.entries[at];
            if entry == EMPTY {
                self.entries[at] = row_tag | u64::from(next);
                self.len += 1;
                return (next, true);
            }
            let group = entry as u32;
            if tag(entry) == row_tag && same(group) {
                return (group, false);
            }
            at = (at + 1) & mask;
        }
    }
}

/// A hint that `value` will be read soon; no effect on what any read returns.
#[inline(always)]
pub(super) fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads no memory the program sees and cannot fault; the pointer
    // comes from a reference, so it is valid anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_candidate_is_the_group_at_the_home_entry_with_the_same_tag() {
        let mut table = GroupTable::new();
        assert_eq!(table.candidate(7), None, "an empty table has none");
        table.reserve(2, &[]);
        table.find_or_insert(5 << 32 | 3, 0, |_| false);
        assert_eq!(table.candidate(5 << 32 | 3), Some(0));
        assert_eq!(table.candidate(6 << 32 | 3), None, "another tag");
        assert_eq!(table.candidate(5 << 32 | 4), None, "another home");
    }

    /// Keys with colliding homes and tags find their own groups, across growth and clear.
    #[test]
    fn groups_are_found_by_hash_and_key_through_growth() {
        let mut table = GroupTable::new();
        let mut keys: Vec<u64> = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        // A weak hash (many equal tags and homes) over 5,000 keys, each seen twice.
        let hash = |k: u64| (k % 7) << 32 | (k % 13);
        for round in 0..2 {
            for chunk in (0..5_000u64).collect::<Vec<_>>().chunks(700) {
                table.reserve(chunk.len(), &hashes);
                for &k in chunk {
                    let h = hash(k);
                    let (g, new) =
                        table.find_or_insert(h, keys.len() as u32, |g| keys[g as usize] == k);
                    assert_eq!(new, round == 0, "key {k} in round {round}");
                    if new {
                        keys.push(k);
                        hashes.push(h);
                    }
                    assert_eq!(keys[g as usize], k);
                }
            }
        }
        assert_eq!(keys.len(), 5_000);
        assert!(table.entries.len() >= 10_000, "kept at most half full");
        table.clear();
        table.reserve(1, &[]);
        let (g, new) = table.find_or_insert(hash(3), 0, |_| true);
        assert_eq!((g, new), (0, true), "a cleared table holds nothing");
    }
}
