//! Cutting input files into splits: pure functions, tested on their own.

/// Byte ranges `[start, end)` of `split_size` bytes covering a file of `len` bytes. An empty
/// file has none. Line alignment happens when a split is read (`format::lines`).
pub fn byte_ranges(len: u64, split_size: u64) -> Vec<(u64, u64)> {
    let size = split_size.max(1);
    (0..len.div_ceil(size))
        .map(|i| (i * size, ((i + 1) * size).min(len)))
        .collect()
}

/// Groups consecutive Parquet row groups (of the given compressed sizes) into splits of
/// about `split_size` bytes: one split per row group, small neighbours merged.
pub fn row_group_splits(sizes: &[u64], split_size: u64) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        if !current.is_empty() && bytes + s > split_size {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i as u32);
        bytes += s;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What opening a file costs, counted as this many bytes when small files are packed: so a
/// split of many tiny files is not a task that spends its time opening them (Spark's
/// `openCostInBytes`).
pub const OPEN_COST_BYTES: u64 = 4 << 20;

/// The split size of an input of files of `sizes` bytes for `parallelism` task slots:
/// `requested`, but no more than each slot's share of the input (each file counted with
/// its open cost), and no less than the open cost (Spark's `maxSplitBytes`). So a 100 MB
/// file on two slots makes two map tasks, not one; 0 slots (none registered yet) leaves
/// `requested`.
///
/// The splits then come in whole waves: their number is rounded up to a multiple of the
/// slots, each a little smaller, so the last wave of maps is not one task running alone
/// while the other slots wait for it (269 MB of Parquet on two slots: four splits of 67 MB,
/// two waves, rather than three of 128 MiB, whose third ran alone for a third of the map
/// phase).
pub fn split_size_for(requested: u64, sizes: impl Iterator<Item = u64>, parallelism: u32) -> u64 {
    if parallelism == 0 {
        return requested.max(1);
    }
    let slots = u64::from(parallelism);
    let total = sizes.fold(0u64, |t, s| {
        t.saturating_add(s).saturating_add(OPEN_COST_BYTES)
    });
    let share = total.div_ceil(slots);
    let size = requested.min(share.max(OPEN_COST_BYTES)).max(1);
    let waves = total.div_ceil(size).div_ceil(slots).max(1);
    let even = total.div_ceil(waves.saturating_mul(slots));
    // A thirty-second over the average (a slot's share included, never over what was
    // asked): files of nearly one size, packed greedily, would otherwise leave alone each
    // one that comes a few bytes over it, and the splits fill no whole waves.
    (even + even / 32)
        .min(requested)
        .max(OPEN_COST_BYTES.min(size))
        .max(1)
}

/// Packs consecutive files of the given sizes into groups (Hadoop's
/// `CombineFileInputFormat`): each file counts its size plus `open_cost`, and a group takes
/// files until the next would pass `split_size`. A file at or over the split size alone is a
/// group of one, so this only ever merges small files. Returns the files' indices.
pub fn pack_files(sizes: &[u64], split_size: u64, open_cost: u64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        let cost = s.saturating_add(open_cost);
        if !current.is_empty() && bytes.saturating_add(cost) > split_size {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes = bytes.saturating_add(cost);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_shrink_to_give_every_slot_a_share_of_a_small_input() {
        let mb = 1u64 << 20;
        // One 100 MB file on two slots: two splits of about 52 MB.
        let s = split_size_for(128 * mb, [100 * mb].into_iter(), 2);
        assert_eq!(s, 52 * mb + 52 * mb / 32);
        assert_eq!(byte_ranges(100 * mb, s).len(), 2);
        // A big input keeps the requested size; so does an unknown cluster.
        assert_eq!(
            split_size_for(128 * mb, [10_000 * mb].into_iter(), 2),
            128 * mb
        );
        // Three splits' worth on two slots is cut in four (two full waves), whether one file
        // or eight of about one size (the EOD benchmark's Parquet: 33.6 MB each).
        let three = split_size_for(128 * mb, [300 * mb].into_iter(), 2);
        assert_eq!(byte_ranges(300 * mb, three).len(), 4);
        let files: Vec<u64> = (0..8u64).map(|i| 33_560_000 + i * 7_919 % 40_000).collect();
        let size = split_size_for(128 * mb, files.iter().copied(), 2);
        assert_eq!(pack_files(&files, size, OPEN_COST_BYTES).len(), 4);
        assert_eq!(pack_files(&files, 128 * mb, OPEN_COST_BYTES).len(), 3);
        // 57 small files on two slots: two splits, not 28 + 28 + 1.
        let small = [30_000u64; 57];
        let size = split_size_for(128 * mb, small.iter().copied(), 2);
        assert_eq!(pack_files(&small, size, OPEN_COST_BYTES).len(), 2);
        assert_eq!(split_size_for(128 * mb, [mb].into_iter(), 0), 128 * mb);
        // Never below the open cost, and never above what was asked.
        assert_eq!(
            split_size_for(128 * mb, [1].into_iter(), 64),
            OPEN_COST_BYTES
        );
        assert_eq!(split_size_for(97, [10 * mb].into_iter(), 2), 97);
        assert_eq!(split_size_for(0, [1].into_iter(), 1), 1);
    }

    #[test]
    fn small_files_are_packed_up_to_the_split_size_counting_their_open_cost() {
        // 10 files of 1 MiB, open cost 4 MiB, split 16 MiB: 3 files (15 MiB) a split.
        let packed = pack_files(&[1 << 20; 10], 16 << 20, 4 << 20);
        assert_eq!(
            packed,
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
        );
        // A big file stays alone and breaks the run.
        let packed = pack_files(&[10, 100, 10, 10], 50, 0);
        assert_eq!(packed, vec![vec![0], vec![1], vec![2, 3]]);
        assert!(pack_files(&[], 50, 0).is_empty());
        // Absurd sizes do not overflow.
        assert_eq!(pack_files(&[u64::MAX, 1], u64::MAX - 1, u64::MAX).len(), 2);
    }

    #[test]
    fn byte_ranges_cover_the_file_exactly() {
        assert!(byte_ranges(0, 10).is_empty());
        assert_eq!(byte_ranges(25, 10), vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(byte_ranges(3, 1), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(byte_ranges(5, 100), vec![(0, 5)]);
    }

    #[test]
    fn small_row_groups_are_merged_large_ones_stay_alone() {
        assert_eq!(
            row_group_splits(&[10, 10, 10, 50, 5], 30),
            vec![vec![0, 1, 2], vec![3], vec![4]]
        );
        assert_eq!(row_group_splits(&[], 30), Vec::<Vec<u32>>::new());
    }
}
