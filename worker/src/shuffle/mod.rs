//! The shuffle: map outputs on the map worker's local disk, read by reducers from the file
//! when they run on the same machine and fetched over gRPC otherwise ([`read`]).
//!
//! # On-disk format
//! ```text
//! <work_dir>/shuffle/<job_id>/<map_index>-<attempt>.parquet
//!
//!   one Parquet file per map attempt, beside the job's others (uncompressed, no
//!   dictionaries or statistics, row
//!   groups of at most 65,536 rows), written in runs: a map task writes a run when what it
//!   holds passes task_memory, or 64 MiB of rows nothing combines, and at its end. Within a
//!   run, partitions are written in order, each as its own row group(s); empty partitions
//!   write nothing:
//!
//!   run 0: [rg 0..: partition 0] [rg ..: partition 1] ... [rg ..: partition R-1]
//!   run 1: [rg ..: partition 0] ...
//!
//!   The footer's key-value metadata `sluice.partition_row_groups` ("p:rg,rg;p:rg" ...) and
//!   the worker's in-memory registry map each partition to its row groups. Decimals of more
//!   than 18 digits are stored as two Int64 columns ([`codec`]);
//!   `sluice.output_token` is a random token the map reports, so a reducer on the same
//!   machine can tell the file is that map attempt's before reading it directly.
//! ```
//! An attempt's file sits in its job's directory, not in a directory of its own: that was a
//! second inode to create per task, and in a job of 20,000 one-line maps `mkdir` took 15% of
//! the CPU.
//!
//! Within a run a partition's rows are in no order a reader may rely on: a map that
//! aggregates writes the rows its adaptive combiner passed through ungrouped, then its
//! groups in the order they were first seen; a custom-reduce job's rows are in map order.
//! A file holds one kind of rows: partials, or map output rows marked on their first field
//! (`sluice.map_rows`, see `sluice_common::agg::MAP_ROWS_KEY`) when the combiner stopped
//! grouping before it spilled anything.
//!
//! A reducer reading a file on its own machine takes the footer [`footers`] keeps for the
//! file, parsed once per worker.
//!
//! The serve side ([`serve`]) resolves a fetch from ids it registered itself
//! ([`ShuffleRegistry`]) and sends the row groups' bytes as they are on disk: a path never
//! comes from the network, and nothing is decoded to be served.

pub mod codec;
pub mod fetch;
pub mod footers;
pub mod merge;
pub mod read;
pub mod runs;
pub mod serve;
pub mod spill;
pub mod tournament;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use parquet::file::metadata::RowGroupMetaData;

/// Identifies one map attempt's output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapOutputId {
    /// The job.
    pub job_id: String,
    /// Map task index.
    pub map_index: u32,
    /// Attempt number.
    pub attempt: u32,
}

/// A finished map output on this worker's disk.
#[derive(Debug, Clone)]
pub struct MapOutputFile {
    /// The spill file; `None` when the map produced no rows.
    pub path: Option<PathBuf>,
    /// Row groups of each partition, in file order.
    pub partition_row_groups: HashMap<u32, Vec<usize>>,
    /// The random token in the file's footer.
    pub token: u64,
}

/// The bytes of one row group in its file: `(offset, length)`. A row group's column chunks
/// are written one after another, so this one range holds all of them.
pub fn row_group_range(group: &RowGroupMetaData) -> (u64, u64) {
    let mut start = u64::MAX;
    let mut end = 0u64;
    for column in group.columns() {
        let (s, len) = column.byte_range();
        start = start.min(s);
        end = end.max(s.saturating_add(len));
    }
    if start == u64::MAX {
        return (0, 0);
    }
    (start, end - start)
}

/// The map outputs this worker serves.
#[derive(Debug, Clone, Default)]
pub struct ShuffleRegistry {
    inner: Arc<Mutex<HashMap<MapOutputId, MapOutputFile>>>,
}

impl ShuffleRegistry {
    /// Records a finished map output.
    pub fn insert(&self, id: MapOutputId, file: MapOutputFile) {
        self.lock().insert(id, file);
    }

    /// Looks a map output up.
    pub fn get(&self, id: &MapOutputId) -> Option<MapOutputFile> {
        self.lock().get(id).cloned()
    }

    /// Forgets one output.
    pub fn remove(&self, id: &MapOutputId) -> Option<MapOutputFile> {
        self.lock().remove(id)
    }

    /// Every output held, for re-registering with a restarted coordinator.
    pub fn ids(&self) -> Vec<MapOutputId> {
        self.lock().keys().cloned().collect()
    }

    /// Forgets every output of `job_id`.
    pub fn remove_job(&self, job_id: &str) {
        self.lock().retain(|id, _| id.job_id != job_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MapOutputId, MapOutputFile>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
