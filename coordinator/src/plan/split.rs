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

#[cfg(test)]
mod tests {
    use super::*;

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
