//! How many reducers a job gets when the user names no number (`--reducers auto`, the
//! default): a pure function of the input's size and the job's `task_memory`.
//!
//! A reducer of declared aggregates holds its partition's groups in memory and spills
//! sorted runs past `task_memory`; merging runs costs it about twice its in-memory rate. So
//! the input is shared out at half a task's memory per reducer: a partition of typical
//! size never spills, and the other half is room for partitions bigger than the mean and
//! for the batches in flight. EOD's groups take about one byte of memory per byte of CSV
//! read, which is what the rule assumes. Hive sizes reducers the same way
//! (`hive.exec.reducers.bytes.per.reducer`); Spark reaches it after the map stage by
//! coalescing partitions.
//!
//! Measured on EOD, 100M rows of CSV (8.6 GiB), `--local 2 --task-memory 128MiB`, wall
//! and peak RSS by `--reducers`: 8: 69.8 s, 1.24 GiB (every reducer spills); 37: 62.3 s,
//! 761 MiB; 69: 53.6 s, 678 MiB; 74: 48.3 s, 576 MiB; 138 (this rule): 51.4 s, 430 MiB.

/// The fewest reducers picked: more than one per slot of a small cluster, so that the last
/// partitions leave a slot idle for a short time, and a small input still makes part
/// files of a size people expect from a default.
pub const MIN_AUTO_REDUCERS: u32 = 8;

/// The most reducers picked (Hive caps its own estimate at 1009): every reducer reads a
/// piece of every map output, so the shuffle has maps × reducers pieces. A bigger input
/// spills in its reducers, memory still bounded; `--reducers` asks for more.
pub const MAX_AUTO_REDUCERS: u32 = 1000;

/// Reducers for `input_bytes` of input (text, CSV and JSON lines as stored; Parquet as the
/// uncompressed size of the columns read) at `task_memory` bytes per task, within
/// `max_reducers` (the coordinator's limit).
pub fn auto_reducers(input_bytes: u64, task_memory: u64, max_reducers: u32) -> u32 {
    let per_reducer = (task_memory / 2).max(1);
    let wanted = input_bytes.div_ceil(per_reducer);
    let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
    wanted
        .clamp(MIN_AUTO_REDUCERS, MAX_AUTO_REDUCERS)
        .min(max_reducers)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn half_a_task_memory_per_reducer_between_the_floor_and_the_cap() {
        // EOD 10M rows of CSV at the default 512 MiB: the floor.
        assert_eq!(auto_reducers(876 * MIB, 512 * MIB, 10_000), 8);
        // EOD 100M rows of CSV at 128 MiB.
        assert_eq!(auto_reducers(8_806 * MIB, 128 * MIB, 10_000), 138);
        assert_eq!(auto_reducers(8_806 * MIB, 512 * MIB, 10_000), 35);
        // Exactly on a boundary is not one more.
        assert_eq!(auto_reducers(20 * 64 * MIB, 128 * MIB, 10_000), 20);
        assert_eq!(auto_reducers(20 * 64 * MIB + 1, 128 * MIB, 10_000), 21);
    }

    #[test]
    fn empty_tiny_and_absurd_inputs_stay_within_bounds() {
        assert_eq!(auto_reducers(0, 512 * MIB, 10_000), MIN_AUTO_REDUCERS);
        assert_eq!(auto_reducers(u64::MAX, 1, 10_000), MAX_AUTO_REDUCERS);
        assert_eq!(auto_reducers(u64::MAX, u64::MAX, 10_000), MIN_AUTO_REDUCERS);
        // The coordinator's limit wins, even below the floor; never zero.
        assert_eq!(auto_reducers(1 << 40, 128 * MIB, 300), 300);
        assert_eq!(auto_reducers(0, 512 * MIB, 4), 4);
        assert_eq!(auto_reducers(0, 512 * MIB, 0), 1);
    }
}
