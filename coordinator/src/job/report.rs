//! What the job hands out and what workers report, in the job's own terms. The job never
//! sees a protobuf: the service and the job store convert these from and to their wire
//! forms (`crate::wire`), so the state machine reads as decisions over plain data.

use sluice_common::failure::TaskFailure;
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::split::Split;

use super::JobStatus;
use super::tasks::TaskKind;

/// Rows and bytes a map output holds for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRows {
    /// The partition (reduce task).
    pub partition: u32,
    /// Rows for it.
    pub rows: u64,
    /// Bytes for it.
    pub bytes: u64,
}

/// What a finished map attempt reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapOutput {
    /// Rows and bytes per partition.
    pub partitions: Vec<PartitionRows>,
    /// Input rows read.
    pub rows_in: u64,
    /// Rows written to the shuffle.
    pub rows_out: u64,
    /// The spill file's absolute path on its worker's host.
    pub spill_path: String,
    /// The random token in the spill file's footer (host-local reads check it).
    pub output_token: u64,
    /// The host id of the worker that wrote it.
    pub host_id: String,
    /// Records set aside as bad.
    pub bad_records: u64,
    /// The same, by kind of fault.
    pub bad_by_kind: std::collections::BTreeMap<String, u64>,
    /// Their quarantine file, relative to the output (empty: none).
    pub rejects_file: String,
    /// Sums of the control file's columns over the records read, as decimal text.
    pub input_sums: std::collections::BTreeMap<String, String>,
    /// What the job's map counted.
    pub counters: std::collections::BTreeMap<String, i64>,
}

/// What a committed reduce attempt reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReduceOutput {
    /// The committed part file, relative to the output.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// Map outputs read from this host's disk.
    pub local_outputs: u32,
    /// Map outputs fetched from other workers.
    pub remote_outputs: u32,
    /// The fetch streams that fetched them.
    pub fetch_streams: u32,
    /// What the job's reduce counted.
    pub counters: std::collections::BTreeMap<String, i64>,
    /// With `--partition-by`: the committed files, each under its directory (`file` is
    /// then empty, `rows` and `bytes` their totals).
    pub files: Vec<PartFile>,
}

/// One committed file of a partitioned output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartFile {
    /// Relative to the output: `txn_date=2026-11-28/part-00003.parquet`.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// What a worker reported for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A map attempt finished.
    MapDone(MapOutput),
    /// A reduce attempt committed.
    ReduceDone(ReduceOutput),
    /// The attempt failed.
    Failed(TaskFailure),
}

/// Where a reducer finds one map output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLocation {
    /// The map task.
    pub map_index: u32,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// The worker serving it.
    pub worker: WorkerId,
    /// That worker's shuffle address.
    pub shuffle_addr: String,
    /// Rows it holds for the reducer's partition: a fetch that yields fewer is a failure.
    pub expected_rows: u64,
    /// The spill file's path on its host (see [`MapOutput::spill_path`]).
    pub path: String,
    /// The spill file's token.
    pub output_token: u64,
    /// The host id of the worker that wrote it.
    pub host_id: String,
}

/// One attempt of one task of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRef {
    /// The job.
    pub job: JobId,
    /// Map or reduce.
    pub kind: TaskKind,
    /// Map index or partition.
    pub index: u32,
    /// The attempt number.
    pub attempt: u32,
}

/// A task given to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Its job.
    pub job: JobId,
    /// Its attempt number.
    pub attempt: u32,
    /// What to run.
    pub task: AssignedTask,
    /// For a task's first attempt, how long the task could have run before it was assigned
    /// (the scheduling delay).
    pub waited: Option<std::time::Duration>,
}

/// The task of an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignedTask {
    /// Map `index` over `split`.
    Map {
        /// The map index.
        index: u32,
        /// Its input.
        split: Split,
    },
    /// Reduce `partition` over every map output.
    Reduce {
        /// The partition.
        partition: u32,
        /// Where each map output is, in map order.
        map_outputs: Vec<OutputLocation>,
    },
}

impl Assignment {
    /// Which task it is.
    pub fn kind(&self) -> TaskKind {
        match self.task {
            AssignedTask::Map { .. } => TaskKind::Map,
            AssignedTask::Reduce { .. } => TaskKind::Reduce,
        }
    }

    /// Its map index or partition.
    pub fn index(&self) -> u32 {
        match self.task {
            AssignedTask::Map { index, .. } => index,
            AssignedTask::Reduce { partition, .. } => partition,
        }
    }
}

/// A job as clients and the job store see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// The plugin's name for it.
    pub name: String,
    /// Where it is.
    pub status: JobStatus,
    /// Map tasks, and those done.
    pub maps_total: u32,
    /// Map tasks done.
    pub maps_done: u32,
    /// Reduce tasks.
    pub reduces_total: u32,
    /// Reduce tasks committed.
    pub reduces_done: u32,
    /// Input rows read by the finished maps.
    pub rows_in: u64,
    /// Rows in committed part files.
    pub rows_out: u64,
    /// The output location.
    pub output: String,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    /// End time (0 while it runs).
    pub finished_ms: u64,
    /// Shuffle bytes held by the finished maps.
    pub shuffle_bytes: u64,
    /// The plugin's sha256.
    pub plugin_sha256: String,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts failed.
    pub failed_attempts: u32,
    /// Map outputs the committed reduces read from their host's disk.
    pub shuffle_local_outputs: u32,
    /// Map outputs they fetched.
    pub shuffle_remote_outputs: u32,
    /// Fetch streams they used.
    pub shuffle_streams: u32,
    /// Bad records the finished maps set aside.
    pub bad_records: u64,
    /// The same, by kind of fault.
    pub bad_by_kind: std::collections::BTreeMap<String, u64>,
    /// The job's own counters, from the attempt that finished each task.
    pub counters: std::collections::BTreeMap<String, i64>,
    /// Its run key (empty: none).
    pub run_key: String,
}

/// One attempt of a job as the job store kept it, to resume the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastAttempt {
    /// Map or reduce.
    pub kind: TaskKind,
    /// Task index.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
    /// What it finished with, if it finished well.
    pub output: Option<Outcome>,
}

/// A job the coordinator was running when it stopped, decoded from the job store.
pub struct Resumed {
    /// The job.
    pub id: JobId,
    /// When it was submitted.
    pub submitted_ms: u64,
    /// Its spec.
    pub spec: sluice_common::spec::JobSpec,
    /// What its plugin declared.
    pub description: sluice_sdk::JobDescription,
    /// The encoded input plan.
    pub input_plan: Vec<u8>,
    /// Its planned splits.
    pub splits: Vec<Split>,
    /// Every attempt the store knew.
    pub attempts: Vec<PastAttempt>,
}
