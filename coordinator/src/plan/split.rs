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
